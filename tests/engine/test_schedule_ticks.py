"""Schedules without a cluster: ticks in time zones (cronsim underneath), the daylight-saving
nights, macros, and what is started or skipped when, driven by an injected clock."""

from __future__ import annotations

import itertools
from collections.abc import Collection
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from plait._scheduling.cron import MACROS, Cron, InvalidSchedule
from plait._scheduling.planning import MAX_ENUMERATED_TICKS, Plan, Policy, Skip, decided_until, plan

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def at(zone: ZoneInfo, *fields: int, fold: int = 0) -> float:
    return datetime(*fields, tzinfo=zone, fold=fold).timestamp()  # type: ignore[misc]


def local(moment: float, zone: ZoneInfo) -> str:
    return datetime.fromtimestamp(moment, zone).strftime("%m-%d %H:%M:%S%z")


def ticks(cron: Cron, start: float, end: float) -> list[float]:
    return list(itertools.takewhile(lambda t: t <= end, cron.after(start)))


# -- ticks -------------------------------------------------------------------------------------------


def test_a_daily_time_is_read_in_the_time_zone() -> None:
    cron = Cron.parse("0 2 * * *", "Europe/Berlin")
    winter, summer = cron.next_after(at(BERLIN, 2026, 1, 10, 12, 0)), cron.next_after(at(BERLIN, 2026, 7, 10, 12, 0))
    assert winter is not None and summer is not None
    assert datetime.fromtimestamp(winter, BERLIN).isoformat() == "2026-01-11T02:00:00+01:00"
    assert datetime.fromtimestamp(summer, BERLIN).isoformat() == "2026-07-11T02:00:00+02:00"
    assert Cron.parse("0 2 * * *").next_after(at(ZoneInfo("UTC"), 2026, 1, 10, 12, 0)) == at(
        ZoneInfo("UTC"), 2026, 1, 11, 2, 0
    )  # no time zone: UTC


@pytest.mark.parametrize(
    ("zone", "night", "expected"),
    [
        (BERLIN, (2026, 3, 28), ["03-29 03:00:00+0200", "03-30 02:30:00+0200", "03-31 02:30:00+0200"]),
        (NEW_YORK, (2026, 3, 7), ["03-08 03:00:00-0400", "03-09 02:30:00-0400", "03-10 02:30:00-0400"]),
    ],
    ids=["berlin", "new-york"],
)
def test_spring_forward_a_time_in_the_gap_runs_once_right_after_it(
    zone: ZoneInfo, night: tuple[int, int, int], expected: list[str]
) -> None:
    """02:30 does not exist that night (clocks jump from 02:00 to 03:00): it runs at 03:00, once."""
    cron = Cron.parse("30 2 * * *", zone.key)
    begin = at(zone, *night, 12, 0)
    assert [local(t, zone) for t in ticks(cron, begin, begin + 3 * 86400)] == expected


@pytest.mark.parametrize(
    ("zone", "night"),
    [(BERLIN, (2026, 10, 24)), (NEW_YORK, (2026, 10, 31))],
    ids=["berlin", "new-york"],
)
def test_fall_back_a_time_that_happens_twice_runs_at_its_first_occurrence_only(
    zone: ZoneInfo, night: tuple[int, int, int]
) -> None:
    hour = 2 if zone is BERLIN else 1  # the repeated hour: 02:00-03:00 in Berlin, 01:00-02:00 in New York
    cron = Cron.parse(f"30 {hour} * * *", zone.key)
    found = ticks(cron, at(zone, *night, 12, 0), at(zone, *night, 12, 0) + 2 * 86400)
    assert [local(t, zone)[6:] for t in found] == [
        f"0{hour}:30:00{_offset(zone, 'summer')}",  # the first 0x:30, still summer time
        f"0{hour}:30:00{_offset(zone, 'winter')}",  # the next night
    ]
    assert found[1] - found[0] == 25 * 3600  # a 25-hour day, and one run in it


def _offset(zone: ZoneInfo, season: str) -> str:
    return {("Europe/Berlin", "winter"): "+0100", ("Europe/Berlin", "summer"): "+0200",
            ("America/New_York", "winter"): "-0500", ("America/New_York", "summer"): "-0400"}[(zone.key, season)]  # fmt: skip


@pytest.mark.parametrize("start", [(2026, 3, 28, 22, 0), (2026, 10, 24, 22, 0)], ids=["spring", "fall"])
def test_interval_schedules_keep_their_real_rhythm_through_both_nights(start: tuple[int, ...]) -> None:
    for expression, step in (("*/15 * * * *", 900), ("0 * * * *", 3600), ("*/20 * * * * *", 20)):
        cron = Cron.parse(expression, "Europe/Berlin")
        begin = at(BERLIN, *start)
        found = ticks(cron, begin, begin + 8 * 3600)
        gaps = {b - a for a, b in itertools.pairwise(found)}
        assert gaps == {step}, (expression, sorted(gaps))  # nothing skipped, nothing doubled


def test_whole_minutes_with_a_seconds_field_follow_the_five_field_rule() -> None:
    night = at(BERLIN, 2026, 3, 28, 12, 0)
    six, five = Cron.parse("0 30 2 * * *", "Europe/Berlin"), Cron.parse("30 2 * * *", "Europe/Berlin")
    assert ticks(six, night, night + 86400) == ticks(five, night, night + 86400) == [at(BERLIN, 2026, 3, 29, 3, 0)]


def test_seconds_schedules_tick_every_few_seconds() -> None:
    cron = Cron.parse("*/3 * * * * *")
    found = ticks(cron, 1_800_000_000.5, 1_800_000_012)
    assert found == [1_800_000_003, 1_800_000_006, 1_800_000_009, 1_800_000_012]


@pytest.mark.parametrize("macro", sorted(MACROS))
def test_macros_are_the_expressions_they_stand_for(macro: str) -> None:
    start = at(BERLIN, 2026, 5, 17, 13, 37)
    expanded = Cron.parse(MACROS[macro], "Europe/Berlin")
    assert ticks(Cron.parse(macro, "Europe/Berlin"), start, start + 400 * 86400) == ticks(
        expanded, start, start + 400 * 86400
    )
    assert Cron.parse(macro.upper()).fields == MACROS[macro]


def test_weekly_and_yearly_macros_land_where_crontab_says() -> None:
    start = at(BERLIN, 2026, 5, 17, 13, 37)  # a Sunday afternoon
    assert local(Cron.parse("@weekly", "Europe/Berlin").next_after(start) or 0, BERLIN) == "05-24 00:00:00+0200"
    assert local(Cron.parse("@yearly", "Europe/Berlin").next_after(start) or 0, BERLIN) == "01-01 00:00:00+0100"
    assert local(Cron.parse("@hourly", "Europe/Berlin").next_after(start) or 0, BERLIN) == "05-17 14:00:00+0200"


def test_latest_until_finds_the_tick_at_or_before_a_moment() -> None:
    cron = Cron.parse("30 2 * * *", "Europe/Berlin")
    assert cron.latest_until(at(BERLIN, 2026, 3, 29, 12, 0)) == at(BERLIN, 2026, 3, 29, 3, 0)
    assert cron.latest_until(at(BERLIN, 2026, 3, 30, 2, 30)) == at(BERLIN, 2026, 3, 30, 2, 30)


@pytest.mark.parametrize(
    ("expression", "zone", "reason", "words"),
    [
        ("61 * * * *", None, "InvalidSchedule", "not a cron expression"),
        ("* * * *", None, "InvalidSchedule", "expected 5 fields"),
        ("@fortnightly", None, "InvalidSchedule", "unknown macro"),
        ("0 2 * * *", "Europe/Atlantis", "InvalidTimeZone", "not an IANA time zone"),
        ("0 2 * * *", "../../etc/passwd", "InvalidTimeZone", "not an IANA time zone"),
    ],
)
def test_bad_schedules_and_zones_say_what_is_wrong(expression: str, zone: str | None, reason: str, words: str) -> None:
    with pytest.raises(InvalidSchedule) as caught:
        Cron.parse(expression, zone)
    assert caught.value.reason == reason
    assert words in caught.value.message


# -- planning ----------------------------------------------------------------------------------------

EVERY_MINUTE = Cron.parse("* * * * *")
T0 = 1_800_000_000.0  # a whole minute (epoch seconds divisible by 60)


def decide(
    policy: Policy | None = None,
    *,
    now: float,
    decided: float = T0 - 30,
    active: Collection[str] = (),
    existing: Collection[float] = (),
) -> Plan:
    return plan(EVERY_MINUTE, policy or Policy(), now=now, decided=decided, active=active, existing=existing)


def test_nothing_due_waits_for_the_next_tick() -> None:
    result = decide(now=T0 - 10)
    assert result == Plan(next_tick=T0, wake_at=T0)


def test_a_due_tick_starts_a_run() -> None:
    result = decide(now=T0 + 0.2)
    assert result.start == T0 and result.skips == [] and result.next_tick == T0 + 60


def test_only_the_latest_missed_tick_runs_the_older_ones_are_skipped_as_missed() -> None:
    result = decide(now=T0 + 180.5)  # down for three minutes: ticks T0, +60, +120, +180 due
    assert result.start == T0 + 180
    assert result.skips == [Skip("Missed", T0, T0 + 120, 3)]
    assert "only the latest due tick runs" in result.skips[0].message


def test_a_tick_past_its_starting_deadline_is_skipped() -> None:
    inside = decide(Policy(starting_deadline=30), now=T0 + 20)
    outside = decide(Policy(starting_deadline=30), now=T0 + 31)
    assert inside.start == T0
    assert outside.start is None and outside.skips == [Skip("DeadlineExceeded", T0, T0, 1)]


def test_forbid_holds_the_tick_until_the_active_run_finishes_within_the_deadline() -> None:
    policy = Policy("Forbid", starting_deadline=40)
    held = decide(policy, now=T0 + 1, active={"run-a"})
    assert held.start is None and held.waiting == T0 and held.wake_at == T0 + 40
    freed = decide(policy, now=T0 + 25)  # run-a finished 25 s late: the tick still starts
    assert freed.start == T0
    too_late = decide(policy, now=T0 + 45, active={"run-a"})
    assert too_late.skips == [Skip("ConcurrencyForbidden", T0, T0, 1)]
    superseded = decide(Policy("Forbid"), now=T0 + 61, active={"run-a"})  # no deadline: the next tick supersedes
    assert superseded.waiting == T0 + 60 and superseded.skips == [Skip("ConcurrencyForbidden", T0, T0, 1)]


def test_replace_cancels_the_active_runs_and_allow_keeps_them() -> None:
    assert decide(Policy("Replace"), now=T0 + 1, active={"b", "a"}).replace == ["a", "b"]
    allowed = decide(Policy("Allow"), now=T0 + 1, active={"a"})
    assert allowed.start == T0 and allowed.replace == []


def test_a_tick_that_has_its_instance_already_is_adopted_not_started_again() -> None:
    result = decide(Policy("Forbid"), now=T0 + 1, active={"sched-t0"}, existing={T0})
    assert result.start is None and result.adopted == T0 and result.started == T0 and result.waiting is None


def test_suspended_schedules_plan_nothing_and_count_missed_ticks_on_resume() -> None:
    assert decide(Policy(suspended=True), now=T0 + 600) == Plan()
    resumed = decide(Policy(), now=T0 + 600.5)
    assert resumed.start == T0 + 600 and resumed.skips == [Skip("Missed", T0, T0 + 540, 10)]
    resumed_late = decide(Policy(starting_deadline=0), now=T0 + 600.5)
    assert resumed_late.start is None
    assert resumed_late.skips == [Skip("Missed", T0, T0 + 540, 10), Skip("DeadlineExceeded", T0 + 600, T0 + 600, 1)]


def test_a_run_made_just_before_a_suspension_still_counts_as_started() -> None:
    """The tick's run was created, then the status write met the suspension (a conflict)."""
    result = decide(Policy(suspended=True), now=T0 + 1, existing={T0 - 60, T0})
    assert result.adopted == T0 and result.start is None and result.next_tick is None
    # ... and the ticks that run skipped are recorded too (the operator had been down)
    late = decide(Policy(suspended=True), now=T0 + 181, decided=T0 - 30, existing={T0 + 120})
    assert late.adopted == T0 + 120 and late.skips == [Skip("Missed", T0, T0 + 60, 2)]


def test_backfilled_ticks_are_not_reported_as_skipped() -> None:
    result = decide(now=T0 + 180.5, existing={T0, T0 + 60, T0 + 120})
    assert result.start == T0 + 180 and result.skips == []


def test_a_very_long_outage_is_counted_without_walking_every_tick() -> None:
    seconds = Cron.parse("* * * * * *")
    result = plan(seconds, Policy(), now=T0 + 86_400, decided=T0, active=(), existing=())
    assert result.start == T0 + 86_400
    (skip,) = result.skips
    assert (skip.first, skip.last, skip.exact) == (T0 + 1, T0 + 86_399, False)
    assert skip.count > MAX_ENUMERATED_TICKS and "at least" in skip.message


def test_decided_until_is_the_latest_of_creation_started_and_skipped() -> None:
    assert decided_until(T0, None, []) == T0
    assert decided_until(T0, T0 + 60, [Skip("Missed", T0 + 1, T0 + 120, 2)]) == T0 + 120


@pytest.mark.parametrize(
    ("zone", "start"),
    [(BERLIN, (2026, 3, 28, 20, 0)), (BERLIN, (2026, 10, 24, 20, 0)), (NEW_YORK, (2026, 3, 7, 20, 0)),
     (NEW_YORK, (2026, 10, 31, 20, 0))],
    ids=["berlin-spring", "berlin-fall", "new-york-spring", "new-york-fall"],
)  # fmt: skip
def test_a_controller_ticking_through_a_dst_night_starts_exactly_one_nightly_run(
    zone: ZoneInfo, start: tuple[int, ...]
) -> None:
    """The operator's loop with an injected clock: wake at each planned moment (and every few
    minutes besides, as events would), carry the plan out, feed what it decided back in."""
    for hour in (1, 2, 3):
        cron = Cron.parse(f"30 {hour} * * *", zone.key)
        clock = at(zone, *start)
        created, last_started, skips, started = clock, None, [], []
        while clock < at(zone, *start) + 12 * 3600:
            result = plan(cron, Policy(starting_deadline=60), now=clock, decided=decided_until(created, last_started, skips), active=(), existing=set(started))  # fmt: skip
            if result.start is not None:
                started.append(result.start)
                last_started = result.start
            skips += result.skips
            clock = min(result.wake_at or clock + 300, clock + 300) + 0.01
        assert skips == [], (hour, skips)
        assert len(started) == 1, (hour, [local(t, zone) for t in started])
