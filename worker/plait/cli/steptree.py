"""The step tree of a workflow: the definition's structure with each step's state, for ``plait get``.

:func:`step_rows` joins a ``WorkflowDefinition`` spec (the graph: forks, routes, loops, child
flows) with an instance's ``status.steps`` (the per-node summary the operator writes) and,
optionally, its ``WorkflowTask`` records (for the error of a failed attempt). Containers (fork,
route, loop, child flow, branch) get a state derived from their steps. :func:`render_rows` lays
the rows out as an aligned table with tree guides. Pure functions over JSON-like data, no I/O:
``plait get``, ``plait definitions`` and the tests call them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, assert_never

from plait._core.definition import (
    ChildNode,
    Definition,
    DelayNode,
    ForkNode,
    LoopNode,
    Node,
    RouteNode,
    SignalNode,
    TaskNode,
    parts,
)
from plait._kube.models import HELD_LABEL, HELD_MESSAGE_ANNOTATION
from plait.cli.format import compact, duration, paint, span, table
from plait.errors import DefinitionError

ACTIVE = ("running", "retrying", "waiting")
_FAILED_TASK_PHASES = ("Failed", "TimedOut", "Lost")

# state -> (unicode symbol, ascii symbol, colour)
_STYLE: dict[str, tuple[str, str, str | None]] = {
    "succeeded": ("✓", "+", "green"),
    "failed": ("✗", "x", "red"),
    "running": ("●", "*", "cyan"),
    "retrying": ("↻", "r", "yellow"),
    "waiting": ("◷", "~", "blue"),
    "pending": ("·", ".", "dim"),
    "skipped": ("-", "-", "dim"),
    "not run": ("-", "-", "dim"),
    "cancelled": ("✗", "x", "yellow"),
}


@dataclass(frozen=True)
class StepRow:
    """One line of the tree: a step (leaf) or a container (fork, route, loop, branch, child flow)."""

    id: str
    label: str
    kind: str  # task, delay, signal, fork, join, route, key, branch, loop, child
    guides: tuple[bool, ...] = ()  # for each level down to this row: is it the last child there
    state: str = "pending"
    attempts: int = 0
    runs: int = 0
    started: str | None = None
    finished: str | None = None
    note: str = ""
    error: str = ""  # the last failed attempt, when it matters (also part of ``note``)
    leaf: bool = True


@dataclass
class _Context:
    summaries: Mapping[str, Mapping[str, Any]]
    errors: Mapping[str, str]
    phase: str | None
    with_policy: bool
    holds: Mapping[str, str] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)


def step_rows(
    definition: Mapping[str, Any] | None,
    status: Mapping[str, Any] | None = None,
    tasks: Iterable[Mapping[str, Any]] = (),
) -> list[StepRow]:
    """The tree of ``definition`` (a WorkflowDefinition ``spec``) with the states from ``status``.

    Without a status every step is ``pending`` and notes show each step's policy (retries,
    timeout); without a definition (or with one this version cannot read) the rows are the flat
    ``status.steps``.
    """
    status = status or {}
    summaries = {s["id"]: s for s in status.get("steps") or [] if "id" in s}
    errors = last_errors(tasks)
    phase = status.get("phase")
    graph = _parse(definition)
    if graph is None:
        return [_leaf_row(step_id, "task", f"{step_id}", (), summaries, errors, phase) for step_id in summaries]
    context = _Context(summaries, errors, phase, with_policy=not status, holds=held_notes(tasks))
    rows = _sequence(context, graph.steps, ())
    if graph.on_failure is not None:  # Flow(...).on_failure(fn): after the steps, run only on a failure
        rows += _sequence(context, (graph.on_failure,), ())
    # steps the summary knows but the definition does not (should not happen): show them anyway
    rows += [_leaf_row(i, "task", i, (), summaries, errors, phase) for i in summaries if i not in context.seen]
    return rows


def _parse(spec: Mapping[str, Any] | None) -> Definition | None:
    if not spec:
        return None
    try:
        return Definition.from_data(spec)
    except (DefinitionError, KeyError, TypeError, ValueError):
        return None


def last_errors(tasks: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Per step: the error of its latest failed attempt, as ``attempt N failed: ...``."""
    latest: dict[str, tuple[int, str]] = {}
    for task in tasks:
        spec, status = task.get("spec") or {}, task.get("status") or {}
        if status.get("phase") not in _FAILED_TASK_PHASES:
            continue
        step, attempt = spec.get("step", ""), int(spec.get("attempt") or 0)
        if step in latest and latest[step][0] > attempt:
            continue
        what = {"TimedOut": "timed out", "Lost": "lost its worker"}.get(status["phase"], "failed")
        error = " ".join((status.get("error") or "").split())
        latest[step] = (attempt, f"attempt {attempt} {what}" + (f": {error}" if error else ""))
    return {step: text for step, (_, text) in latest.items()}


def held_notes(tasks: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Per step: why its pending attempt is held back by flow control (``held: waiting for ...``)."""
    notes: dict[str, str] = {}
    for task in tasks:
        meta = task.get("metadata") or {}
        reason = (meta.get("labels") or {}).get(HELD_LABEL)
        if reason and ((task.get("status") or {}).get("phase") in (None, "Pending")):
            message = (meta.get("annotations") or {}).get(HELD_MESSAGE_ANNOTATION) or reason
            notes[(task.get("spec") or {}).get("step", "")] = f"held: {message}"
    return notes


def _label(node: Node) -> str:
    if isinstance(node, TaskNode):
        return node.id
    if isinstance(node, DelayNode):
        return f"{node.id} (delay {compact(node.seconds)})"
    if isinstance(node, SignalNode):
        return f"{node.id} (signal {node.signal!r})" if node.signal != node.id else f"{node.id} (signal)"
    if isinstance(node, ForkNode):
        return f"fork ({len(node.branches)} branches)"
    if isinstance(node, RouteNode):
        return f"route {node.id}"
    if isinstance(node, LoopNode):
        return f"loop {node.id} (max {node.max_iterations})"
    if isinstance(node, ChildNode):
        return f"flow {node.workflow}"
    assert_never(node)


def _node(context: _Context, node: Node, guides: tuple[bool, ...]) -> list[StepRow]:
    context.seen.add(node.id)
    inner = parts(node)
    if not inner:
        row = _leaf_row(node.id, node.kind, _label(node), guides, context.summaries, context.errors, context.phase)
        if context.with_policy:
            return [replace(row, note=policy(node))]
        if node.id in context.holds and row.state in ACTIVE:
            row = replace(row, note="; ".join(filter(None, (row.note, context.holds[node.id]))))
        return [row]
    # A route's key and a fork's join show as single steps; a group whose only step has the group's
    # name (fork branches of one task) or no name of its own (loop and child bodies) shows its
    # steps directly; the other groups (branches) get a row of their own.
    items: list[tuple[str, tuple[Node, ...] | Node]] = []  # (group label, its steps) or (kind, step)
    for part in inner:
        if part.role in ("key", "join"):
            items.append((part.role, part.steps[0]))
        elif part.role == "body" or (len(part.steps) == 1 and part.steps[0].id == part.label):
            items += [("step", step) for step in part.steps]
        else:
            items.append((part.label, part.steps))
    rows: list[StepRow] = []
    groups: list[list[StepRow]] = []
    for index, (item_label, item) in enumerate(items):
        child_guides = (*guides, index == len(items) - 1)
        if not isinstance(item, tuple):
            sub = _node(context, item, child_guides)
            if item_label in ("key", "join") and sub:
                sub[0] = replace(sub[0], label=f"{sub[0].label} ({item_label})", kind=item_label)
        else:
            steps = _sequence(context, item, child_guides)
            group = StepRow(
                id=f"{node.id}/{item_label}", label=item_label, kind="branch", guides=child_guides, leaf=False
            )
            sub = [_aggregate(group, steps, context.phase), *steps]
        groups.append(sub)
        rows += sub
    if isinstance(node, RouteNode):
        rows = _skip_unchosen(rows, groups, context.phase)
    head = StepRow(id=node.id, label=_label(node), kind=node.kind, guides=guides, leaf=False)
    if isinstance(node, LoopNode):
        runs = max((r.runs for r in rows if r.leaf), default=0)
        head = replace(head, runs=runs, note=f"{runs} iteration{'s' if runs != 1 else ''}" if runs else "")
    return [_aggregate(head, rows, context.phase), *rows]


def _sequence(context: _Context, steps: Sequence[Node], guides: tuple[bool, ...]) -> list[StepRow]:
    rows: list[StepRow] = []
    for index, node in enumerate(steps):
        rows += _node(context, node, (*guides, index == len(steps) - 1))
    return rows


def _skip_unchosen(rows: list[StepRow], groups: list[list[StepRow]], phase: str | None) -> list[StepRow]:
    """Once a route took a branch, the steps of the other branches will never run."""
    branches = [g for g in groups if g and g[0].kind == "branch"]
    chosen = [g for g in branches if any(r.leaf and r.started for r in g)]
    if not chosen and phase != "Succeeded":
        return rows
    skipped = {id(r) for g in branches if g not in chosen for r in g}
    return [replace(r, state="skipped") if id(r) in skipped and r.state in ("pending", "not run") else r for r in rows]


def _aggregate(head: StepRow, rows: Sequence[StepRow], phase: str | None) -> StepRow:
    """A container's state and timing, from the leaves under it."""
    leaves = [r for r in rows if r.leaf and r.state != "skipped"]
    states = [r.state for r in leaves]
    started = [r.started for r in leaves if r.started]
    finished = [r.finished for r in leaves if r.finished]
    if not leaves and any(r.leaf for r in rows):
        state = "skipped"
    elif "failed" in states:
        state = "failed"
    elif any(s in ACTIVE for s in states):
        active = {s for s in states if s in ACTIVE}
        state = "waiting" if active == {"waiting"} else "retrying" if active == {"retrying"} else "running"
    elif states and all(s == "succeeded" for s in states):
        state = "succeeded"
    elif started:
        state = "running" if phase not in ("Failed", "Cancelled") else phase.lower()
    else:
        state = "not run" if phase in ("Succeeded", "Failed", "Cancelled") else "pending"
    done = state in ("succeeded", "failed", "cancelled")
    return replace(
        head,
        state=state,
        started=min(started) if started else None,
        finished=max(finished) if done and finished else None,
    )


def _leaf_row(
    node_id: str,
    kind: str,
    label: str,
    guides: tuple[bool, ...],
    summaries: Mapping[str, Mapping[str, Any]],
    errors: Mapping[str, str],
    phase: str | None,
) -> StepRow:
    summary = summaries.get(node_id)
    if summary is None:
        state = "not run" if phase in ("Failed", "Cancelled") else "skipped" if phase == "Succeeded" else "pending"
        return StepRow(id=node_id, label=label, kind=kind, guides=guides, state=state)
    state = str(summary.get("state") or "pending")
    if state in ACTIVE and phase in ("Failed", "Cancelled"):
        state = "cancelled" if phase == "Cancelled" else "failed"
    runs = int(summary.get("runs") or 0)
    notes = []
    if kind == "task" and runs > 1:
        notes.append(f"{runs} runs")
    error = ""
    if node_id in errors and (state in ("failed", "retrying") or int(summary.get("attempts") or 0) > 1 or runs > 1):
        error = errors[node_id]
        notes.append(error)
    return StepRow(
        id=node_id,
        label=label,
        kind=kind,
        guides=guides,
        state=state,
        attempts=int(summary.get("attempts") or 0),
        runs=runs,
        started=summary.get("startedAt"),
        finished=summary.get("finishedAt") if state not in ACTIVE else None,
        note="; ".join(notes),
        error=error,
    )


def policy(node: Node) -> str:
    """A step's options in a few words: ``retries 3 (0.5s x2, max 5s), timeout 10s, queue q``."""
    parts = []
    if isinstance(node, TaskNode) and node.retry is not None:
        retry = node.retry
        backoff = f"{compact(retry.initial_delay_secs)} x{retry.backoff_multiplier:g}"
        if retry.max_delay_secs is not None:
            backoff += f", max {compact(retry.max_delay_secs)}"
        parts.append(f"retries {retry.max_retries} ({backoff})")
    if isinstance(node, TaskNode | SignalNode) and node.timeout_secs:
        parts.append(f"timeout {compact(node.timeout_secs)}")
        if isinstance(node, SignalNode):
            parts[-1] += f" then {node.on_timeout}"
    if isinstance(node, TaskNode) and node.queue:
        parts.append(f"queue {node.queue}")
    if isinstance(node, TaskNode) and node.priority is not None:
        parts.append(f"priority {node.priority}")
    if isinstance(node, TaskNode) and node.concurrency is not None:
        parts.append(f"concurrency {node.concurrency.max_runs}" + _per(node.concurrency.key))
    if isinstance(node, TaskNode) and node.rate_limit is not None:
        parts.append(f"rate {node.rate_limit.limit}" + _per(node.rate_limit.key))
    return ", ".join(parts)


def _per(key: str | None) -> str:
    return f" per {key}" if key else ""


def tree_prefix(guides: tuple[bool, ...], fancy: bool = True) -> str:
    """The guide lines in front of a row: ``│  ├─ `` and so on."""
    if not guides:
        return ""
    pipe, tee, corner, space = ("│  ", "├─ ", "└─ ", "   ") if fancy else ("|  ", "|- ", "`- ", "   ")
    # the outermost level is the root sequence itself: no guide for it
    inner = guides[1:]
    if not inner:
        return ""
    return "".join(space if last else pipe for last in inner[:-1]) + (corner if inner[-1] else tee)


def state_cell(state: str, *, colour: bool, fancy: bool) -> str:
    symbol, ascii_symbol, tint = _STYLE.get(state, ("?", "?", None))
    return paint(f"{symbol if fancy else ascii_symbol} {state}", tint, colour)


def render_rows(
    rows: Sequence[StepRow], now: float, *, colour: bool = False, fancy: bool = True, states: bool = True
) -> list[str]:
    """The rows as a table: STEP (with tree guides), STATE, ATTEMPTS, DURATION, NOTE."""
    body = []
    for row in rows:
        name = tree_prefix(row.guides, fancy) + (row.label if row.leaf else paint(row.label, "bold", colour))
        if not states:
            body.append([name, row.kind, row.note])
            continue
        attempts = str(row.attempts) if row.leaf and row.kind not in ("delay", "signal") and row.attempts else ""
        note = paint(row.note, "red" if row.state in ("failed", "retrying") else None, colour)
        body.append(
            [
                name,
                state_cell(row.state, colour=colour, fancy=fancy),
                attempts,
                duration(span(row.started, row.finished, now)) if row.started else "",
                note,
            ]
        )
    header = ["STEP", "KIND", "OPTIONS"] if not states else ["STEP", "STATE", "ATTEMPTS", "DURATION", "NOTE"]
    return table(header, body)
