"""The claim protocol: every write a worker makes to the tasks it holds, each one fenced.

A claim is a status patch fenced by the ``resourceVersion`` the worker saw (of several workers,
exactly one wins); every later write (a late claim, lease renewals, the result, a release at
shutdown) is fenced by the version of the worker's own last write, so a worker that lost its
claim (the operator expired its lease, or cancelled the task) cannot overwrite anything. A
worker that cannot renew a lease in time stops the task itself rather than race the next
attempt. :mod:`plait._worker.runtime` decides what to claim and runs it; this module writes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from plait._backoff import Backoff
from plait._execution.context import TaskExecutionContext
from plait._execution.invoke import AttemptResult
from plait._kube.client import JSON, AsyncKube
from plait._kube.models import TASKS, TaskStatusFields, label_value, now_rfc3339, payload_size
from plait._payloads import NOT_CONFIGURED_HINT
from plait.errors import ClusterError, Conflict, NotFound

log = logging.getLogger(__name__)


@dataclass
class Held:
    """A task this worker took (claimed, or running before its claim is written)."""

    name: str
    body: JSON
    resource_version: str
    context: TaskExecutionContext
    renewed: float  # monotonic time of the last successful claim or renewal request
    claim: TaskStatusFields  # what a claim writes (with the result, when the task runs before claiming)
    claimed: bool = False
    reported: bool = False
    job: asyncio.Task[None] | None = None
    lost: bool = False
    claim_timer: asyncio.TimerHandle | None = None
    writing: asyncio.Lock = field(default_factory=asyncio.Lock)  # the late claim and the result, one at a time

    @property
    def queue(self) -> str:
        return label_value(self.body["spec"]["queue"])


class Claims:
    def __init__(
        self,
        kube: AsyncKube,
        namespace: str,
        identity: str,
        lease_seconds: float,
        metrics: Any,
        spawn: Callable[[Coroutine[Any, Any, Any]], None],
    ) -> None:
        self.kube = kube
        self.namespace = namespace
        self.identity = identity
        self.lease_seconds = lease_seconds
        self.metrics = metrics
        self.spawn = spawn
        self.held: dict[str, Held] = {}

    async def patch_status(self, held: Held, status: TaskStatusFields) -> None:
        """Write the task's status, fenced by the version of this worker's last write (or the one it
        claimed from). Any such write renews the lease: the operator times it from the last change."""
        sent = time.monotonic()
        written = await self.kube.patch(
            TASKS,
            held.name,
            {"metadata": {"resourceVersion": held.resource_version}, "status": status},
            self.namespace,
            subresource="status",
        )
        held.resource_version = written["metadata"]["resourceVersion"]
        held.renewed = sent
        held.context.lease_expires = sent + self.lease_seconds

    async def claim_late(self, held: Held) -> None:
        """A task run before claiming is still running: claim it now, before a peer may take it."""
        async with held.writing:
            if held.claimed or held.reported or held.lost or self.held.get(held.name) is not held:
                return
            try:
                await self.patch_status(held, held.claim)
            except (Conflict, NotFound):
                self.stop(held, "it was claimed, cancelled or deleted before this worker claimed it")
                return
            except ClusterError as error:  # a peer may take it soon: do not run it twice
                self.stop(held, f"it could not be claimed in time ({error})")
                return
            held.claimed = True

    async def report(self, held: Held, status: TaskStatusFields, labels: tuple[str, str]) -> None:
        """Record the result (with the claim, if it was not written yet), trying while the claim may
        still be this worker's: the API server may be restarting."""
        async with held.writing:
            if not held.claimed:
                status = {**held.claim, **status}
            backoff = Backoff(0.2, 2.0)
            while not held.lost and time.monotonic() < (held.context.lease_expires or 0):
                try:
                    await self.patch_status(held, status)
                    held.reported = True
                    return
                except Conflict:
                    if not await self._still_ours(held):
                        break
                except NotFound:
                    break
                except ClusterError as error:
                    delay = backoff.next()
                    log.warning("result of task=%s not recorded yet (%s); retrying in %.1fs", held.name, error, delay)
                    await backoff.wait(delay)
            held.reported = True
            self.metrics.results_refused.labels(*labels).inc()
            log.warning("result of task=%s refused: this worker no longer holds its claim", held.name)

    async def _still_ours(self, held: Held) -> bool:
        """After a conflict: is the claim still this worker's? If so, adopt the newer version."""
        try:
            current = await self.kube.get(TASKS, held.name, self.namespace)
        except NotFound:
            return False
        except ClusterError:
            return True  # cannot tell now; the caller retries while the lease lasts
        status = current.get("status") or {}
        mine = status.get("phase") == "Running" and (status.get("claim") or {}).get("holder") == self.identity
        untouched = not held.claimed and status.get("phase") in (None, "Pending") and not status.get("claim")
        if mine or untouched:
            held.resource_version = current["metadata"]["resourceVersion"]
            return True
        held.lost = True
        return False

    def stop(self, held: Held, why: str) -> None:
        """Stop running ``held``: its claim is gone (or going); whatever it returns is not reported."""
        if held.lost:
            return
        held.lost = True
        held.context.cancel_event.set()
        log.info("stopping task=%s: %s", held.name, why)
        if held.job is not None and held.job is not asyncio.current_task():
            held.job.cancel()

    async def heartbeats(self) -> None:
        """Renew the lease of every claimed task a third of the way through it; stop those that
        could not be renewed in time."""
        interval = self.lease_seconds / 3
        while True:
            await asyncio.sleep(min(interval, 1.0))
            now = time.monotonic()
            for held in list(self.held.values()):
                if held.job is None or held.lost or not held.claimed:
                    continue
                if now - held.renewed > self.lease_seconds:
                    self.stop(held, "the lease could not be renewed in time; the operator will rerun it")
                elif now - held.renewed >= interval:
                    self.spawn(self._renew(held))

    async def _renew(self, held: Held) -> None:
        try:
            await self.patch_status(held, {"claim": {"renewedAt": now_rfc3339()}})
        except Conflict:
            if not await self._still_ours(held):
                self.stop(held, "the claim was taken away")
            return
        except NotFound:
            self.stop(held, "the task was deleted")
            return
        except ClusterError as error:
            log.warning("lease renewal of task=%s failed: %s", held.name, error)

    async def release(self, held: Held) -> None:
        """Shutdown: hand an unfinished task back so the operator reruns it at once (one never
        claimed is simply left to the peers)."""
        self.stop(held, "the worker is shutting down")
        if not held.claimed:
            return
        try:
            await self.patch_status(held, {"phase": "Released", "error": f"released by {self.identity} at shutdown"})
            self.metrics.released.labels(held.context.workflow_id, held.queue).inc()
        except ClusterError as error:
            log.warning("could not release task=%s (%s); its lease will expire", held.name, error)


def result_status(result: AttemptResult, max_payload_bytes: int) -> TaskStatusFields:
    """What an attempt's result writes to its task's status."""
    finished = now_rfc3339()
    if result.ok:
        size = payload_size(result.output)
        if size <= max_payload_bytes:
            return {"phase": "Succeeded", "output": result.output, "finishedAt": finished}
        error = (
            f"PayloadTooLarge: the output is {size} bytes, over the inline limit of {max_payload_bytes}; "
            f"{NOT_CONFIGURED_HINT}"
        )
        return {"phase": "Failed", "error": error, "finishedAt": finished}
    if result.timed_out:
        return {"phase": "TimedOut", "error": result.error, "finishedAt": finished}
    return {"phase": "Failed", "error": result.error, "traceback": result.traceback, "finishedAt": finished}
