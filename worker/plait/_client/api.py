"""sayiir's module-level functions for every backend: local ones run here, the cluster's submit.

``run_durable_workflow``, ``resume_workflow``, ``run_workflow`` and the lifecycle functions take
a local backend (:mod:`plait._local.api` runs the instance in this process) or a
:class:`~plait.KubernetesBackend`: then the instance is the cluster's, the operator and the
workers run it, and these go through a :class:`~plait._client.sync.ClusterWorkflowClient`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from plait._authoring.flow import Workflow
from plait._client.backend import KubernetesBackend
from plait._client.sync import ClusterWorkflowClient
from plait._local import api as local
from plait._local.backends import Backend
from plait._local.status import WorkflowStatus
from plait.errors import TaskError, WorkflowError


def run_workflow(
    workflow: Workflow,
    input_data: Any,
    *,
    instance_id: str | None = None,
    backend: Backend | KubernetesBackend | None = None,
    conflict_policy: str | None = None,
) -> Any:
    """Run to completion and return the output (on a cluster: submit, then wait for the end)."""
    if not isinstance(backend, KubernetesBackend) or instance_id is None:
        here = None if isinstance(backend, KubernetesBackend) else backend  # no id: in memory, as sayiir
        return local.run_workflow(
            workflow, input_data, instance_id=instance_id, backend=here, conflict_policy=conflict_policy
        )
    with ClusterWorkflowClient(backend, conflict_policy=conflict_policy) as cluster:
        cluster.submit(workflow, instance_id, input_data)
        status = cluster.wait(instance_id)
    if status.is_failed():
        raise TaskError(status.error)
    if not status.is_completed():
        raise WorkflowError(f"Workflow did not complete (status={status.status})")
    return status.output


def run_durable_workflow(
    workflow: Workflow,
    instance_id: str,
    input_data: Any,
    backend: Backend | KubernetesBackend | None = None,
    conflict_policy: str | None = None,
) -> WorkflowStatus:
    """Run with a checkpoint after every step; returns when finished or waiting (delay, signal, pause).

    With a :class:`~plait.KubernetesBackend` it submits the instance and returns its status at once:
    the operator and the workers run it."""
    if not isinstance(backend, KubernetesBackend):
        return local.run_durable_workflow(workflow, instance_id, input_data, backend, conflict_policy)
    with ClusterWorkflowClient(backend, conflict_policy=conflict_policy) as cluster:
        return cluster.submit(workflow, instance_id, input_data)


def resume_workflow(workflow: Workflow, instance_id: str, backend: Backend | KubernetesBackend) -> WorkflowStatus:
    """Continue an instance from its last checkpoint, applying pending signals and requests.

    With a :class:`~plait.KubernetesBackend` it returns the current status: the operator drives it."""
    if not isinstance(backend, KubernetesBackend):
        return local.resume_workflow(workflow, instance_id, backend)
    local.check_workflow(workflow)
    with ClusterWorkflowClient(backend) as cluster:
        return cluster.status(instance_id)


def _request(backend: Backend | KubernetesBackend, call: Callable[[Any], None]) -> None:
    """Make a lifecycle request through the cluster's client, or a local engine."""
    if not isinstance(backend, KubernetesBackend):
        call(local.DurableEngine(backend))
        return
    with ClusterWorkflowClient(backend) as cluster:
        call(cluster)


def cancel_workflow(
    instance_id: str,
    backend: Backend | KubernetesBackend,
    reason: str | None = None,
    cancelled_by: str | None = None,
) -> None:
    """Ask for cancellation; locally it takes effect when the instance next runs."""
    _request(backend, lambda c: c.cancel(instance_id, reason=reason, cancelled_by=cancelled_by))


def pause_workflow(
    instance_id: str, backend: Backend | KubernetesBackend, reason: str | None = None, paused_by: str | None = None
) -> None:
    """Ask for a pause at the next task boundary."""
    _request(backend, lambda c: c.pause(instance_id, reason=reason, paused_by=paused_by))


def unpause_workflow(instance_id: str, backend: Backend | KubernetesBackend) -> None:
    """Lift a pause; locally, ``resume_workflow`` then continues the instance."""
    _request(backend, lambda c: c.unpause(instance_id))


def send_signal(instance_id: str, signal_name: str, payload: Any, backend: Backend | KubernetesBackend) -> None:
    """Deliver a signal; it is buffered first-in first-out until the instance waits for it."""
    _request(backend, lambda c: c.send_signal(instance_id, signal_name, payload))
