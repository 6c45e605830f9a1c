"""Running one task attempt: input conversion, the call, the timeout, and the JSON result.

Shared by the local runner and the worker runtime, so a task behaves the same in a unit test and
on a cluster: sync tasks run in a thread when they have a timeout (and inline otherwise, which
is what keeps the local runner fast), async tasks run on the event loop, a timeout is enforced
for both, and the result must be JSON (pydantic models are dumped first). A sync task that
outlives its timeout cannot be killed: its thread keeps running, its result is discarded, and
``get_task_context().is_cancelled()`` turns true so it can stop itself.
"""

from __future__ import annotations

import asyncio
import json
import os
import traceback
from concurrent import futures
from concurrent.futures import Executor
from contextvars import copy_context
from dataclasses import dataclass
from typing import Any

from plait._authoring.flow import TaskFunction
from plait._execution.context import TaskExecutionContext, current

_SCALARS = (str, int, float, bool, type(None))
_PLAIT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
MAX_ERROR_CHARS = 8192


@dataclass(slots=True)
class AttemptResult:
    """How an attempt ended: ``output`` on success, ``error`` text on failure, or ``timed_out``."""

    ok: bool
    output: Any = None
    error: str | None = None
    timed_out: bool = False
    traceback: str | None = None


def to_json(value: Any) -> Any:
    """``value`` as JSON data (tuples become lists); ``TypeError`` when it is not representable."""
    if type(value) in _SCALARS:
        if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
            raise TypeError(f"{value!r} is not valid JSON")
        return value
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as error:
        raise TypeError(f"task output is not JSON-serializable: {error}") from error


def describe(error: BaseException) -> str:
    """``"ExceptionType: message"``, cut to a size that fits in a status field."""
    text = f"{type(error).__name__}: {error}"
    if len(text) > MAX_ERROR_CHARS:
        text = text[: MAX_ERROR_CHARS - 40] + f"... [{len(text) - MAX_ERROR_CHARS + 40} more characters]"
    return text


def user_traceback(error: BaseException) -> str:
    """The traceback of a task's exception from the task's own frames on (plait's are left out)."""
    frames = [frame for frame in traceback.extract_tb(error.__traceback__) if not frame.filename.startswith(_PLAIT_DIR)]
    text = "Traceback (most recent call last):\n" + "".join(traceback.format_list(frames))
    return text[-MAX_ERROR_CHARS:]


def _failure(error: BaseException) -> AttemptResult:
    return AttemptResult(ok=False, error=describe(error), traceback=user_traceback(error))


def _finish(raw: Any) -> AttemptResult:
    try:
        return AttemptResult(True, to_json(raw))
    except TypeError as error:
        return _failure(error)


def _timed_out(context: TaskExecutionContext, timeout: float) -> AttemptResult:
    context.cancel_event.set()
    return AttemptResult(ok=False, timed_out=True, error=f"TimeoutError: timed out after {timeout}s")


def run_sync(
    task: TaskFunction, value: Any, context: TaskExecutionContext, timeout: float | None, executor: Executor | None
) -> AttemptResult:
    """Run a sync task; inline when there is no timeout, else in ``executor`` with one."""
    if timeout is None or executor is None:
        token = current.set(context)
        try:
            return _finish(task(value))
        except Exception as error:
            return _failure(error)
        finally:
            current.reset(token)
    future = executor.submit(_in_context(task, value, context))
    done, _ = futures.wait([future], timeout=timeout)
    if not done:
        return _timed_out(context, timeout)
    try:
        return _finish(future.result())
    except Exception as error:
        return _failure(error)


async def run_async_task(
    task: TaskFunction, value: Any, context: TaskExecutionContext, timeout: float | None, executor: Executor | None
) -> AttemptResult:
    """Run any task from an event loop: async ones on the loop, sync ones in ``executor``."""
    loop = asyncio.get_running_loop()
    job: asyncio.Future[Any]
    started = loop.create_future()
    if task.is_async:
        token = current.set(context)  # the new asyncio task copies the context as it is now
        try:
            job = asyncio.ensure_future(task.call_async(value))
        finally:
            current.reset(token)
        started.set_result(None)
    else:
        call = _in_context(task, value, context)

        def mark_started() -> None:
            if not started.done():
                started.set_result(None)

        def in_thread() -> Any:
            loop.call_soon_threadsafe(mark_started)
            return call()

        job = loop.run_in_executor(executor, in_thread)
    try:
        if timeout is not None:
            # The timeout counts from when the task starts, not from when it queued for a thread.
            await asyncio.wait({started, job}, return_when=asyncio.FIRST_COMPLETED)
            done, _ = await asyncio.wait({job}, timeout=timeout)
            if not done:
                job.cancel()
                return _timed_out(context, timeout)
        raw = await job
    except asyncio.CancelledError:
        job.cancel()
        context.cancel_event.set()
        raise
    except Exception as error:
        return _failure(error)
    return _finish(raw)


def _in_context(task: TaskFunction, value: Any, context: TaskExecutionContext) -> Any:
    ctx = copy_context()
    ctx.run(current.set, context)
    return lambda: ctx.run(task, value)
