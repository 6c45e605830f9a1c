"""``plait schedule ...`` against the real control plane, the session's operator and a real worker."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from plait._kube.client import Kube
from plait._kube.models import INSTANCES, SCHEDULE_LABEL, SCHEDULES
from plait._kube.schedules import run_name
from plait._scheduling.cron import Cron
from tests.cli.conftest import Result
from tests.k8s.support import wait_for, wait_phase

pytestmark = pytest.mark.cluster

Plait = Callable[..., Result]


def schedule(kube: Kube, namespace: str, name: str, cron: str, workflow: str, value: Any, **spec: Any) -> None:
    body = {
        "apiVersion": "plait.dev/v1alpha1",
        "kind": "WorkflowSchedule",
        "metadata": {"name": name},
        "spec": {"schedule": cron, "workflow": workflow, "input": value, **spec},
    }
    kube.create(SCHEDULES, body, namespace)


def run_names(kube: Kube, namespace: str, name: str) -> list[str]:
    items = kube.list(INSTANCES, namespace, label_selector=f"{SCHEDULE_LABEL}={name}")["items"]
    return sorted(item["metadata"]["name"] for item in items)


def test_list_get_trigger_suspend_and_resume(plait: Plait, serve: Callable[..., Any], cli_ns: str, kube: Kube) -> None:
    serve(cli_ns)
    schedule(kube, cli_ns, "nightly", "0 2 * * *", "gate", "ops", timeZone="Europe/Berlin", concurrencyPolicy="Forbid")
    wait_for(lambda: (kube.get(SCHEDULES, "nightly", cli_ns).get("status") or {}).get("nextScheduleTime"), timeout=20)

    listed = plait("schedule", "list", "-n", cli_ns)
    assert listed.code == 0, listed.err
    header, row = listed.out.splitlines()
    assert header.split() == ["NAME", "SCHEDULE", "TIMEZONE", "WORKFLOW", "SUSPEND", "ACTIVE", "LAST", "NEXT", "AGE"]
    assert row.split()[:10] == ["nightly", "0", "2", "*", "*", "*", "Europe/Berlin", "gate", "no", "0"]
    assert " in " in f" {row} "  # the next tick, from now

    got = plait("schedule", "get", "nightly", "-n", cli_ns)
    assert got.code == 0, got.err
    assert "Schedule:     0 2 * * * (At 02:00 every day)" in got.out
    assert "Time zone:    Europe/Berlin" in got.out and "Concurrency:  Forbid" in got.out
    assert "Runs: none yet" in got.out and "Condition:    Ready=True Scheduled" in got.out

    triggered = plait("schedule", "trigger", "nightly", "-n", cli_ns)
    assert triggered.code == 0, triggered.err
    (manual,) = run_names(kube, cli_ns, "nightly")
    assert manual.startswith("nightly-manual-") and f"workflowinstance.plait.dev/{manual} created" in triggered.out
    wait_phase(kube, cli_ns, manual, "AwaitingSignal")  # the gate flow waits for a signal: it stays active
    refused = plait("schedule", "trigger", "nightly", "-n", cli_ns)
    assert refused.code == 1 and "forbids concurrent runs" in refused.err and manual in refused.err
    assert plait("schedule", "trigger", "nightly", "--force", "-n", cli_ns).code == 0
    assert len(run_names(kube, cli_ns, "nightly")) == 2
    wait_for(lambda: len((kube.get(SCHEDULES, "nightly", cli_ns).get("status") or {}).get("active") or []) == 2,
             timeout=20, what="both runs in status.active")  # fmt: skip
    shown = plait("schedule", "get", "nightly", "-n", cli_ns).out
    assert "Runs (oldest first):" in shown and manual in shown and "(by hand)" in shown

    suspended = plait("schedule", "suspend", "nightly", "-n", cli_ns)
    assert suspended.code == 0 and "workflowschedule.plait.dev/nightly suspended" in suspended.out
    assert kube.get(SCHEDULES, "nightly", cli_ns)["spec"]["suspend"] is True
    again = plait("schedule", "suspend", "nightly", "-n", cli_ns)
    assert again.code == 0 and "already suspended" in again.err
    assert "Suspended:    yes" in plait("schedule", "get", "nightly", "-n", cli_ns).out
    resumed = plait("schedule", "resume", "nightly", "-n", cli_ns)
    assert resumed.code == 0 and "resumed" in resumed.out
    assert kube.get(SCHEDULES, "nightly", cli_ns)["spec"]["suspend"] is False

    missing = plait("schedule", "get", "nope", "-n", cli_ns)
    assert missing.code == 1 and "no WorkflowSchedule 'nope'" in missing.err and "schedule list" in missing.err


def test_backfill_makes_one_run_per_tick_and_a_second_backfill_makes_none(
    plait: Plait, cli_ns: str, kube: Kube
) -> None:
    schedule(kube, cli_ns, "daily", "0 3 * * *", "greeting", {"name": "past"})
    start = (datetime.now(UTC) - timedelta(days=3)).replace(hour=0, minute=0, second=0, microsecond=0)
    end = datetime.now(UTC) - timedelta(minutes=1)
    cron = Cron.parse("0 3 * * *")
    ticks = list(itertools.takewhile(lambda t: t <= end.timestamp(), cron.after(start.timestamp())))
    expected = [run_name("daily", tick) for tick in ticks]
    assert len(expected) in (3, 4)
    args = ("schedule", "backfill", "daily", "--from", start.isoformat(), "--to", end.isoformat(), "-n", cli_ns)

    dry = plait(*args, "--dry-run")
    assert dry.code == 0, dry.err
    assert dry.out.count("(would start)") == len(expected) and run_names(kube, cli_ns, "daily") == []

    first = plait(*args)
    assert first.code == 0, first.err
    assert f"{len(expected)} tick(s): {len(expected)} run(s) started, 0 had one already" in first.out
    assert run_names(kube, cli_ns, "daily") == sorted(expected)

    second = plait(*args)
    assert second.code == 0, second.err
    assert f"{len(expected)} tick(s): 0 run(s) started, {len(expected)} had one already" in second.out
    assert plait(*args, "--dry-run").out.count("(has a run)") == len(expected)
    time.sleep(1)  # the operator runs none of these ticks again: they came before the schedule existed
    assert run_names(kube, cli_ns, "daily") == sorted(expected)
    for name in expected:
        run = kube.get(INSTANCES, name, cli_ns)
        assert run["spec"]["input"] == {"name": "past"}
        assert run["metadata"]["ownerReferences"][0]["name"] == "daily"

    future = plait("schedule", "backfill", "daily", "--from", start.isoformat(), "--to", "2999-01-01", "-n", cli_ns)
    assert future.code == 1 and "in the future" in future.err
    bad = plait("schedule", "backfill", "daily", "--from", "last tuesday", "--to", end.isoformat(), "-n", cli_ns)
    assert bad.code == 1 and "not an ISO 8601 time" in bad.err
    too_many = plait(*args, "--max", "2")
    assert too_many.code == 1 and "more than 2 ticks" in too_many.err
