"""The worker: claims ``WorkflowTask``s for its workflows and queues, runs them, reports results.

Life of a task here: the watch shows it unclaimed and it joins the backlog
(:mod:`plait._worker.backlog`); when there is room the worker claims it (:mod:`plait._worker.claims`
writes every fenced status patch), runs the function (sync ones in a thread pool, async ones on the
loop, the timeout enforced for both) while the lease is renewed, and reports the result. On SIGTERM
it stops claiming, lets running tasks finish for ``drain_seconds``, and hands back the rest
(``Released``) so they rerun elsewhere at once.

Claim with the result: the live workers that serve a task (:mod:`plait._worker.membership`) rank
it by rendezvous hashing; the first may take it at once, the others only when it is still
unclaimed a little later. So the first, when settled, runs the task straight away and writes claim
and result in one patch, fenced by the version it saw; only a task still running after
``RUN_BEFORE_CLAIM_SECONDS`` gets its claim written first, well before any peer would take it.
Most steps cost one task write instead of two.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import socket
import time
import uuid
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from plait import _tracing
from plait._authoring.flow import Workflow
from plait._backoff import Backoff
from plait._execution.context import TaskExecutionContext
from plait._execution.invoke import AttemptResult, run_async_task
from plait._kube.client import JSON, AsyncKube
from plait._kube.informer import list_and_watch
from plait._kube.models import (
    API_VERSION,
    DEFINITION_LABEL,
    DEFINITIONS,
    HELD_LABEL,
    QUEUE_LABEL,
    TASKS,
    TRACEPARENT_ANNOTATION,
    WORKFLOW_LABEL,
    TaskStatusFields,
    label_value,
    now_rfc3339,
    object_name,
    rfc3339,
)
from plait._logging import log_context
from plait._payloads import PayloadStore, resolve
from plait._worker.backlog import RUN_BEFORE_CLAIM_SECONDS, Backlog, claim_delay
from plait._worker.claims import Claims, Held, result_status
from plait._worker.membership import Membership
from plait.errors import ClusterError, Conflict, NotFound, PayloadError

log = logging.getLogger(__name__)
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
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES  # inline limit of an output, without a payload store
    identity: str = field(default_factory=default_identity)
    payloads: PayloadStore | None = None  # where inputs are read from and outputs over its inline limit go


class Worker:
    def __init__(self, workflows: Iterable[Workflow], kube: AsyncKube, settings: WorkerSettings, metrics: Any) -> None:
        self.workflows = {w.definition_hash: w for w in workflows}
        self.kube = kube
        self.settings = settings
        self.metrics = metrics
        queues = settings.queues or tuple(sorted({q for w in self.workflows.values() for q in w.definition.queues()}))
        self.queues = tuple(queues)
        self.claims = Claims(kube, settings.namespace, settings.identity, settings.lease_seconds, metrics, self._spawn)
        self.held = self.claims.held
        self.backlog = Backlog()
        self.claiming: set[str] = set()  # picked from the backlog, claim not settled yet
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
        return f"{DEFINITION_LABEL} in ({hashes}),{QUEUE_LABEL} in ({queues}),!{HELD_LABEL}"

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
        heart = asyncio.ensure_future(self.claims.heartbeats())
        await stop.wait()
        log.info(
            "stopping: no new claims; draining %d running task(s) for up to %.0fs",
            len(self.held),
            self.settings.drain_seconds,
        )
        self.draining = True
        self.backlog.clear()
        members.cancel()
        await self.membership.leave()
        deadline = time.monotonic() + self.settings.drain_seconds
        while self.held and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.gather(*(self.claims.release(held) for held in list(self.held.values())))
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
                self.claims.stop(held, f"task {phase or 'deleted'} by the operator")
            elif not held.claimed and holder and holder != self.settings.identity:
                self.claims.stop(held, f"{holder} claimed it first")
            return
        if event_type == "DELETED" or phase not in (None, "Pending"):
            self.backlog.discard(name)
            return
        spec = body["spec"]
        if spec.get("definitionHash") not in self.workflows or self.draining:
            return
        if name not in self.backlog:
            peers = self.membership.serving(spec["definitionHash"], spec["queue"])
            settled = self.membership.settled
            delay = claim_delay(name, self.settings.identity, peers, settled)
            self.backlog.offer(body, delay, time.monotonic() + RUN_BEFORE_CLAIM_SECONDS if settled else None)
        else:
            self.backlog.offer(body, 0.0, None)  # the newer version of it
        self._fill()

    def _fill(self) -> None:
        """Claim backlog tasks while there is room, in the backlog's order."""
        now = time.monotonic()
        self.backlog.promote(now)
        while len(self.held) + len(self.claiming) < self.settings.concurrency and not self.draining:
            taken = self.backlog.take()
            if taken is None:
                break
            body, claim_by = taken
            self.claiming.add(body["metadata"]["name"])
            # Unclaimed only while there is time to spare before a peer could take it.
            if claim_by is not None and (claim_by - now < RUN_BEFORE_CLAIM_SECONDS / 2 or not self.membership.settled):
                claim_by = None
            self._spawn(self._claim(body, claim_by))
        due = self.backlog.next_due
        if due is not None and (self._refill is None or self._refill_at > due):
            if self._refill is not None:
                self._refill.cancel()
            self._refill_at = due
            self._refill = asyncio.get_running_loop().call_later(due - now, self._refill_done)

    def _refill_done(self) -> None:
        self._refill = None
        self._fill()

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
        status: TaskStatusFields = {
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
        held = Held(name, body, body["metadata"]["resourceVersion"], context, time.monotonic(), status)
        context.lease_expires = held.renewed + self.settings.lease_seconds
        self.held[name] = held  # holds the slot from now on
        self.claiming.discard(name)
        if claim_by is None:
            try:
                await self.claims.patch_status(held, status)
            except (Conflict, NotFound):
                self.held.pop(name, None)
                self.metrics.claim_conflicts.labels(label_value(spec["queue"])).inc()
                return
            except ClusterError as error:
                self.held.pop(name, None)
                log.warning("claim of task=%s failed (%s); it goes back to the backlog", name, error)
                self.backlog.retry_later(body, 1.0)
                return
            held.claimed = True
        else:
            held.claim_timer = asyncio.get_running_loop().call_later(
                max(0.0, claim_by - time.monotonic()), lambda: self._spawn(self.claims.claim_late(held))
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

    async def _execute(self, held: Held, workflow: Workflow) -> None:
        spec = held.body["spec"]
        fields = {"instance": f"{self.settings.namespace}/{spec['instance']}", "step": spec["step"]}
        labels = (workflow.workflow_id, label_value(spec["queue"]))
        with log_context(**fields, attempt=spec["attempt"], task=spec["task"], worker=self.settings.identity):
            if not _tracing.enabled():
                result = await self._run(held, workflow, labels, None)
            else:
                attributes = {
                    "plait.instance": fields["instance"],
                    "plait.workflow": workflow.workflow_id,
                    "plait.step": spec["step"],
                    "plait.path": spec["path"],
                    "plait.attempt": int(spec["attempt"]),
                    "plait.task": spec["task"],
                    "plait.worker": self.settings.identity,
                }
                traceparent = (held.body["metadata"].get("annotations") or {}).get(TRACEPARENT_ANNOTATION)
                with _tracing.task_span(f"run {spec['task']}", traceparent, attributes) as span:
                    result = await self._run(held, workflow, labels, span)
            if result is not None:
                await self.claims.report(held, result_status(result, self.settings.max_payload_bytes), labels)

    async def _run(self, held: Held, workflow: Workflow, labels: tuple[str, str], span: Any) -> AttemptResult | None:
        """Run the attempt (``span``: the run's span, when tracing); ``None`` when there is nothing
        to report because the claim is gone."""
        spec = held.body["spec"]
        task = workflow.tasks.get(spec["task"])
        started = time.perf_counter()
        payloads = self.settings.payloads
        if task is None:
            result = AttemptResult(ok=False, error=f"KeyError: this worker has no task {spec['task']!r}")
        else:
            try:
                try:
                    value = await resolve(payloads, spec.get("input"), self.settings.namespace)
                except PayloadError as error:
                    result = AttemptResult(ok=False, error=f"{error} (reading the step's input)")
                else:
                    result = await run_async_task(task, value, held.context, spec.get("timeoutSeconds"), self._executor)
                if result.ok and payloads is not None:
                    result = await self._offload(payloads, result, spec)
            except asyncio.CancelledError:
                if held.lost:
                    self.metrics.results_refused.labels(*labels).inc()
                    return None
                raise
        outcome = "succeeded" if result.ok else ("timed_out" if result.timed_out else "failed")
        seconds = time.perf_counter() - started
        if span is not None:
            span.set_attribute("plait.outcome", outcome)
            if not result.ok:
                _tracing.fail(span, result.error or outcome)
        log.info(
            "ran task=%s instance=%s step=%s attempt=%s outcome=%s seconds=%.3f",
            held.name, spec["instance"], spec["step"], spec["attempt"], outcome, seconds,
        )  # fmt: skip
        self.metrics.duration.labels(*labels, outcome).observe(seconds)
        {"succeeded": self.metrics.succeeded, "failed": self.metrics.failed, "timed_out": self.metrics.timed_out}[
            outcome
        ].labels(*labels).inc()
        return result

    async def _offload(self, payloads: PayloadStore, result: AttemptResult, spec: JSON) -> AttemptResult:
        """The result with its output's large parts in the payload store (retried while the store
        does not answer; then the attempt fails, and the step retries by its policy)."""
        try:
            output = await payloads.offload(result.output, self.settings.namespace, spec["instance"])
        except PayloadError as error:
            return AttemptResult(ok=False, error=f"{error} (storing the step's output)")
        return dataclasses.replace(result, output=output)

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


async def _retrying(call: Any, what: str, attempts: int = 30) -> Any:
    backoff = Backoff(0.5, 5.0)
    for attempt in range(attempts):
        try:
            return await call()
        except ClusterError as error:
            if error.status in (400, 403, 404, 422) or attempt == attempts - 1:
                raise
            failure: Exception = error
        except Exception as error:  # the API server may not be up yet
            if attempt == attempts - 1:
                raise
            failure = error
        delay = backoff.next()
        log.warning("%s failed (%s); retrying in %.1fs", what, failure, delay)
        await backoff.wait(delay)
    return None
