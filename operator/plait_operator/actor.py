"""The loop an actor runs, for the instance actors (:mod:`plait_operator.instances`) and the schedule
actors (:mod:`plait_operator.schedules`) alike: woken by :meth:`Actor.poke` or its timer, it
reconciles its object one time after another; a reconcile that fails is tried again after a backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from plait._backoff import Backoff

log = logging.getLogger(__name__)


class Actor:
    """Subclasses implement :meth:`_attempt`, one reconcile; ``kind`` names the task and the log lines."""

    def __init__(self, kind: str, namespace: str, name: str, backoff: Backoff) -> None:
        self.kind = kind
        self.namespace = namespace
        self.name = name
        self.closed = False
        self._backoff = backoff  # reset by every reconcile that succeeds
        self._wakeup = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None
        self._runner = asyncio.get_running_loop().create_task(self._run(), name=f"{kind} {namespace}/{name}")

    def poke(self) -> None:
        self._wakeup.set()

    async def close(self) -> None:
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
        self._runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._runner

    def _wake_at(self, moment: float | None, now: float, margin: float = 0.0) -> None:
        """Reconcile at ``moment`` (``now`` is the time on its clock), ``margin`` seconds late; or,
        with ``None``, only when poked. Replaces the time set before."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if moment is not None:
            self._timer = asyncio.get_running_loop().call_later(max(0.0, moment - now) + margin, self.poke)

    async def _attempt(self) -> None:
        raise NotImplementedError

    async def _run(self) -> None:
        while not self.closed:
            await self._wakeup.wait()
            self._wakeup.clear()
            try:
                await self._attempt()
            except asyncio.CancelledError:
                raise
            except Exception:
                delay = self._backoff.next()
                log.exception(
                    "reconcile failed %s=%s/%s; retrying in %.1fs", self.kind, self.namespace, self.name, delay
                )
                await self._backoff.wait(delay)
                self.poke()
                continue
            self._backoff.reset()
