"""WorkflowSchedules on the real control plane, the real operator and real workers.

Schedules are made fast with the cron syntax's optional seconds field (``*/2 * * * * *``: every
two seconds), and single ticks placed a few seconds ahead (``S M H * * *`` at a chosen second,
in UTC), all in real time: no clock is injected into the operator. The tick arithmetic and the
daylight-saving nights are tested without a cluster, with an injected clock, in
tests/engine/test_schedule_ticks.py.
"""

from __future__ import annotations

import itertools
import math
import os
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from plait._devenv.binaries import find_binaries
from plait._kube.client import CORE_EVENTS, JSON, Kube, Resource
from plait._kube.models import (
    FINISHED_PHASES,
    INSTANCES,
    SCHEDULE_LABEL,
    SCHEDULES,
    parse_rfc3339,
)
from plait._kube.schedules import run_body, run_name, tick_of
from plait.errors import NotFound
from tests.k8s.support import PlaitProcess, wait_for, wait_phase

pytestmark = pytest.mark.cluster


def create_schedule(kube: Kube, namespace: str, name: str, schedule: str, **spec: Any) -> JSON:
    body = {
        "apiVersion": "plait.dev/v1alpha1",
        "kind": "WorkflowSchedule",
        "metadata": {"name": name},
        "spec": {"schedule": schedule, "workflow": spec.pop("workflow", "echo"), **spec},
    }
    return kube.create(SCHEDULES, body, namespace)


def runs(kube: Kube, namespace: str, schedule: str) -> list[JSON]:
    """The schedule's instances, by tick (runs started by hand last)."""
    items = kube.list(INSTANCES, namespace, label_selector=f"{SCHEDULE_LABEL}={schedule}")["items"]
    return sorted(items, key=lambda r: (tick_of(r) or math.inf, r["metadata"]["name"]))


def status(kube: Kube, namespace: str, name: str) -> JSON:
    return kube.get(SCHEDULES, name, namespace).get("status") or {}


def events(kube: Kube, namespace: str, name: str) -> list[tuple[str, str]]:
    items = kube.list(CORE_EVENTS, namespace, field_selector=f"involvedObject.name={name}")["items"]
    return [(e["reason"], e["message"]) for e in items]


def phase(run: JSON) -> str:
    return str((run.get("status") or {}).get("phase") or "Pending")


def tick_in(seconds: float) -> float:
    """A whole second at least ``seconds`` from now."""
    return float(math.ceil(time.time() + seconds))


def daily_at(moment: float) -> str:
    """A 6-field cron expression (seconds first) that ticks once a day, at ``moment`` (UTC)."""
    at = datetime.fromtimestamp(moment, UTC)
    return f"{at.second} {at.minute} {at.hour} * * *"


def ready_reason(kube: Kube, namespace: str, name: str) -> str:
    def reason() -> str | None:
        found = next((c for c in status(kube, namespace, name).get("conditions") or [] if c["type"] == "Ready"), None)
        return found["reason"] if found else None

    return str(wait_for(reason, timeout=20, what=f"{name}'s Ready condition"))


def skipped(kube: Kube, namespace: str, name: str) -> list[tuple[str, float, float]]:
    return [
        (s["reason"], parse_rfc3339(s["firstTime"]), parse_rfc3339(s["lastTime"]))
        for s in status(kube, namespace, name).get("skipped") or []
    ]


# -- each tick, one run -----------------------------------------------------------------------------


def test_every_tick_starts_one_run_named_labelled_and_owned_by_its_schedule(
    kube: Kube, e2e: str, start_worker: Callable[..., PlaitProcess]
) -> None:
    start_worker(e2e)
    schedule = create_schedule(
        kube, e2e, "every-two", "*/2 * * * * *", input={"n": 1}, successfulRunsHistoryLimit=2,
        instanceTemplate={"labels": {"team": "data"}, "annotations": {"owner": "alice"}, "ttlSecondsAfterFinished": 600},
    )  # fmt: skip
    wait_for(lambda: len([r for r in runs(kube, e2e, "every-two") if phase(r) == "Succeeded"]) >= 2, timeout=30,
             what="two runs to succeed")  # fmt: skip
    time.sleep(4.5)  # two more ticks: the oldest runs fall out of the history
    kube.patch(SCHEDULES, "every-two", {"spec": {"suspend": True}}, e2e)
    wait_for(
        lambda: all(phase(r) in FINISHED_PHASES for r in runs(kube, e2e, "every-two")), timeout=30, what="runs to end"
    )
    time.sleep(1)
    found = runs(kube, e2e, "every-two")
    uid = schedule["metadata"]["uid"]
    for run in found:
        tick = tick_of(run)
        assert tick is not None and tick % 2 == 0
        meta = run["metadata"]
        assert meta["name"] == run_name("every-two", tick)
        assert meta["labels"] == {SCHEDULE_LABEL: "every-two", "team": "data"}
        assert meta["annotations"]["owner"] == "alice"
        assert [(o["kind"], o["name"], o["uid"], o["controller"]) for o in meta["ownerReferences"]] == [
            ("WorkflowSchedule", "every-two", uid, True)
        ]
        assert run["spec"] == {"workflow": "echo", "input": {"n": 1}, "ttlSecondsAfterFinished": 600}
        assert run["status"]["output"] == {"n": 1}
    assert len(found) == 2  # successfulRunsHistoryLimit: older succeeded runs were deleted
    got = status(kube, e2e, "every-two")
    assert got["lastScheduleTime"] == found[-1]["metadata"]["annotations"]["plait.dev/scheduled-time"]
    assert parse_rfc3339(got["lastSuccessfulTime"]) >= parse_rfc3339(found[-1]["status"]["finishedAt"]) - 0.001
    assert not got.get("active")
    started = [m for r, m in events(kube, e2e, "every-two") if r == "RunStarted"]
    assert len(started) >= 4 and all("for the tick of" in m for m in started)
    ready = next(c for c in got["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "Suspended")


def test_printer_columns_show_schedule_time_zone_suspend_next_last_and_active(
    kube: Kube, e2e: str, start_worker: Callable[..., PlaitProcess], connection: Any
) -> None:
    start_worker(e2e)
    create_schedule(kube, e2e, "columns", "*/2 * * * * *", workflow="slow", input=30, timeZone="Europe/Berlin")
    wait_for(lambda: status(kube, e2e, "columns").get("active"), timeout=20, what="an active run")
    kubectl = find_binaries(build=False).directory / "kubectl"
    shown = subprocess.run(
        [str(kubectl), "get", "wfsched", "-n", e2e], capture_output=True, text=True, timeout=30,
        env={**os.environ, "KUBECONFIG": os.environ["KUBECONFIG"]},
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    header, row = shown.stdout.splitlines()[:2]
    assert header.split() == ["NAME", "SCHEDULE", "TIMEZONE", "SUSPEND", "NEXT", "LAST", "ACTIVE", "AGE"]
    assert (
        row.startswith("columns ") and "Europe/Berlin" in row and "false" in row and "columns-20" in row
    )  # an active run's name
    kube.patch(SCHEDULES, "columns", {"spec": {"suspend": True}}, e2e)


# -- concurrency policies ---------------------------------------------------------------------------


def test_allow_lets_runs_overlap(kube: Kube, e2e: str, start_worker: Callable[..., PlaitProcess]) -> None:
    start_worker(e2e)
    create_schedule(kube, e2e, "overlap", "*/2 * * * * *", workflow="slow", input=5, concurrencyPolicy="Allow")
    wait_for(lambda: len(status(kube, e2e, "overlap").get("active") or []) >= 2, timeout=20, what="two active runs")
    kube.patch(SCHEDULES, "overlap", {"spec": {"suspend": True}}, e2e)


def test_forbid_never_runs_two_at_once_and_a_held_tick_starts_when_the_run_ends(
    kube: Kube, e2e: str, start_worker: Callable[..., PlaitProcess]
) -> None:
    start_worker(e2e)
    create_schedule(kube, e2e, "one-at-a-time", "*/3 * * * * *", workflow="slow", input=4, concurrencyPolicy="Forbid")
    wait_for(lambda: len([r for r in runs(kube, e2e, "one-at-a-time") if phase(r) == "Succeeded"]) >= 2, timeout=40,
             what="two runs to finish")  # fmt: skip
    kube.patch(SCHEDULES, "one-at-a-time", {"spec": {"suspend": True}}, e2e)
    time.sleep(1)  # a held tick may still have started as the suspension arrived
    wait_for(
        lambda: all(phase(r) in FINISHED_PHASES for r in runs(kube, e2e, "one-at-a-time")), timeout=30, what="the end"
    )
    found = sorted(
        (r for r in runs(kube, e2e, "one-at-a-time") if (r.get("status") or {}).get("startedAt")),
        key=lambda r: parse_rfc3339(r["status"]["startedAt"]),
    )
    held = 0
    for earlier, later in itertools.pairwise(found):
        finished, started = parse_rfc3339(earlier["status"]["finishedAt"]), parse_rfc3339(later["status"]["startedAt"])
        assert started >= finished, "two runs of a Forbid schedule overlapped"
        # A 4 s run on a 3 s schedule: the next tick comes while it runs, waits, starts after it
        held += (tick_of(later) or 0) < finished
    assert held >= 1
    reasons = {reason for reason, _, _ in skipped(kube, e2e, "one-at-a-time")}
    assert reasons <= {"ConcurrencyForbidden"}


def test_replace_cancels_the_active_run_for_the_new_one(
    kube: Kube, e2e: str, start_worker: Callable[..., PlaitProcess]
) -> None:
    start_worker(e2e)
    create_schedule(kube, e2e, "newest-wins", "*/4 * * * * *", workflow="slow", input=60, concurrencyPolicy="Replace")
    wait_for(lambda: len(runs(kube, e2e, "newest-wins")) >= 2, timeout=20, what="a second run")
    kube.patch(SCHEDULES, "newest-wins", {"spec": {"suspend": True}}, e2e)
    first, second = runs(kube, e2e, "newest-wins")[:2]
    cancelled = wait_phase(kube, e2e, first["metadata"]["name"], "Cancelled", timeout=30)
    assert "replaced by the run for" in cancelled["metadata"]["annotations"]["plait.dev/cancel"]
    assert phase(kube.get(INSTANCES, second["metadata"]["name"], e2e)) not in FINISHED_PHASES
    assert any(r == "RunReplaced" and first["metadata"]["name"] in m for r, m in events(kube, e2e, "newest-wins"))


# -- suspend, resume, missed ticks ------------------------------------------------------------------


def test_suspend_starts_nothing_and_resume_runs_the_missed_tick_only_within_the_deadline(kube: Kube, e2e: str) -> None:
    tick = tick_in(3)
    for name, deadline in (("resume-in-time", None), ("resume-too-late", 2)):
        extra = {"startingDeadlineSeconds": deadline} if deadline is not None else {}
        create_schedule(kube, e2e, name, daily_at(tick), suspend=True, **extra)
    wait_for(lambda: time.time() > tick + 4, timeout=10, interval=0.2)
    assert runs(kube, e2e, "resume-in-time") == [] and runs(kube, e2e, "resume-too-late") == []
    assert ready_reason(kube, e2e, "resume-in-time") == "Suspended"
    assert status(kube, e2e, "resume-in-time").get("nextScheduleTime") is None
    for name in ("resume-in-time", "resume-too-late"):
        kube.patch(SCHEDULES, name, {"spec": {"suspend": False}}, e2e)
    wait_for(lambda: runs(kube, e2e, "resume-in-time"), timeout=10, what="the missed tick to run on resume")
    (run,) = runs(kube, e2e, "resume-in-time")
    assert tick_of(run) == tick and run["metadata"]["name"] == run_name("resume-in-time", tick)
    wait_for(lambda: skipped(kube, e2e, "resume-too-late"), timeout=10, what="the late tick to be recorded skipped")
    assert skipped(kube, e2e, "resume-too-late") == [("DeadlineExceeded", tick, tick)]
    assert runs(kube, e2e, "resume-too-late") == []
    assert parse_rfc3339(status(kube, e2e, "resume-too-late")["nextScheduleTime"]) == tick + 86400
    assert any(r == "TickSkipped" and "DeadlineExceeded" in m for r, m in events(kube, e2e, "resume-too-late"))


def test_ticks_missed_while_the_operator_was_down_run_or_are_skipped_by_their_deadline(
    kube: Kube, own: str, start_operator: Callable[..., PlaitProcess], start_worker: Callable[..., PlaitProcess]
) -> None:
    tick = tick_in(3)
    create_schedule(kube, own, "inside", daily_at(tick), startingDeadlineSeconds=60)
    create_schedule(kube, own, "outside", daily_at(tick), startingDeadlineSeconds=2)
    create_schedule(kube, own, "many", "*/2 * * * * *", startingDeadlineSeconds=60)
    wait_for(lambda: time.time() > tick + 5, timeout=10, interval=0.2)  # the operator is down over the tick
    operator = start_operator("--namespace", own)
    start_worker(own)
    wait_for(lambda: runs(kube, own, "inside") and skipped(kube, own, "outside"), timeout=30, what="the catch-up")
    (late,) = runs(kube, own, "inside")
    assert tick_of(late) == tick
    assert parse_rfc3339(late["metadata"]["creationTimestamp"]) >= tick + 4  # started late, on catching up
    assert wait_phase(kube, own, late["metadata"]["name"], "Succeeded")["status"]["phase"] == "Succeeded"
    assert skipped(kube, own, "outside") == [("DeadlineExceeded", tick, tick)]
    assert runs(kube, own, "outside") == []
    # every two seconds while down: only the latest due tick ran on catching up, the older ones are Missed
    wait_for(lambda: skipped(kube, own, "many"), timeout=10, what="the missed ticks of 'many'")
    ((reason, first, last),) = skipped(kube, own, "many")[:1]
    caught_up = min(t for r in runs(kube, own, "many") if (t := tick_of(r)) is not None)
    assert reason == "Missed" and first <= last < caught_up and last == caught_up - 2
    scrape = httpx.get(f"http://127.0.0.1:{operator.metrics_port}/metrics", timeout=5).text
    counted = {
        sample.labels["outcome"]: sample.value
        for family in text_string_to_metric_families(scrape)
        for sample in family.samples
        if sample.name == "plait_schedule_ticks_total" and sample.labels["workflow"] == "echo"
    }
    assert counted["started"] >= 2 and counted["skipped"] >= 2, counted


# -- crashes ----------------------------------------------------------------------------------------


def test_a_run_created_just_before_a_crash_is_adopted_not_made_twice(
    kube: Kube, own: str, start_operator: Callable[..., PlaitProcess]
) -> None:
    """The state a crash between creating a tick's run and recording it leaves behind: the run
    exists, the status does not know it. The next operator adopts it (and Forbid does not hold
    the tick back for its own run)."""
    tick = tick_in(3)
    schedule = create_schedule(kube, own, "crashed", daily_at(tick), concurrencyPolicy="Forbid")
    kube.create(INSTANCES, run_body(schedule, tick), own)  # what the crashed operator had done
    wait_for(lambda: time.time() > tick + 1, timeout=10, interval=0.2)
    start_operator("--namespace", own)
    wait_for(lambda: status(kube, own, "crashed").get("lastScheduleTime"), timeout=30, what="the status to catch up")
    got = status(kube, own, "crashed")
    assert parse_rfc3339(got["lastScheduleTime"]) == tick
    assert [a["name"] for a in got["active"]] == [run_name("crashed", tick)]
    assert not got.get("skipped")
    assert [r["metadata"]["name"] for r in runs(kube, own, "crashed")] == [run_name("crashed", tick)]
    assert not any(r == "RunStarted" for r, _ in events(kube, own, "crashed"))


def test_an_operator_killed_around_ticks_makes_exactly_one_run_per_tick_it_runs(
    kube: Kube, own: str, start_operator: Callable[..., PlaitProcess], start_worker: Callable[..., PlaitProcess]
) -> None:
    """SIGKILL right at (and just after) ticks, restart at once, five times: every tick in the
    window ends up with one run or one skip record, never two runs, never both."""
    operator = start_operator("--namespace", own)
    start_worker(own)
    create_schedule(kube, own, "crashy", "*/2 * * * * *", startingDeadlineSeconds=30)
    wait_for(lambda: runs(kube, own, "crashy"), timeout=20, what="the first run")
    for offset in (0.0, 0.005, 0.01, 0.02, 0.04):
        next_tick = 2 * math.ceil((time.time() + 0.5) / 2)
        time.sleep(max(0.0, next_tick + offset - time.time()))
        operator.kill()
        operator = start_operator("--namespace", own)
        time.sleep(1.0)
    wait_for(lambda: time.time() > next_tick + 6, timeout=10, interval=0.2)
    kube.patch(SCHEDULES, "crashy", {"spec": {"suspend": True}}, own)
    time.sleep(1)
    found = runs(kube, own, "crashy")
    ticks = [tick_of(r) for r in found]
    assert len(ticks) == len(set(ticks)), "a tick got two runs"
    assert all(r["metadata"]["name"] == run_name("crashy", tick_of(r) or 0) for r in found)
    ran = {t for t in ticks if t is not None}
    skips = skipped(kube, own, "crashy")
    skipped_ticks = {t for _, first, last in skips for t in range(int(first), int(last) + 1, 2)}
    assert not ran & skipped_ticks, "a tick both ran and was recorded skipped"
    window = set(range(int(min(ran)), int(max(ran)) + 1, 2))
    assert window <= ran | skipped_ticks, f"ticks neither run nor skipped: {sorted(window - ran - skipped_ticks)}"


# -- deletion ---------------------------------------------------------------------------------------


def test_deleting_a_schedule_leaves_finished_runs_to_their_ttl_and_lets_running_ones_finish(
    kube: Kube, e2e: str, start_worker: Callable[..., PlaitProcess]
) -> None:
    start_worker(e2e)
    create_schedule(kube, e2e, "going", "*/3 * * * * *", workflow="slow", input=4, concurrencyPolicy="Forbid",
                    instanceTemplate={"ttlSecondsAfterFinished": 8})  # fmt: skip

    def one_done_one_running() -> bool:
        phases = [phase(r) for r in runs(kube, e2e, "going")]
        return "Succeeded" in phases and "Running" in phases

    wait_for(one_done_one_running, timeout=40, what="a finished and a running run")
    kube.delete(SCHEDULES, "going", e2e)  # like kubectl delete: background propagation
    wait_for(lambda: _gone(kube, SCHEDULES, e2e, "going"), timeout=20, what="the schedule to go")
    left = runs(kube, e2e, "going")
    finished = [r for r in left if phase(r) == "Succeeded"]
    running = [r for r in left if phase(r) not in FINISHED_PHASES]
    assert finished and running
    assert all(not r["metadata"].get("ownerReferences") for r in left)  # let go of: no garbage collection
    for run in running:
        name = run["metadata"]["name"]
        assert wait_phase(kube, e2e, name, "Succeeded", timeout=30)["status"]["output"] == "rested 4"
        assert any(r == "ScheduleDeleted" for r, _ in events(kube, e2e, name))
    assert {r["metadata"]["name"] for r in runs(kube, e2e, "going")} <= {r["metadata"]["name"] for r in left}
    for run in left:  # their own TTL (instanceTemplate.ttlSecondsAfterFinished) deletes them
        wait_for(lambda run=run: _gone(kube, INSTANCES, e2e, run["metadata"]["name"]), timeout=30, what="the TTL")


def _gone(kube: Kube, resource: Resource, namespace: str, name: str) -> bool:
    try:
        kube.get(resource, name, namespace)
    except NotFound:
        return True
    return False


# -- bad input --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schedule", "zone", "reason"),
    [("every day at two", None, "InvalidSchedule"), ("0 2 * * *", "Mars/Olympus", "InvalidTimeZone")],
)
def test_a_bad_schedule_or_time_zone_is_reported_and_runs_nothing(
    kube: Kube, e2e: str, schedule: str, zone: str | None, reason: str
) -> None:
    create_schedule(kube, e2e, "bad", schedule, **({"timeZone": zone} if zone else {}))
    ready = wait_for(
        lambda: next((c for c in status(kube, e2e, "bad").get("conditions") or [] if c["type"] == "Ready"), None),
        timeout=20, what="the Ready condition",
    )  # fmt: skip
    assert (ready["status"], ready["reason"]) == ("False", reason)
    assert (schedule if reason == "InvalidSchedule" else zone) in ready["message"]
    assert any(r == reason for r, _ in events(kube, e2e, "bad"))
    assert runs(kube, e2e, "bad") == []


def test_a_run_the_api_server_refuses_is_recorded_failed_to_start(kube: Kube, e2e: str, operator: PlaitProcess) -> None:
    # far enough ahead that the operator has found the new namespace and the schedule before it
    tick = tick_in(6)
    create_schedule(kube, e2e, "refused", daily_at(tick), instanceTemplate={"labels": {"team": "not a label value!"}})
    ready = wait_for(
        lambda: next((c for c in status(kube, e2e, "refused").get("conditions") or [] if c["reason"] == "FailedCreate"), None),
        timeout=60, what="the FailedCreate condition",  # a loaded CI operator may find the namespace late
    )  # fmt: skip
    assert ready["status"] == "False" and "could not start the run for" in ready["message"]
    assert skipped(kube, e2e, "refused") == [("FailedToStart", tick, tick)]
    assert any(r == "FailedCreate" and "not a label value" in m for r, m in events(kube, e2e, "refused")), events(
        kube, e2e, "refused"
    )
    assert runs(kube, e2e, "refused") == []
    scrape = httpx.get(f"http://127.0.0.1:{operator.metrics_port}/metrics", timeout=5).text
    failed = [
        sample.value
        for family in text_string_to_metric_families(scrape)
        for sample in family.samples
        if sample.name == "plait_schedule_ticks_total" and sample.labels["outcome"] == "failed"
    ]
    assert failed and failed[0] >= 1
