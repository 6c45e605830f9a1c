"""Retries, timeouts, pause/resume, cancel, delete, TTL and bad input, against real processes."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from pathlib import Path

from plait._kube.client import CORE_EVENTS, Kube
from plait._kube.models import (
    CANCEL_ANNOTATION,
    INSTANCES,
    PAUSE_ANNOTATION,
    TASKS,
    parse_rfc3339,
)
from plait.errors import NotFound
from tests.k8s.support import PlaitProcess, instance_body, marks, submit, wait_for, wait_phase


def events_for(kube: Kube, namespace: str, name: str) -> list[dict[str, str]]:
    items = kube.list(CORE_EVENTS, namespace, field_selector=f"involvedObject.name={name}")["items"]
    return [{"reason": e["reason"], "message": e["message"], "type": e["type"]} for e in items]


def tasks_of(kube: Kube, namespace: str, instance: str) -> list[dict[str, object]]:
    items = kube.list(TASKS, namespace, field_selector=f"spec.instance={instance}")["items"]
    return sorted(items, key=lambda t: (t["spec"]["path"], t["spec"]["attempt"]))


def test_retries_back_off_then_succeed(
    kube: Kube, e2e: str, start_worker: Callable[..., PlaitProcess], marks_dir: Path
) -> None:
    start_worker(e2e)
    submit(kube, e2e, "r", "retries", 5)
    done = wait_phase(kube, e2e, "r", "Succeeded", "Failed")
    assert done["status"]["output"] == 6
    attempts = tasks_of(kube, e2e, "r")
    flaky = [t for t in attempts if t["spec"]["step"] == "flaky"]  # type: ignore[index]
    assert [t["spec"]["attempt"] for t in flaky] == [1, 2, 3]  # type: ignore[index]
    assert [t["status"]["phase"] for t in flaky] == ["Failed", "Failed", "Succeeded"]  # type: ignore[index]
    gaps = [_at(later, "claimedAt") - _at(earlier, "finishedAt") for earlier, later in itertools.pairwise(flaky)]
    assert gaps[0] >= 0.5 and gaps[1] >= 1.0  # initial_delay_secs=0.5, backoff_multiplier=2
    step = next(s for s in done["status"]["steps"] if s["id"] == "flaky")
    assert step["attempts"] == 3 and step["runs"] == 1
    assert [line.split()[:2] for line in marks(marks_dir, "r")] == [
        ["flaky", "1"],
        ["flaky", "2"],
        ["flaky", "3"],
        ["inc", "1"],
    ]


def _at(task: dict[str, object], field: str) -> float:
    status = task["status"]
    value = status["claim"][field] if field == "claimedAt" else status[field]  # type: ignore[index]
    return parse_rfc3339(value)


def test_exhausted_retries_fail_the_instance_once_and_keep_the_error(
    kube: Kube, e2e: str, start_worker: Callable[..., PlaitProcess], marks_dir: Path
) -> None:
    start_worker(e2e)
    submit(kube, e2e, "x", "exhausted", 1)
    failed = wait_phase(kube, e2e, "x", "Failed")
    assert failed["status"]["error"] == "ValueError: this never works"
    time.sleep(2)  # nothing more runs after the failure: no hot loop
    assert len(marks(marks_dir, "x")) == 3
    assert len(tasks_of(kube, e2e, "x")) == 3
    assert any(e["reason"] == "Failed" and e["type"] == "Warning" for e in events_for(kube, e2e, "x"))


def test_a_task_timeout_fails_the_attempt(kube: Kube, e2e: str, start_worker: Callable[..., PlaitProcess]) -> None:
    start_worker(e2e)
    submit(kube, e2e, "t", "timeout", 1)
    failed = wait_phase(kube, e2e, "t", "Failed")
    assert "timed out after 0.5s" in failed["status"]["error"]
    [task] = tasks_of(kube, e2e, "t")
    assert task["status"]["phase"] == "TimedOut"  # type: ignore[index]


def test_pause_holds_the_next_step_and_removing_the_annotation_resumes(
    kube: Kube, e2e: str, start_worker: Callable[..., PlaitProcess], marks_dir: Path
) -> None:
    start_worker(e2e)
    submit(kube, e2e, "p", "slow", 1.5)
    wait_for(lambda: "nap-start" in " ".join(marks(marks_dir, "p")), what="the nap to start")
    kube.patch(INSTANCES, "p", {"metadata": {"annotations": {PAUSE_ANNOTATION: "maintenance window"}}}, e2e)
    paused = wait_phase(kube, e2e, "p", "Paused", timeout=10)
    assert "maintenance window" in paused["status"]["message"]
    wait_for(lambda: "nap-end" in " ".join(marks(marks_dir, "p")), what="the running task to finish")
    time.sleep(1.5)
    assert not any(line.startswith("after-nap") for line in marks(marks_dir, "p"))
    assert phase_now(kube, e2e, "p") == "Paused"
    kube.patch(INSTANCES, "p", {"metadata": {"annotations": {PAUSE_ANNOTATION: None}}}, e2e)
    assert wait_phase(kube, e2e, "p", "Succeeded", timeout=15)["status"]["output"] == "rested 1.5"
    reasons = [e["reason"] for e in events_for(kube, e2e, "p")]
    assert "Paused" in reasons and "Resumed" in reasons


def phase_now(kube: Kube, namespace: str, name: str) -> str:
    return str(kube.get(INSTANCES, name, namespace)["status"]["phase"])


def test_cancel_stops_the_running_task_and_runs_nothing_more(
    kube: Kube, e2e: str, start_worker: Callable[..., PlaitProcess], marks_dir: Path
) -> None:
    start_worker(e2e)
    submit(kube, e2e, "c", "slow", 30)
    wait_for(lambda: "nap-start" in " ".join(marks(marks_dir, "c")), what="the nap to start")
    started = time.monotonic()
    kube.patch(INSTANCES, "c", {"metadata": {"annotations": {CANCEL_ANNOTATION: "wrong input"}}}, e2e)
    cancelled = wait_phase(kube, e2e, "c", "Cancelled", timeout=10)
    assert cancelled["status"]["message"] == "cancelled: wrong input"
    wait_for(lambda: "nap-cancelled" in " ".join(marks(marks_dir, "c")), timeout=10, what="the task to stop")
    assert time.monotonic() - started < 10
    time.sleep(1)
    assert not any(line.startswith("after-nap") for line in marks(marks_dir, "c"))
    [task] = tasks_of(kube, e2e, "c")
    assert task["status"]["phase"] == "Cancelled"  # type: ignore[index]


def test_deleting_a_running_instance_cancels_it_and_removes_its_tasks(
    kube: Kube, e2e: str, start_worker: Callable[..., PlaitProcess], marks_dir: Path
) -> None:
    start_worker(e2e)
    submit(kube, e2e, "d", "slow", 30)
    wait_for(lambda: "nap-start" in " ".join(marks(marks_dir, "d")), what="the nap to start")
    assert kube.get(INSTANCES, "d", e2e)["metadata"]["finalizers"] == ["plait.dev/cancel-on-delete"]
    kube.delete(INSTANCES, "d", e2e)

    def gone() -> bool:
        try:
            kube.get(INSTANCES, "d", e2e)
        except NotFound:
            return True
        return False

    wait_for(gone, timeout=15, what="the instance to go")
    wait_for(lambda: "nap-cancelled" in " ".join(marks(marks_dir, "d")), timeout=10, what="the task to stop")
    wait_for(lambda: not tasks_of(kube, e2e, "d"), timeout=30, what="its tasks to be garbage collected")


def test_finished_instances_are_deleted_after_their_ttl(
    kube: Kube, e2e: str, start_worker: Callable[..., PlaitProcess]
) -> None:
    start_worker(e2e)
    submit(kube, e2e, "ttl", "sequence", 1, ttlSecondsAfterFinished=1)
    wait_phase(kube, e2e, "ttl", "Succeeded")

    def gone() -> bool:
        try:
            kube.get(INSTANCES, "ttl", e2e)
        except NotFound:
            return True
        return False

    wait_for(gone, timeout=15, what="the TTL to delete the instance")
    wait_for(lambda: not tasks_of(kube, e2e, "ttl"), timeout=30, what="its tasks to be garbage collected")


def test_applying_the_same_manifest_again_runs_nothing_twice(
    kube: Kube, e2e: str, start_worker: Callable[..., PlaitProcess], marks_dir: Path
) -> None:
    start_worker(e2e)
    body = instance_body("again", "sequence", 2)
    kube.patch(INSTANCES, "again", body, e2e, patch_type="apply", field_manager="kubectl", force=True)
    wait_phase(kube, e2e, "again", "Succeeded")
    kube.patch(INSTANCES, "again", body, e2e, patch_type="apply", field_manager="kubectl", force=True)
    time.sleep(1.5)
    assert [line.split()[0] for line in marks(marks_dir, "again")] == ["inc", "double", "inc"]
    assert len(tasks_of(kube, e2e, "again")) == 3


def test_invalid_input_fails_clearly_and_runs_no_task(
    kube: Kube, e2e: str, start_worker: Callable[..., PlaitProcess]
) -> None:
    start_worker(e2e)
    submit(kube, e2e, "bad", "pydantic", {"id": "seven", "amount": 10})
    failed = wait_phase(kube, e2e, "bad", "Failed")
    assert "does not match the input schema" in failed["status"]["error"]
    assert "id" in failed["status"]["error"]
    accepted = next(c for c in failed["status"]["conditions"] if c["type"] == "Accepted")
    assert (accepted["status"], accepted["reason"]) == ("False", "InvalidInput")
    assert any(e["reason"] == "InvalidInput" for e in events_for(kube, e2e, "bad"))
    assert tasks_of(kube, e2e, "bad") == []


def test_a_too_large_input_is_refused(kube: Kube, e2e: str, start_worker: Callable[..., PlaitProcess]) -> None:
    start_worker(e2e)
    submit(kube, e2e, "huge", "echo", "x" * (300 * 1024))
    failed = wait_phase(kube, e2e, "huge", "Failed")
    assert "over the inline limit" in failed["status"]["error"]
    assert any(e["reason"] == "PayloadTooLarge" for e in events_for(kube, e2e, "huge"))
    assert tasks_of(kube, e2e, "huge") == []


def test_an_unknown_workflow_waits_for_its_definition(
    kube: Kube, e2e: str, start_worker: Callable[..., PlaitProcess]
) -> None:
    submit(kube, e2e, "early", "sequence", 1)
    pending = wait_phase(kube, e2e, "early", "Pending")
    accepted = next(c for c in pending["status"]["conditions"] if c["type"] == "Accepted")
    assert accepted["reason"] == "DefinitionNotFound"
    assert "waiting for a worker" in accepted["message"]
    wait_for(lambda: any(e["reason"] == "DefinitionNotFound" for e in events_for(kube, e2e, "early")))
    start_worker(e2e)  # publishes the definition: the instance starts on its own
    assert wait_phase(kube, e2e, "early", "Succeeded")["status"]["output"] == 5
