"""Step paths: their grammar, and finding the step a path names in a snapshot's frame tree.

A path names one execution of one node (see :mod:`plait._core.events`). A sequence numbers its
steps (``"2"``); inside a composite step the next part says where the way goes on: a fork's
branch index, or ``j`` for its join; a route's ``k`` (its key task) or ``r`` (the chosen branch);
a loop's iteration. A child flow's steps go on without a part of their own. The builders here
are the only place paths are put together, :func:`resolve` the only place they are taken apart:
the engine delivers events along it, and adapters that did not witness a dispatch (a controller
restarted between writing a checkpoint and creating the tasks it asked for) rebuild it with
:func:`in_flight`. The failure handler's task has the path ``on_failure``, outside the tree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import assert_never, cast

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
from plait._core.events import DispatchTask
from plait._core.snapshot import (
    ChildState,
    ForkState,
    LoopState,
    NodeState,
    RouteState,
    SequenceFrame,
    Snapshot,
    TaskState,
)

ON_FAILURE = "on_failure"  # the failure handler's task: outside the frame tree
JOIN = "j"  # a fork's join task
KEY = "k"  # a route's key task
ROUTE = "r"  # a route's chosen branch


def at(prefix: str, position: int) -> str:
    """The path of step ``position`` of the sequence whose steps' paths start with ``prefix``."""
    return f"{prefix}{position}"


def within(path: str, part: str | int | None = None) -> str:
    """The prefix of the steps of the sequence ``part`` (None: a child flow's) of the step at ``path``."""
    return f"{path}/" if part is None else f"{path}/{part}/"


def task_in(path: str, part: str) -> str:
    """The path of the join (``JOIN``) or key (``KEY``) task of the step at ``path``."""
    return f"{path}/{part}"


def new_sequence() -> SequenceFrame:
    return {"pos": -1, "cur": None}


@dataclass(slots=True)
class Hop:
    """One sequence on the way to a step: its current step ``node``, with ``state``, is at ``path``.

    ``via`` is the part of ``node`` the way goes on in (a branch index, ``j``, ``k``, ``r``, an
    iteration, or ``""`` for a child flow's steps); None when ``node`` is the step itself.
    """

    steps: tuple[Node, ...]
    frame: SequenceFrame
    prefix: str
    node: Node
    state: NodeState
    path: str
    via: str | None = None


def resolve(definition: Definition, snapshot: Snapshot, path: str) -> list[Hop] | None:
    """The way from the root to the step executing at ``path``, or None when nothing runs there now.

    The step is the last hop's node, or its join or key task when the last ``via`` is ``j`` or ``k``
    (see :func:`target`).
    """
    if snapshot.root is None:
        return None
    parts = path.split("/")
    hops: list[Hop] = []
    steps, frame, prefix, i = definition.steps, snapshot.root, "", 0
    while True:
        state = frame["cur"]
        if not parts[i].isdigit() or frame["pos"] != int(parts[i]) or state is None:
            return None
        node = steps[frame["pos"]]
        hop = Hop(steps, frame, prefix, node, state, at(prefix, frame["pos"]))
        hops.append(hop)
        i += 1
        if i == len(parts):
            return hops
        hop.via = "" if isinstance(node, ChildNode) else parts[i]
        if hop.via in (JOIN, KEY):
            return hops if i + 1 == len(parts) and _part_task(node, state, hop.via) is not None else None
        inner = _sequence_in(node, state, hop.path, hop.via)
        if inner is None:
            return None
        steps, frame, prefix = inner
        if hop.via:  # a child flow's steps take no part of the path
            i += 1


def target(hops: list[Hop]) -> tuple[Node, NodeState, str]:
    """The step at the end of a resolved way: its node, state and path."""
    last = hops[-1]
    if last.via in (JOIN, KEY):
        found = _part_task(last.node, last.state, last.via)
        assert found is not None
        return found[0], found[1], task_in(last.path, last.via)
    return last.node, last.state, last.path


def _part_task(node: Node, state: NodeState, via: str) -> tuple[TaskNode, TaskState] | None:
    """The running join (``j``) of a fork or key task (``k``) of a route."""
    if via == JOIN and isinstance(node, ForkNode):
        join = cast(ForkState, state)["join"]
        return (node.join, join) if join is not None else None
    if via == KEY and isinstance(node, RouteNode):
        key = cast(RouteState, state)["key"]
        return (node.key, key) if key is not None else None
    return None


def _sequence_in(
    node: Node, state: NodeState, path: str, via: str
) -> tuple[tuple[Node, ...], SequenceFrame, str] | None:
    """The sequence running in part ``via`` of ``node``: its steps, frame and path prefix."""
    if isinstance(node, ForkNode):
        fork = cast(ForkState, state)
        index = int(via) if via.isdigit() else len(node.branches)
        branch = fork["branches"][index] if index < len(node.branches) else None
        return (node.branches[index].steps, branch, within(path, index)) if branch is not None else None
    if isinstance(node, RouteNode):
        route = cast(RouteState, state)
        chosen = node.branch_for(route["choice"]) if route["choice"] is not None else None
        if via != ROUTE or chosen is None or route["frame"] is None:
            return None
        return chosen, route["frame"], within(path, ROUTE)
    if isinstance(node, LoopNode):
        loop = cast(LoopState, state)
        return (node.body, loop["frame"], within(path, via)) if via == str(loop["iteration"]) else None
    if isinstance(node, ChildNode):
        return node.steps, cast(ChildState, state)["frame"], within(path)
    if isinstance(node, TaskNode | DelayNode | SignalNode):
        return None
    assert_never(node)


def in_flight(definition: Definition, snapshot: Snapshot) -> list[DispatchTask]:
    """The dispatches of every attempt the snapshot says is running."""
    dispatches = []
    for path, attempt in snapshot.running.items():
        if path == ON_FAILURE and definition.on_failure is not None and snapshot.failure_handler is not None:
            handler = definition.on_failure
            dispatches.append(
                DispatchTask.of(definition, handler, path, attempt, snapshot.failure_handler.get("input"))
            )
            continue
        hops = resolve(definition, snapshot, path)
        if hops is None:
            continue
        node, state, _ = target(hops)
        if isinstance(node, TaskNode):
            dispatches.append(DispatchTask.of(definition, node, path, attempt, cast(TaskState, state).get("input")))
    return dispatches
