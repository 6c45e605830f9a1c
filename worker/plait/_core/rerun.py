"""Continuing a stopped instance: rerun it from its failed step or an earlier one, or fork it.

``rerun(definition, snapshot, step, step_input, now)`` takes a ``failed`` or ``cancelled``
snapshot and returns the engine's :class:`~plait._core.engine.Decision`: the snapshot running
again and the tasks to dispatch. Every result recorded before the rerun point stays: outputs
that later steps already consumed are not needed, inputs of unfinished steps are in the
checkpoint. Without ``step``, what was unfinished when the instance stopped runs again (the
failed step, and the steps that were running or waiting beside it); with ``step``, that step
runs again on ``step_input`` (the input it had: the checkpoint dropped it once the step
succeeded, so the adapter reads it from the step's task record, at the path :func:`locate`
gives), and everything after it in its sequence runs again too. :func:`fork` does the same on
a copy, for a new instance.

A step to rerun from must be a task step of a sequence the instance is still in (the root
sequence, or a branch, route, loop iteration or child flow it had not left), at or before
where that sequence got to. Anything else is refused with :class:`RerunRefused`, which says
which steps qualify.

Attempt numbers go on from the earlier runs' (``Snapshot.attempts_used``), so an adapter that
names task records by path and attempt never reuses a name. Called by the operator when it takes
the ``plait.dev/retry`` annotation or starts an instance with ``spec.forkFrom``.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any, cast

from plait._core import snapshot as st
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
)
from plait._core.engine import Decision, restart
from plait._core.frames import JOIN, KEY, ROUTE, at, task_in, within
from plait._core.snapshot import ChildState, ForkState, LoopState, RouteState, SequenceFrame, Snapshot, TaskState
from plait.errors import RerunRefused

Sequence = tuple[tuple[Node, ...], SequenceFrame, str]  # steps, frame, path prefix


def rerun(definition: Definition, snapshot: Snapshot, step: str | None, step_input: Any, now: float) -> Decision:
    """``snapshot`` (failed or cancelled) running again from ``step``, or from what was unfinished."""
    if snapshot.status not in (st.FAILED, st.CANCELLED):
        raise RerunRefused(
            f"instance {snapshot.instance_id!r} is {snapshot.status}: only a failed or cancelled instance can be rerun"
        )
    return _go_on(definition, snapshot, step, step_input, now)


def fork(
    definition: Definition, source: Snapshot, instance_id: str, step: str | None, step_input: Any, now: float
) -> Decision:
    """A new instance ``instance_id`` going on from a copy of ``source``'s checkpoint (``source`` is not changed).

    ``source`` may be in any state; attempts it has in flight run again in the copy.
    """
    snapshot = copy.deepcopy(source)
    snapshot.instance_id = instance_id
    snapshot.running, snapshot.ready, snapshot.timers, snapshot.waiting_signals = {}, [], {}, {}
    return _go_on(definition, snapshot, step, step_input, now)


def locate(definition: Definition, snapshot: Snapshot, step: str) -> str:
    """The path ``step`` ran at, where a rerun from it would start it again (its task records are there)."""
    _, _, prefix, index = _find(definition, snapshot, step)
    return at(prefix, index)


def unfinished(definition: Definition, snapshot: Snapshot) -> list[str]:
    """Paths of the steps that had not finished when the instance stopped (tasks, delays, signal waits)."""
    if snapshot.root is None:
        return []
    return [path for sequence in _live(definition.steps, snapshot.root, "") for path in _unfinished_in(*sequence)]


def _go_on(definition: Definition, snapshot: Snapshot, step: str | None, step_input: Any, now: float) -> Decision:
    if snapshot.root is None:
        raise RerunRefused(f"instance {snapshot.instance_id!r} never started: there is nothing to rerun")
    if step is not None:
        _, frame, _, index = _find(definition, snapshot, step)
        snapshot.attempts_used = {node: p["attempts"] for node, p in snapshot.steps.items() if p.get("attempts")}
        first = snapshot.attempts_used.get(step, 0)
        task: TaskState = {"attempt": first, "failures": 0, "lost": 0, "state": "ready", "input": step_input}
        frame["pos"], frame["cur"] = index, task
    paths = unfinished(definition, snapshot)
    if not paths:
        raise RerunRefused(
            f"instance {snapshot.instance_id!r} left no step unfinished (it {snapshot.status} after its last step "
            f"finished); name the step to rerun from (one of: {', '.join(_candidates(definition, snapshot))})"
        )
    snapshot.output = snapshot.error = snapshot.paused = snapshot.cancelled = snapshot.failure_handler = None
    return restart(definition, snapshot, paths, now)


def _find(definition: Definition, snapshot: Snapshot, step: str) -> tuple[tuple[Node, ...], SequenceFrame, str, int]:
    """The live sequence holding task step ``step`` at or before its position, and the step's index there."""
    node = definition.nodes.get(step)
    if node is None:
        raise RerunRefused(f"workflow {definition.name!r} has no step {step!r} (its task steps: {_tasks(definition)})")
    if not isinstance(node, TaskNode):
        raise RerunRefused(
            f"step {step!r} is a {node.kind}: rerun from a task step (the one before it, or the first one inside it)"
        )
    if snapshot.root is not None:
        for steps, frame, prefix in _live(definition.steps, snapshot.root, ""):
            for index, candidate in enumerate(steps[: frame["pos"] + 1]):
                if candidate is node:
                    return steps, frame, prefix, index
    raise RerunRefused(
        f"step {step!r} is not on the way to where instance {snapshot.instance_id!r} stopped (it did not run yet, "
        "or it ran in a part of the workflow that had finished); rerun from one of: "
        + ", ".join(_candidates(definition, snapshot))
    )


def _candidates(definition: Definition, snapshot: Snapshot) -> list[str]:
    if snapshot.root is None:
        return []
    return [
        candidate.id
        for steps, frame, _ in _live(definition.steps, snapshot.root, "")
        for candidate in steps[: frame["pos"] + 1]
        if isinstance(candidate, TaskNode)
    ]


def _tasks(definition: Definition) -> str:
    return ", ".join(node.id for node in definition.tasks() if node is not definition.on_failure)


def _live(steps: tuple[Node, ...], frame: SequenceFrame, prefix: str) -> Iterator[Sequence]:
    """``frame`` and every sequence nested in its current step that has not finished, outermost first."""
    yield steps, frame, prefix
    pos, state = frame["pos"], frame["cur"]
    if state is None or not 0 <= pos < len(steps):
        return
    node, path = steps[pos], at(prefix, pos)
    if isinstance(node, ForkNode):
        for index, branch in enumerate(cast(ForkState, state)["branches"]):
            if branch is not None:
                yield from _live(node.branches[index].steps, branch, within(path, index))
    elif isinstance(node, RouteNode):
        route = cast(RouteState, state)
        chosen = node.branch_for(route["choice"]) if route["choice"] is not None else None
        if chosen is not None and route["frame"] is not None:
            yield from _live(chosen, route["frame"], within(path, ROUTE))
    elif isinstance(node, LoopNode):
        loop = cast(LoopState, state)
        yield from _live(node.body, loop["frame"], within(path, loop["iteration"]))
    elif isinstance(node, ChildNode):
        yield from _live(node.steps, cast(ChildState, state)["frame"], within(path))


def _unfinished_in(steps: tuple[Node, ...], frame: SequenceFrame, prefix: str) -> Iterator[str]:
    """The unfinished step a sequence's current step is itself (nested sequences come on their own)."""
    pos, state = frame["pos"], frame["cur"]
    if state is None or not 0 <= pos < len(steps):
        return
    node, path = steps[pos], at(prefix, pos)
    if isinstance(node, TaskNode):
        if cast(TaskState, state)["state"] != "done":
            yield path
    elif isinstance(node, DelayNode):
        if "value" in state:
            yield path
    elif isinstance(node, SignalNode):
        yield path
    elif isinstance(node, ForkNode):
        join = cast(ForkState, state)["join"]
        if join is not None and join["state"] != "done":
            yield task_in(path, JOIN)
    elif isinstance(node, RouteNode):
        route = cast(RouteState, state)
        if route["choice"] is None and route["key"] is not None and route["key"]["state"] != "done":
            yield task_in(path, KEY)
