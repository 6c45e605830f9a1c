"""Rerun, fork, deadlines and failure handlers, against real processes.

The marks files count what ran: each line is one run of one step (name, attempt, pid, path).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from plait._kube.client import Kube
from plait._kube.models import CANCEL_ANNOTATION, INSTANCES, PAUSE_ANNOTATION, RETRY_ANNOTATION, parse_rfc3339
from plait.cli import main
from tests.k8s.flows import broken_for
from tests.k8s.support import PlaitProcess, instance_body, marks, submit, wait_for, wait_phase
from tests.k8s.test_lifecycle import events_for, tasks_of

Worker = Callable[..., PlaitProcess]


def runs(directory: Path, instance: str) -> list[tuple[str, str, str]]:
    """(step, attempt, path) of every run, in order."""
    return [
        (name, attempt, path) for name, attempt, _, path, _ in (line.split() for line in marks(directory, instance))
    ]


def annotate(kube: Kube, namespace: str, name: str, key: str, value: str | None) -> None:
    kube.patch(INSTANCES, name, {"metadata": {"annotations": {key: value}}}, namespace)


def annotations(kube: Kube, namespace: str, name: str) -> dict[str, str]:
    return kube.get(INSTANCES, name, namespace)["metadata"].get("annotations") or {}


def retried_condition(body: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in body["status"]["conditions"] if c["type"] == "Retried")


def fail_recoverable(kube: Kube, namespace: str, marks_dir: Path, name: str) -> None:
    """Run ``recoverable`` (inc, double, fragile, inc) on 1 until fragile fails, then fix the cause."""
    marks_dir.mkdir(parents=True, exist_ok=True)
    broken_for(name).touch()
    submit(kube, namespace, name, "recoverable", 1)
    failed = wait_phase(kube, namespace, name, "Failed")
    assert failed["status"]["error"] == "RuntimeError: dependency down"
    broken_for(name).unlink()


@pytest.fixture(autouse=True)
def marks_for_the_worker(marks_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``broken_for`` in this process writes where the worker's ``fragile`` looks."""
    monkeypatch.setattr("tests.k8s.flows.MARKS", marks_dir)


def test_a_rerun_from_the_failed_step_runs_only_it_and_what_follows(
    kube: Kube, e2e: str, start_worker: Worker, marks_dir: Path
) -> None:
    start_worker(e2e)
    fail_recoverable(kube, e2e, marks_dir, "r")
    annotate(kube, e2e, "r", RETRY_ANNOTATION, "")
    done = wait_phase(kube, e2e, "r", "Succeeded")
    assert done["status"]["output"] == 6  # ((1 + 1) * 2 + 1) + 1
    assert runs(marks_dir, "r") == [
        ("inc", "1", "0"),
        ("double", "1", "1"),
        ("fragile", "1", "2"),
        ("fragile", "2", "2"),  # the rerun: a new attempt of the failed step, then the step after it
        ("inc", "1", "3"),
    ]
    assert RETRY_ANNOTATION not in annotations(kube, e2e, "r")
    fragile = [
        (t["spec"]["attempt"], t["status"]["phase"]) for t in tasks_of(kube, e2e, "r") if t["spec"]["step"] == "fragile"
    ]  # type: ignore[index]
    assert fragile == [(1, "Failed"), (2, "Succeeded")]  # the failed attempt's record is still there
    assert retried_condition(done)["status"] == "True"
    assert retried_condition(done)["message"] == "rerunning the step(s) left unfinished: fragile"
    assert "Retried" in [e["reason"] for e in events_for(kube, e2e, "r")]
    assert next(s for s in done["status"]["steps"] if s["id"] == "fragile")["attempts"] == 2


def test_a_rerun_from_an_earlier_step_runs_it_again_on_the_input_it_had(
    kube: Kube, e2e: str, start_worker: Worker, marks_dir: Path
) -> None:
    start_worker(e2e)
    fail_recoverable(kube, e2e, marks_dir, "e")
    annotate(kube, e2e, "e", RETRY_ANNOTATION, "double")
    done = wait_phase(kube, e2e, "e", "Succeeded")
    assert done["status"]["output"] == 6
    assert runs(marks_dir, "e")[3:] == [("double", "2", "1"), ("fragile", "2", "2"), ("inc", "1", "3")]
    assert [name for name, _, _ in runs(marks_dir, "e")].count("inc") == 2  # the first step did not run again
    assert retried_condition(done)["message"] == "rerunning from step double"


def test_a_bad_retry_request_is_refused_and_removed_and_nothing_is_lost(
    kube: Kube, e2e: str, start_worker: Worker, marks_dir: Path
) -> None:
    start_worker(e2e)
    fail_recoverable(kube, e2e, marks_dir, "b")
    before = kube.get(INSTANCES, "b", e2e)["status"]
    annotate(kube, e2e, "b", RETRY_ANNOTATION, "nope")
    wait_for(lambda: RETRY_ANNOTATION not in annotations(kube, e2e, "b"), what="the annotation to be removed")
    after = kube.get(INSTANCES, "b", e2e)
    refused = retried_condition(after)
    assert (refused["status"], refused["reason"]) == ("False", "RetryRefused")
    assert "has no step 'nope'" in refused["message"] and "inc, double, fragile" in refused["message"]
    assert after["status"]["phase"] == "Failed" and after["status"]["checkpoint"] == before["checkpoint"]
    assert any(e["reason"] == "RetryRefused" and e["type"] == "Warning" for e in events_for(kube, e2e, "b"))
    annotate(kube, e2e, "b", RETRY_ANNOTATION, "")  # the instance can still be rerun
    assert wait_phase(kube, e2e, "b", "Succeeded")["status"]["output"] == 6

    annotate(kube, e2e, "b", RETRY_ANNOTATION, "")  # ... but not once it succeeded
    wait_for(lambda: RETRY_ANNOTATION not in annotations(kube, e2e, "b"), what="the annotation to be removed")
    assert "is completed: only a failed or cancelled" in retried_condition(kube.get(INSTANCES, "b", e2e))["message"]

    submit(kube, e2e, "never", "recoverable", "not a number")  # fails its input check: it never starts
    wait_phase(kube, e2e, "never", "Failed")
    annotate(kube, e2e, "never", RETRY_ANNOTATION, "")
    wait_for(lambda: RETRY_ANNOTATION not in annotations(kube, e2e, "never"), what="the annotation to be removed")
    assert "never started: there is nothing to rerun" in retried_condition(kube.get(INSTANCES, "never", e2e))["message"]


def test_a_cancelled_instance_reruns_the_step_it_stopped(
    kube: Kube, e2e: str, start_worker: Worker, marks_dir: Path
) -> None:
    start_worker(e2e)
    submit(kube, e2e, "c", "slow", 4)
    wait_for(lambda: "nap-start" in " ".join(marks(marks_dir, "c")), what="the nap to start")
    annotate(kube, e2e, "c", CANCEL_ANNOTATION, "wrong time")
    wait_phase(kube, e2e, "c", "Cancelled")
    assert main(["retry", "c", "--wait", "-n", e2e]) == 0
    assert wait_phase(kube, e2e, "c", "Succeeded")["status"]["output"] == "rested 4"
    assert sorted(run[:2] for run in runs(marks_dir, "c")) == [  # the stop of attempt 1 may come late
        ("after-nap", "1"),
        ("nap-cancelled", "1"),
        ("nap-end", "2"),
        ("nap-start", "1"),
        ("nap-start", "2"),
    ]
    assert CANCEL_ANNOTATION not in annotations(kube, e2e, "c")  # taken with the retry: it would cancel it again


def runs_named(directory: Path, instance: str, name: str) -> list[tuple[str, str, str]]:
    return [run for run in runs(directory, instance) if run[0] == name]


def phase_now(kube: Kube, namespace: str, name: str) -> str:
    return str(kube.get(INSTANCES, name, namespace)["status"]["phase"])


def test_retry_many_by_label_and_fork_with_the_cli(
    kube: Kube, e2e: str, start_worker: Worker, marks_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    start_worker(e2e)
    for name in ("m1", "m2"):
        fail_recoverable(kube, e2e, marks_dir, name)
        kube.patch(INSTANCES, name, {"metadata": {"labels": {"batch": "nightly"}}}, e2e)

    assert main(["fork", "m1", "--as", "m1-copy", "--from", "double", "-n", e2e]) == 0
    forked = wait_phase(kube, e2e, "m1-copy", "Succeeded", "Failed")
    assert forked["status"]["output"] == 6
    assert forked["spec"]["forkFrom"] == {"instance": "m1", "step": "double"}
    assert runs(marks_dir, "m1-copy") == [("double", "2", "1"), ("fragile", "2", "2"), ("inc", "1", "3")]
    assert phase_now(kube, e2e, "m1") == "Failed"  # the source is not changed

    capsys.readouterr()
    assert main(["retry", "m2", "--from", "nope", "--wait", "-n", e2e]) == 1  # refused: the operator says why
    assert "has no step 'nope'" in capsys.readouterr().err
    assert main(["retry", "-l", "batch=nightly", "-n", e2e]) == 0
    assert capsys.readouterr().out.count(f"annotated {RETRY_ANNOTATION}=''") == 2
    for name in ("m1", "m2"):
        assert wait_phase(kube, e2e, name, "Succeeded")["status"]["output"] == 6
        assert len(runs_named(marks_dir, name, "inc")) == 2

    assert main(["retry", "m1", "-n", e2e]) == 1  # succeeded: nothing to rerun
    assert main(["fork", "nobody", "--as", "x", "-n", e2e]) == 1
    assert main(["fork", "m1", "--as", "bad-fork", "--from", "nope", "-n", e2e]) == 0
    refused = wait_phase(kube, e2e, "bad-fork", "Failed")
    assert "InvalidFork" in refused["status"]["error"] and "has no step 'nope'" in refused["status"]["error"]


def completed_condition(body: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in body["status"]["conditions"] if c["type"] == "Completed")


def test_a_deadline_fails_the_instance_and_stops_its_running_task(
    kube: Kube, e2e: str, start_worker: Worker, marks_dir: Path
) -> None:
    start_worker(e2e)
    submit(kube, e2e, "d", "slow", 30, activeDeadlineSeconds=2)
    failed = wait_phase(kube, e2e, "d", "Failed", timeout=20)
    assert (
        failed["status"]["error"] == "DeadlineExceeded: the instance ran for more than 2s (spec.activeDeadlineSeconds)"
    )
    assert completed_condition(failed)["reason"] == "DeadlineExceeded"
    took = parse_rfc3339(failed["status"]["finishedAt"]) - parse_rfc3339(failed["status"]["startedAt"])
    assert 2 <= took < 5
    wait_for(lambda: "nap-cancelled" in " ".join(marks(marks_dir, "d")), timeout=10, what="the task to stop")
    assert not any(line.startswith("after-nap") for line in marks(marks_dir, "d"))
    [task] = tasks_of(kube, e2e, "d")
    assert task["status"]["phase"] == "Cancelled"  # type: ignore[index]
    assert any(e["reason"] == "DeadlineExceeded" and e["type"] == "Warning" for e in events_for(kube, e2e, "d"))


def test_the_flow_timeout_is_the_default_deadline_and_paused_time_counts(
    kube: Kube, e2e: str, start_worker: Worker, marks_dir: Path
) -> None:
    start_worker(e2e)
    body = instance_body("p", "bounded", 30)
    body["metadata"]["annotations"] = {PAUSE_ANNOTATION: "held from the start"}
    kube.create(INSTANCES, body, e2e)
    wait_phase(kube, e2e, "p", "Paused")
    failed = wait_phase(kube, e2e, "p", "Failed", timeout=20)
    assert failed["status"]["error"] == "DeadlineExceeded: the instance ran for more than 2s (the flow's timeout)"
    assert marks(marks_dir, "p") == []  # paused from the start: nothing ran, and the clock ran on

    submit(kube, e2e, "q", "bounded", 30, activeDeadlineSeconds=600)  # the instance's own deadline wins
    wait_for(lambda: "nap-start" in " ".join(marks(marks_dir, "q")), what="the nap to start")
    time.sleep(3)
    assert phase_now(kube, e2e, "q") == "Running"


def test_the_failure_handler_runs_once_with_the_error_and_the_input(
    kube: Kube, e2e: str, start_worker: Worker, marks_dir: Path
) -> None:
    start_worker(e2e)
    submit(kube, e2e, "h", "compensated", 1)
    failed = wait_phase(kube, e2e, "h", "Failed")
    assert failed["status"]["error"] == "ValueError: this never works"
    assert [name for name, _, _ in runs(marks_dir, "h")] == ["inc", "hopeless", "hopeless", "hopeless", "compensate"]
    seen = json.loads((marks_dir / "h.failure.json").read_text())
    assert seen == {"error": "ValueError: this never works", "input": 1, "instance_id": "h", "workflow": "compensated"}
    handler = next(s for s in failed["status"]["steps"] if s["id"] == "compensate")
    assert (handler["state"], handler["attempts"]) == ("succeeded", 1)
    assert failed["status"]["progress"] == "1/2"  # the handler is not one of the flow's steps
    [task] = [t for t in tasks_of(kube, e2e, "h") if t["spec"]["path"] == "on_failure"]  # type: ignore[index]
    assert task["status"]["phase"] == "Succeeded"  # type: ignore[index]


def test_a_failing_failure_handler_is_recorded_not_looped(
    kube: Kube, e2e: str, start_worker: Worker, marks_dir: Path
) -> None:
    start_worker(e2e)
    submit(kube, e2e, "bad", "badly-compensated", 1)
    failed = wait_phase(kube, e2e, "bad", "Failed")
    assert failed["status"]["error"] == "ValueError: this never works"
    assert failed["status"]["message"] == (
        "failed: ValueError: this never works; its failure handler failed too: RuntimeError: the pager is down too"
    )
    assert next(s for s in failed["status"]["steps"] if s["id"] == "pager")["state"] == "failed"
    time.sleep(1.5)
    assert [name for name, _, _ in runs(marks_dir, "bad")].count("pager") == 1
    assert any("its failure handler failed too" in e["message"] for e in events_for(kube, e2e, "bad"))
