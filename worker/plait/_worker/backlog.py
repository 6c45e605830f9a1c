"""A worker's backlog: the unclaimed tasks it may claim, in the order it claims them.

Which worker takes a task is decided by rendezvous hashing among the live workers that serve it
(:func:`claim_delay`): the first in the task's order may take it at once, the others only when
it is still unclaimed ``CLAIM_STAGGER_SECONDS`` later for each peer ranked before them. Ready
tasks go by priority (1 first), then the worker's own before its peers' leftovers, then age.
Heaps keep this cheap with thousands waiting; entries of tasks that left the backlog (claimed
elsewhere) are skipped when they come up. Used by :mod:`plait._worker.runtime`; no I/O.
"""

from __future__ import annotations

import hashlib
import heapq
import time
from collections.abc import Collection

from plait._kube.client import JSON
from plait._kube.models import without_managed_fields

#: A worker ranked after a peer waits this long per such peer before taking a task.
CLAIM_STAGGER_SECONDS = 2.0
#: A task the first-ranked worker runs before claiming must be claimed by then if still running.
RUN_BEFORE_CLAIM_SECONDS = 1.0


def claim_delay(task: str, identity: str, peers: Collection[str], settled: bool) -> float:
    """How long ``identity`` leaves ``task`` to the peers ranked before it. A worker that peers
    may not count yet takes nothing at once: a peer may be running the task unclaimed."""
    if not peers:
        return 0.0
    if not settled:
        return CLAIM_STAGGER_SECONDS
    mine = _rank(task, identity)
    return CLAIM_STAGGER_SECONDS * sum(1 for peer in peers if _rank(task, peer) < mine)


class Backlog:
    def __init__(self) -> None:
        self.tasks: dict[str, JSON] = {}
        self._ready: list[tuple[int, int, str, str]] = []  # heap of _order(...)
        self._delayed: list[tuple[float, str]] = []  # heap of (monotonic time it becomes ready, name)
        # Tasks this worker ranks first for while settled -> when a claim must be written if they
        # are still running (monotonic time): until then they may run unclaimed.
        self._claim_by: dict[str, float] = {}

    def __contains__(self, name: str) -> bool:
        return name in self.tasks

    def offer(self, body: JSON, delay: float, claim_by: float | None) -> None:
        """Keep an unclaimed task (what claiming needs of it): ready now, or after ``delay``."""
        name = body["metadata"]["name"]
        if name not in self.tasks:
            if delay:
                heapq.heappush(self._delayed, (time.monotonic() + delay, name))
            else:
                heapq.heappush(self._ready, _order(body, preferred=True))
                if claim_by is not None:
                    self._claim_by[name] = claim_by
        self.tasks[name] = without_managed_fields(body)

    def discard(self, name: str) -> None:
        self.tasks.pop(name, None)
        self._claim_by.pop(name, None)

    def retry_later(self, body: JSON, delay: float) -> None:
        """A claim that failed for want of the API server: ready again in ``delay``, unless taken meanwhile."""
        name = body["metadata"]["name"]
        self.tasks.setdefault(name, body)
        heapq.heappush(self._delayed, (time.monotonic() + delay, name))

    def clear(self) -> None:
        self.tasks.clear()
        self._claim_by.clear()

    def promote(self, now: float) -> None:
        """Delayed tasks whose time has come are ready, after the ones this worker ranks first for."""
        while self._delayed and self._delayed[0][0] <= now:
            _, name = heapq.heappop(self._delayed)
            if name in self.tasks:
                heapq.heappush(self._ready, _order(self.tasks[name], preferred=False))

    def take(self) -> tuple[JSON, float | None] | None:
        """The next ready task to claim, with when its claim is due if it may run unclaimed first."""
        while self._ready:
            name = heapq.heappop(self._ready)[-1]
            body = self.tasks.pop(name, None)
            claim_by = self._claim_by.pop(name, None)
            if body is not None:
                return body, claim_by
        return None

    @property
    def next_due(self) -> float | None:
        """When the earliest delayed task becomes ready (monotonic time)."""
        return self._delayed[0][0] if self._delayed else None


def _rank(task: str, worker: str) -> bytes:
    return hashlib.blake2b(f"{task}/{worker}".encode(), digest_size=8).digest()


def _order(body: JSON, *, preferred: bool) -> tuple[int, int, str, str]:
    spec = body["spec"]
    return (
        spec.get("priority") or 3,
        0 if preferred else 1,
        body["metadata"].get("creationTimestamp", ""),
        body["metadata"]["name"],
    )
