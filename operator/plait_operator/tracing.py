"""The operator's spans: one trace per instance, each span written once, when what it covers ends.

The trace is the one of the instance's ``plait.dev/traceparent`` annotation (the instance span a
child of the submitter's span) or, without one, a trace id derived from the instance's uid. Span
ids are derived too, from the uid, the kind of span, the step's path and the attempt: any operator
process, before or after a restart, writes a span with the same ids and its parent's, so nothing
about spans is stored and no write is added. The attempt's context reaches its worker in the
task's own ``plait.dev/traceparent`` annotation, set when the task is created; the worker's
``run TASK`` span is its child. The tree (names as the trace backend shows them)::

    instance WORKFLOW             start to finish; the root, or under the submitter's span
      queued                      flow control: how long it waited Queued for a slot
      step NODE                   one execution of a task step: first dispatch to final result
        attempt NODE #N           dispatch to result: admitted, claimed (by whom), outcome
          run TASK                the worker's span (service plait-worker); the task's own spans below
      delay NODE                  a durable delay
      signal NAME                 a wait for a signal: received, timed out or cancelled

Off (``None`` in place of :class:`OperatorTracing`) unless an OTLP endpoint is configured.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from plait import _tracing
from plait._core.definition import Definition, DelayNode, SignalNode
from plait._core.events import CancelTask, Command, TaskFailed, TaskLost, TaskSucceeded, TaskTimedOut
from plait._core.snapshot import CANCELLED, FAILED, SignalWait, Snapshot, Timer
from plait._kube.client import JSON
from plait._kube.models import (
    ADMITTED_AT_ANNOTATION,
    DISPATCHED_AT_ANNOTATION,
    TRACEPARENT_ANNOTATION,
    parse_rfc3339,
)
from plait._tracing import SpanRecord, TraceParent, derived_id, parse_traceparent
from plait_operator.store import task_name
from plait_operator.world import TaskResult

SERVICE_NAME = "plait-operator"
Attributes = dict[str, str | int | float | bool]


@dataclass(frozen=True, slots=True)
class Trace:
    """The trace of one instance: its id, whether it is sampled, the submitter's span if any."""

    uid: str
    trace_id: int
    sampled: bool
    submitter: TraceParent | None

    def span_id(self, *parts: str) -> int:
        return derived_id(64, self.uid, *parts)

    def context(self, *parts: str) -> TraceParent:
        """The context of the span named by ``parts``, as its children see it."""
        return TraceParent(self.trace_id, self.span_id(*parts), self.sampled)


@dataclass(frozen=True, slots=True)
class Before:
    """What an instance was waiting for when a reconcile began (to see what ended in it)."""

    running: dict[str, int]
    timers: dict[str, Timer]
    waiting: dict[str, SignalWait]
    finished: bool


class OperatorTracing:
    """Writes the spans of every instance this operator drives (see the module docstring)."""

    @classmethod
    def start(cls, identity: str) -> OperatorTracing | None:
        """Tracing as the environment configures it, or ``None`` when it is off."""
        if not _tracing.init_tracing(SERVICE_NAME, {"service.instance.id": identity}):
            return None
        return cls()

    def stop(self) -> None:
        _tracing.shutdown_tracing()

    # -- the trace and the contexts it hands out ---------------------------------------------------

    def trace(self, instance: JSON) -> Trace:
        meta = instance["metadata"]
        submitter = parse_traceparent((meta.get("annotations") or {}).get(TRACEPARENT_ANNOTATION) or "")
        if submitter is not None:
            return Trace(meta["uid"], submitter.trace_id, submitter.sampled, submitter)
        trace_id = derived_id(128, "plait-trace", meta["uid"])
        return Trace(meta["uid"], trace_id, _tracing.root_sampled(trace_id, "instance"), None)

    @staticmethod
    def invalid_traceparent(instance: JSON) -> str | None:
        """Why the instance's ``plait.dev/traceparent`` cannot be used, if it is set and not valid."""
        value = (instance["metadata"].get("annotations") or {}).get(TRACEPARENT_ANNOTATION)
        if value is None or parse_traceparent(value) is not None:
            return None
        return (
            f"annotation {TRACEPARENT_ANNOTATION}={value[:120]!r} is not a W3C traceparent "
            "(00-<32 hex trace id>-<16 hex span id>-<2 hex flags>); the instance is traced in a trace of its own"
        )

    def task_traceparent(self, instance: JSON, path: str, attempt: int) -> str:
        """The ``traceparent`` a task carries to its worker: the attempt's span."""
        return self.trace(instance).context("attempt", path, str(attempt)).header

    # -- spans, as what they cover ends ---------------------------------------------------------------

    @staticmethod
    def before(snapshot: Snapshot) -> Before:
        return Before(dict(snapshot.running), dict(snapshot.timers), dict(snapshot.waiting_signals), snapshot.finished)

    def reconciled(
        self,
        instance: JSON,
        definition: Definition,
        snapshot: Snapshot,
        before: Before,
        results: Iterable[TaskResult],
        commands: Iterable[Command],
        tasks: Mapping[str, JSON],
        now: float,
    ) -> None:
        """Write the spans of what the checkpoint just written ended: attempts with a result or
        cancelled, the steps they finished, delays and signal waits, and the instance itself."""
        trace = self.trace(instance)
        base = _base(instance, definition)
        meta = instance["metadata"]
        ended_steps: dict[str, tuple[str, str | None]] = {}  # path -> outcome, error
        for result in results:
            task = tasks.get(task_name(meta["name"], meta["uid"], result.path, result.attempt))
            outcome, error = _outcome(result, task)
            if task is not None:
                _tracing.write(_attempt_span(trace, base, task, outcome, error, now))
            if result.path not in snapshot.running and result.path not in snapshot.timers:
                ended_steps[result.path] = (outcome, error)
        for command in commands:
            if isinstance(command, CancelTask):
                task = tasks.get(task_name(meta["name"], meta["uid"], command.path, command.attempt))
                if task is not None:
                    _tracing.write(_attempt_span(trace, base, task, "cancelled", None, now))
                ended_steps[command.path] = ("cancelled", None)
        for path, (outcome, error) in ended_steps.items():
            _tracing.write(_step_span(trace, base, snapshot, path, outcome, error, tasks, now))
        for path, timer in before.timers.items():
            if timer.kind == "delay" and path not in snapshot.timers:
                _tracing.write(_delay_span(trace, base, definition, path, timer, now))
        for path, wait in before.waiting.items():
            if path not in snapshot.waiting_signals:
                _tracing.write(_signal_span(trace, base, definition, snapshot, before, path, wait, now))
        if snapshot.finished and not before.finished:
            error = snapshot.error if snapshot.status == FAILED else None
            phase = {"completed": "Succeeded", "failed": "Failed", "cancelled": "Cancelled"}[snapshot.status]
            _tracing.write(_instance_span(trace, base, instance, phase, error, now))

    def queued(self, instance: JSON, workflow: str, now: float) -> None:
        """The instance leaves flow control's queue (admitted, or cancelled while queued)."""
        queued_at = ((instance.get("status") or {}).get("concurrency") or {}).get("queuedAt")
        if queued_at is None:
            return
        trace = self.trace(instance)
        span = SpanRecord(
            "queued",
            trace.trace_id,
            trace.span_id("queued"),
            trace.context("instance"),
            parse_rfc3339(queued_at),
            now,
            {"plait.instance": _instance_of(instance), "plait.workflow": workflow},
        )
        _tracing.write(span)

    def unstarted(self, instance: JSON, workflow: str, phase: str, message: str, now: float) -> None:
        """The instance ended without a step: rejected, cancelled or a duplicate."""
        self.queued(instance, workflow, now)
        trace = self.trace(instance)
        base: Attributes = {"plait.instance": _instance_of(instance), "plait.workflow": workflow}
        error = message if phase == "Failed" else None
        _tracing.write(_instance_span(trace, base, instance, phase, error, now))


# -- the spans ---------------------------------------------------------------------------------------


def _instance_of(instance: JSON) -> str:
    meta = instance["metadata"]
    return f"{meta.get('namespace', '')}/{meta['name']}"


def _base(instance: JSON, definition: Definition) -> Attributes:
    return {"plait.instance": _instance_of(instance), "plait.workflow": definition.name}


def _instance_span(
    trace: Trace, base: Attributes, instance: JSON, phase: str, error: str | None, now: float
) -> SpanRecord:
    status = instance.get("status") or {}
    starts = [status.get("startedAt"), (status.get("concurrency") or {}).get("queuedAt")]
    times = [parse_rfc3339(value) for value in starts if value]
    if not times and instance["metadata"].get("creationTimestamp"):
        times.append(parse_rfc3339(instance["metadata"]["creationTimestamp"]))
    attributes: Attributes = {**base, "plait.uid": trace.uid, "plait.phase": phase}
    if status.get("definitionHash"):
        attributes["plait.definition"] = str(status["definitionHash"])[:12]
    return SpanRecord(
        f"instance {base['plait.workflow']}",
        trace.trace_id,
        trace.span_id("instance"),
        trace.submitter,
        min(times, default=now),
        now,
        attributes,
        error=error,
    )


def _outcome(result: TaskResult, task: JSON | None) -> tuple[str, str | None]:
    if isinstance(result, TaskSucceeded):
        return "succeeded", None
    if isinstance(result, TaskFailed):
        return "failed", result.error
    if isinstance(result, TaskTimedOut):
        return "timed_out", f"the attempt timed out ({((task or {}).get('status') or {}).get('error') or 'timeout'})"
    assert isinstance(result, TaskLost)
    phase = ((task or {}).get("status") or {}).get("phase")
    return ("released" if phase == "Released" else "lost"), result.reason


def _attempt_span(
    trace: Trace, base: Attributes, task: JSON, outcome: str, error: str | None, now: float
) -> SpanRecord:
    meta, spec, status = task["metadata"], task["spec"], task.get("status") or {}
    annotations = meta.get("annotations") or {}
    start = _time(annotations.get(DISPATCHED_AT_ANNOTATION), now)
    attributes: Attributes = {
        **base,
        "plait.step": spec["step"],
        "plait.path": spec["path"],
        "plait.attempt": int(spec["attempt"]),
        "plait.task": spec["task"],
        "plait.queue": spec["queue"],
        "plait.task_object": meta["name"],
        "plait.outcome": outcome,
    }
    events: list[tuple[str, float, Mapping[str, str | int | float | bool]]] = []
    if ADMITTED_AT_ANNOTATION in annotations:
        events.append(("admitted", _time(annotations[ADMITTED_AT_ANNOTATION], start), {}))
    claim = status.get("claim") or {}
    if claim.get("holder"):
        attributes["plait.worker"] = claim["holder"]
        claimed = _time(claim.get("claimedAt"), start)
        attributes["plait.queued_seconds"] = round(max(0.0, claimed - start), 6)
        events.append(("claimed", claimed, {"plait.worker": claim["holder"]}))
    end = _time(status.get("finishedAt"), now) if outcome != "cancelled" else now
    path, attempt = spec["path"], str(spec["attempt"])
    return SpanRecord(
        f"attempt {spec['step']} #{attempt}",
        trace.trace_id,
        trace.span_id("attempt", path, attempt),
        trace.context("step", path),
        start,
        end,
        attributes,
        events,
        error,
    )


def _step_span(
    trace: Trace,
    base: Attributes,
    snapshot: Snapshot,
    path: str,
    outcome: str,
    error: str | None,
    tasks: Mapping[str, JSON],
    now: float,
) -> SpanRecord:
    attempts = [task for task in tasks.values() if task["spec"]["path"] == path]
    node_id = attempts[0]["spec"]["step"] if attempts else path
    dispatched = [
        _time((task["metadata"].get("annotations") or {}).get(DISPATCHED_AT_ANNOTATION), now) for task in attempts
    ]
    attributes: Attributes = {
        **base,
        "plait.step": node_id,
        "plait.path": path,
        "plait.outcome": outcome,
        "plait.attempts": len(attempts),
    }
    return SpanRecord(
        f"step {node_id}",
        trace.trace_id,
        trace.span_id("step", path),
        trace.context("instance"),
        min(dispatched, default=_started(snapshot, node_id, now)),
        now,
        attributes,
        error=error,
    )


def _delay_span(
    trace: Trace, base: Attributes, definition: Definition, path: str, timer: Timer, now: float
) -> SpanRecord:
    node = definition.nodes[timer.node_id]
    seconds = node.seconds if isinstance(node, DelayNode) else 0.0
    outcome = "elapsed" if timer.at <= now else "cancelled"
    attributes: Attributes = {**base, "plait.step": node.id, "plait.path": path, "plait.outcome": outcome}
    attributes["plait.delay_seconds"] = seconds
    return SpanRecord(
        f"delay {node.id}",
        trace.trace_id,
        trace.span_id("step", path),
        trace.context("instance"),
        timer.at - seconds,
        now,
        attributes,
    )


def _signal_span(
    trace: Trace,
    base: Attributes,
    definition: Definition,
    snapshot: Snapshot,
    before: Before,
    path: str,
    wait: SignalWait,
    now: float,
) -> SpanRecord:
    node = definition.nodes[wait.node_id]
    timeout = before.timers.get(path)
    start = _started(snapshot, node.id, now)
    if timeout is not None and isinstance(node, SignalNode) and node.timeout_secs:
        start = timeout.at - node.timeout_secs
    if timeout is not None and timeout.kind == "signal-timeout" and timeout.at <= now:
        outcome = "timed_out"
    elif snapshot.status == CANCELLED:
        outcome = "cancelled"
    else:
        outcome = "received"
    attributes: Attributes = {
        **base,
        "plait.step": node.id,
        "plait.path": path,
        "plait.signal": wait.signal,
        "plait.outcome": outcome,
    }
    error = f"no signal {wait.signal!r} came in time" if outcome == "timed_out" else None
    return SpanRecord(
        f"signal {wait.signal}",
        trace.trace_id,
        trace.span_id("step", path),
        trace.context("instance"),
        start,
        now,
        attributes,
        error=error,
    )


def _started(snapshot: Snapshot, node_id: str, default: float) -> float:
    progress = snapshot.steps.get(node_id)
    return float(progress["startedAt"]) if progress is not None and "startedAt" in progress else default


def _time(value: str | None, default: float) -> float:
    return parse_rfc3339(value) if value else default
