"""What each page shows, computed from the objects the watches hold: pure functions, no I/O.

The server (:mod:`plait._ui.server`) reads the :class:`~plait._ui.watches.Hub`'s caches and
hands the objects here; the templates only lay the results out. The step states come from the
CLI's step tree (:func:`plait.cli.steptree.step_rows`), so the UI and ``plait get`` agree.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from plait._kube.client import JSON
from plait._kube.models import (
    CANCEL_ANNOTATION,
    DISPATCHED_AT_ANNOTATION,
    FINISHED_PHASES,
    HELD_LABEL,
    HELD_MESSAGE_ANNOTATION,
    PAUSE_ANNOTATION,
    RETRY_ANNOTATION,
    TRACEPARENT_ANNOTATION,
    UPGRADE_ANNOTATION,
    definition_hash_of,
)
from plait.cli.format import age, duration, span
from plait.cli.steptree import StepRow, step_rows

PHASES = ("Pending", "Queued", "Running", "Waiting", "AwaitingSignal", "Paused", "Succeeded", "Failed", "Cancelled")
# phase -> symbol shown beside it (the phase is always written out too)
PHASE_SYMBOLS = {
    "Pending": "·",
    "Queued": "⋯",
    "Running": "●",
    "Waiting": "◷",
    "AwaitingSignal": "✉",
    "Paused": "‖",
    "Succeeded": "✓",
    "Failed": "✗",
    "Cancelled": "⊘",
}
_PAYLOAD_SHOWN = 20_000  # characters of an input or output shown inline


def phase_of(instance: Mapping[str, Any]) -> str:
    return str((instance.get("status") or {}).get("phase") or "Pending")


def pretty(value: Any) -> str:
    """A JSON value for reading, cut at a length a page can hold."""
    text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)
    return text if len(text) <= _PAYLOAD_SHOWN else text[:_PAYLOAD_SHOWN] + f"\n… ({len(text)} characters in all)"


# -- label selectors -------------------------------------------------------------------------------

_REQUIREMENT = re.compile(r"^\s*(!?)([A-Za-z0-9./_-]+)\s*(?:(==|=|!=)\s*([A-Za-z0-9._-]*))?\s*$")


class SelectorError(ValueError):
    pass


def parse_selector(text: str) -> list[tuple[str, str, str]]:
    """``app=x,tier!=db,canary,!old`` as (key, op, value) requirements; op is ``=``, ``!=``, ``exists``, ``!exists``."""
    requirements = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        match = _REQUIREMENT.match(part)
        if match is None:
            raise SelectorError(f"cannot read label requirement {part!r}: use key=value, key!=value, key or !key")
        negated, key, op, value = match.groups()
        if op is None:
            requirements.append((key, "!exists" if negated else "exists", ""))
        elif negated:
            raise SelectorError(f"cannot read label requirement {part!r}: '!' goes only before a bare key")
        else:
            requirements.append((key, "!=" if op == "!=" else "=", value or ""))
    return requirements


def selected(labels: Mapping[str, str], requirements: Iterable[tuple[str, str, str]]) -> bool:
    for key, op, value in requirements:
        if op == "exists" and key not in labels:
            return False
        if op == "!exists" and key in labels:
            return False
        if op == "=" and labels.get(key) != value:
            return False
        if op == "!=" and labels.get(key) == value:
            return False
    return True


# -- instances -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InstanceRow:
    namespace: str
    name: str
    workflow: str
    phase: str
    symbol: str
    current: str
    progress: str
    version: str
    age: str
    created: str
    message: str


def instance_row(instance: JSON, now: float) -> InstanceRow:
    meta, spec, status = instance["metadata"], instance.get("spec") or {}, instance.get("status") or {}
    phase = phase_of(instance)
    return InstanceRow(
        namespace=meta.get("namespace", ""),
        name=meta["name"],
        workflow=str(spec.get("workflow", "")),
        phase=phase,
        symbol=PHASE_SYMBOLS.get(phase, "?"),
        current=str(status.get("currentStep") or ""),
        progress=str(status.get("progress") or ""),
        version=(definition_hash_of(instance) or "")[:12],
        age=age(meta.get("creationTimestamp"), now),
        created=meta.get("creationTimestamp") or "",
        message=str(status.get("error") or status.get("message") or ""),
    )


def instance_rows(
    instances: Iterable[JSON],
    now: float,
    *,
    workflow: str = "",
    phase: str = "",
    selector: Iterable[tuple[str, str, str]] = (),
    limit: int | None = None,
) -> tuple[list[InstanceRow], int]:
    """The instances that pass the filters, newest first (at most ``limit``), and how many passed."""
    requirements = list(selector)
    chosen = [
        i
        for i in instances
        if (not workflow or (i.get("spec") or {}).get("workflow") == workflow)
        and (not phase or phase_of(i) == phase)
        and selected(i["metadata"].get("labels") or {}, requirements)
    ]
    chosen.sort(key=lambda i: (i["metadata"].get("creationTimestamp") or "", i["metadata"]["name"]), reverse=True)
    shown = chosen[:limit] if limit is not None else chosen
    return [instance_row(i, now) for i in shown], len(chosen)


def phase_counts(instances: Iterable[JSON]) -> dict[str, int]:
    counts = Counter(phase_of(i) for i in instances)
    return {p: counts[p] for p in PHASES if counts[p]}


# -- one instance ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Attempt:
    path: str
    attempt: int
    phase: str
    worker: str
    dispatched: str
    started: str
    finished: str
    duration: str
    error: str
    traceback: str
    input: str
    output: str | None
    held: str


def attempts_by_step(tasks: Iterable[JSON], now: float) -> dict[str, list[Attempt]]:
    """Each step's attempts (``WorkflowTask`` records), in the order they ran."""
    steps: dict[str, list[tuple[tuple[str, str, int], Attempt]]] = defaultdict(list)
    for task in tasks:
        meta, spec, status = task["metadata"], task.get("spec") or {}, task.get("status") or {}
        claim = status.get("claim") or {}
        dispatched = (
            (meta.get("annotations") or {}).get(DISPATCHED_AT_ANNOTATION) or meta.get("creationTimestamp") or ""
        )
        started = claim.get("claimedAt") or ""
        finished = status.get("finishedAt") or ""
        held = ""
        if (meta.get("labels") or {}).get(HELD_LABEL) and status.get("phase") in (None, "Pending"):
            held = (meta.get("annotations") or {}).get(HELD_MESSAGE_ANNOTATION) or meta["labels"][HELD_LABEL]
        attempt = Attempt(
            path=str(spec.get("path", "")),
            attempt=int(spec.get("attempt") or 0),
            phase=str(status.get("phase") or "Pending"),
            worker=str(claim.get("holder") or ""),
            dispatched=dispatched,
            started=started,
            finished=finished,
            duration=duration(span(started, finished or None, now)) if started else "",
            error=str(status.get("error") or ""),
            traceback=str(status.get("traceback") or ""),
            input=pretty(spec.get("input")),
            output=pretty(status.get("output")) if status.get("phase") == "Succeeded" else None,
            held=held,
        )
        steps[str(spec.get("step", ""))].append(((dispatched, attempt.path, attempt.attempt), attempt))
    return {step: [a for _, a in sorted(items, key=lambda x: x[0])] for step, items in steps.items()}


@dataclass(frozen=True)
class StepView:
    row: StepRow
    depth: int
    duration: str
    attempts: list[Attempt]


def step_views(definition: JSON | None, instance: JSON, tasks: list[JSON], now: float) -> list[StepView]:
    spec = (definition or {}).get("spec")
    rows = step_rows(spec, instance.get("status") or {}, tasks)
    attempts = attempts_by_step(tasks, now)
    return [
        StepView(
            row=row,
            depth=max(0, len(row.guides) - 1),
            duration=duration(span(row.started, row.finished, now)) if row.started else "",
            attempts=attempts.get(row.id, []) if row.leaf else [],
        )
        for row in rows
    ]


def node_states(steps: Iterable[StepView]) -> dict[str, tuple[str, str]]:
    """Node id -> (state, detail line) for the graph; container groups (``fork/branch``) are not nodes."""
    states = {}
    for step in steps:
        row = step.row
        detail = []
        if row.leaf and row.attempts > 1:
            detail.append(f"{row.attempts} attempts")
        if row.kind == "loop" and row.runs:
            detail.append(f"{row.runs} iterations")
        if step.duration:
            detail.append(step.duration)
        states[row.id] = (row.state, " · ".join(detail))
    return states


@dataclass(frozen=True)
class WaitingSignals:
    waiting_for: list[str]  # signal names a step waits for right now
    declared: list[str]  # every signal name the definition waits for somewhere
    buffered: list[JSON]  # WorkflowSignals for this instance not consumed yet


def waiting_signals(instance: JSON, definition: JSON | None, signals: Iterable[JSON]) -> WaitingSignals:
    nodes = ((definition or {}).get("spec") or {}).get("nodes") or []
    signal_nodes = {n["id"]: str(n.get("signal")) for n in nodes if n.get("kind") == "signal"}
    summaries = {s.get("id"): s for s in (instance.get("status") or {}).get("steps") or []}
    waiting = sorted(
        {name for node_id, name in signal_nodes.items() if (summaries.get(node_id) or {}).get("state") == "waiting"}
    )
    name = instance["metadata"]["name"]
    buffered = [
        s
        for s in signals
        if (s.get("spec") or {}).get("instance") == name
        and (s.get("status") or {}).get("phase") in (None, "Pending", "Buffered")
    ]
    return WaitingSignals(waiting, sorted(set(signal_nodes.values())), buffered)


def events_of(events: Iterable[JSON], kind: str, name: str) -> list[JSON]:
    """The Events about one object, oldest first."""

    def when(event: JSON) -> str:
        return str(event.get("lastTimestamp") or event.get("eventTime") or event["metadata"].get("creationTimestamp"))

    chosen = [
        e
        for e in events
        if (e.get("involvedObject") or {}).get("kind") == kind and e["involvedObject"].get("name") == name
    ]
    return sorted(chosen, key=when)


def trace_link(instance: JSON, template: str | None) -> str | None:
    """The trace viewer's page for the instance's trace: ``template`` with ``{trace_id}`` filled in."""
    traceparent = (instance["metadata"].get("annotations") or {}).get(TRACEPARENT_ANNOTATION)
    if not template or not traceparent:
        return None
    parts = traceparent.split("-")
    if len(parts) < 3 or not re.fullmatch(r"[0-9a-f]{32}", parts[1]):
        return None
    return template.replace("{trace_id}", parts[1]).replace("{traceparent}", traceparent)


@dataclass(frozen=True)
class Actions:
    """Which actions make sense for an instance now (the server still lets the API server decide)."""

    pause: bool
    resume: bool
    cancel: bool
    retry: bool
    upgrade: bool
    signal: bool
    pending: dict[str, str] = field(default_factory=dict)  # control annotations set, not acted on yet


def actions_for(instance: JSON) -> Actions:
    phase = phase_of(instance)
    annotations = instance["metadata"].get("annotations") or {}
    finished = phase in FINISHED_PHASES
    paused = PAUSE_ANNOTATION in annotations
    pending = {
        k: v
        for k, v in annotations.items()
        if k in (PAUSE_ANNOTATION, CANCEL_ANNOTATION, UPGRADE_ANNOTATION, RETRY_ANNOTATION)
    }
    return Actions(
        pause=not finished and not paused,
        resume=paused,
        cancel=not finished and CANCEL_ANNOTATION not in annotations,
        retry=phase in ("Failed", "Cancelled"),
        upgrade=not finished,
        signal=not finished,
        pending=pending,
    )


# -- definitions -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Version:
    name: str
    namespace: str
    workflow: str
    hash: str
    created: str
    age: str
    steps: int
    instances: int
    latest: bool


def versions(definitions: Iterable[JSON], instances: Iterable[JSON], now: float) -> dict[str, list[Version]]:
    """Workflow -> its versions, oldest first, with how many instances run (or pin) each."""
    using: Counter[tuple[str, str]] = Counter()
    for instance in instances:
        using[(instance["metadata"].get("namespace", ""), definition_hash_of(instance) or "")] += 1
    grouped: dict[tuple[str, str], list[JSON]] = defaultdict(list)
    for item in definitions:
        grouped[(item["metadata"].get("namespace", ""), item["spec"]["workflow"])].append(item)
    result: dict[str, list[Version]] = {}
    for (namespace, workflow), items in sorted(grouped.items()):
        items.sort(key=lambda d: (d["metadata"].get("creationTimestamp") or "", d["metadata"]["name"]))
        key = f"{workflow}" if not result.get(workflow) else f"{workflow} ({namespace})"
        result[key] = [
            Version(
                name=d["metadata"]["name"],
                namespace=namespace,
                workflow=workflow,
                hash=d["spec"].get("hash", ""),
                created=d["metadata"].get("creationTimestamp") or "",
                age=age(d["metadata"].get("creationTimestamp"), now),
                steps=sum(1 for n in d["spec"].get("nodes") or [] if n.get("kind") in ("task", "delay", "signal")),
                instances=using[(namespace, d["spec"].get("hash", ""))],
                latest=index == len(items) - 1,
            )
            for index, d in enumerate(items)
        ]
    return result


# -- flow control ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueuedRow:
    namespace: str
    name: str
    workflow: str
    key: str
    position: int | None
    max_runs: int | None
    queued_for: str


@dataclass(frozen=True)
class HeldRow:
    namespace: str
    name: str
    instance: str
    step: str
    reason: str
    message: str
    waiting: str


def queued(instances: Iterable[JSON], now: float) -> list[QueuedRow]:
    """Instances waiting for a concurrency slot, by workflow and key, in the order they will start."""
    rows = []
    for instance in instances:
        if phase_of(instance) != "Queued":
            continue
        concurrency = (instance.get("status") or {}).get("concurrency") or {}
        rows.append(
            QueuedRow(
                namespace=instance["metadata"].get("namespace", ""),
                name=instance["metadata"]["name"],
                workflow=str((instance.get("spec") or {}).get("workflow", "")),
                key=str(concurrency.get("key") or ""),
                position=concurrency.get("position"),
                max_runs=concurrency.get("maxRuns"),
                queued_for=age(concurrency.get("queuedAt") or instance["metadata"].get("creationTimestamp"), now),
            )
        )
    return sorted(rows, key=lambda r: (r.namespace, r.workflow, r.key, r.position or 1 << 30, r.name))


def held(tasks: Iterable[JSON], now: float) -> list[HeldRow]:
    """Task attempts flow control holds back (a concurrency or rate limit of their step)."""
    rows = []
    for task in tasks:
        meta = task["metadata"]
        reason = (meta.get("labels") or {}).get(HELD_LABEL)
        if not reason or (task.get("status") or {}).get("phase") not in (None, "Pending"):
            continue
        spec = task.get("spec") or {}
        rows.append(
            HeldRow(
                namespace=meta.get("namespace", ""),
                name=meta["name"],
                instance=str(spec.get("instance", "")),
                step=str(spec.get("step", "")),
                reason=reason,
                message=(meta.get("annotations") or {}).get(HELD_MESSAGE_ANNOTATION) or "",
                waiting=age(meta.get("creationTimestamp"), now),
            )
        )
    return sorted(rows, key=lambda r: (r.namespace, r.step, r.name))
