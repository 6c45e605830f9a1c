"""What the engine core hears (events) and what it asks for (commands).

Steps are addressed by *path*: the position of one execution of one node, e.g. ``"2"`` (third
root step), ``"1/0/0"`` (first step of branch 0 of the fork at root step 1), ``"4/7/0"`` (loop
at root step 4, iteration 7) or ``"3/k"`` (the key task of the route at root step 3). A path
plus an attempt number names one task attempt; a ``WorkflowTask`` is exactly that.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeAlias

from plait._core.definition import Definition, TaskNode
from plait._core.snapshot import TimerKind


@dataclass(slots=True)
class Started:
    input: Any


@dataclass(slots=True)
class TaskSucceeded:
    path: str
    attempt: int
    output: Any


@dataclass(slots=True)
class TaskFailed:
    """The task raised; ``error`` is ``"ExceptionType: message"``. Counts against its retries."""

    path: str
    attempt: int
    error: str


@dataclass(slots=True)
class TaskTimedOut:
    path: str
    attempt: int


@dataclass(slots=True)
class TaskLost:
    """The attempt's holder vanished (lease expired, released on shutdown). Rerun without using a retry."""

    path: str
    attempt: int
    reason: str


@dataclass(slots=True)
class TimerFired:
    path: str


@dataclass(slots=True)
class SignalReceived:
    """An external signal; ``id`` (when the sender has one) makes redelivery harmless."""

    name: str
    payload: Any
    id: str | None = None


@dataclass(slots=True)
class Pause:
    reason: str | None = None
    by: str | None = None


@dataclass(slots=True)
class Unpause:
    pass


@dataclass(slots=True)
class Cancel:
    reason: str | None = None
    by: str | None = None


@dataclass(slots=True)
class Abort:
    """Fail the instance now with ``error`` (``"Reason: message"``; a deadline passed): like a failed
    step, every attempt in flight is asked to stop."""

    error: str


Event: TypeAlias = (
    Started
    | TaskSucceeded
    | TaskFailed
    | TaskTimedOut
    | TaskLost
    | TimerFired
    | SignalReceived
    | Pause
    | Unpause
    | Cancel
    | Abort
)


@dataclass(slots=True)
class DispatchTask:
    """Run ``task`` (the registered function id) on ``input`` as attempt ``attempt`` of ``path``."""

    path: str
    node_id: str
    task: str
    attempt: int
    input: Any
    timeout_secs: float | None
    queue: str
    priority: int | None

    @classmethod
    def of(cls, definition: Definition, node: TaskNode, path: str, attempt: int, input: Any) -> DispatchTask:
        return cls(
            path, node.id, node.task, attempt, input, node.timeout_secs, definition.queue_of(node), node.priority
        )


@dataclass(slots=True)
class CancelTask:
    """Ask the holder of this attempt to stop; its result will be ignored."""

    path: str
    attempt: int


@dataclass(slots=True)
class SetTimer:
    """Deliver :class:`TimerFired` for ``path`` at ``at`` (seconds since the epoch) or later."""

    path: str
    at: float
    kind: TimerKind


@dataclass(slots=True)
class Complete:
    output: Any


@dataclass(slots=True)
class Fail:
    error: str


Command: TypeAlias = DispatchTask | CancelTask | SetTimer | Complete | Fail
