"""The checkpoint of one workflow instance: everything needed to continue it, and nothing more.

A snapshot holds the instance's position (a tree of frames mirroring the definition), the values
still needed (inputs of steps not yet finished, fork results waiting for their join), the tasks
in flight, timers, buffered signals, lifecycle flags and a per-node summary. Step outputs are
not accumulated: once consumed they are gone from here. It is plain JSON data
(:meth:`Snapshot.to_data`), stored by the local backends and in ``WorkflowInstance.status``.

Status strings are sayiir's: ``in_progress``, ``waiting``, ``awaiting_signal``, ``paused``,
``completed``, ``failed``, ``cancelled``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

IN_PROGRESS = "in_progress"
WAITING = "waiting"
AWAITING_SIGNAL = "awaiting_signal"
PAUSED = "paused"
COMPLETED = "completed"
FAILED = "failed"
CANCELLED = "cancelled"
TERMINAL = frozenset({COMPLETED, FAILED, CANCELLED})

Frame = dict[str, Any]


@dataclass(slots=True)
class Snapshot:
    instance_id: str
    workflow: str
    definition_hash: str
    status: str = IN_PROGRESS
    output: Any = None
    error: str | None = None
    root: Frame | None = None
    running: dict[str, int] = field(default_factory=dict)  # path -> attempt of dispatched tasks
    ready: list[str] = field(default_factory=list)  # paths held back by a pause
    timers: dict[str, list[Any]] = field(default_factory=dict)  # path -> [at, kind, node id]
    waiting_signals: dict[str, list[str]] = field(default_factory=dict)  # path -> [signal name, node id]
    signals: dict[str, list[Any]] = field(default_factory=dict)  # buffered payloads by name, oldest first
    signal_ids: list[str] = field(default_factory=list)  # ids of the latest signals applied, for dedupe
    paused: dict[str, Any] | None = None  # {"reason", "by"}
    cancelled: dict[str, Any] | None = None  # {"reason", "by"}
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)  # node id -> summary
    events: int = 0  # events applied; the checkpoint's version

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL

    @property
    def wake_at(self) -> float | None:
        return min((timer[0] for timer in self.timers.values()), default=None)

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
            timers=dict(data.get("timers") or {}),
            waiting_signals=dict(data.get("waitingSignals") or {}),
            signals=dict(data.get("signals") or {}),
            signal_ids=list(data.get("signalIds") or []),
            paused=data.get("paused"),
            cancelled=data.get("cancelled"),
            steps=dict(data.get("steps") or {}),
            events=int(data.get("events") or 0),
        )
