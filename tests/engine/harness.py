"""Drive the engine core by hand: feed events, collect commands, look at the snapshot."""

from __future__ import annotations

from typing import Any

from plait import Flow, Workflow
from plait._core.engine import Decision, decide, new_snapshot
from plait._core.events import (
    Cancel,
    CancelTask,
    Command,
    Complete,
    DispatchTask,
    Event,
    Fail,
    SetTimer,
    Started,
    TaskSucceeded,
)
from plait._core.snapshot import Snapshot


class Harness:
    def __init__(self, workflow: Workflow | Flow, now: float = 1000.0) -> None:
        self.workflow = workflow.build() if isinstance(workflow, Flow) else workflow
        self.definition = self.workflow.definition
        self.snapshot: Snapshot = new_snapshot(self.definition, "i-1")
        self.now = now
        self.log: list[Command] = []

    def feed(self, event: Event) -> Decision:
        decision = decide(self.definition, self.snapshot, event, self.now)
        self.snapshot = decision.snapshot
        self.log.extend(decision.commands)
        return decision

    def start(self, value: Any) -> list[Command]:
        return self.feed(Started(value)).commands

    def running(self) -> dict[str, DispatchTask]:
        """Dispatched attempts still in flight, by path."""
        latest: dict[str, DispatchTask] = {}
        for command in self.log:
            if isinstance(command, DispatchTask):
                latest[command.path] = command
        return {path: latest[path] for path in self.snapshot.running}

    def dispatched(self) -> list[DispatchTask]:
        return [c for c in self.log if isinstance(c, DispatchTask)]

    def only(self) -> DispatchTask:
        running = list(self.running().values())
        assert len(running) == 1, running
        return running[0]

    def succeed(self, command: DispatchTask, output: Any) -> Decision:
        return self.feed(TaskSucceeded(command.path, command.attempt, output))

    def run_inline(self, functions: dict[str, Any], limit: int = 1000) -> None:
        """Answer every dispatch with ``functions[task](input)`` until nothing runs."""
        for _ in range(limit):
            running = self.running()
            if not running:
                return
            command = next(iter(running.values()))
            self.succeed(command, functions[command.task](command.input))
        raise AssertionError("still running after the limit")

    def completed(self) -> Any:
        assert self.snapshot.status == "completed", (self.snapshot.status, self.snapshot.error)
        assert isinstance(self.log[-1], Complete)
        return self.snapshot.output

    def failed(self) -> str:
        assert self.snapshot.status == "failed", self.snapshot.status
        assert any(isinstance(c, Fail) for c in self.log)
        assert self.snapshot.error is not None
        return self.snapshot.error

    def timers(self) -> list[SetTimer]:
        return [c for c in self.log if isinstance(c, SetTimer)]

    def cancels(self) -> list[CancelTask]:
        return [c for c in self.log if isinstance(c, CancelTask)]


__all__ = ["Cancel", "Harness"]
