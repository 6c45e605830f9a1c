"""The worker: claims ``WorkflowTask``s for its workflows and queues, runs them, reports results.

Life of a task here: the watch shows it unclaimed; the worker claims it with a status patch
fenced by ``resourceVersion`` (of several workers, exactly one wins); it runs the function (sync
ones in a thread pool, async ones on the loop, the timeout enforced for both) while renewing the
lease; it patches the result back, fenced by the version of its own last write, so a worker that
lost its claim (the operator expired its lease, or cancelled the task) cannot overwrite anything.
A worker that cannot renew its lease in time stops the task itself rather than race the next
attempt. On SIGTERM it stops claiming, lets running tasks finish for ``drain_seconds``, and hands
back the rest (``Released``) so they rerun elsewhere at once.

Claim with the result: the live workers that serve a task (:mod:`plait._worker.membership`) rank
it by rendezvous hashing; the first may take it at once, the others only when it is still
unclaimed ``_CLAIM_STAGGER_SECONDS`` later. So the first, when settled, runs the task straight
away and writes claim and result in one patch, fenced by the version it saw; only a task still
running after ``_RUN_BEFORE_CLAIM_SECONDS`` gets its claim written first, well before any peer
would take it. Most steps cost one task write instead of two.
"""

from __future__ import annotations

import asyncio
import hashlib
import heapq
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from plait._authoring.flow import Workflow
from plait._execution.context import TaskExecutionContext
from plait._execution.invoke import AttemptResult, run_async_task
from plait._kube.client import JSON, AsyncKube
from plait._kube.informer import list_and_watch
from plait._kube.models import (
    API_VERSION,
    DEFINITION_LABEL,
    QUEUE_LABEL,
    WORKFLOW_LABEL,
    WorkflowDefinition,
    WorkflowTask,
    label_value,
    now_rfc3339,
    object_name,
    rfc3339,
    without_managed_fields,
)
from plait._worker.membership import Membership
from plait.errors import ClusterError, Conflict, NotFound

log = logging.getLogger(__name__)
TASKS = WorkflowTask.RESOURCE
DEFINITIONS = WorkflowDefinition.RESOURCE
DEFAULT_MAX_PAYLOAD_BYTES = 256 * 1024
_STOPPED_PHASES = ("Cancelled", "Lost", "Released")


def default_identity() -> str:
    base = os.environ.get("POD_NAME") or socket.gethostname()
    return f"{base}-{os.getpid()}-{uuid.uuid4().hex[:4]}"


def definition_object_name(workflow: Workflow) -> str:
    return f"{object_name(workflow.workflow_id)}-{workflow.definition_hash[:12]}"


@dataclass
class WorkerSettings:
    namespace: str
    queues: tuple[str, ...] = ()  # empty: every queue the workflows use
    concurrency: int = 8
    lease_seconds: float = 15.0
    drain_seconds: float = 20.0
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
    identity: str = field(default_factory=default_identity)


@dataclass
class _Held:
    """A task this worker claimed."""

    name: str
    body: JSON
    resource_version: str
    context: TaskExecutionContext
    renewed: float  # monotonic time of the last successful claim or renewal request
    claim: JSON  # the status a claim writes (with the result, when the task runs before claiming)
    claimed: bool = False
    reported: bool = False
    job: asyncio.Task[None] | None = None
    lost: bool = False
    claim_timer: asyncio.TimerHandle | None = None
    writing: asyncio.Lock = field(default_factory=asyncio.Lock)  # the late claim and the result, one at a time


class Worker:
    def __init__(self, workflows: Iterable[Workflow], kube: AsyncKube, settings: WorkerSettings, metrics: Any) -> None:
        self.workflows = {w.definition_hash: w for w in workflows}
        self.kube = kube
        self.settings = settings
        self.metrics = metrics
        queues = settings.queues or tuple(sorted({q for w in self.workflows.values() for q in w.definition.queues()}))
        self.queues = tuple(queues)
        self.held: dict[str, _Held] = {}
        self.backlog: dict[str, JSON] = {}  # unclaimed tasks this worker may claim
        self._ready: list[tuple[int, int, str, str]] = []  # heap of _order(...)
        self._delayed: list[tuple[float, str]] = []  # heap of (monotonic time it becomes ready, name)
        self.claiming: set[str] = set()  # picked from the backlog, claim not settled yet
        # Backlog tasks this worker ranks first for while settled -> when a claim must be written if
        # they are still running (monotonic time): until then they may run unclaimed.
        self._claim_by: dict[str, float] = {}
        self._refill: asyncio.TimerHandle | None = None
        self._refill_at = 0.0
        self.membership = Membership(
            kube, settings.namespace, settings.identity, self.workflows, queues, settings.lease_seconds
        )
        self.ready = False
        self.draining = False
        # Room beyond the concurrency for threads of sync tasks that outlived their timeout (they
        # cannot be killed) so that they do not starve the next tasks.
        self._executor = ThreadPoolExecutor(max_workers=2 * settings.concurrency + 2, thread_name_prefix="plait-task")
        self._background: set[asyncio.Task[Any]] = set()

    @property
    def selector(self) -> str:
        hashes = ",".join(sorted(h[:32] for h in self.workflows))
        queues = ",".join(sorted({label_value(q) for q in self.queues}))
        return f"{DEFINITION_LABEL} in ({hashes}),{QUEUE_LABEL} in ({queues})"

    # -- lifecycle ---------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        await self.publish()
        members = asyncio.ensure_future(self.membership.run())
        # Peers first: a task must not be ranked before the workers that may be running it are known.
        listed = asyncio.ensure_future(self.membership.listed.wait())
        await asyncio.wait((listed, asyncio.ensure_future(stop.wait())), return_when=asyncio.FIRST_COMPLETED)
        if not listed.done():
            listed.cancel()
            members.cancel()
            return
        watcher = asyncio.ensure_future(
            list_and_watch(
                self.kube,
                TASKS,
                self.settings.namespace,
                self._observe,
                label_selector=self.selector,
                on_synced=self._synced,
            )
        )
        heart = asyncio.ensure_future(self._heartbeats())
        await stop.wait()
        log.info(
            "stopping: no new claims; draining %d running task(s) for up to %.0fs",
            len(self.held),
            self.settings.drain_seconds,
        )
        self.draining = True
        self.backlog.clear()
        self._claim_by.clear()
        members.cancel()
        await self.membership.leave()
        deadline = time.monotonic() + self.settings.drain_seconds
        while self.held and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.gather(*(self._release(held) for held in list(self.held.values())))
        watcher.cancel()
        heart.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def publish(self) -> None:
        """Server-side apply one WorkflowDefinition per workflow; unchanged ones cost no write."""
        for workflow in self.workflows.values():
            name = definition_object_name(workflow)
            body = {
                "apiVersion": API_VERSION,
                "kind": "WorkflowDefinition",
                "metadata": {"name": name, "labels": {WORKFLOW_LABEL: label_value(workflow.workflow_id)}},
                "spec": workflow.definition.to_data(),
            }
            await _retrying(
                lambda name=name, body=body: self.kube.patch(
                    DEFINITIONS,
                    name,
                    body,
                    self.settings.namespace,
                    patch_type="apply",
                    field_manager="plait-worker",
                    force=True,
                ),
                f"publish definition {name}",
            )
            log.info("published workflow=%s hash=%s as %s", workflow.workflow_id, workflow.definition_hash[:12], name)

    # -- watching -------------------------------------------------------------------------------------

    def _synced(self) -> None:
        self.ready = True

    def _observe(self, event_type: str, body: JSON) -> None:
        name = body["metadata"]["name"]
        status = body.get("status") or {}
        phase = status.get("phase")
        held = self.held.get(name)
        if held is not None:
            holder = (status.get("claim") or {}).get("holder")
            if event_type == "DELETED" or phase in _STOPPED_PHASES:
                self._stop(held, f"task {phase or 'deleted'} by the operator")
            elif not held.claimed and holder and holder != self.settings.identity:
                self._stop(held, f"{holder} claimed it first")
            return
        if event_type == "DELETED" or phase not in (None, "Pending"):
            self.backlog.pop(name, None)
            self._claim_by.pop(name, None)
            return
        if body["spec"].get("definitionHash") not in self.workflows or self.draining:
            return
        if name not in self.backlog:
            delay = self._claim_delay(body)
            if delay:
                heapq.heappush(self._delayed, (time.monotonic() + delay, name))
            else:
                heapq.heappush(self._ready, _order(body, preferred=True))
                if self.membership.settled:
                    self._claim_by[name] = time.monotonic() + _RUN_BEFORE_CLAIM_SECONDS
        # Thousands may wait here at once: keep what claiming needs, not the managedFields.
        self.backlog[name] = without_managed_fields(body)
        self._fill()

    def _fill(self) -> None:
        """Claim backlog tasks while there is room, in :func:`_order`.

        Heaps keep this cheap with thousands waiting; entries of tasks that left the backlog (claimed
        elsewhere) are skipped when they come up.
        """
        now = time.monotonic()
        while self._delayed and self._delayed[0][0] <= now:
            _, name = heapq.heappop(self._delayed)
            if name in self.backlog:
                heapq.heappush(self._ready, _order(self.backlog[name], preferred=False))
        while self._ready and len(self.held) + len(self.claiming) < self.settings.concurrency and not self.draining:
            name = heapq.heappop(self._ready)[-1]
            body = self.backlog.pop(name, None)
            claim_by = self._claim_by.pop(name, None)
            if body is not None:
                self.claiming.add(name)
                # Unclaimed only while there is time to spare before a peer could take it.
                if claim_by is not None and (
                    claim_by - now < _RUN_BEFORE_CLAIM_SECONDS / 2 or not self.membership.settled
                ):
                    claim_by = None
                self._spawn(self._claim(body, claim_by))
        if self._delayed and (self._refill is None or self._refill_at > self._delayed[0][0]):
            if self._refill is not None:
                self._refill.cancel()
            self._refill_at = self._delayed[0][0]
            self._refill = asyncio.get_running_loop().call_later(self._refill_at - now, self._refill_done)

    def _refill_done(self) -> None:
        self._refill = None
        self._fill()

    def _requeue(self, body: JSON) -> None:
        """A claim that failed for want of the API server: try again in a moment, unless taken meanwhile."""
        name = body["metadata"]["name"]
        self.backlog.setdefault(name, body)
        heapq.heappush(self._delayed, (time.monotonic() + 1.0, name))

    def _claim_delay(self, body: JSON) -> float:
        """Rendezvous hashing among the live workers that serve this task: the first in the task's
        order takes it at once, the others only if it is still unclaimed a little later (that one
        is busy or gone). Workers stop racing each other for every task, and nobody waits when they
        are alone. A worker that peers may not count yet takes nothing at once: a peer may be
        running the task unclaimed."""
        spec = body["spec"]
        peers = self.membership.serving(spec["definitionHash"], spec["queue"])
        if not peers:
            return 0.0
        if not self.membership.settled:
            return _CLAIM_STAGGER_SECONDS
        name = body["metadata"]["name"]
        mine = _rank(name, self.settings.identity)
        return _CLAIM_STAGGER_SECONDS * sum(1 for peer in peers if _rank(name, peer) < mine)

    # -- claiming and running -------------------------------------------------------------------------

    async def _claim(self, body: JSON, claim_by: float | None) -> None:
        name = body["metadata"]["name"]
        try:
            await self._claim_and_run(body, claim_by)
        finally:
            self.claiming.discard(name)
            self._fill()

    async def _claim_and_run(self, body: JSON, claim_by: float | None) -> None:
        """Claim the task (or, with ``claim_by``, run it first and claim it then if still running)
        and run it."""
        name, spec = body["metadata"]["name"], body["spec"]
        workflow = self.workflows[spec["definitionHash"]]
        now = now_rfc3339()
        status: JSON = {
            "phase": "Running",
            "claim": {
                "holder": self.settings.identity,
                "claimedAt": now,
                "renewedAt": now,
                "leaseDurationSeconds": self.settings.lease_seconds,
            },
        }
        if spec.get("timeoutSeconds"):
            status["deadline"] = rfc3339(time.time() + float(spec["timeoutSeconds"]))
        context = TaskExecutionContext(
            workflow_id=workflow.workflow_id,
            instance_id=spec["instance"],
            task_id=spec["task"],
            metadata=workflow.tasks[spec["task"]].metadata if spec["task"] in workflow.tasks else None,
            workflow_metadata=workflow.metadata,
            attempt=int(spec["attempt"]),
            path=spec["path"],
        )
        held = _Held(name, body, body["metadata"]["resourceVersion"], context, time.monotonic(), status)
        context.lease_expires = held.renewed + self.settings.lease_seconds
        self.held[name] = held  # holds the slot from now on
        self.claiming.discard(name)
        if claim_by is None:
            try:
                await self._patch_status(held, status)
            except (Conflict, NotFound):
                self.held.pop(name, None)
                self.metrics.claim_conflicts.labels(label_value(spec["queue"])).inc()
                return
            except ClusterError as error:
                self.held.pop(name, None)
                log.warning("claim of task=%s failed (%s); it goes back to the backlog", name, error)
                self._requeue(body)
                return
            held.claimed = True
        else:
            held.claim_timer = asyncio.get_running_loop().call_later(
                max(0.0, claim_by - time.monotonic()), lambda: self._spawn(self._claim_late(held))
            )
        labels = (workflow.workflow_id, label_value(spec["queue"]))
        self.metrics.claimed.labels(*labels).inc()
        self.metrics.in_flight.labels(label_value(spec["queue"])).inc()
        log.debug(
            "claimed task=%s instance=%s step=%s attempt=%s", name, spec["instance"], spec["step"], spec["attempt"]
        )
        held.job = asyncio.current_task()
        try:
            await self._execute(held, workflow)
        finally:
            if held.claim_timer is not None:
                held.claim_timer.cancel()
            self.held.pop(name, None)
            self.metrics.in_flight.labels(label_value(spec["queue"])).dec()

    async def _claim_late(self, held: _Held) -> None:
        """A task run before claiming is still running: claim it now, before a peer may take it."""
        async with held.writing:
            if held.claimed or held.reported or held.lost or self.held.get(held.name) is not held:
                return
            try:
                await self._patch_status(held, held.claim)
            except (Conflict, NotFound):
                self._stop(held, "it was claimed, cancelled or deleted before this worker claimed it")
                return
            except ClusterError as error:  # a peer may take it soon: do not run it twice
                self._stop(held, f"it could not be claimed in time ({error})")
                return
            held.claimed = True

    async def _patch_status(self, held: _Held, status: JSON) -> None:
        """Write the task's status, fenced by the version of this worker's last write (or the one it
        claimed from). Any such write renews the lease: the operator times it from the last change."""
        sent = time.monotonic()
        written = await self.kube.patch(
            TASKS,
            held.name,
            {"metadata": {"resourceVersion": held.resource_version}, "status": status},
            self.settings.namespace,
            subresource="status",
        )
        held.resource_version = written["metadata"]["resourceVersion"]
        held.renewed = sent
        held.context.lease_expires = sent + self.settings.lease_seconds

    async def _execute(self, held: _Held, workflow: Workflow) -> None:
        spec = held.body["spec"]
        labels = (workflow.workflow_id, label_value(spec["queue"]))
        task = workflow.tasks.get(spec["task"])
        started = time.perf_counter()
        if task is None:
            result = AttemptResult(ok=False, error=f"KeyError: this worker has no task {spec['task']!r}")
        else:
            try:
                result = await run_async_task(
                    task, spec.get("input"), held.context, spec.get("timeoutSeconds"), self._executor
                )
            except asyncio.CancelledError:
                if held.lost:
                    self.metrics.results_refused.labels(*labels).inc()
                    return  # stopped because the claim is gone; nothing to report
                raise
        outcome = "succeeded" if result.ok else ("timed_out" if result.timed_out else "failed")
        self.metrics.duration.labels(*labels, outcome).observe(time.perf_counter() - started)
        {"succeeded": self.metrics.succeeded, "failed": self.metrics.failed, "timed_out": self.metrics.timed_out}[
            outcome
        ].labels(*labels).inc()
        await self._report(held, result, labels)

    async def _report(self, held: _Held, result: AttemptResult, labels: tuple[str, str]) -> None:
        async with held.writing:
            await self._write_result(held, result, labels)
            held.reported = True

    async def _write_result(self, held: _Held, result: AttemptResult, labels: tuple[str, str]) -> None:
        status: JSON = {"finishedAt": now_rfc3339()} if held.claimed else {**held.claim, "finishedAt": now_rfc3339()}
        if result.ok:
            size = len(json.dumps(result.output, separators=(",", ":")).encode())
            if size > self.settings.max_payload_bytes:
                status.update(
                    phase="Failed",
                    error=f"PayloadTooLarge: the output is {size} bytes, over the inline limit of "
                    f"{self.settings.max_payload_bytes}; return a reference to the data instead",
                )
            else:
                status.update(phase="Succeeded", output=result.output)
        elif result.timed_out:
            status.update(phase="TimedOut", error=result.error)
        else:
            status.update(phase="Failed", error=result.error, traceback=result.traceback)
        delay = 0.2
        # Keep trying while the claim may still be ours: the API server may be restarting.
        while not held.lost and time.monotonic() < (held.context.lease_expires or 0):
            try:
                await self._patch_status(held, status)
                return
            except Conflict:
                if not await self._still_ours(held):
                    break
            except NotFound:
                break
            except ClusterError as error:
                log.warning("result of task=%s not recorded yet (%s); retrying in %.1fs", held.name, error, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
        self.metrics.results_refused.labels(*labels).inc()
        log.warning("result of task=%s refused: this worker no longer holds its claim", held.name)

    async def _still_ours(self, held: _Held) -> bool:
        """After a conflict: is the claim still this worker's? If so, adopt the newer version."""
        try:
            current = await self.kube.get(TASKS, held.name, self.settings.namespace)
        except NotFound:
            return False
        except ClusterError:
            return True  # cannot tell now; the caller retries while the lease lasts
        status = current.get("status") or {}
        mine = status.get("phase") == "Running" and (status.get("claim") or {}).get("holder") == self.settings.identity
        untouched = not held.claimed and status.get("phase") in (None, "Pending") and not status.get("claim")
        if mine or untouched:
            held.resource_version = current["metadata"]["resourceVersion"]
            return True
        held.lost = True
        return False

    def _stop(self, held: _Held, why: str) -> None:
        if held.lost:
            return
        held.lost = True
        held.context.cancel_event.set()
        log.info("stopping task=%s: %s", held.name, why)
        if held.job is not None and held.job is not asyncio.current_task():
            held.job.cancel()

    # -- leases ---------------------------------------------------------------------------------------

    async def _heartbeats(self) -> None:
        interval = self.settings.lease_seconds / 3
        while True:
            await asyncio.sleep(min(interval, 1.0))
            now = time.monotonic()
            for held in list(self.held.values()):
                if held.job is None or held.lost or not held.claimed:
                    continue
                if now - held.renewed > self.settings.lease_seconds:
                    self._stop(held, "the lease could not be renewed in time; the operator will rerun it")
                elif now - held.renewed >= interval:
                    self._spawn(self._renew(held))

    async def _renew(self, held: _Held) -> None:
        try:
            await self._patch_status(held, {"claim": {"renewedAt": now_rfc3339()}})
        except Conflict:
            if not await self._still_ours(held):
                self._stop(held, "the claim was taken away")
            return
        except NotFound:
            self._stop(held, "the task was deleted")
            return
        except ClusterError as error:
            log.warning("lease renewal of task=%s failed: %s", held.name, error)

    async def _release(self, held: _Held) -> None:
        """Shutdown: hand an unfinished task back so the operator reruns it at once (one never
        claimed is simply left to the peers)."""
        self._stop(held, "the worker is shutting down")
        if not held.claimed:
            return
        try:
            await self._patch_status(
                held, {"phase": "Released", "error": f"released by {self.settings.identity} at shutdown"}
            )
            spec = held.body["spec"]
            self.metrics.released.labels(
                self.workflows[spec["definitionHash"]].workflow_id, label_value(spec["queue"])
            ).inc()
        except ClusterError as error:
            log.warning("could not release task=%s (%s); its lease will expire", held.name, error)

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


_CLAIM_STAGGER_SECONDS = 2.0
_RUN_BEFORE_CLAIM_SECONDS = 1.0


def _rank(task: str, worker: str) -> bytes:
    return hashlib.blake2b(f"{task}/{worker}".encode(), digest_size=8).digest()


def _order(body: JSON, *, preferred: bool) -> tuple[int, int, str, str]:
    """Claim order: priority (1 first), then this worker's own tasks before its peers' leftovers, then age."""
    spec = body["spec"]
    return (
        spec.get("priority") or 3,
        0 if preferred else 1,
        body["metadata"].get("creationTimestamp", ""),
        body["metadata"]["name"],
    )


async def _retrying(call: Any, what: str, attempts: int = 30) -> Any:
    delay = 0.5
    for attempt in range(attempts):
        try:
            return await call()
        except ClusterError as error:
            if error.status in (400, 403, 404, 422) or attempt == attempts - 1:
                raise
            log.warning("%s failed (%s); retrying in %.1fs", what, error, delay)
        except Exception as error:  # the API server may not be up yet
            if attempt == attempts - 1:
                raise
            log.warning("%s failed (%s); retrying in %.1fs", what, error, delay)
        await asyncio.sleep(delay)
        delay = min(delay * 2, 5)
    return None
