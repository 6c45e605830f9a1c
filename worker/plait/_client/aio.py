"""``AsyncWorkflowClient``: sayiir's ``WorkflowClient`` methods as coroutines, against the cluster.

Each call is a few requests to the API server (through :class:`~plait._kube.client.AsyncKube`):
``submit`` creates a ``WorkflowInstance``, ``send_signal`` a ``WorkflowSignal``; ``pause``,
``unpause`` and ``cancel`` set the annotations ``kubectl annotate`` would and then wait (up to
``ack_timeout``) for the operator to act on them, so the next ``status()`` shows the effect; when
the operator is slower than that, :func:`~plait._client.objects.status_of` shows the request
itself. Instance ids are mapped to object names by :func:`plait._ids.instance_name`.

Conflict policies on the cluster: ``fail`` raises ``InstanceAlreadyExistsError``;
``use_existing`` returns the existing instance's status; ``terminate_existing`` cancels the
existing instance, waits until the operator has cancelled it, deletes it, creates the new one
and sends it again every signal the old one had not consumed (its checkpoint's buffer, then the
signals it had not taken yet, in order).

With a payload store on the backend (``KubernetesBackend(payload_store=...)``), an input or a
signal payload over its inline limit is written there first and the object holds a reference;
outputs read back (``status``, ``wait``, ``list``, ``get_task_result``) are the values, their
hashes checked.

Given a local backend (``InMemoryBackend``, ``SqliteBackend``) the same methods run the local
client's in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

from plait._authoring.flow import Workflow
from plait._client.backend import KubernetesBackend
from plait._client.objects import (
    PHASE_STATUSES,
    buffered_signals,
    instance_body,
    is_finished,
    phase_of,
    signal_body,
    snapshot_of,
    status_of,
)
from plait._execution.invoke import to_json
from plait._ids import check_instance_id, instance_id_of, instance_name
from plait._kube import idempotency
from plait._kube.client import JSON, AsyncKube
from plait._kube.models import (
    CANCEL_ANNOTATION,
    CANCELLED_BY_ANNOTATION,
    INSTANCE_UID_LABEL,
    INSTANCES,
    PAUSE_ANNOTATION,
    PAUSED_BY_ANNOTATION,
    SIGNALS,
    TASKS,
)
from plait._lifecycle import check_pause, check_unpause, missing, should_cancel, should_signal
from plait._local.api import WorkflowClient, check_policy, check_workflow
from plait._local.status import WorkflowStatus
from plait._payloads import resolve
from plait.errors import BackendError, ClusterError, Conflict, InstanceAlreadyExistsError, NotFound

REPLACED_BY = "plait.dev/client"  # who cancels an instance that terminate_existing replaces


class AsyncWorkflowClient:
    """Submit and control workflow instances from async code; nothing runs in this process.

    ``ack_timeout`` bounds how long ``pause``/``unpause``/``cancel`` wait for the operator, and
    ``terminate_existing`` for the old instance to go (four times as long).
    """

    def __new__(cls, backend: Any, *, conflict_policy: str | None = None, ack_timeout: float = 10.0) -> Any:
        if cls is AsyncWorkflowClient and not isinstance(backend, KubernetesBackend):
            return _LocalAsyncClient(backend, conflict_policy)
        return super().__new__(cls)

    def __init__(
        self, backend: KubernetesBackend, *, conflict_policy: str | None = None, ack_timeout: float = 10.0
    ) -> None:
        self.backend = backend
        self.conflict_policy = check_policy(conflict_policy)
        self.ack_timeout = ack_timeout
        self.namespace = backend.namespace
        self._kube = AsyncKube(backend.connection)

    async def aclose(self) -> None:
        await self._kube.aclose()

    async def __aenter__(self) -> AsyncWorkflowClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"AsyncWorkflowClient({self.backend!r}, conflict_policy={self.conflict_policy!r})"

    # -- sayiir's methods ----------------------------------------------------------------------------

    async def submit(
        self, workflow: Workflow, instance_id: str, input: Any, *, idempotency_key: str | None = None
    ) -> WorkflowStatus:
        """Create the instance; the operator starts it once a worker has published its workflow.

        With ``idempotency_key`` (plait): when an instance was submitted with the same key within
        the operator's window (a day by default), nothing is created and that instance's status
        is returned; two submits racing each other create two, and the operator runs only the
        first (the other ends ``Cancelled`` with ``status.duplicateOf``).
        """
        workflow = check_workflow(workflow)
        check_instance_id(instance_id)
        if idempotency_key is not None:
            if not isinstance(idempotency_key, str) or not idempotency_key:
                raise ValueError(f"idempotency_key must be a non-empty string, got {idempotency_key!r}")
            listed = await self._kube.list(
                INSTANCES, self.namespace, label_selector=idempotency.selector(idempotency_key)
            )
            first = idempotency.first_with_key(listed.get("items") or [], idempotency_key, time.time())
            if first is not None:
                return await self._status(first)
        value = to_json(input)
        body = instance_body(
            workflow.workflow_id, instance_id, await self._offload(value, instance_name(instance_id)), idempotency_key
        )
        for _ in range(3):  # a name freed or taken between two requests: look again
            try:
                return await self._status(await self._kube.create(INSTANCES, body, self.namespace))
            except Conflict:
                existing = await self._find(instance_id, strict=False)
            if existing is None:
                continue
            if instance_id_of(existing) != instance_id:
                raise InstanceAlreadyExistsError(
                    f"Workflow instance already exists: {instance_id} (its object name "
                    f"{existing['metadata']['name']} is taken by instance {instance_id_of(existing)!r})"
                )
            if self.conflict_policy == "fail":
                raise InstanceAlreadyExistsError(f"Workflow instance already exists: {instance_id}")
            if self.conflict_policy == "use_existing":
                return await self._status(existing)
            return await self._status(await self._replace(existing, body, value))
        raise BackendError(f"could not create instance {instance_id!r}: its name kept changing hands")

    async def status(self, instance_id: str) -> WorkflowStatus:
        return await self._status(await self._require(instance_id))

    async def cancel(self, instance_id: str, *, reason: str | None = None, cancelled_by: str | None = None) -> None:
        """Cancel: no new step starts, running tasks are asked to stop. Returns once the operator did it
        (or after ``ack_timeout``; ``status()`` says ``cancelling`` until then)."""
        body = await self._require(instance_id)
        if not should_cancel(status_of(body).status):
            return
        name = body["metadata"]["name"]
        await self._annotate(name, {CANCEL_ANNOTATION: reason or "", CANCELLED_BY_ANNOTATION: cancelled_by or ""})
        await self._until(name, is_finished, self.ack_timeout)

    async def pause(self, instance_id: str, *, reason: str | None = None, paused_by: str | None = None) -> None:
        """Pause: a waiting instance at once, a running one at its next step boundary (the running
        step finishes). Returns once the operator recorded it (or after ``ack_timeout``)."""
        body = await self._require(instance_id)
        check_pause(status_of(body).status)
        name = body["metadata"]["name"]
        await self._annotate(name, {PAUSE_ANNOTATION: reason or "", PAUSED_BY_ANNOTATION: paused_by or ""})
        if snapshot_of(body) is not None:  # not started yet: it starts paused, nothing to wait for
            await self._until(name, lambda b: phase_of(b) == "Paused" or is_finished(b), self.ack_timeout)

    async def unpause(self, instance_id: str) -> None:
        body = await self._require(instance_id)
        check_unpause(status_of(body).status)
        name = body["metadata"]["name"]
        await self._annotate(name, {PAUSE_ANNOTATION: None, PAUSED_BY_ANNOTATION: None})
        if phase_of(body) == "Paused":
            await self._until(name, lambda b: phase_of(b) != "Paused", self.ack_timeout)

    async def send_signal(self, instance_id: str, signal_name: str, payload: Any) -> None:
        """Send a signal; it waits, first-in first-out per name, until the workflow waits for it.

        As in sayiir, a signal for a finished instance is dropped, and one for an instance not
        submitted yet is sent (the operator keeps it a few seconds for the instance to appear)."""
        body = await self._find(instance_id)
        if body is not None and not should_signal(status_of(body).status):
            return
        name = body["metadata"]["name"] if body is not None else instance_name(instance_id)
        value = await self._offload(to_json(payload), name)
        await self._kube.create(SIGNALS, signal_body(name, signal_name, value), self.namespace)

    async def get_task_result(self, instance_id: str, task_id: str) -> Any | None:
        """The output of the latest successful run of ``task_id``, or ``None`` if it never ran."""
        body = await self._require(instance_id)
        uid = body["metadata"]["uid"]
        tasks = await self._kube.list(TASKS, self.namespace, label_selector=f"{INSTANCE_UID_LABEL}={uid}")
        done = [
            t
            for t in tasks.get("items") or []
            if t["spec"].get("task") == task_id and (t.get("status") or {}).get("phase") == "Succeeded"
        ]
        if not done:
            return None
        latest = max(done, key=lambda t: (t["status"].get("finishedAt") or "", t["spec"]["attempt"]))
        return await resolve(self.backend.payloads, latest["status"].get("output"), self.namespace)

    # -- plait's additions ---------------------------------------------------------------------------

    async def wait(self, instance_id: str, timeout: float | None = None) -> WorkflowStatus:
        """The status once the instance finished; ``TimeoutError`` if it has not after ``timeout`` seconds."""
        body = await self._require(instance_id)
        reached, last = await self._until(body["metadata"]["name"], is_finished, timeout)
        if last is None:
            raise missing(instance_id)
        if not reached:
            raise TimeoutError(f"instance {instance_id!r} did not finish within {timeout}s: {status_of(last)!r}")
        return await self._status(last)

    async def list(self, workflow: str | None = None, phase: str | None = None) -> list[WorkflowStatus]:
        """Instances in the namespace, oldest first; ``phase`` is a status string or a Kubernetes phase."""
        wanted = PHASE_STATUSES.get(phase or "", phase)
        items = (await self._kube.list(INSTANCES, self.namespace)).get("items") or []
        items.sort(key=lambda b: (b["metadata"].get("creationTimestamp", ""), b["metadata"]["name"]))
        statuses = [await self._status(body) for body in items]
        return [
            s
            for s in statuses
            if (workflow is None or s.workflow_id == workflow) and (wanted is None or s.status == wanted)
        ]

    # -- helpers -------------------------------------------------------------------------------------

    async def _status(self, body: JSON) -> WorkflowStatus:
        """:func:`status_of`, with the output read from the payload store if it was offloaded."""
        status = status_of(body)
        if status.output is not None:
            status.output = await resolve(self.backend.payloads, status.output, self.namespace)
        return status

    async def _offload(self, value: Any, instance: str, *, again: bool = False) -> Any:
        """``value`` as the object holds it: its large parts in the payload store, if there is one
        (``again``: written even if this process wrote the same object before)."""
        payloads = self.backend.payloads
        return value if payloads is None else await payloads.offload(value, self.namespace, instance, again=again)

    async def _find(self, instance_id: str, *, strict: bool = True) -> JSON | None:
        """The instance object of ``instance_id`` (``strict=False``: whatever holds its name)."""
        try:
            body = await self._kube.get(INSTANCES, instance_name(instance_id), self.namespace)
        except NotFound:
            return None
        return body if not strict or instance_id_of(body) == instance_id else None

    async def _require(self, instance_id: str) -> JSON:
        body = await self._find(instance_id)
        if body is None:
            raise missing(instance_id)
        return body

    async def _annotate(self, name: str, annotations: dict[str, str | None]) -> None:
        await self._kube.patch(INSTANCES, name, {"metadata": {"annotations": annotations}}, self.namespace)

    async def _until(
        self, name: str, done: Callable[[JSON | None], bool], timeout: float | None
    ) -> tuple[bool, JSON | None]:
        """Follow the object (``None`` once deleted) until ``done`` says so or ``timeout`` passes:
        (whether it did, the object as last seen)."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            try:
                body: JSON | None = await self._kube.get(INSTANCES, name, self.namespace)
            except NotFound:
                body = None
            if done(body):
                return True, body
            if body is None:
                return False, None
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                return False, body
            events = self._kube.watch(
                INSTANCES,
                self.namespace,
                resource_version=body["metadata"]["resourceVersion"],
                field_selector=f"metadata.name={name}",
                timeout_seconds=60 if left is None else max(1, min(60, int(left) + 1)),
            )
            try:
                # closed here, not whenever it is collected: its connection goes back before we return
                async with asyncio.timeout(left), contextlib.aclosing(events):
                    async for event in events:
                        if event.type == "BOOKMARK":
                            continue
                        body = None if event.type == "DELETED" else event.object
                        if done(body):
                            return True, body
                        if body is None:
                            return False, None
            except TimeoutError:
                return False, body
            except ClusterError as error:
                if error.status != 410:  # an expired resourceVersion: read it again
                    raise

    async def _replace(self, existing: JSON, body: JSON, value: Any) -> JSON:
        """``terminate_existing``: cancel and delete ``existing``, create ``body`` (of input ``value``),
        and move the signals the old instance had not consumed over to the new one.

        Payloads: the old instance's objects go with it, and the new one has the same name, so the
        carried signals are read before and everything is written again after the deletion (what
        the operator deletes is only what was written before)."""
        name = existing["metadata"]["name"]
        settle = 4 * self.ack_timeout
        if not is_finished(existing):
            reason = "replaced by a new submission (conflict_policy terminate_existing)"
            await self._annotate(name, {CANCEL_ANNOTATION: reason, CANCELLED_BY_ANNOTATION: REPLACED_BY})
            finished, existing_now = await self._until(name, is_finished, settle)
            if not finished or existing_now is None:
                raise BackendError(f"instance {instance_id_of(existing)!r} was not cancelled within {settle:g}s")
            existing = existing_now
        carried = buffered_signals(existing)
        signals = await self._kube.list(SIGNALS, self.namespace, field_selector=f"spec.instance={name}")
        waiting = sorted(
            (s for s in signals.get("items") or [] if (s.get("status") or {}).get("phase") in (None, "Pending")),
            key=lambda s: (s["metadata"].get("creationTimestamp", ""), int(s["metadata"]["resourceVersion"])),
        )
        carried += [(s["spec"]["name"], s["spec"].get("payload")) for s in waiting]
        payloads = self.backend.payloads
        carried = [(signal_name, await resolve(payloads, payload, self.namespace)) for signal_name, payload in carried]
        with contextlib.suppress(NotFound):
            await self._kube.delete(INSTANCES, name, self.namespace, propagation="Background")
        gone, _ = await self._until(name, lambda b: b is None, settle)
        if not gone:
            raise BackendError(f"instance {instance_id_of(existing)!r} was not deleted within {settle:g}s")
        body["spec"]["input"] = await self._offload(value, name, again=True)
        created = await self._kube.create(INSTANCES, body, self.namespace)
        for signal_name, payload in carried:
            stored = await self._offload(payload, name, again=True)
            await self._kube.create(SIGNALS, signal_body(name, signal_name, stored), self.namespace)
        for old in waiting:  # sent again above; the new instance must not get them twice
            with contextlib.suppress(NotFound):
                await self._kube.delete(SIGNALS, old["metadata"]["name"], self.namespace)
        return created


class _LocalAsyncClient:
    """``AsyncWorkflowClient`` over a local backend: the local client's calls, in a thread."""

    def __init__(self, backend: Any, conflict_policy: str | None) -> None:
        self._client = WorkflowClient(backend, conflict_policy=conflict_policy)

    async def submit(self, workflow: Workflow, instance_id: str, input: Any) -> WorkflowStatus:
        return await asyncio.to_thread(self._client.submit, workflow, instance_id, input)

    async def status(self, instance_id: str) -> WorkflowStatus:
        return await asyncio.to_thread(self._client.status, instance_id)

    async def cancel(self, instance_id: str, *, reason: str | None = None, cancelled_by: str | None = None) -> None:
        await asyncio.to_thread(self._client.cancel, instance_id, reason=reason, cancelled_by=cancelled_by)

    async def pause(self, instance_id: str, *, reason: str | None = None, paused_by: str | None = None) -> None:
        await asyncio.to_thread(self._client.pause, instance_id, reason=reason, paused_by=paused_by)

    async def unpause(self, instance_id: str) -> None:
        await asyncio.to_thread(self._client.unpause, instance_id)

    async def send_signal(self, instance_id: str, signal_name: str, payload: Any) -> None:
        await asyncio.to_thread(self._client.send_signal, instance_id, signal_name, payload)

    async def get_task_result(self, instance_id: str, task_id: str) -> Any | None:
        return await asyncio.to_thread(self._client.get_task_result, instance_id, task_id)

    async def aclose(self) -> None:
        return None

    async def __aenter__(self) -> _LocalAsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    def __repr__(self) -> str:
        return f"AsyncWorkflowClient({self._client.backend!r})"
