"""Upgrade in place: moving a running instance's checkpoint onto another version of its workflow.

``plan_upgrade(old, new, snapshot)`` returns an :class:`Upgrade` (the checkpoint for ``new``,
with every path that changed) or an :class:`UpgradeRefused` naming the step that does not map
and why. Steps are matched by id (a fork, whose id the authoring API derives from its branches'
first tasks, also by its join step). The rules:

1. Every step the instance is at (a task running, retrying, ready or held by a pause; a delay or
   signal wait; a fork's join or a route's key task) and every composite step it is inside
   exists in ``new`` with the same kind, in the sequence that corresponds to the one it is in
   (the same fork branch by name, the branch of the route key taken, the loop's body, the child
   flow's steps). A recorded result still waiting to be used (a finished fork branch's, for its
   join) needs its branch in ``new``; a fork still running needs ``new`` to add no branch (the
   new branch's input is gone).
2. The position is representable: each sequence the instance is in goes on from the same step.
3. No step runs twice: a step the instance finished on its way (before its position in a
   sequence, in a finished fork branch, a route's key once its branch was taken) must not be one
   ``new`` would still start from there. Loop bodies are excepted: their steps run again in the
   next iteration by design.

Steps the instance finished whose results were used may be gone from ``new``; steps ``new`` adds
before the position (or in a branch already passed) do not run for this instance and are listed
in :attr:`Upgrade.skipped`. :func:`snapshot_at` builds the checkpoint of an instance at a given
step, for ``plait definitions diff`` to say whether an instance there could move.

Pure: called by the operator (``plait.dev/upgrade``) and the CLI; no I/O.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, assert_never, cast

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
    parts,
    walk,
)
from plait._core.frames import JOIN, KEY, ROUTE, at, task_in, within
from plait._core.snapshot import (
    ChildState,
    DelayState,
    ForkState,
    LoopState,
    NodeState,
    RouteState,
    SequenceFrame,
    SignalWait,
    Snapshot,
    TaskState,
    Timer,
)


@dataclass(frozen=True, slots=True)
class Upgrade:
    """The checkpoint for the target version; ``moved`` maps each path of a step the instance is at
    that changed (old path to new path); ``skipped`` lists steps of the target that will not run for
    this instance because they come before where it is."""

    snapshot: Snapshot
    moved: dict[str, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class UpgradeRefused:
    """Why the checkpoint does not map: ``step`` is the step (node id) that does not, if there is one."""

    step: str | None
    reason: str


class _Refuse(Exception):
    def __init__(self, step: str | None, reason: str) -> None:
        super().__init__(reason)
        self.step = step
        self.reason = reason


def plan_upgrade(
    old: Definition, new: Definition, snapshot: Snapshot, *, instance_input: Any = None
) -> Upgrade | UpgradeRefused:
    """``snapshot`` (of ``old``, not changed) moved onto ``new``, or why it cannot be.

    ``instance_input`` is the instance's input, kept in the checkpoint when ``new`` has a failure
    handler and ``old`` had none.
    """
    assert snapshot.definition_hash == old.hash, "the snapshot runs another version"
    if snapshot.root is None:
        return UpgradeRefused(None, f"instance {snapshot.instance_id!r} has not started")
    if snapshot.finished:
        return UpgradeRefused(None, f"instance {snapshot.instance_id!r} is {snapshot.status}: there is nothing to move")
    if snapshot.failure_handler is not None:
        return UpgradeRefused(
            old.on_failure.id if old.on_failure else None, "the instance failed: its failure handler runs"
        )
    if new.hash == old.hash:
        return Upgrade(copy.deepcopy(snapshot))
    mapper = _Mapper(old, new)
    try:
        root = mapper.sequence(old.steps, new.steps, snapshot.root, "", "")
        mapper.check_no_step_runs_twice()
    except _Refuse as refused:
        return UpgradeRefused(refused.step, refused.reason)
    mapped = copy.deepcopy(snapshot)
    mapped.root = root
    mapped.definition_hash = new.hash
    paths = mapper.paths
    mapped.running = {paths[path]: attempt for path, attempt in snapshot.running.items()}
    mapped.ready = [paths[path] for path in snapshot.ready]
    mapped.timers = {paths[path]: Timer(*timer) for path, timer in snapshot.timers.items()}
    mapped.waiting_signals = {
        paths[path]: SignalWait(cast(SignalNode, new.nodes[wait.node_id]).signal, wait.node_id)
        for path, wait in snapshot.waiting_signals.items()
    }
    if new.on_failure is None:
        mapped.input = None
    elif old.on_failure is None:
        mapped.input = instance_input
    mapped.events += 1
    moved = {old_path: new_path for old_path, new_path in paths.items() if old_path != new_path}
    skipped = [
        node.id
        for node in walk(new.steps)
        if node.id not in old.nodes and node.id not in mapper.future and _is_step(node)
    ]
    return Upgrade(mapped, moved, skipped)


def _is_step(node: Node) -> bool:
    return isinstance(node, TaskNode | DelayNode | SignalNode)


def _same(old: Node, new: Node) -> bool:
    """The same step: the same id; a fork (whose id the authoring API derives from its branches) also
    by its join step."""
    if old.id == new.id:
        return True
    return isinstance(old, ForkNode) and isinstance(new, ForkNode) and old.join.id == new.join.id


def _ids(steps: tuple[Node, ...]) -> set[str]:
    return {node.id for node in walk(steps)}


class _Mapper:
    """One walk down the old checkpoint's frames, building the new ones beside them.

    It learns on the way the paths of the steps the instance is at (``paths``), the steps it
    finished on its way (``finished``) and the steps the target would still start (``future``).
    """

    def __init__(self, old: Definition, new: Definition) -> None:
        self.old, self.new = old, new
        self.paths: dict[str, str] = {}
        self.finished: set[str] = set()
        self.future: set[str] = set()
        self.order = [node.id for node in walk(old.steps)]

    def check_no_step_runs_twice(self) -> None:
        """Rule 3."""
        again = self.finished & self.future
        if again:
            step = next(node_id for node_id in self.order if node_id in again)
            raise _Refuse(
                step, f"step {step!r} already ran, but the target would start it again from where the instance is"
            )

    def sequence(
        self, old: tuple[Node, ...], new: tuple[Node, ...], frame: SequenceFrame, old_prefix: str, new_prefix: str
    ) -> SequenceFrame:
        """Rules 1 and 2 for one sequence: its current step, found in ``new``, and what is inside it."""
        pos, state = frame["pos"], frame["cur"]
        if state is None or not 0 <= pos < len(old):
            raise _Refuse(None, "the instance is between two steps; try again at the next step boundary")
        node = old[pos]
        index = next((i for i, candidate in enumerate(new) if _same(node, candidate)), None)
        if index is None:
            if node.id in self.new.nodes:
                raise _Refuse(node.id, f"step {node.id!r}, where the instance is, is in another part of the target")
            raise _Refuse(node.id, f"step {node.id!r}, where the instance is, is not in the target")
        target = new[index]
        if target.kind != node.kind:
            raise _Refuse(node.id, f"step {node.id!r} is a {node.kind} here and a {target.kind} in the target")
        self.finished |= _ids(old[:pos])
        self.future |= _ids(new[index + 1 :])
        cur = self.node(node, target, state, at(old_prefix, pos), at(new_prefix, index))
        return {"pos": index, "cur": cur}

    def node(self, old: Node, new: Node, state: NodeState, old_path: str, new_path: str) -> NodeState:
        """The state of ``new`` for the step ``old`` in ``state`` (both of one kind)."""
        if isinstance(old, TaskNode | DelayNode | SignalNode):
            self.paths[old_path] = new_path
            return copy.deepcopy(state)
        if isinstance(old, ForkNode):
            assert isinstance(new, ForkNode)
            return self.fork(old, new, cast(ForkState, state), old_path, new_path)
        if isinstance(old, RouteNode):
            assert isinstance(new, RouteNode)
            return self.route(old, new, cast(RouteState, state), old_path, new_path)
        if isinstance(old, LoopNode):
            assert isinstance(new, LoopNode)
            loop = cast(LoopState, state)
            iteration = loop["iteration"]
            self.future |= _ids(new.body) - _ids(old.body)  # the next iterations; the old body's re-run by design
            frame = self.sequence(
                old.body, new.body, loop["frame"], within(old_path, iteration), within(new_path, iteration)
            )
            return {"iteration": iteration, "frame": frame}
        if isinstance(old, ChildNode):
            assert isinstance(new, ChildNode)
            child = cast(ChildState, state)
            return {"frame": self.sequence(old.steps, new.steps, child["frame"], within(old_path), within(new_path))}
        assert_never(old)

    def fork(self, old: ForkNode, new: ForkNode, state: ForkState, old_path: str, new_path: str) -> ForkState:
        old_branches = {branch.name: (index, branch) for index, branch in enumerate(old.branches)}
        new_names = {branch.name for branch in new.branches}
        join = state["join"]
        if join is not None:  # every branch finished: the join runs
            if new.join.id != old.join.id:
                raise _Refuse(old.join.id, f"the join of fork {old.id!r}, which runs, is {new.join.id!r} in the target")
            self.finished |= {node.id for branch in old.branches for node in walk(branch.steps)}
            self.paths[task_in(old_path, JOIN)] = task_in(new_path, JOIN)
            return {"branches": [None] * len(new.branches), "results": {}, "join": copy.deepcopy(join)}
        for name, (index, branch) in old_branches.items():
            if name in new_names:
                continue
            frame = state["branches"][index]
            if frame is not None:
                current = branch.steps[frame["pos"]].id if 0 <= frame["pos"] < len(branch.steps) else old.id
                raise _Refuse(
                    current, f"branch {name!r} of fork {old.id!r}, where step {current!r} runs, is not in the target"
                )
            last = branch.steps[-1].id
            raise _Refuse(
                last,
                f"branch {name!r} of fork {old.id!r} finished, and its result for the join has no branch in the target",
            )
        fork: ForkState = {"branches": [], "results": {}, "join": None}
        for new_index, branch in enumerate(new.branches):
            if branch.name not in old_branches:
                raise _Refuse(
                    old.id,
                    f"fork {old.id!r} runs, and the target adds branch {branch.name!r} to it (the input it would start on is gone)",
                )
            index, before = old_branches[branch.name]
            frame = state["branches"][index]
            if frame is None:
                self.finished |= _ids(before.steps)
                fork["branches"].append(None)
                fork["results"][branch.name] = copy.deepcopy(state["results"][branch.name])
            else:
                fork["branches"].append(
                    self.sequence(
                        before.steps, branch.steps, frame, within(old_path, index), within(new_path, new_index)
                    )
                )
        self.future.add(new.join.id)
        return fork

    def route(self, old: RouteNode, new: RouteNode, state: RouteState, old_path: str, new_path: str) -> RouteState:
        choice = state["choice"]
        if choice is None:  # the key task runs: any branch of the target may come next
            if new.key.id != old.key.id:
                raise _Refuse(
                    old.key.id, f"the key task of route {old.id!r}, which runs, is {new.key.id!r} in the target"
                )
            self.paths[task_in(old_path, KEY)] = task_in(new_path, KEY)
            self.future |= {node.id for part in parts(new)[1:] for node in walk(part.steps)}
            return copy.deepcopy(state)
        self.finished.add(old.key.id)
        before, after = old.branch_for(choice), new.branch_for(choice)
        frame = state["frame"]
        if before is None or frame is None:
            raise _Refuse(old.id, f"route {old.id!r} is between its key and its branch")
        if after is None:
            raise _Refuse(old.id, f"route {old.id!r} took key {choice!r}, for which the target has no branch")
        routed = self.sequence(before, after, frame, within(old_path, ROUTE), within(new_path, ROUTE))
        return {
            "input": copy.deepcopy(state["input"]),
            "key": copy.deepcopy(state["key"]),
            "choice": choice,
            "frame": routed,
        }


# -- an instance at a given step (for plait definitions diff) ----------------------------------------


def steps_of(definition: Definition) -> list[str]:
    """The ids of the steps an instance can be at (tasks, delays, signal waits), in definition order."""
    return [node.id for node in walk(definition.steps) if _is_step(node) and node is not definition.on_failure]


def snapshot_at(definition: Definition, step: str) -> Snapshot:
    """The checkpoint of an instance at ``step`` (running it, or waiting there), with every step before
    it finished: the other branches of a fork it is in finished too, a loop in its first iteration."""
    snapshot = Snapshot(instance_id="at-" + step, workflow=definition.name, definition_hash=definition.hash)
    snapshot.root = _frame_to(definition.steps, step, "", snapshot)
    if snapshot.root is None:
        raise KeyError(step)
    snapshot.status = (
        st.IN_PROGRESS if snapshot.running else st.AWAITING_SIGNAL if snapshot.waiting_signals else st.WAITING
    )
    return snapshot


def _frame_to(steps: tuple[Node, ...], step: str, prefix: str, snapshot: Snapshot) -> SequenceFrame | None:
    for index, node in enumerate(steps):
        state = _state_to(node, step, at(prefix, index), snapshot)
        if state is not None:
            return {"pos": index, "cur": state}
    return None


def _state_to(node: Node, step: str, path: str, snapshot: Snapshot) -> NodeState | None:
    """The state of ``node`` on the way to ``step``, or None if ``step`` is not in it."""
    if isinstance(node, TaskNode | DelayNode | SignalNode):
        return _leaf(node, path, snapshot) if node.id == step else None
    if isinstance(node, ForkNode):
        if node.join.id == step:
            return {
                "branches": [None] * len(node.branches),
                "results": {},
                "join": _task(node.join, task_in(path, JOIN), snapshot),
            }
        for index, branch in enumerate(node.branches):
            frame = _frame_to(branch.steps, step, within(path, index), snapshot)
            if frame is not None:
                others = {other.name: None for other in node.branches if other is not branch}
                frames: list[SequenceFrame | None] = [frame if other is branch else None for other in node.branches]
                return {"branches": frames, "results": others, "join": None}
        return None
    if isinstance(node, RouteNode):
        if node.key.id == step:
            return {"input": None, "key": _task(node.key, task_in(path, KEY), snapshot), "choice": None, "frame": None}
        done: TaskState = {"attempt": 1, "failures": 0, "lost": 0, "state": "done", "input": None}
        unbranched = [key for key in node.keys if key not in dict(node.branches)] + ["\0default"]
        for key, steps in [*node.branches, *([(unbranched[0], node.default)] if node.default is not None else [])]:
            frame = _frame_to(steps, step, within(path, ROUTE), snapshot)
            if frame is not None:
                return {"input": None, "key": done, "choice": key, "frame": frame}
        return None
    if isinstance(node, LoopNode):
        frame = _frame_to(node.body, step, within(path, 0), snapshot)
        return {"iteration": 0, "frame": frame} if frame is not None else None
    if isinstance(node, ChildNode):
        frame = _frame_to(node.steps, step, within(path), snapshot)
        return {"frame": frame} if frame is not None else None
    assert_never(node)


def _leaf(node: TaskNode | DelayNode | SignalNode, path: str, snapshot: Snapshot) -> NodeState:
    if isinstance(node, TaskNode):
        return _task(node, path, snapshot)
    if isinstance(node, DelayNode):
        snapshot.timers[path] = Timer(0.0, "delay", node.id)
        delay: DelayState = {"value": None}
        return delay
    snapshot.waiting_signals[path] = SignalWait(node.signal, node.id)
    return {}


def _task(node: TaskNode, path: str, snapshot: Snapshot) -> TaskState:
    snapshot.running[path] = 1
    return {"attempt": 1, "failures": 0, "lost": 0, "state": "running", "input": None}


def diff_steps(a: Definition, b: Definition) -> tuple[list[str], list[str], list[str]]:
    """Node ids added in ``b``, removed from ``a``, and changed between them (in definition order)."""
    before = {node["id"]: node for node in a.to_data()["nodes"]}
    after = {node["id"]: node for node in b.to_data()["nodes"]}
    added = [node_id for node_id in after if node_id not in before]
    removed = [node_id for node_id in before if node_id not in after]
    changed = [node_id for node_id in before if node_id in after and before[node_id] != after[node_id]]
    return added, removed, changed


def moves(a: Definition, b: Definition) -> Iterator[tuple[str, Upgrade | UpgradeRefused]]:
    """For each step of ``a``: whether an instance at that step could move to ``b``."""
    for step in steps_of(a):
        yield step, plan_upgrade(a, b, snapshot_at(a, step))
