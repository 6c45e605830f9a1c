"""The engine core: ``decide(definition, snapshot, event, now) -> Decision(snapshot, commands)``.

Every semantic of plait lives here once: sequencing, fork/join, routing, loops, child flows,
retries with backoff, durable delays, signals (buffered first-in first-out per name, with
timeouts), pause/unpause/cancel at task boundaries, aborts (a deadline), the failure handler,
restarts (a rerun, see :mod:`plait._core.rerun`), and what counts as a stale event.

A flow with a failure handler (``Flow(...).on_failure(fn)``) does not end at its failure: every
attempt in flight is stopped, the handler's task runs (path ``on_failure``, on the error and the
instance's input, with its own retries), and only then the instance ends ``failed`` with the
original error. The handler's own failure is recorded in its state and step summary and ends
the instance all the same: it never runs twice for one failure. The local
runner and the Kubernetes controller are adapters that carry out the commands and feed back the
events. No I/O and no clock: time comes in as ``now`` (seconds since the epoch).

Events for steps that are no longer waiting for them (a late result of a superseded attempt, a
timer that was cancelled, a second delivery of the same result) are ignored and reported with
``Decision.accepted = False``; that is what makes redelivery after a crash harmless.

The snapshot passed in is updated in place and returned in the decision; adapters load a fresh
one from their store for each event, so no caller sees a half-applied state.
"""

from __future__ import annotations

from collections.abc import Callable
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
)
from plait._core.events import (
    Abort,
    Cancel,
    CancelTask,
    Command,
    Complete,
    DispatchTask,
    Event,
    Fail,
    Pause,
    SetTimer,
    SignalReceived,
    Started,
    TaskFailed,
    TaskLost,
    TaskSucceeded,
    TaskTimedOut,
    TimerFired,
    Unpause,
)
from plait._core.frames import JOIN, KEY, ON_FAILURE, ROUTE, at, new_sequence, resolve, target, task_in, within
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
from plait.errors import DefinitionError

#: How many times an attempt may be lost (its worker vanished) before the step fails.
MAX_LOST_ATTEMPTS = 5
#: How many applied signal ids a snapshot remembers to refuse redeliveries. Adapters acknowledge
#: a signal at its source once the checkpoint holding it is written, so only the few signals
#: between that checkpoint and the acknowledgement can ever come back.
REMEMBERED_SIGNAL_IDS = 256


@dataclass(slots=True)
class Decision:
    snapshot: Snapshot
    commands: list[Command] = field(default_factory=list)
    accepted: bool = True


class _Done:
    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


class _Failed:
    __slots__ = ("error",)

    def __init__(self, error: str) -> None:
        self.error = error


Outcome = _Done | _Failed | None  # None: still running
#: What an event does to the step it reaches: ``leaf(node, state, path, detail, ctx)``, where
#: ``detail`` is the event's payload (an output, an error, a reason) or ``None``.
Leaf = Callable[[Node, NodeState, str, Any, "_Context"], Outcome]


class _Context(Decision):
    """The decision being made, with what the walk needs besides: the definition and the time.

    ``decide`` returns it as the :class:`Decision`: one object per event rather than two.
    """

    __slots__ = ("definition", "now", "track_steps")

    def __init__(self, definition: Definition, snapshot: Snapshot, now: float, track_steps: bool) -> None:
        self.snapshot = snapshot
        self.commands = []
        self.accepted = True
        self.definition = definition
        self.now = now
        self.track_steps = track_steps


def new_snapshot(definition: Definition, instance_id: str) -> Snapshot:
    return Snapshot(instance_id=instance_id, workflow=definition.name, definition_hash=definition.hash)


def decide(
    definition: Definition, snapshot: Snapshot, event: Event, now: float, *, track_steps: bool = True
) -> Decision:
    """Apply ``event`` to ``snapshot`` at time ``now``; return the snapshot and what to do next.

    ``track_steps=False`` leaves ``snapshot.steps``, the per-step summary shown to whoever watches
    the checkpoints, untouched: for adapters that show none (the local runner). Nothing else
    depends on it.
    """
    if snapshot.definition_hash != definition.hash:
        raise DefinitionError(
            f"instance {snapshot.instance_id!r} runs definition {snapshot.definition_hash[:12]} of "
            f"{snapshot.workflow!r}, not {definition.hash[:12]}; resume it with the definition it started with"
        )
    if snapshot.status in st.TERMINAL or (snapshot.root is None and not isinstance(event, Started | Cancel)):
        return Decision(snapshot, [], accepted=False)
    ctx = _Context(definition, snapshot, now, track_steps)
    ctx.accepted = _apply(event, ctx)
    if ctx.accepted:
        snapshot.events += 1
        _refresh_status(snapshot)
    return ctx


# -- event dispatch ---------------------------------------------------------------------------


def _apply(event: Event, ctx: _Context) -> bool:
    snapshot = ctx.snapshot
    if isinstance(event, TaskSucceeded):
        return _deliver(event.path, event.attempt, _succeeded, event.output, ctx)
    if isinstance(event, TaskFailed):
        return _deliver(event.path, event.attempt, _failed, event.error, ctx)
    if isinstance(event, TaskTimedOut):
        return _deliver(event.path, event.attempt, _timed_out, None, ctx)
    if isinstance(event, TaskLost):
        return _deliver(event.path, event.attempt, _lost, event.reason, ctx)
    if isinstance(event, TimerFired):
        timer = snapshot.timers.get(event.path)
        if timer is None or timer.at > ctx.now:
            return False
        return _deliver(event.path, None, _timer_fired, None, ctx)
    if isinstance(event, SignalReceived):
        return _signal(event, ctx)
    if isinstance(event, Started):
        if snapshot.root is not None:
            return False
        _start_root(event.input, ctx)
        return True
    if isinstance(event, Pause):
        if snapshot.paused is not None:
            return False
        snapshot.paused = {"reason": event.reason, "by": event.by}
        return True
    if isinstance(event, Unpause):
        if snapshot.paused is None:
            return False
        snapshot.paused = None
        ready, snapshot.ready = snapshot.ready, []
        for path in ready:
            _deliver(path, None, _release, None, ctx)
        return True
    if isinstance(event, Cancel):
        snapshot.cancelled = {"reason": event.reason, "by": event.by}
        _finish(ctx, st.CANCELLED)
        return True
    if isinstance(event, Abort):
        if snapshot.failure_handler is not None:
            return False  # failed already; the handler is bounded by its own timeout
        _conclude(_Failed(event.error), ctx)
        return True
    assert_never(event)


def _start_root(value: Any, ctx: _Context) -> None:
    if ctx.definition.on_failure is not None:
        ctx.snapshot.input = value
    frame = ctx.snapshot.root = new_sequence()
    _conclude(_advance(ctx.definition.steps, frame, "", value, ctx), ctx)


def _deliver(path: str, attempt: int | None, leaf: Leaf, detail: Any, ctx: _Context) -> bool:
    """Apply ``leaf`` to the step at ``path``; ``attempt`` must match a dispatched task's. False if stale.

    What the step's outcome means travels back up the way to it: a finished step moves its
    sequence on, a finished sequence its composite step (a branch, a route, a loop iteration).
    """
    snapshot = ctx.snapshot
    if attempt is not None and snapshot.running.get(path) != attempt:
        return False
    if path == ON_FAILURE:
        return _deliver_to_handler(leaf, detail, ctx)
    hops = resolve(ctx.definition, snapshot, path)
    if hops is None:
        return False
    outcome = leaf(*target(hops), detail, ctx)
    for hop in reversed(hops):
        if hop.via is not None and isinstance(outcome, _Done):
            outcome = _part_done(hop.node, hop.state, hop.path, hop.via, outcome.value, ctx)
        if not isinstance(outcome, _Done):
            break
        outcome = _advance(hop.steps, hop.frame, hop.prefix, outcome.value, ctx)
    if outcome is not None:
        _conclude(outcome, ctx)
    return True


def _conclude(outcome: Outcome, ctx: _Context) -> None:
    if isinstance(outcome, _Done):
        ctx.snapshot.output = outcome.value
        ctx.commands.append(Complete(outcome.value))
        _finish(ctx, st.COMPLETED)
    elif isinstance(outcome, _Failed):
        snapshot = ctx.snapshot
        snapshot.error = outcome.error
        handler = ctx.definition.on_failure
        if handler is None:
            ctx.commands.append(Fail(outcome.error))
            _finish(ctx, st.FAILED)
            return
        _stop_everything(ctx)
        failure = {
            "error": outcome.error,
            "input": snapshot.input,
            "instance_id": snapshot.instance_id,
            "workflow": snapshot.workflow,
        }
        state: TaskState = {"attempt": 0, "failures": 0, "lost": 0, "state": "ready", "input": failure}
        snapshot.failure_handler = state
        _dispatch(handler, state, ON_FAILURE, ctx)


def _deliver_to_handler(leaf: Leaf, detail: Any, ctx: _Context) -> bool:
    """Apply ``leaf`` to the failure handler's task; once it is done either way, the instance ends failed."""
    handler, state = ctx.definition.on_failure, ctx.snapshot.failure_handler
    if handler is None or state is None or state["state"] in ("done", "failed"):
        return False
    if leaf(handler, state, ON_FAILURE, detail, ctx) is not None:
        ctx.commands.append(Fail(ctx.snapshot.error or "failed"))
        _finish(ctx, st.FAILED)
    return True


def _finish(ctx: _Context, status: str) -> None:
    """End the instance: stop every attempt in flight and drop every timer."""
    _stop_everything(ctx)
    ctx.snapshot.status = status


def _stop_everything(ctx: _Context) -> None:
    snapshot = ctx.snapshot
    for path, attempt in snapshot.running.items():
        ctx.commands.append(CancelTask(path, attempt))
    snapshot.running = {}
    snapshot.ready = []
    snapshot.timers = {}
    snapshot.waiting_signals = {}


def _refresh_status(snapshot: Snapshot) -> None:
    if snapshot.status in st.TERMINAL:
        return
    if snapshot.paused is not None:
        snapshot.status = st.PAUSED
    elif snapshot.running or snapshot.ready or any(t.kind == "retry" for t in snapshot.timers.values()):
        snapshot.status = st.IN_PROGRESS
    elif snapshot.waiting_signals:
        snapshot.status = st.AWAITING_SIGNAL
    elif snapshot.timers:
        snapshot.status = st.WAITING
    else:
        snapshot.status = st.IN_PROGRESS


# -- walking the frame tree --------------------------------------------------------------------


def _advance(steps: tuple[Node, ...], frame: SequenceFrame, prefix: str, value: Any, ctx: _Context) -> Outcome:
    """Move ``frame`` past its current step with ``value``; start steps until one must wait."""
    pos = frame["pos"]
    while True:
        pos += 1
        if pos == len(steps):
            frame["pos"], frame["cur"] = pos, None
            return _Done(value)
        frame["pos"] = pos
        state, outcome = _start(steps[pos], value, at(prefix, pos), ctx)
        frame["cur"] = state
        if outcome is None:
            return None
        if isinstance(outcome, _Failed):
            return outcome
        value = outcome.value


def _part_done(node: Node, state: NodeState, path: str, via: str, value: Any, ctx: _Context) -> Outcome:
    """Part ``via`` of the composite ``node`` finished with ``value``: what that means for ``node``."""
    if isinstance(node, ForkNode):
        fork = cast(ForkState, state)
        if via == JOIN:
            return _Done(value)
        index = int(via)
        fork["branches"][index] = None
        fork["results"][node.branches[index].name] = value
        return _join_when_done(node, fork, path, ctx)
    if isinstance(node, RouteNode):
        route = cast(RouteState, state)
        if via == KEY:
            return _choose_route(node, route, path, value, ctx)
        return _Done({"branch": route["choice"], "result": value})
    if isinstance(node, LoopNode):
        loop = cast(LoopState, state)
        verdict = _next_iteration(node, loop, value)
        if isinstance(verdict, _Again):
            return _run_loop_body(node, loop, path, verdict.value, ctx)
        return verdict
    if isinstance(node, ChildNode):
        return _Done(value)
    if isinstance(node, TaskNode | DelayNode | SignalNode):
        raise AssertionError(f"{node.kind} {node.id!r} has no parts")
    assert_never(node)


# -- starting nodes ------------------------------------------------------------------------------


def _start(node: Node, value: Any, path: str, ctx: _Context) -> tuple[NodeState | None, Outcome]:
    """Begin ``node`` on ``value``: its new state, and its outcome if it finished at once."""
    if isinstance(node, TaskNode):
        first = ctx.snapshot.attempts_used.get(node.id, 0)  # after a rerun, attempt numbers go on from there
        task: TaskState = {"attempt": first, "failures": 0, "lost": 0, "state": "ready", "input": value}
        _dispatch(node, task, path, ctx)
        return task, None
    if isinstance(node, ForkNode):
        fork: ForkState = {"branches": [], "results": {}, "join": None}
        for index, branch in enumerate(node.branches):
            frame = new_sequence()
            fork["branches"].append(frame)
            outcome = _advance(branch.steps, frame, within(path, index), value, ctx)
            if isinstance(outcome, _Failed):
                return fork, outcome
            if isinstance(outcome, _Done):
                fork["branches"][index] = None
                fork["results"][branch.name] = outcome.value
        return fork, _join_when_done(node, fork, path, ctx)
    if isinstance(node, RouteNode):
        route: RouteState = {"input": value, "key": None, "choice": None, "frame": None}
        key, outcome = _start(node.key, value, task_in(path, KEY), ctx)
        route["key"] = cast(TaskState, key)
        return route, outcome
    if isinstance(node, LoopNode):
        loop: LoopState = {"iteration": 0, "frame": new_sequence()}
        return loop, _run_loop_body(node, loop, path, value, ctx)
    if isinstance(node, DelayNode):
        _start_delay(node, path, ctx)
        delay: DelayState = {"value": value}
        return delay, None
    if isinstance(node, SignalNode):
        return {}, _wait_for_signal(node, path, ctx)
    if isinstance(node, ChildNode):
        child: ChildState = {"frame": new_sequence()}
        return child, _advance(node.steps, child["frame"], within(path), value, ctx)
    assert_never(node)


def _start_delay(node: DelayNode, path: str, ctx: _Context) -> None:
    wake = ctx.now + node.seconds
    ctx.snapshot.timers[path] = Timer(wake, "delay", node.id)
    ctx.commands.append(SetTimer(path, wake, "delay"))
    _mark(ctx, node.id, "waiting")


def _wait_for_signal(node: SignalNode, path: str, ctx: _Context) -> Outcome:
    """Take the oldest buffered payload for ``node``'s signal, or start waiting for one."""
    buffered = ctx.snapshot.signals.get(node.signal)
    if buffered:
        payload = buffered.pop(0)
        if not buffered:
            del ctx.snapshot.signals[node.signal]
        _mark(ctx, node.id, "succeeded")
        return _Done(payload)
    ctx.snapshot.waiting_signals[path] = SignalWait(node.signal, node.id)
    if node.timeout_secs is not None:
        wake = ctx.now + node.timeout_secs
        ctx.snapshot.timers[path] = Timer(wake, "signal-timeout", node.id)
        ctx.commands.append(SetTimer(path, wake, "signal-timeout"))
    _mark(ctx, node.id, "waiting")
    return None


def _join_when_done(node: ForkNode, fork: ForkState, path: str, ctx: _Context) -> Outcome:
    """Once every branch of ``node`` finished, start its join on their results."""
    if any(frame is not None for frame in fork["branches"]):
        return None
    results = {branch.name: fork["results"][branch.name] for branch in node.branches}
    fork["results"] = {}
    join, outcome = _start(node.join, results, task_in(path, JOIN), ctx)
    fork["join"] = cast(TaskState, join)
    return outcome


def _choose_route(node: RouteNode, state: RouteState, path: str, key: Any, ctx: _Context) -> Outcome:
    if not isinstance(key, str):
        return _Failed(f"Route '{node.id}': key function returned {key!r} ({type(key).__name__}), expected a string")
    steps = node.branch_for(key)
    if steps is None:
        return _Failed(
            f"Route '{node.id}': no branch matches key {key!r} and there is no default branch "
            f"(declared keys: {', '.join(node.keys)})"
        )
    value, state["input"] = state["input"], None
    state["choice"] = key
    frame = state["frame"] = new_sequence()
    outcome = _advance(steps, frame, within(path, ROUTE), value, ctx)
    if isinstance(outcome, _Done):
        return _Done({"branch": key, "result": outcome.value})
    return outcome


class _Again:
    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


def _run_loop_body(node: LoopNode, state: LoopState, path: str, value: Any, ctx: _Context) -> Outcome:
    """Run iterations of ``node``'s body from ``value`` until one must wait or the loop ends."""
    while True:
        frame = state["frame"] = new_sequence()
        outcome = _advance(node.body, frame, within(path, state["iteration"]), value, ctx)
        if not isinstance(outcome, _Done):
            return outcome
        verdict = _next_iteration(node, state, outcome.value)
        if not isinstance(verdict, _Again):
            return verdict
        value = verdict.value


def _next_iteration(node: LoopNode, state: LoopState, result: Any) -> Outcome | _Again:
    """What a finished iteration means: the loop's result, its failure, or another iteration."""
    if not (isinstance(result, dict) and result.get("_loop") in ("again", "done")):
        return _Failed(
            f"Loop '{node.id}': body returned {type(result).__name__}, expected LoopResult.again(value) "
            "or LoopResult.done(value)"
        )
    value = result.get("value")
    if result["_loop"] == "done":
        return _Done(value)
    state["iteration"] += 1
    if state["iteration"] < node.max_iterations:
        return _Again(value)
    if node.on_max == "exit_with_last":
        return _Done(value)
    return _Failed(f"Loop '{node.id}' exceeded max iterations ({node.max_iterations})")


# -- task attempts -------------------------------------------------------------------------------


def _dispatch(node: TaskNode, state: TaskState, path: str, ctx: _Context) -> None:
    """Send the next attempt of ``node``, or hold it while the instance is paused."""
    snapshot = ctx.snapshot
    if snapshot.paused is not None:
        state["state"] = "ready"
        snapshot.ready.append(path)
        return
    attempt = state["attempt"] = state["attempt"] + 1
    state["state"] = "running"
    snapshot.running[path] = attempt
    ctx.commands.append(DispatchTask.of(ctx.definition, node, path, attempt, state["input"]))
    if not ctx.track_steps:
        return
    summary = snapshot.steps.get(node.id)
    if summary is None:
        snapshot.steps[node.id] = {"state": "running", "attempts": 1, "runs": 0, "startedAt": ctx.now}
    else:
        summary["state"] = "running"
        summary["attempts"] += 1
        summary.setdefault("startedAt", ctx.now)


def _mark(ctx: _Context, node_id: str, state: str) -> None:
    if not ctx.track_steps:
        return
    summary = ctx.snapshot.steps.get(node_id)
    if summary is None:
        ctx.snapshot.steps[node_id] = summary = {"state": state, "attempts": 0, "runs": 0, "startedAt": ctx.now}
    summary["state"] = state
    if state in ("succeeded", "failed"):
        summary["finishedAt"] = ctx.now
        if state == "succeeded":
            summary["runs"] += 1


def _attempt(node: Node, state: NodeState) -> tuple[TaskNode, TaskState]:
    """The task an attempt's event reached (only dispatched tasks have attempts)."""
    assert isinstance(node, TaskNode), node
    return node, cast(TaskState, state)


def _succeeded(node: Node, state: NodeState, path: str, output: Any, ctx: _Context) -> Outcome:
    task, attempt = _attempt(node, state)
    del ctx.snapshot.running[path]
    attempt["state"] = "done"
    attempt["input"] = None
    _mark(ctx, task.id, "succeeded")
    return _Done(output)


def _failed(node: Node, state: NodeState, path: str, error: str, ctx: _Context) -> Outcome:
    return _attempt_failed(*_attempt(node, state), path, error, ctx)


def _timed_out(node: Node, state: NodeState, path: str, _: None, ctx: _Context) -> Outcome:
    task, attempt = _attempt(node, state)
    error = f"TimeoutError: task '{task.id}' timed out after {task.timeout_secs}s"
    return _attempt_failed(task, attempt, path, error, ctx)


def _attempt_failed(node: TaskNode, state: TaskState, path: str, error: str, ctx: _Context) -> Outcome:
    snapshot = ctx.snapshot
    del snapshot.running[path]
    state["failures"] += 1
    state["error"] = error
    retry = node.retry
    if retry is None or state["failures"] > retry.max_retries:
        state["state"] = "failed"
        _mark(ctx, node.id, "failed")
        return _Failed(error)
    delay = retry.delay(state["failures"])
    if delay <= 0:
        _dispatch(node, state, path, ctx)
        return None
    state["state"] = "backoff"
    due = ctx.now + delay
    snapshot.timers[path] = Timer(due, "retry", node.id)
    ctx.commands.append(SetTimer(path, due, "retry"))
    _mark(ctx, node.id, "retrying")
    return None


def _lost(node: Node, state: NodeState, path: str, reason: str, ctx: _Context) -> Outcome:
    task, attempt = _attempt(node, state)
    del ctx.snapshot.running[path]
    attempt["lost"] += 1
    if attempt["lost"] > MAX_LOST_ATTEMPTS:
        _mark(ctx, task.id, "failed")
        return _Failed(f"task '{task.id}' lost its worker {attempt['lost']} times (last: {reason})")
    _dispatch(task, attempt, path, ctx)
    return None


def _release(node: Node, state: NodeState, path: str, _: None, ctx: _Context) -> Outcome:
    """Unpause: dispatch an attempt that the pause held back."""
    task, attempt = _attempt(node, state)
    if attempt["state"] == "ready":
        _dispatch(task, attempt, path, ctx)
    return None


def _timer_fired(node: Node, state: NodeState, path: str, _: None, ctx: _Context) -> Outcome:
    snapshot = ctx.snapshot
    del snapshot.timers[path]
    if isinstance(node, TaskNode):
        _dispatch(node, cast(TaskState, state), path, ctx)
        return None
    if isinstance(node, DelayNode):
        _mark(ctx, node.id, "succeeded")
        return _Done(cast(DelayState, state).pop("value"))
    if isinstance(node, SignalNode):
        del snapshot.waiting_signals[path]
        if node.on_timeout == "continue":
            _mark(ctx, node.id, "succeeded")
            return _Done(None)
        _mark(ctx, node.id, "failed")
        return _Failed(f"SignalTimeout: signal '{node.signal}' not received within {node.timeout_secs}s")
    raise AssertionError(f"{node.kind} {node.id!r} sets no timers")


# -- reruns ------------------------------------------------------------------------------------------


def restart(definition: Definition, snapshot: Snapshot, paths: list[str], now: float) -> Decision:
    """Run again the unfinished steps at ``paths`` of a stopped instance (see :mod:`plait._core.rerun`).

    A task gets a new attempt with its retries renewed, a delay waits its whole duration again, a
    signal wait starts over; what they lead to then goes on as usual.
    """
    ctx = _Context(definition, snapshot, now, True)
    snapshot.status = st.IN_PROGRESS
    for path in paths:
        if snapshot.finished:
            break
        _deliver(path, None, _restart_step, None, ctx)
    snapshot.events += 1
    _refresh_status(snapshot)
    return ctx


def _restart_step(node: Node, state: NodeState, path: str, _: None, ctx: _Context) -> Outcome:
    if isinstance(node, TaskNode):
        task = cast(TaskState, state)
        task["failures"], task["lost"], task["state"] = 0, 0, "ready"
        task.pop("error", None)
        _dispatch(node, task, path, ctx)
        return None
    if isinstance(node, DelayNode):
        _start_delay(node, path, ctx)
        return None
    if isinstance(node, SignalNode):
        return _wait_for_signal(node, path, ctx)
    raise AssertionError(f"{node.kind} {node.id!r} is not a step to restart")


# -- signals ---------------------------------------------------------------------------------------


def _signal(event: SignalReceived, ctx: _Context) -> bool:
    """Give the payload to the oldest waiter for this name, or buffer it (first in, first out)."""
    snapshot = ctx.snapshot
    if event.id is not None:
        if event.id in snapshot.signal_ids:
            return False
        snapshot.signal_ids.append(event.id)
        del snapshot.signal_ids[:-REMEMBERED_SIGNAL_IDS]
    waiter = next((path for path, wait in snapshot.waiting_signals.items() if wait.signal == event.name), None)
    if waiter is None:
        snapshot.signals.setdefault(event.name, []).append(event.payload)
        return True
    return _deliver(waiter, None, _receive_signal, event.payload, ctx)


def _receive_signal(node: Node, state: NodeState, path: str, payload: Any, ctx: _Context) -> Outcome:
    snapshot = ctx.snapshot
    del snapshot.waiting_signals[path]
    snapshot.timers.pop(path, None)
    _mark(ctx, node.id, "succeeded")
    return _Done(payload)
