"""Read-only lookups in a snapshot's frame tree, by step path.

Adapters that did not witness a dispatch (a controller restarted between writing a checkpoint
and creating the tasks it asked for) rebuild it here from the checkpoint alone.
"""

from __future__ import annotations

from plait._core.definition import ChildNode, Definition, ForkNode, LoopNode, Node, RouteNode, TaskNode
from plait._core.events import DispatchTask
from plait._core.snapshot import Frame, Snapshot


def locate(definition: Definition, snapshot: Snapshot, path: str) -> tuple[Node, Frame] | None:
    """The node executing at ``path`` and its state, or ``None`` when nothing runs there now."""
    if snapshot.root is None:
        return None
    parts = path.split("/")
    steps: tuple[Node, ...] = definition.steps
    frame: Frame = snapshot.root
    i = 0
    while i < len(parts):
        if not parts[i].isdigit() or frame.get("pos") != int(parts[i]) or frame.get("cur") is None:
            return None
        node, state = steps[int(parts[i])], frame["cur"]
        i += 1
        if i == len(parts):
            return node, state
        part = parts[i]
        if isinstance(node, ForkNode):
            if part == "j":
                return (node.join, state["join"]) if state.get("join") is not None and i + 1 == len(parts) else None
            branch = state["branches"][int(part)]
            if branch is None:
                return None
            steps, frame, i = node.branches[int(part)].steps, branch, i + 1
        elif isinstance(node, RouteNode):
            if part == "k":
                return (node.key, state["key"]) if state.get("key") is not None and i + 1 == len(parts) else None
            chosen = node.branch_for(state["choice"]) if state.get("choice") is not None else None
            if part != "r" or chosen is None or state.get("frame") is None:
                return None
            steps, frame, i = chosen, state["frame"], i + 1
        elif isinstance(node, LoopNode):
            if int(part) != state["iteration"]:
                return None
            steps, frame, i = node.body, state["frame"], i + 1
        elif isinstance(node, ChildNode):
            steps, frame = node.steps, state["frame"]
        else:
            return None
    return None


def in_flight(definition: Definition, snapshot: Snapshot) -> list[DispatchTask]:
    """The dispatches of every attempt the snapshot says is running."""
    dispatches = []
    for path, attempt in snapshot.running.items():
        found = locate(definition, snapshot, path)
        if found is None:
            continue
        node, state = found
        if not isinstance(node, TaskNode):
            continue
        dispatches.append(
            DispatchTask(
                path,
                node.id,
                node.task,
                attempt,
                state.get("input"),
                node.timeout_secs,
                node.queue or definition.queue,
                node.priority,
            )
        )
    return dispatches
