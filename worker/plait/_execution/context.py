"""``get_task_context()``: what a running task can learn about itself.

Set by whoever runs the task (a worker, or the local runner) around each call, through a
:class:`InlineSlot` for the tasks the local runner calls in its own thread; ``None`` outside a
task. Besides sayiir's fields, plait adds the attempt number and cooperative cancellation:
long-running sync tasks can poll ``is_cancelled()`` and return early when the instance was
cancelled or the worker lost its claim.
"""

from __future__ import annotations

import threading
import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from plait._authoring.tasks import TaskMetadata
from plait._core.events import DispatchTask

_event_lock = threading.Lock()


@dataclass(slots=True)
class TaskExecutionContext:
    workflow_id: str
    instance_id: str
    task_id: str
    metadata: TaskMetadata | None
    workflow_metadata: dict[str, Any] | None
    attempt: int = 1
    path: str = ""
    lease_expires: float | None = field(default=None, repr=False, compare=False)  # time.monotonic() deadline
    _cancel_event: threading.Event | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def cancel_event(self) -> threading.Event:
        """Set when the attempt should stop. Made on first use: most tasks never look at it."""
        event = self._cancel_event
        if event is None:
            with _event_lock:
                if self._cancel_event is None:
                    self._cancel_event = threading.Event()
                event = self._cancel_event
        return event

    def is_cancelled(self) -> bool:
        """True once the instance was cancelled, this attempt was superseded, or (on a worker) its
        lease ran out unrenewed: the operator may already run the next attempt elsewhere. Stop soon."""
        if self.lease_expires is not None and time.monotonic() > self.lease_expires:
            return True
        event = self._cancel_event  # nobody set an event that does not exist yet
        return event is not None and event.is_set()


class InlineSlot:
    """Where a local runner shows the task it is running in its own thread.

    Setting ``current`` and building a :class:`TaskExecutionContext` around every call cost more
    than a small task itself. A runner sets ``current`` to its slot once per run instead, puts each
    task in the slot with :meth:`enter` and :meth:`leave`, and the context is built only when the
    task asks for it. The one difference: code a task leaves running after it returns (a thread
    started with a copy of its context) no longer sees that task's context.
    """

    __slots__ = ("_context", "_metadata", "_running", "instance_id", "workflow_id", "workflow_metadata")

    def __init__(self, workflow_id: str, instance_id: str, workflow_metadata: dict[str, Any] | None) -> None:
        self.workflow_id = workflow_id
        self.instance_id = instance_id
        self.workflow_metadata = workflow_metadata
        self._running: DispatchTask | None = None
        self._metadata: TaskMetadata | None = None
        self._context: TaskExecutionContext | None = None

    def enter(self, command: DispatchTask, metadata: TaskMetadata | None) -> None:
        """The attempt ``command`` asks for starts running in this thread."""
        self._running = command
        self._metadata = metadata

    def leave(self) -> None:
        self._running = self._context = None

    def context(self) -> TaskExecutionContext | None:
        """The running task's context (the same object for the whole call), or ``None`` between tasks."""
        command = self._running
        if self._context is None and command is not None:
            self._context = TaskExecutionContext(
                self.workflow_id,
                self.instance_id,
                command.task,
                self._metadata,
                self.workflow_metadata,
                command.attempt,
                command.path,
            )
        return self._context


current: ContextVar[TaskExecutionContext | InlineSlot | None] = ContextVar("plait_task_context", default=None)


def get_task_context() -> TaskExecutionContext | None:
    """The context of the task running in this thread or coroutine, or ``None`` outside a task."""
    value = current.get()
    if isinstance(value, InlineSlot):
        return value.context()
    return value
