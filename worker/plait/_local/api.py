"""Local execution, sayiir-compatible: ``run_workflow``, ``run_durable_workflow``, the engines and the client.

Thin wrappers over :class:`plait._local.runner.Runner` and a :class:`~plait._local.backends.Backend`.
External requests (signals, pause, unpause, cancel) go to the backend's inbox and take effect
when the instance next runs (``resume_workflow``), exactly as sayiir does.
"""

from __future__ import annotations

from typing import Any

from plait._authoring.flow import Workflow
from plait._core import snapshot as st
from plait._core.snapshot import Snapshot
from plait._execution.invoke import to_json
from plait._local.backends import Backend, InMemoryBackend
from plait._local.runner import Runner
from plait._local.status import WorkflowStatus
from plait.errors import BackendError, InstanceAlreadyExistsError, TaskError, WorkflowError

CONFLICT_POLICIES = ("fail", "use_existing", "terminate_existing")
_STATE_NAMES = {
    st.COMPLETED: "Completed",
    st.FAILED: "Failed",
    st.CANCELLED: "Cancelled",
}


def _policy(conflict_policy: str | None) -> str:
    policy = conflict_policy or "fail"
    if policy not in CONFLICT_POLICIES:
        raise ValueError(f"conflict_policy must be one of {', '.join(CONFLICT_POLICIES)}, got {conflict_policy!r}")
    return policy


def _check_workflow(workflow: Any) -> Workflow:
    if not isinstance(workflow, Workflow):
        raise TypeError(f"expected a Workflow from Flow(...).build(), got {type(workflow).__name__}")
    return workflow


class WorkflowEngine:
    """Runs workflows in memory, without checkpoints: the fastest way to try a flow."""

    def run(self, workflow: Workflow, input: Any) -> Any:
        workflow = _check_workflow(workflow)
        status = Runner(workflow, workflow.workflow_id, None, sleep_through_waits=True).start(input)
        if status.is_completed():
            return status.output
        if status.is_failed():
            raise TaskError(status.error)
        if status.is_awaiting_signal():
            raise TaskError(
                f"workflow {workflow.workflow_id!r} waits for signal {status.signal_name!r}, which an in-memory "
                "run cannot receive; use run_durable_workflow() and send_signal()"
            )
        raise WorkflowError(f"Workflow did not complete (status={status.status})")

    def __repr__(self) -> str:
        return "WorkflowEngine()"


class DurableEngine:
    """Runs workflows with a checkpoint after every step in ``backend``."""

    def __init__(self, backend: Backend | None = None, conflict_policy: str | None = None) -> None:
        self.backend = backend if backend is not None else InMemoryBackend()
        self.conflict_policy = _policy(conflict_policy)

    def run(self, workflow: Workflow, instance_id: str, input: Any) -> WorkflowStatus:
        workflow = _check_workflow(workflow)
        existing = self.backend.load(instance_id)
        if existing is not None:
            if self.conflict_policy == "fail":
                raise InstanceAlreadyExistsError(f"Workflow instance already exists: {instance_id}")
            if self.conflict_policy == "use_existing":
                return self.resume(workflow, instance_id)
            self.backend.delete(instance_id)
        return Runner(workflow, instance_id, self.backend, sleep_through_waits=False).start(input)

    def resume(self, workflow: Workflow, instance_id: str) -> WorkflowStatus:
        workflow = _check_workflow(workflow)
        snapshot = Snapshot.from_data(self.backend.require(instance_id))
        return Runner(workflow, instance_id, self.backend, sleep_through_waits=False).resume(snapshot)

    def _request(self, instance_id: str, action: str, request: dict[str, Any]) -> None:
        snapshot = self.backend.require(instance_id)
        state = snapshot["status"]
        if state in st.TERMINAL:
            raise BackendError(f"Cannot {action} workflow in state: {_STATE_NAMES[state]}")
        self.backend.append_inbox(instance_id, request)

    def cancel(self, instance_id: str, reason: str | None = None, cancelled_by: str | None = None) -> None:
        self._request(instance_id, "cancel", {"type": "cancel", "reason": reason, "by": cancelled_by})

    def pause(self, instance_id: str, reason: str | None = None, paused_by: str | None = None) -> None:
        self._request(instance_id, "pause", {"type": "pause", "reason": reason, "by": paused_by})

    def unpause(self, instance_id: str) -> None:
        self._request(instance_id, "unpause", {"type": "unpause"})

    def send_signal(self, instance_id: str, signal_name: str, payload: Any) -> None:
        self._request(instance_id, "signal", {"type": "signal", "name": signal_name, "payload": payload})

    def __repr__(self) -> str:
        return f"DurableEngine({self.backend!r}, conflict_policy={self.conflict_policy!r})"


class WorkflowClient:
    """Submits and controls instances in a backend without running their tasks."""

    def __init__(self, backend: Backend, *, conflict_policy: str | None = None) -> None:
        self._engine = DurableEngine(backend, conflict_policy)

    @property
    def backend(self) -> Backend:
        return self._engine.backend

    def submit(self, workflow: Workflow, instance_id: str, input: Any) -> WorkflowStatus:
        """Record a new instance; ``resume_workflow`` (or a runner) then runs it."""
        workflow = _check_workflow(workflow)
        if self.backend.load(instance_id) is not None:
            if self._engine.conflict_policy == "fail":
                raise InstanceAlreadyExistsError(f"Workflow instance already exists: {instance_id}")
            if self._engine.conflict_policy == "use_existing":
                return self.status(instance_id)
            self.backend.delete(instance_id)
        snapshot = Snapshot(instance_id, workflow.workflow_id, workflow.definition_hash)
        self.backend.save(instance_id, snapshot.to_data())
        self.backend.append_inbox(instance_id, {"type": "start", "input": to_json(input)})
        return WorkflowStatus.of(snapshot)

    def cancel(self, instance_id: str, *, reason: str | None = None, cancelled_by: str | None = None) -> None:
        self._engine.cancel(instance_id, reason, cancelled_by)

    def pause(self, instance_id: str, *, reason: str | None = None, paused_by: str | None = None) -> None:
        self._engine.pause(instance_id, reason, paused_by)

    def unpause(self, instance_id: str) -> None:
        self._engine.unpause(instance_id)

    def send_signal(self, instance_id: str, signal_name: str, payload: Any) -> None:
        self._engine.send_signal(instance_id, signal_name, payload)

    def status(self, instance_id: str) -> WorkflowStatus:
        return WorkflowStatus.of(Snapshot.from_data(self.backend.require(instance_id)))

    def get_task_result(self, instance_id: str, task_id: str) -> Any | None:
        """The latest output of ``task_id`` in this instance, or ``None`` if it never ran."""
        return self.backend.task_output(instance_id, task_id)

    def __repr__(self) -> str:
        return f"WorkflowClient({self.backend!r})"


def run_workflow(
    workflow: Workflow,
    input_data: Any,
    *,
    instance_id: str | None = None,
    backend: Backend | None = None,
    conflict_policy: str | None = None,
) -> Any:
    """Run to completion and return the output.

    Without ``instance_id`` everything stays in memory and delays are slept through; with it,
    the run is durable in ``backend`` and a run that does not complete raises ``WorkflowError``.
    """
    if instance_id is None:
        return WorkflowEngine().run(workflow, input_data)
    status = run_durable_workflow(workflow, instance_id, input_data, backend=backend, conflict_policy=conflict_policy)
    if not status.is_completed():
        raise WorkflowError(
            f"Workflow did not complete (status={status.status}). Use run_durable_workflow() to inspect the full status."
        )
    return status.output


def run_durable_workflow(
    workflow: Workflow,
    instance_id: str,
    input_data: Any,
    backend: Backend | None = None,
    conflict_policy: str | None = None,
) -> WorkflowStatus:
    """Run with a checkpoint after every step; returns when finished or waiting (delay, signal, pause)."""
    return DurableEngine(backend, conflict_policy).run(workflow, instance_id, input_data)


def resume_workflow(workflow: Workflow, instance_id: str, backend: Backend) -> WorkflowStatus:
    """Continue an instance from its last checkpoint, applying pending signals and requests."""
    return DurableEngine(backend).resume(workflow, instance_id)


def cancel_workflow(
    instance_id: str, backend: Backend, reason: str | None = None, cancelled_by: str | None = None
) -> None:
    """Ask for cancellation; it takes effect when the instance next runs."""
    DurableEngine(backend).cancel(instance_id, reason, cancelled_by)


def pause_workflow(instance_id: str, backend: Backend, reason: str | None = None, paused_by: str | None = None) -> None:
    """Ask for a pause at the next task boundary."""
    DurableEngine(backend).pause(instance_id, reason, paused_by)


def unpause_workflow(instance_id: str, backend: Backend) -> None:
    """Lift a pause; ``resume_workflow`` then continues the instance."""
    DurableEngine(backend).unpause(instance_id)


def send_signal(instance_id: str, signal_name: str, payload: Any, backend: Backend) -> None:
    """Deliver a signal; it is buffered first-in first-out until the instance waits for it."""
    DurableEngine(backend).send_signal(instance_id, signal_name, payload)
