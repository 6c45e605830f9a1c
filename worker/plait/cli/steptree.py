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
from typing import Any

from plait.cli.format import compact, duration, paint, span, table

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

    @property
    def depth(self) -> int:
        return len(self.guides)


@dataclass
class _Context:
    nodes: Mapping[str, Mapping[str, Any]]
    summaries: Mapping[str, Mapping[str, Any]]
    errors: Mapping[str, str]
    phase: str | None
    with_policy: bool
    seen: set[str] = field(default_factory=set)


def step_rows(
    definition: Mapping[str, Any] | None,
    status: Mapping[str, Any] | None = None,
    tasks: Iterable[Mapping[str, Any]] = (),
) -> list[StepRow]:
    """The tree of ``definition`` (a WorkflowDefinition ``spec``) with the states from ``status``.

    Without a status every step is ``pending`` and notes show each step's policy (retries,
    timeout); without a definition the rows are the flat ``status.steps``.
    """
    status = status or {}
    summaries = {s["id"]: s for s in status.get("steps") or [] if "id" in s}
    errors = last_errors(tasks)
    phase = status.get("phase")
    if not definition:
        return [_leaf_row(step_id, "task", f"{step_id}", (), summaries, errors, phase) for step_id in summaries]
    nodes = {n["id"]: n for n in definition.get("nodes") or []}
    context = _Context(nodes, summaries, errors, phase, with_policy=not status)
    rows = _sequence(context, list(definition.get("steps") or []), ())
    # steps the summary knows but the definition does not (should not happen): show them anyway
    rows += [_leaf_row(i, "task", i, (), summaries, errors, phase) for i in summaries if i not in context.seen]
    return rows


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


def _node(context: _Context, node_id: str, guides: tuple[bool, ...]) -> list[StepRow]:
    node = context.nodes.get(node_id, {"id": node_id, "kind": "task"})
    context.seen.add(node_id)
    kind = node.get("kind", "task")
    if kind in ("task", "delay", "signal"):
        return [_leaf(context, node, kind, node_id, guides)]
    children: list[tuple[str, str, list[str]]] = []  # (label, kind, step ids) of each group
    extra_first: list[tuple[str, str]] = []  # single steps shown before the groups (route key)
    extra_last: list[tuple[str, str]] = []  # after (fork join)
    if kind == "fork":
        label = f"fork ({len(node.get('branches') or [])} branches)"
        children = [(b["name"], "branch", list(b.get("steps") or [])) for b in node.get("branches") or []]
        if node.get("join"):
            extra_last.append((node["join"], "join"))
    elif kind == "route":
        label = f"route {node_id}"
        if node.get("key"):
            extra_first.append((node["key"], "key"))
        children = [(r["key"], "branch", list(r.get("steps") or [])) for r in node.get("routes") or []]
        if node.get("default") is not None:
            children.append(("default", "branch", list(node.get("default") or [])))
    elif kind == "loop":
        label = f"loop {node_id} (max {node.get('maxIterations', '?')})"
        children = [("", "body", list(node.get("body") or []))]
    elif kind == "child":
        label = f"flow {node.get('workflow') or node_id}"
        children = [("", "body", list(node.get("steps") or []))]
    else:
        label = f"{node_id} ({kind})"
    items: list[tuple[str, str, Any]] = [(i, k, None) for i, k in extra_first]
    items += [(lbl, k, ids) for lbl, k, ids in children]
    items += [(i, k, None) for i, k in extra_last]
    # a group whose only step has the group's name (fork branches of one task) or no label (loop
    # and child bodies) shows its steps directly
    flat: list[tuple[str, str, Any]] = []
    for item_label, item_kind, ids in items:
        if ids is not None and (not item_label or (len(ids) == 1 and ids[0] == item_label)):
            flat += [(i, "step", None) for i in ids]
        else:
            flat.append((item_label, item_kind, ids))
    rows: list[StepRow] = []
    groups: list[list[StepRow]] = []
    for index, (item_label, item_kind, ids) in enumerate(flat):
        child_guides = (*guides, index == len(flat) - 1)
        if ids is None:
            sub = _node(context, item_label, child_guides)
            if item_kind in ("key", "join") and sub:
                sub[0] = replace(sub[0], label=f"{sub[0].label} ({item_kind})", kind=item_kind)
        else:
            inner = _sequence(context, ids, child_guides)
            group = StepRow(
                id=f"{node_id}/{item_label}", label=item_label, kind="branch", guides=child_guides, leaf=False
            )
            sub = [_aggregate(group, inner, context.phase), *inner]
        groups.append(sub)
        rows += sub
    if kind == "route":
        rows = _skip_unchosen(rows, groups, context.phase)
    head = StepRow(id=node_id, label=label, kind=kind, guides=guides, leaf=False)
    if kind == "loop":
        runs = max((r.runs for r in rows if r.leaf), default=0)
        head = replace(head, runs=runs, note=f"{runs} iteration{'s' if runs != 1 else ''}" if runs else "")
    return [_aggregate(head, rows, context.phase), *rows]


def _sequence(context: _Context, ids: Sequence[str], guides: tuple[bool, ...]) -> list[StepRow]:
    rows: list[StepRow] = []
    for index, node_id in enumerate(ids):
        rows += _node(context, node_id, (*guides, index == len(ids) - 1))
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


def _leaf(context: _Context, node: Mapping[str, Any], kind: str, node_id: str, guides: tuple[bool, ...]) -> StepRow:
    if kind == "delay":
        label = f"{node_id} (delay {compact(node.get('seconds'))})"
    elif kind == "signal":
        label = f"{node_id} (signal {node.get('signal')!r})" if node.get("signal") != node_id else f"{node_id} (signal)"
    else:
        label = node_id
    row = _leaf_row(node_id, kind, label, guides, context.summaries, context.errors, context.phase)
    if context.with_policy:
        row = replace(row, note=policy(node))
    return row


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


def policy(node: Mapping[str, Any]) -> str:
    """A task node's options in a few words: ``retries 3 (0.5s x2, max 5s), timeout 10s, queue q``."""
    parts = []
    retry = node.get("retry")
    if retry:
        backoff = f"{compact(retry.get('initialDelaySeconds'))} x{retry.get('backoffMultiplier', 2):g}"
        if retry.get("maxDelaySeconds") is not None:
            backoff += f", max {compact(retry['maxDelaySeconds'])}"
        parts.append(f"retries {retry.get('maxRetries')} ({backoff})")
    if node.get("timeoutSeconds") and node.get("kind") != "delay":
        parts.append(f"timeout {compact(node['timeoutSeconds'])}")
        if node.get("kind") == "signal":
            parts[-1] += f" then {node.get('onTimeout') or 'fail'}"
    if node.get("queue"):
        parts.append(f"queue {node['queue']}")
    if node.get("priority") is not None:
        parts.append(f"priority {node['priority']}")
    return ", ".join(parts)


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
