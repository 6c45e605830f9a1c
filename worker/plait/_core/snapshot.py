"""The checkpoint of one workflow instance: everything needed to continue it, and nothing more.

A snapshot holds the instance's position (a tree of frames mirroring the definition), the values
still needed (inputs of steps not yet finished, fork results waiting for their join), the tasks
in flight, timers, buffered signals, lifecycle flags and a per-node summary; for a flow with a
failure handler, also the instance's input and the handler's task. Step outputs are not
accumulated: once consumed they are gone from here. It is plain JSON data
(:meth:`Snapshot.to_data`), stored by the local backends and in ``WorkflowInstance.status``.

Status strings are sayiir's: ``in_progress``, ``waiting``, ``awaiting_signal``, ``paused``,
``completed``, ``failed``, ``cancelled``.

The frame and state types below are the checkpoint's wire form: JSON objects and arrays, typed
for the engine and its readers (they cost nothing at run time).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple, NotRequired, TypeAlias, TypedDict

IN_PROGRESS = "in_progress"
WAITING = "waiting"
AWAITING_SIGNAL = "awaiting_signal"
PAUSED = "paused"
COMPLETED = "completed"
FAILED = "failed"
CANCELLED = "cancelled"
TERMINAL = frozenset({COMPLETED, FAILED, CANCELLED})

TimerKind = Literal["delay", "retry", "signal-timeout"]
AttemptState = Literal["ready", "running", "backoff", "done", "failed"]


class Timer(NamedTuple):
    """When a durable delay ends, a retry is due or a signal wait times out (a JSON array)."""

    at: float  # seconds since the epoch
    kind: TimerKind
    node_id: str


class SignalWait(NamedTuple):
    """A step waiting for the next signal of a name (a JSON array)."""

    signal: str
    node_id: str


class SequenceFrame(TypedDict):
    """Where a sequence of steps is: the step at ``pos`` runs with state ``cur``."""

    pos: int  # -1 before the first step, len(steps) once done
    cur: NodeState | None


class TaskState(TypedDict):
    attempt: int
    failures: int
    lost: int
    state: AttemptState
    input: Any  # dropped once the task succeeded
    error: NotRequired[str]  # of the latest failed attempt


class ForkState(TypedDict):
    branches: list[SequenceFrame | None]  # None once a branch finished
    results: dict[str, Any]  # of the finished branches, until the join starts
    join: TaskState | None


class RouteState(TypedDict):
    input: Any  # until the key is known
    key: TaskState | None
    choice: str | None
    frame: SequenceFrame | None  # the chosen branch


class LoopState(TypedDict):
    iteration: int
    frame: SequenceFrame


class DelayState(TypedDict):
    value: NotRequired[Any]  # passed on when the delay ends


class SignalState(TypedDict):
    pass


class ChildState(TypedDict):
    frame: SequenceFrame


class StepProgress(TypedDict):
    """The summary of one node over all its executions (loop iterations fold into one)."""

    state: str  # running, retrying, waiting, succeeded, failed
    attempts: int
    runs: int
    startedAt: NotRequired[float]
    finishedAt: NotRequired[float]


NodeState: TypeAlias = TaskState | ForkState | RouteState | LoopState | DelayState | SignalState | ChildState


@dataclass(slots=True)
class Snapshot:
    instance_id: str
    workflow: str
    definition_hash: str
    status: str = IN_PROGRESS
    output: Any = None
    error: str | None = None
    root: SequenceFrame | None = None
    running: dict[str, int] = field(default_factory=dict)  # path -> attempt of dispatched tasks
    ready: list[str] = field(default_factory=list)  # paths held back by a pause
    timers: dict[str, Timer] = field(default_factory=dict)  # by path
    waiting_signals: dict[str, SignalWait] = field(default_factory=dict)  # by path
    signals: dict[str, list[Any]] = field(default_factory=dict)  # buffered payloads by name, oldest first
    signal_ids: list[str] = field(default_factory=list)  # ids of the latest signals applied, for dedupe
    paused: dict[str, Any] | None = None  # {"reason", "by"}
    cancelled: dict[str, Any] | None = None  # {"reason", "by"}
    steps: dict[str, StepProgress] = field(default_factory=dict)  # by node id
    attempts_used: dict[str, int] = field(default_factory=dict)  # by node id: attempts of runs before a rerun
    input: Any = None  # the instance's input, kept only for a flow with a failure handler
    failure_handler: TaskState | None = None  # the on_failure task, once the instance failed
    events: int = 0  # events applied; the checkpoint's version

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL

    @property
    def wake_at(self) -> float | None:
        return min((timer.at for timer in self.timers.values()), default=None)

    def to_data(self) -> dict[str, Any]:
        return {
            "instanceId": self.instance_id,
            "workflow": self.workflow,
            "definitionHash": self.definition_hash,
            "status": self.status,
            "output": self.output,
            "error": self.error,
            "root": self.root,
            "running": self.running,
            "ready": self.ready,
            "timers": self.timers,
            "waitingSignals": self.waiting_signals,
            "signals": self.signals,
            "signalIds": self.signal_ids,
            "paused": self.paused,
            "cancelled": self.cancelled,
            "steps": self.steps,
            "attemptsUsed": self.attempts_used,
            "input": self.input,
            "failureHandler": self.failure_handler,
            "events": self.events,
        }

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Snapshot:
        return cls(
            instance_id=data["instanceId"],
            workflow=data["workflow"],
            definition_hash=data["definitionHash"],
            status=data["status"],
            output=data.get("output"),
            error=data.get("error"),
            root=data.get("root"),
            running=dict(data.get("running") or {}),
            ready=list(data.get("ready") or []),
            timers={path: Timer(*timer) for path, timer in (data.get("timers") or {}).items()},
            waiting_signals={path: SignalWait(*wait) for path, wait in (data.get("waitingSignals") or {}).items()},
            signals=dict(data.get("signals") or {}),
            signal_ids=list(data.get("signalIds") or []),
            paused=data.get("paused"),
            cancelled=data.get("cancelled"),
            steps=dict(data.get("steps") or {}),
            attempts_used=dict(data.get("attemptsUsed") or {}),
            input=data.get("input"),
            failure_handler=data.get("failureHandler"),
            events=int(data.get("events") or 0),
        )


#: The keys of a node state that hold values (everything else in a frame is the engine's own).
_VALUE_KEYS = ("input", "value")


def map_values(snapshot: Snapshot, fn: Callable[[Any], Any]) -> None:
    """Replace, in place, every value ``snapshot`` holds by ``fn(value)``: the inputs of steps, fork
    results waiting for their join, values a delay passes on, buffered signal payloads, the
    instance's input and output. The payload store swaps large ones for references this way; the
    engine passes a reference through like any other value."""
    snapshot.output = fn(snapshot.output) if snapshot.output is not None else None
    snapshot.input = fn(snapshot.input) if snapshot.input is not None else None
    snapshot.signals = {name: [fn(payload) for payload in payloads] for name, payloads in snapshot.signals.items()}
    stack: list[Any] = [snapshot.root, snapshot.failure_handler]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            for key, member in item.items():
                if key in _VALUE_KEYS and member is not None:
                    item[key] = fn(member)
                elif key == "results" and isinstance(member, dict):
                    item[key] = {branch: fn(result) for branch, result in member.items()}
                elif isinstance(member, dict | list):
                    stack.append(member)
