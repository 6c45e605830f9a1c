"""Exponential backoff for the adapters' retry loops: watch reconnects, a worker's claims and
results, an instance's failed reconciles. The delays follow the task retry policy's formula
(:class:`plait._core.definition.Retry`), doubling from ``initial`` up to ``limit``."""

from __future__ import annotations

import asyncio

from plait._core.definition import Retry

_MAX_DOUBLINGS = 64  # past this the delay is the limit anyway; keeps the power finite


class Backoff:
    def __init__(self, initial: float, limit: float) -> None:
        self._policy = Retry(max_retries=0, initial_delay_secs=initial, backoff_multiplier=2.0, max_delay_secs=limit)
        self._failures = 0

    def next(self) -> float:
        """The delay before the next try, one failure further on."""
        self._failures = min(self._failures + 1, _MAX_DOUBLINGS)
        return self._policy.delay(self._failures)

    def reset(self) -> None:
        """After a success: the next failure waits ``initial`` again."""
        self._failures = 0

    async def wait(self, delay: float | None = None) -> None:
        """Sleep ``delay`` (as :meth:`next` gave it), or the next delay."""
        await asyncio.sleep(self.next() if delay is None else delay)
