"""``WorkflowClient``: the local client, or on a cluster the async client driven from synchronous code.

``plait.WorkflowClient(backend)`` is the local client for a local backend; for a
:class:`~plait.KubernetesBackend` it makes a :class:`ClusterWorkflowClient`. That owns one
event loop on a daemon thread of its own, runs an
:class:`~plait._client.aio.AsyncWorkflowClient` on it and waits for each call, so there is one
implementation of every method and it works from any thread, inside a running event loop too
(a web framework's handler). ``close()`` (or ``with``) stops the thread and its connections.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from plait._authoring.flow import Workflow
from plait._client.aio import AsyncWorkflowClient
from plait._client.backend import KubernetesBackend
from plait._client.worker import CLOSE_GRACE_SECONDS
from plait._local import api as local
from plait._local.status import WorkflowStatus

T = TypeVar("T")


class WorkflowClient(local.WorkflowClient):
    """Submits and controls instances without running their tasks: in a local backend, or on the
    cluster of a :class:`~plait.KubernetesBackend` (then with ``wait``, ``list`` and ``close`` too)."""

    def __new__(cls, backend: Any, **options: Any) -> WorkflowClient:
        if cls is WorkflowClient and isinstance(backend, KubernetesBackend):
            cls = ClusterWorkflowClient
        return super().__new__(cls)


class ClusterWorkflowClient(WorkflowClient):
    """sayiir's ``WorkflowClient`` methods, plus ``wait`` and ``list``, against the cluster."""

    def __init__(
        self, backend: KubernetesBackend, *, conflict_policy: str | None = None, ack_timeout: float = 10.0
    ) -> None:
        self._async = AsyncWorkflowClient(backend, conflict_policy=conflict_policy, ack_timeout=ack_timeout)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="plait-client", daemon=True)
        self._thread.start()

    @property
    def backend(self) -> KubernetesBackend:  # type: ignore[override]
        return self._async.backend

    @property
    def conflict_policy(self) -> str:
        return self._async.conflict_policy

    def _run(self, call: Coroutine[Any, Any, T]) -> T:
        if self._loop.is_closed():
            call.close()
            raise RuntimeError("this WorkflowClient is closed")
        return asyncio.run_coroutine_threadsafe(call, self._loop).result()

    def close(self) -> None:
        """Close the connections and stop the client's thread; idempotent."""
        if self._loop.is_closed():
            return
        self._run(self._closed())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    async def _closed(self) -> None:
        await self._async.aclose()
        await asyncio.sleep(CLOSE_GRACE_SECONDS)  # closed connections finish closing on this loop

    def __enter__(self) -> ClusterWorkflowClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def submit(
        self, workflow: Workflow, instance_id: str, input: Any, *, idempotency_key: str | None = None
    ) -> WorkflowStatus:
        """Create the instance (see :meth:`AsyncWorkflowClient.submit`, also for ``idempotency_key``)."""
        return self._run(self._async.submit(workflow, instance_id, input, idempotency_key=idempotency_key))

    def status(self, instance_id: str) -> WorkflowStatus:
        return self._run(self._async.status(instance_id))

    def cancel(self, instance_id: str, *, reason: str | None = None, cancelled_by: str | None = None) -> None:
        self._run(self._async.cancel(instance_id, reason=reason, cancelled_by=cancelled_by))

    def pause(self, instance_id: str, *, reason: str | None = None, paused_by: str | None = None) -> None:
        self._run(self._async.pause(instance_id, reason=reason, paused_by=paused_by))

    def unpause(self, instance_id: str) -> None:
        self._run(self._async.unpause(instance_id))

    def send_signal(self, instance_id: str, signal_name: str, payload: Any) -> None:
        self._run(self._async.send_signal(instance_id, signal_name, payload))

    def get_task_result(self, instance_id: str, task_id: str) -> Any | None:
        return self._run(self._async.get_task_result(instance_id, task_id))

    def wait(self, instance_id: str, timeout: float | None = None) -> WorkflowStatus:
        """The status once the instance finished; ``TimeoutError`` after ``timeout`` seconds."""
        return self._run(self._async.wait(instance_id, timeout))

    def list(self, workflow: str | None = None, phase: str | None = None) -> list[WorkflowStatus]:
        """Instances in the namespace, oldest first, by workflow name and status or phase."""
        return self._run(self._async.list(workflow, phase))

    def __repr__(self) -> str:
        return f"WorkflowClient({self.backend!r}, conflict_policy={self.conflict_policy!r})"
