"""``get_task_context()``: what a running task can learn about itself.

Set by whoever runs the task (the local runner or a worker) around each call; ``None`` outside a
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


current: ContextVar[TaskExecutionContext | None] = ContextVar("plait_task_context", default=None)


def get_task_context() -> TaskExecutionContext | None:
    """The context of the task running in this thread or coroutine, or ``None`` outside a task."""
    return current.get()
