"""``@task``, ``RetryPolicy`` and durations: how a Python function becomes a workflow task.

Compatible with the ``sayiir`` package: the decorator attaches metadata to the function and
returns it unchanged, so a task is still a plain function you can call in a unit test.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar, get_type_hints, overload

from plait._core.definition import Retry
from plait._core.flowcontrol import Concurrency, RateLimit

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$", re.IGNORECASE)
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: str | float | int | timedelta) -> float:
    """Seconds from a number, a ``timedelta`` or a string like ``"100ms"``, ``"30s"``, ``"5m"``, ``"2h"``."""
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, bool):
        raise ValueError(f"Invalid duration: {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"Invalid duration: {value!r} is negative")
        return float(value)
    match = _DURATION.match(value)
    if not match:
        raise ValueError(
            f'Invalid duration: "{value}". Expected a number (seconds) or a string like "30s", "5m", "1h", "100ms".'
        )
    return float(match.group(1)) * _UNITS[match.group(2).lower()]


class RetryPolicy(Retry):
    """How often and how patiently to retry a failing task: sayiir's name and defaults for the
    core's :class:`~plait._core.definition.Retry` (which validates it and computes the delays).

    ``max_retries`` attempts after the first; the n-th retry waits
    ``initial_delay_secs * backoff_multiplier ** (n - 1)`` seconds, capped at ``max_delay_secs``.
    """

    __slots__ = ()

    def __init__(
        self,
        max_retries: int = 2,
        initial_delay_secs: float = 1.0,
        backoff_multiplier: float = 2.0,
        max_delay_secs: float | None = None,
    ) -> None:
        maximum = None if max_delay_secs is None else float(max_delay_secs)
        super().__init__(max_retries, float(initial_delay_secs), float(backoff_multiplier), maximum)

    def to_retry(self) -> Retry:
        """The policy as the definition keeps it (a plain :class:`Retry`, equal to one read back)."""
        return Retry(self.max_retries, self.initial_delay_secs, self.backoff_multiplier, self.max_delay_secs)


@dataclass(frozen=True)
class TaskMetadata:
    """What ``@task`` recorded about a function."""

    display_name: str | None = None
    description: str | None = None
    timeout_secs: float | None = None
    retries: RetryPolicy | None = None
    tags: list[str] | None = None
    version: str | None = None
    priority: int | None = None
    queue: str | None = None
    concurrency: Concurrency | None = None
    rate_limit: RateLimit | None = None


def _resolve_concurrency(concurrency: int | Concurrency | None) -> Concurrency | None:
    """``@task(concurrency=...)``: a number of attempts at once, or a :class:`Concurrency` that queues."""
    if concurrency is None or isinstance(concurrency, Concurrency):
        if concurrency is not None and concurrency.strategy != "queue":
            raise ValueError(
                f"@task(concurrency=...): a task attempt can only wait for a slot (strategy 'queue'), "
                f"got strategy {concurrency.strategy!r}; cancel strategies apply to Flow(concurrency=...)"
            )
        return concurrency
    if isinstance(concurrency, bool) or not isinstance(concurrency, int):
        raise TypeError(f"@task(concurrency=...) takes a whole number or a Concurrency, got {concurrency!r}")
    return Concurrency(concurrency)


def _resolve_rate_limit(rate_limit: str | RateLimit | None) -> RateLimit | None:
    if rate_limit is None or isinstance(rate_limit, RateLimit):
        return rate_limit
    if not isinstance(rate_limit, str):
        raise TypeError(f'@task(rate_limit=...) takes a string like "10/s" or a RateLimit, got {rate_limit!r}')
    return RateLimit(rate_limit)


def _resolve_retries(retries: int | RetryPolicy | None) -> RetryPolicy | None:
    if retries is None:
        return None
    if isinstance(retries, bool) or not isinstance(retries, int | RetryPolicy):
        raise TypeError(f"retries must be an int or a RetryPolicy, got {retries!r}")
    if isinstance(retries, int):
        return RetryPolicy(max_retries=retries, initial_delay_secs=1.0, backoff_multiplier=2.0)
    return retries


@overload
def task(func: F) -> F: ...


@overload
def task(
    func: str | None = None,
    *,
    name: str | None = None,
    timeout: str | float | timedelta | None = None,
    timeout_secs: float | None = None,
    retries: int | RetryPolicy | None = None,
    tags: list[str] | None = None,
    description: str | None = None,
    priority: int | None = None,
    queue: str | None = None,
    concurrency: int | Concurrency | None = None,
    rate_limit: str | RateLimit | None = None,
) -> Callable[[F], F]: ...


def task(
    func: Callable[..., Any] | str | None = None,
    *,
    name: str | None = None,
    timeout: str | float | timedelta | None = None,
    timeout_secs: float | None = None,
    retries: int | RetryPolicy | None = None,
    tags: list[str] | None = None,
    description: str | None = None,
    priority: int | None = None,
    queue: str | None = None,
    concurrency: int | Concurrency | None = None,
    rate_limit: str | RateLimit | None = None,
) -> Any:
    """Mark a function as a workflow task; use bare, as ``@task("name")`` or with keywords.

    ``timeout`` (seconds or ``"30s"``) is enforced for sync and async tasks alike; ``retries`` is
    an int (that many retries, 1 s initial delay, doubling) or a :class:`RetryPolicy`;
    ``priority`` is 1-5; ``queue`` (plait) picks the worker pool that runs the task.
    ``concurrency`` (plait: a number or a :class:`Concurrency`) caps the attempts of this task
    running at once in a namespace, per key of the task's input; ``rate_limit`` (plait:
    ``"10/s"``, ``"100/m"``, ``"5/h"`` or a :class:`RateLimit`) caps how many start per period.
    The operator enforces both (see docs/flow-control.md); the local runner ignores them.
    """
    if isinstance(func, str):
        name, func = func, None
    resolved_timeout = parse_duration(timeout) if timeout is not None else timeout_secs
    if resolved_timeout is not None and resolved_timeout <= 0:
        raise ValueError(f"timeout must be positive, got {resolved_timeout}")
    resolved_retries = _resolve_retries(retries)
    resolved_concurrency = _resolve_concurrency(concurrency)
    resolved_rate_limit = _resolve_rate_limit(rate_limit)
    if priority is not None and not 1 <= priority <= 5:
        raise ValueError(f"priority must be between 1 and 5, got {priority}")
    if tags is not None:
        if len(tags) > 20:
            raise ValueError(f"too many tags: {len(tags)} (max 20)")
        for tag in tags:
            if not tag:
                raise ValueError("tags must not contain empty strings")
            if len(tag) > 64:
                raise ValueError(f"tag too long: '{tag}' ({len(tag)} chars, max 64)")

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        task_id = name or fn.__name__
        fn._task_id = task_id  # type: ignore[attr-defined]
        fn._metadata = TaskMetadata(  # type: ignore[attr-defined]
            display_name=task_id,
            description=description,
            timeout_secs=resolved_timeout,
            retries=resolved_retries,
            tags=tags,
            priority=priority,
            queue=queue,
            concurrency=resolved_concurrency,
            rate_limit=resolved_rate_limit,
        )
        fn._input_type, fn._output_type = io_types(fn)  # type: ignore[attr-defined]
        return fn

    if func is not None and callable(func):
        return decorate(func)
    return decorate


def io_types(fn: Callable[..., Any]) -> tuple[Any, Any]:
    """The annotated type of the first parameter and of the return value, where known."""
    try:
        hints = get_type_hints(fn)
    except Exception:  # annotations that do not resolve are simply unknown
        hints = {}
    try:
        params = list(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        params = []
    return (hints.get(params[0]) if params else None), hints.get("return")
