"""Bad input of every kind gets a clear message where the user looks, and affects nothing else."""

from __future__ import annotations

import time
from collections.abc import Callable

from plait._kube.client import CORE_EVENTS, Kube
from plait._kube.models import CANCEL_ANNOTATION, INSTANCES, PAUSE_ANNOTATION, SIGNALS
from tests.k8s.support import PlaitProcess, send_signal, submit, wait_for, wait_phase


def signal_status(kube: Kube, namespace: str, name: str) -> dict[str, str]:
    return kube.get(SIGNALS, name, namespace).get("status") or {}


def warnings_about(kube: Kube, namespace: str, name: str) -> list[str]:
    items = kube.list(CORE_EVENTS, namespace, field_selector=f"involvedObject.name={name}")["items"]
    return [f"{e['reason']}: {e['message']}" for e in items if e["type"] == "Warning"]


def test_a_signal_for_an_unknown_instance_is_rejected(kube: Kube, e2e: str) -> None:
    send_signal(kube, e2e, "ghost", "approve", {"by": "x"}, signal_name="to-ghost")
    status = wait_for(
        lambda: signal_status(kube, e2e, "to-ghost").get("phase") == "Rejected" and signal_status(kube, e2e, "to-ghost")
    )
    assert "no WorkflowInstance" in status["message"]
    wait_for(lambda: warnings_about(kube, e2e, "to-ghost"), what="a SignalRejected event")


def test_a_signal_the_workflow_never_waits_for_is_rejected_and_the_run_goes_on(
    kube: Kube, e2e: str, start_worker: Callable[..., PlaitProcess]
) -> None:
    start_worker(e2e)
    submit(kube, e2e, "sig", "signal", 1)
    wait_phase(kube, e2e, "sig", "AwaitingSignal")
    send_signal(kube, e2e, "sig", "aprove", {"by": "typo"}, signal_name="typo")
    status = wait_for(
        lambda: signal_status(kube, e2e, "typo").get("phase") == "Rejected" and signal_status(kube, e2e, "typo")
    )
    assert "never waits for signal 'aprove'" in status["message"] and "approve" in status["message"]
    assert wait_phase(kube, e2e, "sig", "AwaitingSignal")
    send_signal(kube, e2e, "sig", "approve", {"by": "dana"}, signal_name="right")
    assert wait_phase(kube, e2e, "sig", "Succeeded")["status"]["output"] == "approved by dana"
    assert signal_status(kube, e2e, "right")["phase"] == "Delivered"


def test_conflicting_annotations_cancel_wins_and_empty_values_are_fine(
    kube: Kube, e2e: str, start_worker: Callable[..., PlaitProcess]
) -> None:
    start_worker(e2e)
    submit(kube, e2e, "both", "slow", 30)
    wait_phase(kube, e2e, "both", "Running")
    kube.patch(INSTANCES, "both", {"metadata": {"annotations": {PAUSE_ANNOTATION: "", CANCEL_ANNOTATION: ""}}}, e2e)
    cancelled = wait_phase(kube, e2e, "both", "Cancelled", timeout=15)
    assert cancelled["status"]["message"] == "cancelled: cancel requested"

    submit(kube, e2e, "pause-empty", "slow", 0.2)
    kube.patch(INSTANCES, "pause-empty", {"metadata": {"annotations": {PAUSE_ANNOTATION: ""}}}, e2e)
    paused = wait_phase(kube, e2e, "pause-empty", "Paused", timeout=15)
    assert "no reason given" in paused["status"]["message"]
    kube.patch(INSTANCES, "pause-empty", {"metadata": {"annotations": {PAUSE_ANNOTATION: None}}}, e2e)
    assert wait_phase(kube, e2e, "pause-empty", "Succeeded", timeout=15)


def test_a_task_output_that_is_not_json_fails_the_step_clearly(
    kube: Kube, e2e: str, start_worker: Callable[..., PlaitProcess]
) -> None:
    start_worker(e2e)
    submit(kube, e2e, "notjson", "not-json", 1)
    failed = wait_phase(kube, e2e, "notjson", "Failed")
    assert "not JSON-serializable" in failed["status"]["error"]
    assert "set" in failed["status"]["error"]


def test_a_huge_exception_message_is_cut_and_the_instance_still_records_it(
    kube: Kube, e2e: str, start_worker: Callable[..., PlaitProcess]
) -> None:
    start_worker(e2e)
    submit(kube, e2e, "loud", "huge-error", 1)
    failed = wait_phase(kube, e2e, "loud", "Failed")
    error = failed["status"]["error"]
    assert error.startswith("RuntimeError: disk full !!!")
    assert "more characters]" in error and len(error) <= 8192
    submit(kube, e2e, "fine", "sequence", 1)  # and nothing else is affected
    assert wait_phase(kube, e2e, "fine", "Succeeded")["status"]["output"] == 5


def test_nothing_secret_reaches_status_or_events(
    kube: Kube, e2e: str, start_worker: Callable[..., PlaitProcess]
) -> None:
    start_worker(e2e)
    submit(kube, e2e, "plain", "sequence", 1)
    done = wait_phase(kube, e2e, "plain", "Succeeded")
    time.sleep(0.5)
    events = kube.list(CORE_EVENTS, e2e)["items"]
    text = str(done["status"]) + str([e["message"] for e in events])
    for secret_marker in ("BEGIN PRIVATE KEY", "BEGIN CERTIFICATE", "Bearer ", "token", "password"):
        assert secret_marker not in text
