"""What a schedule does now: given its cron, its policy, what it decided before and what runs,
which tick starts a run, which ticks are skipped and why, which active runs are replaced.

Pure: the operator passes the clock reading in (:mod:`plait_operator.schedules` carries the plan
out), and the engine tests drive it with an injected clock. The rules are CronJob's:

- the ticks due are those after the latest one already decided (started or skipped; at first the
  schedule's creation) and at or before now; only the latest of them may start a run, the older
  ones are skipped as ``Missed`` (the operator was down, or the schedule suspended);
- a tick that cannot start within ``startingDeadlineSeconds`` of its time is skipped as
  ``DeadlineExceeded``;
- ``Forbid`` with a run active holds the tick back: it starts when the active run finishes, unless
  a newer tick or its deadline comes first (then it is skipped as ``ConcurrencyForbidden``);
  ``Replace`` cancels the active runs and starts the new one; ``Allow`` just starts it;
- a tick that already has an instance (a crash after creating it, a backfill) is taken as started,
  even while the schedule is suspended (the run was made just before the suspension arrived).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection
from dataclasses import dataclass, field

from plait._scheduling.cron import Cron

MAX_ENUMERATED_TICKS = 10_000  # beyond, missed ticks are counted as "at least" this many
RECENT_SKIPS = 10  # skip records a schedule's status keeps


@dataclass(frozen=True)
class Skip:
    """Consecutive ticks ``first`` to ``last`` that ran nothing; ``count`` of them (a lower bound
    when ``exact`` is false)."""

    reason: str
    first: float
    last: float
    count: int
    exact: bool = True

    @property
    def message(self) -> str:
        count = f"{self.count}" if self.exact else f"at least {self.count}"
        return {
            "Missed": f"{count} tick(s) passed while no run could start (operator down or schedule suspended); "
            "only the latest due tick runs",
            "DeadlineExceeded": f"{count} tick(s) could not start within startingDeadlineSeconds",
            "ConcurrencyForbidden": f"{count} tick(s) came while a run was active and concurrencyPolicy is Forbid",
            "FailedToStart": "the API server refused the run (see the FailedCreate Event)",
        }[self.reason]


@dataclass(frozen=True)
class Policy:
    """The parts of a schedule's spec that decide what happens at a tick."""

    concurrency: str = "Allow"  # Allow, Forbid, Replace
    starting_deadline: float | None = None
    suspended: bool = False


@dataclass(frozen=True)
class Plan:
    start: float | None = None  # the tick to start a run for now
    adopted: float | None = None  # the tick whose run already exists: it counts as started
    waiting: float | None = None  # the tick Forbid holds back until the active runs finish
    skips: list[Skip] = field(default_factory=list)
    replace: list[str] = field(default_factory=list)  # active runs to cancel first (Replace)
    next_tick: float | None = None  # the first tick after now (none while suspended)
    wake_at: float | None = None  # when to look again (besides when a run finishes)

    @property
    def started(self) -> float | None:
        return self.start if self.start is not None else self.adopted


def decided_until(created: float, last_started: float | None, skips: Collection[Skip]) -> float:
    """The latest moment whose ticks are decided: the schedule's creation, its latest started tick
    or its latest skipped one, whichever is latest."""
    return max([created, *([last_started] if last_started is not None else []), *(s.last for s in skips)])


def plan(
    cron: Cron,
    policy: Policy,
    *,
    now: float,
    decided: float,
    active: Collection[str],
    existing: Collection[float],
) -> Plan:
    """The plan at ``now`` for ticks after ``decided``; ``active`` names the runs not finished,
    ``existing`` holds the ticks that have an instance already."""
    if policy.suspended:
        # Nothing starts. A run made for a due tick just before the suspension arrived still
        # counts, with the ticks it skipped: the decision as it was at that tick.
        made = [tick for tick in existing if decided < tick <= now]
        if not made:
            return Plan()
        then = plan(
            cron,
            dataclasses.replace(policy, suspended=False),
            now=max(made),
            decided=decided,
            active=active,
            existing=existing,
        )
        return Plan(adopted=then.adopted, skips=then.skips)
    next_tick = cron.next_after(now)
    due, older, exact = _due(cron, decided, now)
    if due is None:
        return Plan(next_tick=next_tick, wake_at=next_tick)
    forbidden = policy.concurrency == "Forbid" and bool(active)
    skips = []
    if older:
        backfilled = sum(1 for tick in existing if older[0] <= tick <= older[1])
        if older[2] > backfilled:
            reason = "ConcurrencyForbidden" if forbidden else "Missed"
            skips.append(Skip(reason, older[0], older[1], older[2] - backfilled, exact))
    if due in existing:
        return Plan(adopted=due, skips=skips, next_tick=next_tick, wake_at=next_tick)
    deadline = policy.starting_deadline
    if deadline is not None and now - due > deadline:
        skips.append(Skip("ConcurrencyForbidden" if forbidden else "DeadlineExceeded", due, due, 1))
        return Plan(skips=skips, next_tick=next_tick, wake_at=next_tick)
    if forbidden:
        expires = due + deadline if deadline is not None else None
        wake = min(t for t in (next_tick, expires) if t is not None) if (next_tick or expires) else None
        return Plan(waiting=due, skips=skips, next_tick=next_tick, wake_at=wake)
    replace = sorted(active) if policy.concurrency == "Replace" else []
    return Plan(start=due, skips=skips, replace=replace, next_tick=next_tick, wake_at=next_tick)


def _due(cron: Cron, decided: float, now: float) -> tuple[float | None, tuple[float, float, int] | None, bool]:
    """The latest tick in (decided, now]; the older ones there as (first, last, count); whether
    that count is exact."""
    first: float | None = None
    previous: float | None = None
    latest: float | None = None
    count = 0
    for tick in cron.after(decided):
        if tick > now:
            break
        count += 1
        if count > MAX_ENUMERATED_TICKS:  # too many to walk through: jump to the latest
            latest = cron.latest_until(now)
            assert first is not None and latest is not None
            return latest, (first, cron.latest_until(latest - 1) or first, count), False
        first = tick if first is None else first
        previous, latest = latest, tick
    if latest is None:
        return None, None, True
    if previous is None or first is None:
        return latest, None, True
    return latest, (first, previous, count - 1), True


def recent(previous: list[Skip], new: list[Skip]) -> list[Skip]:
    """The skip records to keep: the newest :data:`RECENT_SKIPS`."""
    return [*previous, *new][-RECENT_SKIPS:]
