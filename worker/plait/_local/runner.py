"""The local runner: drives one instance with the engine core, running its tasks in this process.

It feeds events to :func:`plait._core.engine.decide`, carries out the commands (run the task,
remember the timer), and, with a backend, saves a checkpoint after every accepted event, so a
crash loses at most the steps in flight. On resume, steps that were in flight when the previous
run died are rerun (``TaskLost``); steps that finished are not. Retry backoffs are slept through;
durable delays and signals either are slept through (``run_workflow``) or end the run with a
``waiting`` / ``awaiting_signal`` status (durable runs), to be continued by ``resume_workflow``.

Local checkpoints leave out the per-step summary (``snapshot.steps``): it exists for the
Kubernetes status, nothing local shows it, and it would make every checkpoint grow with the
number of steps run.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from plait._authoring.flow import TaskFunction, Workflow
from plait._core.engine import decide, new_snapshot
from plait._core.events import (
    Cancel,
    CancelTask,
    DispatchTask,
    Event,
    Pause,
    SignalReceived,
    Started,
    TaskFailed,
    TaskLost,
    TaskSucceeded,
    TaskTimedOut,
    TimerFired,
    Unpause,
)
from plait._core.frames import ON_FAILURE
from plait._core.snapshot import Snapshot
from plait._execution.context import InlineSlot, TaskExecutionContext, current
from plait._execution.invoke import AttemptResult, describe, run_async_task, run_sync, to_json, user_traceback
from plait._local.backends import Backend
from plait._local.status import WorkflowStatus
from plait.errors import WorkflowError

_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def shared_executor() -> ThreadPoolExecutor:
    """Threads for sync tasks that have a timeout (the only way to stop waiting for them)."""
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=32, thread_name_prefix="plait-task")
        return _executor


def inbox_event(sequence: int, request: dict[str, Any]) -> Event:
    kind = request["type"]
    if kind == "start":
        return Started(request.get("input"))
    if kind == "signal":
        return SignalReceived(request["name"], request.get("payload"), id=f"inbox-{sequence}")
    if kind == "pause":
        return Pause(request.get("reason"), request.get("by"))
    if kind == "unpause":
        return Unpause()
    if kind == "cancel":
        return Cancel(request.get("reason"), request.get("by"))
    raise ValueError(f"unknown inbox request {kind!r}")


def _in_effect_order(inbox: list[tuple[int, dict[str, Any]]]) -> list[tuple[int, dict[str, Any]]]:
    """Inbox requests as sayiir applies them: the start first (signals sent before the submit wait
    for it), and of several cancel requests only the last (its reason and author win)."""
    cancels = [sequence for sequence, request in inbox if request["type"] == "cancel"]
    kept = [entry for entry in inbox if entry[1]["type"] != "cancel" or entry[0] == cancels[-1]]
    return sorted(kept, key=lambda entry: entry[1]["type"] != "start")


class Runner:
    """Runs one instance of ``workflow`` until it finishes or must wait."""

    def __init__(
        self,
        workflow: Workflow,
        instance_id: str,
        backend: Backend | None,
        *,
        sleep_through_waits: bool,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.workflow = workflow
        self.definition = workflow.definition
        self.instance_id = instance_id
        self.backend = backend
        self.sleep_through_waits = sleep_through_waits
        self.clock = clock
        self.sleep = sleep
        self._pending: deque[DispatchTask] = deque()
        self._slot = InlineSlot(self.definition.name, instance_id, self.definition.metadata)
        self._loop: asyncio.AbstractEventLoop | None = None
        self.last_traceback: str | None = None  # of the latest failed attempt, for TaskError messages

    # -- entry points ----------------------------------------------------------------------------

    def start(self, input_data: Any) -> WorkflowStatus:
        snapshot = new_snapshot(self.definition, self.instance_id)
        return self._drive(snapshot, [Started(to_json(input_data))])

    def resume(self, snapshot: Snapshot) -> WorkflowStatus:
        if snapshot.definition_hash != self.definition.hash:
            raise WorkflowError(
                f"Workflow definition mismatch: expected hash '{self.definition.hash}', found "
                f"'{snapshot.definition_hash}' (instance {self.instance_id!r} was started with another version "
                f"of {snapshot.workflow!r}; resume it with that one)"
            )
        lost: list[Event] = [
            TaskLost(path, attempt, "the previous run ended while this attempt was in flight")
            for path, attempt in snapshot.running.items()
        ]
        return self._drive(snapshot, lost)

    # -- the loop ----------------------------------------------------------------------------------

    def _drive(self, snapshot: Snapshot, events: list[Event]) -> WorkflowStatus:
        queue: deque[Event] = deque(events)
        token = current.set(self._slot)
        try:
            while True:
                while queue:
                    snapshot = self._apply(snapshot, queue.popleft())
                if snapshot.finished:
                    break
                if self._pending:
                    snapshot = self._apply(snapshot, self._run(self._pending.popleft()))
                    continue
                if self.backend is not None:
                    inbox = self.backend.pending_inbox(self.instance_id)
                    if inbox:
                        for sequence, request in _in_effect_order(inbox):
                            snapshot = self._apply(snapshot, inbox_event(sequence, request))
                        self.backend.ack_inbox(self.instance_id, inbox[-1][0])
                        continue
                now = self.clock()
                due = [path for path, timer in snapshot.timers.items() if timer.at <= now]
                if due:
                    queue.extend(TimerFired(path) for path in due)
                    continue
                wake = self._next_wake(snapshot)
                if wake is None:
                    break
                self.sleep(max(0.0, wake - now))
        finally:
            current.reset(token)
            if self._loop is not None:
                self._loop.close()
                self._loop = None
        return WorkflowStatus.of(snapshot)

    def _next_wake(self, snapshot: Snapshot) -> float | None:
        """When to wake up in-process: retries always; delays and signal timeouts when sleeping through."""
        if snapshot.paused is not None:
            return None
        times = [
            timer.at
            for timer in snapshot.timers.values()
            if timer.kind == "retry" or (self.sleep_through_waits and timer.kind == "delay")
        ]
        return min(times, default=None)

    def _apply(self, snapshot: Snapshot, event: Event) -> Snapshot:
        decision = decide(self.definition, snapshot, event, self.clock(), track_steps=False)
        if not decision.accepted:
            return decision.snapshot
        for command in decision.commands:
            if isinstance(command, DispatchTask):
                self._pending.append(command)
            elif isinstance(command, CancelTask):
                self._pending = deque(c for c in self._pending if c.path != command.path)
        if self.backend is not None:
            self.backend.save_snapshot(self.instance_id, decision.snapshot)
        return decision.snapshot

    # -- running one attempt ------------------------------------------------------------------------

    def _run(self, command: DispatchTask) -> Event:
        task = self.workflow.tasks.get(command.task)
        if task is None:
            return TaskFailed(command.path, command.attempt, f"KeyError: no task {command.task!r} is registered")
        value = to_json(command.input)  # a copy: the task cannot change the input a retry would get
        if task.is_async or command.timeout_secs is not None:
            result = self._run_guarded(task, value, command)
            if result.timed_out:
                return TaskTimedOut(command.path, command.attempt)
            if not result.ok:
                self._note_traceback(command, result.traceback)
                return TaskFailed(command.path, command.attempt, result.error or "error")
            output = result.output
        else:  # the usual case: called right here, shown to get_task_context() by the run's slot
            self._slot.enter(command, task.metadata)
            try:
                output = to_json(task(value))
            except Exception as error:
                self._note_traceback(command, user_traceback(error))
                return TaskFailed(command.path, command.attempt, describe(error))
            finally:
                self._slot.leave()
        if self.backend is not None:
            self.backend.record_output(self.instance_id, command.task, output)
        return TaskSucceeded(command.path, command.attempt, output)

    def _note_traceback(self, command: DispatchTask, traceback: str | None) -> None:
        if command.path != ON_FAILURE:  # the error the run reports is the step's, not its handler's
            self.last_traceback = traceback

    def _run_guarded(self, task: TaskFunction, value: Any, command: DispatchTask) -> AttemptResult:
        """Run an async task, or a sync one with a timeout (in a thread, so the wait can end)."""
        context = TaskExecutionContext(
            self.definition.name,
            self.instance_id,
            command.task,
            task.metadata,
            self.definition.metadata,
            command.attempt,
            command.path,
        )
        if task.is_async:
            return self._run_coroutine(task, value, context, command.timeout_secs)
        return run_sync(task, value, context, command.timeout_secs, shared_executor())

    def _run_coroutine(
        self, task: TaskFunction, value: Any, context: TaskExecutionContext, timeout: float | None
    ) -> AttemptResult:
        coroutine = run_async_task(task, value, context, timeout, shared_executor())
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
            return self._loop.run_until_complete(coroutine)
        # Called from inside a running event loop (an async test): run on a loop of our own in a thread.
        return shared_executor().submit(asyncio.run, coroutine).result()
