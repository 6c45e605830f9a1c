"""Flow control in the operator: which instances may start, and which tasks workers may see.

:class:`InstanceGate` admits instances of workflows with ``Flow(concurrency=...)``: per
(namespace, workflow, key) at most ``max_runs`` hold a slot (from their start until they finish);
the others wait, first in first out, in phase ``Queued``, or are cancelled (``cancel_newest``), or
make the oldest running one give way (``cancel_in_progress``). :class:`TaskGate` holds back tasks
of steps with ``@task(concurrency=..., rate_limit=...)``: a held task carries the label
``plait.dev/held`` (workers select ``!plait.dev/held``), and the gate lets it through by removing the
label when a slot is free and the rate allows.

Both are exact across restarts: what holds a slot is written in the objects themselves
(``status.concurrency`` of a running instance, a task without the held label, its
``plait.dev/admitted-at``), and a gate admits nothing in a namespace before it has seen every
object there (the instances listed once; the task watch synced). Instance actors
(:mod:`plait_operator.instances`) ask the gates; the controller feeds them watch events. Objects of
unlimited flows are passed over after one dictionary lookup.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from plait._backoff import Backoff
from plait._core.flowcontrol import Concurrency, RateLimit
from plait._kube.client import JSON
from plait._kube.models import (
    ADMITTED_AT_ANNOTATION,
    FINISHED_PHASES,
    HELD_LABEL,
    TASK_RESULT_PHASES,
    parse_rfc3339,
    revision,
)
from plait_operator.metrics import OperatorMetrics

log = logging.getLogger(__name__)

#: Queued instances whose ``status.concurrency.position`` is kept current (the ones about to start).
TRACKED_POSITIONS = 10
#: A held task's priority improves by one for every this many seconds it waits (low priority never starves).
AGING_SECONDS = 60.0
_TASK_DONE = TASK_RESULT_PHASES | {"Cancelled"}

Group = tuple[str, str, str | None]  # (namespace, workflow or task, key)


def describe(kind: str, name: str, key: str | None) -> str:
    return f"{kind} {name!r}" + (f" for key {key!r}" if key is not None else "")


# -- instances ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Admitted:
    queued_seconds: float


@dataclass(frozen=True)
class Queued:
    position: int
    queued_at: float


@dataclass(frozen=True)
class Refused:
    message: str


Decision = Admitted | Queued | Refused


@dataclass
class _Member:
    group: Group
    running: bool
    created: str  # creationTimestamp: first in, first out (to the second, then by name)
    queued_at: float  # when it first asked (or status.queuedAt)
    cancelling: bool = False
    known_since: float = field(default_factory=time.monotonic)

    def order(self, name: str) -> tuple[str, str]:
        return (self.created, name)


@dataclass
class _InstanceGroup:
    max_runs: int
    running: set[str] = field(default_factory=set)
    queued: set[str] = field(default_factory=set)


class InstanceGate:
    def __init__(
        self,
        list_instances: Callable[[str], Awaitable[list[JSON]]],
        wake: Callable[[str, str], None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._list = list_instances
        self._wake = wake
        self._clock = clock
        self._members: dict[tuple[str, str], _Member] = {}
        self._groups: dict[Group, _InstanceGroup] = {}
        self._loads: dict[str, asyncio.Future[None]] = {}
        # While a namespace is being listed: the revision of the latest event per instance, so a
        # list older than an event does not undo it.
        self._seen_while_loading: dict[str, dict[str, int]] = {}
        self._refresh: dict[Group, asyncio.TimerHandle] = {}
        # Instances the watch showed and no reconcile has looked at yet (no status), per (namespace,
        # workflow), with their creationTimestamp: a later one does not overtake them to a free slot.
        self._fresh: dict[tuple[str, str], dict[str, str]] = {}

    async def ready(self, namespace: str) -> None:
        """Returns once every instance of ``namespace`` is known (the first call lists them)."""
        load = self._loads.get(namespace)
        if load is None:
            load = self._loads[namespace] = asyncio.ensure_future(self._load(namespace))
        try:
            await asyncio.shield(load)
        except Exception:
            if self._loads.get(namespace) is load:
                del self._loads[namespace]  # the next request lists again
            raise

    async def _load(self, namespace: str) -> None:
        seen = self._seen_while_loading[namespace] = {}
        try:
            bodies = await self._list(namespace)
        finally:
            del self._seen_while_loading[namespace]
        for body in bodies:
            if revision(body) > seen.get(body["metadata"]["name"], 0):
                self._apply(body)

    def observe(self, event_type: str | None, body: JSON) -> None:
        meta = body["metadata"]
        seen = self._seen_while_loading.get(meta["namespace"])
        if seen is not None:
            seen[meta["name"]] = revision(body)
        workflow = (body.get("spec") or {}).get("workflow", "")
        fresh = self._fresh.setdefault((meta["namespace"], workflow), {})
        new = not body.get("status") and (meta["namespace"], meta["name"]) not in self._members
        if event_type != "DELETED" and new and "deletionTimestamp" not in meta:
            fresh.setdefault(meta["name"], meta.get("creationTimestamp", ""))
        elif fresh.pop(meta["name"], None) is not None:
            self._fresh_left(meta["namespace"], workflow)
        if not fresh:
            del self._fresh[(meta["namespace"], workflow)]
        if event_type == "DELETED":
            self._remove((meta["namespace"], meta["name"]))
        else:
            self._apply(body)

    def namespaces_waiting(self) -> set[str]:
        """Namespaces where instances wait (what :meth:`audit` is worth a list request for)."""
        return {group[0] for group, entry in self._groups.items() if entry.queued}

    def audit(self, namespace: str, bodies: list[JSON], listed_at: float) -> None:
        """Forget instances the watch never said were deleted (a watch that resumed after a gap
        does not replay deletions): those known before ``listed_at`` (monotonic) and not listed.
        A slot that nobody frees would stop its queue for good."""
        present = {body["metadata"]["name"] for body in bodies}
        for key, member in list(self._members.items()):
            if key[0] == namespace and key[1] not in present and member.known_since < listed_at:
                log.warning("instance=%s/%s is gone without a deletion event; its slot is free", *key)
                self._remove(key)

    def _fresh_left(self, namespace: str, workflow: str) -> None:
        for group in [group for group in self._groups if group[0] == namespace and group[1] == workflow]:
            self._moved(group)

    def _apply(self, body: JSON) -> None:
        meta, status = body["metadata"], body.get("status") or {}
        key = (meta["namespace"], meta["name"])
        phase = status.get("phase")
        if phase in FINISHED_PHASES:
            self._remove(key)
            return
        concurrency = status.get("concurrency")
        member = self._members.get(key)
        if not concurrency or (member is not None and member.running):
            return  # nothing to do with limits, or already holding its slot (never given back unfinished)
        group: Group = (meta["namespace"], (body.get("spec") or {}).get("workflow", ""), concurrency.get("key"))
        queued_at = concurrency.get("queuedAt") or meta.get("creationTimestamp")
        created = meta.get("creationTimestamp", "")
        self._add(key, group, int(concurrency.get("maxRuns", 1)), phase != "Queued", created, queued_at)

    def _add(
        self, key: tuple[str, str], group: Group, max_runs: int, running: bool, created: str, queued_at: str | None
    ) -> None:
        previous = self._members.get(key)
        if previous is not None and previous.group != group:
            self._remove(key)
            previous = None
        entry = self._groups.setdefault(group, _InstanceGroup(max_runs))
        if previous is None:
            at = parse_rfc3339(queued_at) if queued_at else self._clock()
            previous = self._members[key] = _Member(group, running, created, at)
        previous.running = running
        (entry.running if running else entry.queued).add(key[1])
        (entry.queued if running else entry.running).discard(key[1])

    def _remove(self, key: tuple[str, str]) -> None:
        member = self._members.pop(key, None)
        if member is None:
            return
        entry = self._groups.get(member.group)
        if entry is None:
            return
        entry.running.discard(key[1])
        entry.queued.discard(key[1])
        if not entry.running and not entry.queued:
            del self._groups[member.group]
        else:
            self._moved(member.group)

    def _waiting(self, group: Group) -> list[str]:
        entry = self._groups[group]
        namespace = group[0]
        members = [(self._members[(namespace, name)], name) for name in entry.queued]
        return [
            name for member, name in sorted(members, key=lambda pair: pair[0].order(pair[1])) if not member.cancelling
        ]

    def _moved(self, group: Group) -> None:
        """Slots freed or the queue changed: wake who may start now, and soon the next few (positions)."""
        entry = self._groups.get(group)
        if entry is None or not entry.queued:
            return
        waiting = self._waiting(group)
        for name in waiting[: max(0, entry.max_runs - len(entry.running))]:
            self._wake(group[0], name)
        if group not in self._refresh:
            self._refresh[group] = asyncio.get_running_loop().call_later(1.0, self._refresh_positions, group)

    def _refresh_positions(self, group: Group) -> None:
        self._refresh.pop(group, None)
        if group in self._groups:
            for name in self._waiting(group)[:TRACKED_POSITIONS]:
                self._wake(group[0], name)

    def admit(
        self, instance: JSON, workflow: str, concurrency: Concurrency, key: str | None
    ) -> tuple[Decision, list[str]]:
        """May this instance start? And which instances must be cancelled to make room (``cancel_in_progress``)."""
        meta = instance["metadata"]
        namespace, name, created = meta["namespace"], meta["name"], meta.get("creationTimestamp", "")
        group: Group = (namespace, workflow, key)
        now = self._clock()
        member = self._members.get((namespace, name))
        if member is not None and member.group != group:
            self._remove((namespace, name))
            member = None
        entry = self._groups.get(group)
        if entry is not None:
            entry.max_runs = concurrency.max_runs
        if member is not None and member.running:
            return Admitted(0.0), []
        what = describe("workflow", workflow, key)
        victims: list[str] = []
        first_time = member is None
        fresh = self._fresh.get((namespace, workflow), {})
        was_fresh = fresh.pop(name, None) is not None
        if member is None:
            waiting_before = self._waiting(group) if entry is not None else []
            running = len(entry.running) if entry is not None else 0
            if concurrency.strategy == "cancel_newest" and running + len(waiting_before) >= concurrency.max_runs:
                return Refused(
                    f"{running} of {concurrency.max_runs} slot(s) of {what} are taken (strategy cancel_newest)"
                ), []
            self._add((namespace, name), group, concurrency.max_runs, False, created, None)
            entry = self._groups[group]
            member = self._members[(namespace, name)]
            if concurrency.strategy == "cancel_in_progress":
                victims = self._supersede(group, concurrency.max_runs)
        assert entry is not None
        waiting = self._waiting(group)
        free = concurrency.max_runs - len(entry.running)
        position = waiting.index(name) if name in waiting else len(waiting)
        if fresh:  # older ones the watch showed, not asking yet
            position += sum(1 for other, at in fresh.items() if (at, other) < member.order(name))
        if was_fresh:
            self._fresh_left(namespace, workflow)  # the ones it kept waiting may go now
        if position < free:
            self._add((namespace, name), group, concurrency.max_runs, True, created, None)
            if not first_time:
                self._moved(group)  # the ones behind it moved up
            return Admitted(max(0.0, now - member.queued_at)), victims
        return Queued(position + 1 - max(0, free), member.queued_at), victims

    def _supersede(self, group: Group, max_runs: int) -> list[str]:
        """``cancel_in_progress``: keep only the newest ``max_runs`` (running or waiting); cancel the rest."""
        entry = self._groups[group]
        namespace = group[0]
        running = sorted(
            (name for name in entry.running if not self._members[(namespace, name)].cancelling),
            key=lambda name: self._members[(namespace, name)].order(name),
        )
        candidates = running + self._waiting(group)
        victims = candidates[: max(0, len(candidates) - max_runs)]
        for name in victims:
            self._members[(namespace, name)].cancelling = True
        return victims


# -- tasks --------------------------------------------------------------------------------------------


@dataclass
class _Held:
    name: str
    namespace: str
    task: str
    workflow: str
    priority: int
    since: float  # when it was created (epoch seconds)
    concurrency: Group | None
    limit: int
    rate: Group | None
    interval: float
    reason: str


@dataclass(frozen=True)
class TaskLimits:
    """A limited task as the gate sees it: which groups it counts in, and their limits."""

    task: str
    concurrency: Group | None
    limit: int
    rate: Group | None
    interval: float


def task_limits(namespace: str, spec: JSON) -> TaskLimits | None:
    """The limits in a task's ``spec.flowControl`` (None: an unlimited task)."""
    control = spec.get("flowControl")
    if not control:
        return None
    task = spec.get("task", "")
    concurrency: Group | None = None
    rate: Group | None = None
    if control.get("concurrency"):
        concurrency = (namespace, task, control.get("concurrencyKey"))
    interval = 0.0
    if control.get("rateLimit"):
        rate = (namespace, task, control.get("rateLimitKey"))
        interval = RateLimit(control["rateLimit"]).interval
    return TaskLimits(task, concurrency, int(control.get("concurrency") or 0), rate, interval)


class TaskGate:
    def __init__(
        self,
        admit: Callable[[str, str], Awaitable[bool]],
        synced: Callable[[str], bool],
        metrics: OperatorMetrics,
        spawn: Callable[[Any], None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._admit_write = admit
        self._synced = synced
        self._metrics = metrics
        self._spawn = spawn
        self._clock = clock
        self._held: dict[tuple[str, str], _Held] = {}
        self._slots: dict[tuple[str, str], Group | None] = {}  # admitted, not finished -> its concurrency group
        self._running: dict[Group, set[str]] = {}
        self._next_start: dict[Group, float] = {}  # rate group -> earliest time of the next start
        self._timers: dict[tuple[str, str], asyncio.TimerHandle] = {}  # (namespace, task) -> next pump
        self._queues: dict[tuple[str, str], set[str]] = {}  # (namespace, task) -> its held tasks
        self._known_since: dict[tuple[str, str], float] = {}  # held or admitted -> since when (monotonic)

    # -- what the watch says -------------------------------------------------------------------------

    def observe(self, event_type: str, body: JSON) -> None:
        spec = body.get("spec") or {}
        if not spec.get("flowControl"):
            return
        meta = body["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        key = (namespace, name)
        limits = task_limits(namespace, spec)
        assert limits is not None
        phase = (body.get("status") or {}).get("phase")
        if event_type == "DELETED" or phase in _TASK_DONE:
            self._finished(key, limits)
            return
        if key in self._slots:
            return  # admitted: stays so until it finishes
        labels = meta.get("labels") or {}
        if HELD_LABEL in labels:
            if key not in self._held:
                created = meta.get("creationTimestamp")
                self._hold(key, spec, limits, parse_rfc3339(created) if created else self._clock(), labels[HELD_LABEL])
                self._pump(namespace, limits.task)
            return
        self._unhold(key)
        admitted_at = (meta.get("annotations") or {}).get(ADMITTED_AT_ANNOTATION)
        self._occupy(key, limits, parse_rfc3339(admitted_at) if admitted_at else None)

    def _unhold(self, key: tuple[str, str]) -> None:
        held = self._held.pop(key, None)
        if held is not None:
            queue = self._queues[(held.namespace, held.task)]
            queue.discard(held.name)
            if not queue:
                del self._queues[(held.namespace, held.task)]

    def _hold(self, key: tuple[str, str], spec: JSON, limits: TaskLimits, since: float, reason: str) -> None:
        self._queues.setdefault((key[0], limits.task), set()).add(key[1])
        self._known_since.setdefault(key, time.monotonic())
        self._held[key] = _Held(
            key[1],
            key[0],
            limits.task,
            spec.get("workflow", ""),
            int(spec.get("priority") or 3),
            since,
            limits.concurrency,
            limits.limit,
            limits.rate,
            limits.interval,
            reason,
        )

    def _occupy(self, key: tuple[str, str], limits: TaskLimits, started: float | None) -> None:
        self._slots[key] = limits.concurrency
        self._known_since.setdefault(key, time.monotonic())
        if limits.concurrency is not None:
            self._running.setdefault(limits.concurrency, set()).add(key[1])
        if limits.rate is not None and started is not None:
            due = started + limits.interval
            if due > self._next_start.get(limits.rate, 0.0):
                self._next_start[limits.rate] = due

    def _finished(self, key: tuple[str, str], limits: TaskLimits) -> None:
        self._unhold(key)
        self._known_since.pop(key, None)
        if key in self._slots:
            group = self._slots.pop(key)
            if group is not None:
                running = self._running.get(group)
                if running is not None:
                    running.discard(key[1])
                    if not running:
                        del self._running[group]
            self._pump(key[0], limits.task)

    # -- deciding --------------------------------------------------------------------------------------

    def at_dispatch(self, namespace: str, name: str, spec: JSON) -> tuple[bool, str, str]:
        """A task about to be created: may it run at once (it then holds its slot)? With the
        reason (``Concurrency`` or ``RateLimit``) and message when it may not."""
        key = (namespace, name)
        limits = task_limits(namespace, spec)
        assert limits is not None
        if key in self._slots:
            return True, "", ""
        now = self._clock()
        held = self._held.get(key)
        if held is not None:  # known already (say, from before a restart)
            return False, held.reason, self._message(limits, spec, held.reason)
        blocked = self._blocked(limits, now)
        if not self._synced(namespace):
            blocked = blocked or "Concurrency"  # not every task is known yet: every limited one waits
            self._schedule(namespace, limits.task, 0.5)
        elif blocked is None and (namespace, limits.task) not in self._queues:
            self._start(key, limits, now)
            return True, "", ""
        elif blocked is None:  # others wait for this task: in line with them, best first
            blocked = "Concurrency" if limits.concurrency is not None else "RateLimit"
            self._schedule(namespace, limits.task, 0.05)  # once it exists
        elif blocked == "RateLimit" and limits.rate is not None:
            self._schedule(namespace, limits.task, max(0.0, self._next_start[limits.rate] - now))
        self._hold(key, spec, limits, now, blocked)
        return False, blocked, self._message(limits, spec, blocked)

    def created_failed(self, namespace: str, name: str, spec: JSON) -> None:
        """The task could not be created: whatever it took is given back."""
        limits = task_limits(namespace, spec)
        if limits is not None:
            self._finished((namespace, name), limits)

    def _blocked(self, limits: TaskLimits, now: float) -> str | None:
        if limits.concurrency is not None and len(self._running.get(limits.concurrency, ())) >= limits.limit:
            return "Concurrency"
        if limits.rate is not None and now < self._next_start.get(limits.rate, 0.0):
            return "RateLimit"
        return None

    def _start(self, key: tuple[str, str], limits: TaskLimits, now: float) -> None:
        self._occupy(key, limits, None)
        if limits.rate is not None:
            # One token of room: a start the timer let through a little late does not push the
            # next ones back (the rate holds on average), and after a pause at most one is early.
            due = self._next_start.get(limits.rate)
            self._next_start[limits.rate] = (
                now if due is None else max(due, now - limits.interval / 2)
            ) + limits.interval

    @staticmethod
    def _message(limits: TaskLimits, spec: JSON, reason: str) -> str:
        control = spec.get("flowControl") or {}
        if reason == "RateLimit":
            what = describe("task", limits.task, control.get("rateLimitKey"))
            return f"waiting for the rate limit {control.get('rateLimit')} of {what}"
        what = describe("task", limits.task, control.get("concurrencyKey"))
        return f"waiting for one of {limits.limit} slot(s) of {what}"

    def _schedule(self, namespace: str, task: str, delay: float) -> None:
        timer_key = (namespace, task)
        at = asyncio.get_running_loop().time() + delay
        existing = self._timers.get(timer_key)
        if existing is not None:
            if existing.when() <= at:
                return
            existing.cancel()
        self._timers[timer_key] = asyncio.get_running_loop().call_at(at, self._pump_due, namespace, task)

    def _pump_due(self, namespace: str, task: str) -> None:
        self._timers.pop((namespace, task), None)
        self._pump(namespace, task)

    def _pump(self, namespace: str, task: str) -> None:
        """Let through every held task of ``task`` in ``namespace`` that may start now, best first."""
        if not self._synced(namespace):
            self._schedule(namespace, task, 0.5)
            return
        now = self._clock()
        candidates = [self._held[(namespace, name)] for name in self._queues.get((namespace, task), ())]
        candidates.sort(
            key=lambda held: (held.priority - int((now - held.since) / AGING_SECONDS), held.since, held.name)
        )
        next_rate: float | None = None
        for held in candidates:
            limits = TaskLimits(held.task, held.concurrency, held.limit, held.rate, held.interval)
            blocked = self._blocked(limits, now)
            if blocked == "RateLimit" and held.rate is not None:
                due = self._next_start[held.rate] - now
                next_rate = due if next_rate is None else min(next_rate, due)
            if blocked is not None:
                continue
            key = (held.namespace, held.name)
            self._unhold(key)
            self._start(key, limits, now)
            self._metrics.task_held_seconds.labels(held.workflow, held.reason).observe(max(0.0, now - held.since))
            self._spawn(self._let_through(key, limits))
        if next_rate is not None:
            self._schedule(namespace, task, max(0.0, next_rate))

    async def _let_through(self, key: tuple[str, str], limits: TaskLimits) -> None:
        """Remove the hold; until that is written the task keeps its slot (never one too many)."""
        backoff = Backoff(0.2, 5.0)
        while key in self._slots:
            try:
                if not await self._admit_write(*key):  # gone
                    self._finished(key, limits)
                return
            except Exception as error:
                delay = backoff.next()
                log.warning("could not let task=%s/%s through yet (%s); retrying in %.1fs", *key, error, delay)
                await backoff.wait(delay)

    def namespaces_waiting(self) -> set[str]:
        """Namespaces where tasks are held (what :meth:`audit` is worth a list request for)."""
        return {namespace for namespace, _ in self._queues}

    def audit(self, namespace: str, bodies: list[JSON], listed_at: float) -> None:
        """Forget tasks the watch never said were deleted: those known before ``listed_at``
        (monotonic) and not among the listed limited tasks ``bodies``."""
        present = {body["metadata"]["name"] for body in bodies}
        for key in [k for k in self._known_since if k[0] == namespace and k[1] not in present]:
            if self._known_since[key] < listed_at:
                held = self._held.get(key)
                task = held.task if held is not None else ""
                log.warning("task=%s/%s is gone without a deletion event; it no longer counts", *key)
                self._finished(key, TaskLimits(task, self._slots.get(key), 0, None, 0.0))
                if held is None:
                    for other in {t for ns, t in self._queues if ns == namespace}:
                        self._pump(namespace, other)

    def held(self) -> Iterable[tuple[str, str]]:
        """(workflow, reason) of every held task (for the metrics)."""
        for held in list(self._held.values()):
            yield held.workflow, held.reason
