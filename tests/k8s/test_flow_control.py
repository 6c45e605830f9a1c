"""Flow control on the real control plane: instance concurrency (each strategy, keyed and not, FIFO,
fairness between keys, exact across an operator crash), task concurrency and rate limits."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from plait import KubernetesBackend, WorkflowClient
from plait._devenv.controlplane import ControlPlane
from plait._kube.client import CORE_EVENTS, Kube
from plait._kube.models import (
    ADMITTED_AT_ANNOTATION,
    DEFINITIONS,
    HELD_LABEL,
    HELD_MESSAGE_ANNOTATION,
    INSTANCES,
    TASKS,
    parse_rfc3339,
)
from plait.cli.steptree import step_rows
from tests.k8s import flowcontrol_flows
from tests.k8s.support import PlaitProcess, marks, submit, wait_for, wait_phase

FLOWS = "tests.k8s.flowcontrol_flows"  # what the workers serve; the client submits the same flows


def serve(kube: Kube, namespace: str, start_worker: Callable[..., PlaitProcess]) -> None:
    """A worker for the flows here, once it published them (instances then queue in arrival order)."""
    start_worker(namespace, module=FLOWS)
    wait_for(lambda: len(kube.list(DEFINITIONS, namespace)["items"]) >= 8, what="the definitions")


def intervals(marks_dir: Path, instances: list[str], step: str = "hold") -> list[tuple[float, float, str]]:
    """(start, end, instance) of every run of ``step`` the marks show."""
    found = []
    for name in instances:
        lines = [line.split() for line in marks(marks_dir, name)]
        starts = [float(line[4]) for line in lines if line[0] == f"{step}-start"]
        ends = [float(line[4]) for line in lines if line[0] in (f"{step}-end", f"{step}-cancelled")]
        found += [(start, end, name) for start, end in zip(starts, ends, strict=False)]
    return sorted(found)


def most_at_once(runs: list[tuple[float, float, str]]) -> int:
    edges = sorted([(start, 1) for start, _, _ in runs] + [(end, -1) for _, end, _ in runs])
    return max(itertools.accumulate(delta for _, delta in edges), default=0)


def in_order(runs: list[tuple[float, float, str]], names: list[str], slots: int) -> bool:
    """First in, first out: by start time, the runs come in batches of ``slots`` in submit order
    (within a batch, admitted together, workers may start them in any order)."""
    batches = [names.index(name) // slots for _, _, name in runs]
    return batches == sorted(batches)


def status(kube: Kube, namespace: str, name: str) -> dict[str, Any]:
    return kube.get(INSTANCES, name, namespace).get("status") or {}


def test_a_queue_runs_at_most_max_runs_first_in_first_out(
    kube: Kube, e2e: str, start_worker: Callable[..., PlaitProcess], marks_dir: Path
) -> None:
    serve(kube, e2e, start_worker)
    names = [f"q{i}" for i in range(5)]
    for name in names:
        submit(kube, e2e, name, "fc-queue", {"seconds": 3})
        time.sleep(0.05)  # a distinct arrival order
    wait_for(lambda: _started(marks_dir, names[:2]) == 2, what="two to run")

    def positions() -> dict[str, Any]:
        return {name: (status(kube, e2e, name).get("concurrency") or {}).get("position") for name in names[2:]}

    # kept current within a second while they wait
    wait_for(lambda: positions() == {"q2": 1, "q3": 2, "q4": 3}, timeout=2.5, what="positions 1, 2, 3")
    assert all(status(kube, e2e, name)["phase"] == "Queued" for name in names[2:])
    assert status(kube, e2e, "q4")["message"] == "queued at position 3 for one of 2 slot(s) of workflow 'fc-queue'"
    for name in names:
        wait_phase(kube, e2e, name, "Succeeded", timeout=60)
    runs = intervals(marks_dir, names)
    assert most_at_once(runs) == 2
    assert in_order(runs, names, slots=2)
    assert "position" not in status(kube, e2e, "q4")["concurrency"]
    events = kube.list(CORE_EVENTS, e2e, field_selector="involvedObject.name=q3")["items"]
    assert "Queued" in [event["reason"] for event in events]


def test_keys_have_their_own_slots_so_a_small_tenant_is_not_starved(
    kube: Kube, e2e: str, start_worker: Callable[..., PlaitProcess], marks_dir: Path
) -> None:
    serve(kube, e2e, start_worker)
    big = [f"big{i}" for i in range(8)]
    small = [f"small{i}" for i in range(2)]
    for name in big:
        submit(kube, e2e, name, "fc-keyed", {"customer": "big", "seconds": 0.6})
    for name in small:
        submit(kube, e2e, name, "fc-keyed", {"customer": "small", "seconds": 0.6})
    finished = {}
    for name in small + big:
        done = wait_phase(kube, e2e, name, "Succeeded", timeout=60)
        finished[name] = done["status"]["finishedAt"]
    assert max(finished[name] for name in small) < max(finished[name] for name in big)
    assert most_at_once(intervals(marks_dir, big)) == 1
    assert most_at_once(intervals(marks_dir, small)) == 1
    assert status(kube, e2e, "big0")["concurrency"] == {"key": "big", "maxRuns": 1}


def test_cancel_newest_refuses_the_newcomer_while_the_key_is_busy(
    kube: Kube, e2e: str, start_worker: Callable[..., PlaitProcess], marks_dir: Path
) -> None:
    serve(kube, e2e, start_worker)
    submit(kube, e2e, "first", "fc-newest", {"customer": "acme", "seconds": 3})
    wait_for(lambda: _started(marks_dir, ["first"]) == 1, what="the first to run")
    submit(kube, e2e, "second", "fc-newest", {"customer": "acme", "seconds": 0.1})
    submit(kube, e2e, "other", "fc-newest", {"customer": "globex", "seconds": 0.1})
    refused = wait_phase(kube, e2e, "second", "Cancelled", timeout=20)
    assert refused["status"]["message"] == (
        "cancelled: 1 of 1 slot(s) of workflow 'fc-newest' for key 'acme' are taken (strategy cancel_newest)"
    )
    assert wait_phase(kube, e2e, "other", "Succeeded", timeout=20)["status"]["output"] == "held globex"
    assert wait_phase(kube, e2e, "first", "Succeeded", timeout=20)["status"]["output"] == "held acme"
    assert marks(marks_dir, "second") == []


def test_cancel_in_progress_makes_the_running_one_give_way(
    kube: Kube, e2e: str, start_worker: Callable[..., PlaitProcess], marks_dir: Path
) -> None:
    serve(kube, e2e, start_worker)
    submit(kube, e2e, "old", "fc-in-progress", {"customer": "acme", "seconds": 30})
    wait_for(lambda: "hold-start" in str(marks(marks_dir, "old")), what="the old one to run")
    submit(kube, e2e, "new", "fc-in-progress", {"customer": "acme", "seconds": 0.2})
    cancelled = wait_phase(kube, e2e, "old", "Cancelled", timeout=20)
    assert cancelled["status"]["message"] == (
        "cancelled: superseded by new: workflow 'fc-in-progress' for key 'acme' runs at most 1 "
        "(strategy cancel_in_progress)"
    )
    assert wait_phase(kube, e2e, "new", "Succeeded", timeout=20)["status"]["output"] == "held acme"
    assert most_at_once(intervals(marks_dir, ["old", "new"])) == 1


def test_an_input_without_the_key_is_rejected_clearly(
    kube: Kube, e2e: str, start_worker: Callable[..., PlaitProcess]
) -> None:
    serve(kube, e2e, start_worker)
    submit(kube, e2e, "nokey", "fc-keyed", {"client": "acme"})
    failed = wait_phase(kube, e2e, "nokey", "Failed", timeout=20)
    assert failed["status"]["error"] == (
        "InvalidConcurrencyKey: spec.input has no field 'customer': workflow 'fc-keyed' limits its instances "
        "per the value there (Flow(concurrency=Concurrency(..., key=...)))"
    )


def test_an_operator_crash_with_full_slots_admits_no_more_than_the_limit(
    kube: Kube,
    own: str,
    start_operator: Callable[..., PlaitProcess],
    start_worker: Callable[..., PlaitProcess],
    marks_dir: Path,
) -> None:
    operator = start_operator("--namespace", own)
    serve(kube, own, start_worker)
    names = [f"c{i}" for i in range(6)]
    for name in names:
        submit(kube, own, name, "fc-queue", {"seconds": 2.5})
        time.sleep(0.05)
    wait_for(lambda: _started(marks_dir, names) == 2, timeout=30, what="two to run")
    wait_for(lambda: all(status(kube, own, n).get("phase") == "Queued" for n in names[2:]), timeout=10)
    operator.kill()  # slots full, four queued
    start_operator("--namespace", own)
    for name in names:
        wait_phase(kube, own, name, "Succeeded", timeout=90)
    runs = intervals(marks_dir, names)
    assert len(runs) == 6 and most_at_once(runs) == 2
    assert in_order(runs, names, slots=2)


def _started(marks_dir: Path, names: list[str], step: str = "hold") -> int:
    return sum(1 for name in names if f"{step}-start" in str(marks(marks_dir, name)))


def held_tasks(kube: Kube, namespace: str) -> list[dict[str, Any]]:
    return [t for t in kube.list(TASKS, namespace)["items"] if HELD_LABEL in (t["metadata"].get("labels") or {})]


def test_task_concurrency_holds_attempts_back_with_the_reason_visible(
    kube: Kube, e2e: str, start_worker: Callable[..., PlaitProcess], marks_dir: Path
) -> None:
    serve(kube, e2e, start_worker)
    names = [f"t{i}" for i in range(5)]
    for name in names:
        submit(kube, e2e, name, "fc-task-concurrency", {"seconds": 1.0})
    [held, *_] = wait_for(lambda: held_tasks(kube, e2e), timeout=20, what="a held task")
    assert held["metadata"]["labels"][HELD_LABEL] == "Concurrency"
    message = "waiting for one of 2 slot(s) of task 'scarce'"
    assert held["metadata"]["annotations"][HELD_MESSAGE_ANNOTATION] == message
    assert (held.get("status") or {}).get("phase") in (None, "Pending")
    instance = wait_phase(kube, e2e, held["spec"]["instance"], "Running")  # its checkpoint and task go together
    [definition] = [d for d in kube.list(DEFINITIONS, e2e)["items"] if d["spec"]["workflow"] == "fc-task-concurrency"]
    [row] = step_rows(definition["spec"], instance["status"], [held])
    assert row.note == f"held: {message}"  # what `plait get` shows on the step
    for name in names:
        wait_phase(kube, e2e, name, "Succeeded", timeout=60)
    assert most_at_once(intervals(marks_dir, names, "scarce")) == 2
    assert held_tasks(kube, e2e) == []


def test_an_operator_crash_with_task_slots_full_lets_no_more_through(
    kube: Kube,
    own: str,
    start_operator: Callable[..., PlaitProcess],
    start_worker: Callable[..., PlaitProcess],
    marks_dir: Path,
) -> None:
    operator = start_operator("--namespace", own)
    serve(kube, own, start_worker)
    names = [f"s{i}" for i in range(5)]
    for name in names:
        submit(kube, own, name, "fc-task-concurrency", {"seconds": 2.5})
    wait_for(lambda: _started(marks_dir, names, "scarce") == 2, timeout=30, what="two to run")
    wait_for(lambda: len(held_tasks(kube, own)) == 3, timeout=10, what="three held tasks")
    operator.kill()  # both slots taken, three tasks held
    start_operator("--namespace", own)
    for name in names:
        wait_phase(kube, own, name, "Succeeded", timeout=90)
    runs = intervals(marks_dir, names, "scarce")
    assert len(runs) == 5 and most_at_once(runs) == 2


def test_task_concurrency_per_key(
    kube: Kube, e2e: str, start_worker: Callable[..., PlaitProcess], marks_dir: Path
) -> None:
    serve(kube, e2e, start_worker)
    names = {f"{customer}{i}": customer for customer in ("a", "b") for i in range(3)}
    for name, customer in names.items():
        submit(kube, e2e, name, "fc-task-keyed", {"customer": customer, "seconds": 0.6})
    for name in names:
        wait_phase(kube, e2e, name, "Succeeded", timeout=60)
    for customer in ("a", "b"):
        runs = intervals(marks_dir, [n for n, c in names.items() if c == customer], "keyed")
        assert len(runs) == 3 and most_at_once(runs) == 1
    assert most_at_once(intervals(marks_dir, list(names), "keyed")) == 2  # the keys do not wait for each other


def test_a_rate_limit_holds_over_ten_seconds(
    kube: Kube, e2e: str, start_worker: Callable[..., PlaitProcess], marks_dir: Path
) -> None:
    serve(kube, e2e, start_worker)
    names = [f"r{i}" for i in range(125)]
    for name in names:
        submit(kube, e2e, name, "fc-rated", {})
    wait_for(lambda: len(_calls(marks_dir, names)) == len(names), timeout=60, interval=0.5, what="every call")
    # What the operator decides: when it let each task through (plait.dev/admitted-at).
    admitted = sorted(
        parse_rfc3339(t["metadata"]["annotations"][ADMITTED_AT_ANNOTATION]) for t in kube.list(TASKS, e2e)["items"]
    )
    # What a user sees: when workers started the calls (after the first two seconds, while 125
    # instances are still being created and the pipeline fills).
    calls = _calls(marks_dir, names)
    steady = [at for at in calls if at >= calls[0] + 2]
    counts = {
        "admitted, first 10 s": _in_window(admitted, admitted[0]),
        "admitted, busiest 10 s": max(_in_window(admitted, start) for start in admitted),
        "started, first steady 10 s": _in_window(steady, steady[0]),
        "started, busiest steady 10 s": max(_in_window(steady, start) for start in steady),
        "started, busiest 10 s": max(_in_window(calls, start) for start in calls),
    }
    print(f"rate limit 10/s: {counts}")
    assert all(90 <= count <= 110 for what, count in counts.items() if "steady" in what or "admitted" in what)
    assert counts["admitted, busiest 10 s"] <= 102  # the limiter's own decisions: 100, plus a start made up


def _in_window(times: list[float], start: float) -> int:
    return sum(1 for at in times if start <= at < start + 10)


def _calls(marks_dir: Path, names: list[str]) -> list[float]:
    return sorted(
        float(line.split()[4]) for name in names for line in marks(marks_dir, name) if line.startswith("call")
    )


def test_an_idempotency_key_runs_once_and_the_duplicate_points_at_the_first(
    kube: Kube, e2e: str, control_plane: ControlPlane, start_worker: Callable[..., PlaitProcess], marks_dir: Path
) -> None:
    serve(kube, e2e, start_worker)
    # kubectl users: two manifests with the same key
    submit(kube, e2e, "pay-1", "fc-queue", {"seconds": 0.2}, idempotencyKey="invoice-42")
    submit(kube, e2e, "pay-2", "fc-queue", {"seconds": 0.2}, idempotencyKey="invoice-42")
    duplicate = wait_phase(kube, e2e, "pay-2", "Cancelled", timeout=30)
    assert duplicate["status"]["duplicateOf"] == "pay-1"
    assert duplicate["status"]["message"] == (
        "duplicate of pay-1: it was submitted with the same idempotency key 'invoice-42'"
    )
    assert wait_phase(kube, e2e, "pay-1", "Succeeded", timeout=30)["status"]["output"] == "held -"
    assert marks(marks_dir, "pay-2") == []
    events = kube.list(CORE_EVENTS, e2e, field_selector="involvedObject.name=pay-2")["items"]
    assert "Duplicate" in [event["reason"] for event in events]
    # the client: a second submit with the key returns the first and creates nothing
    with WorkflowClient(KubernetesBackend(e2e, kubeconfig=str(control_plane.kubeconfig))) as client:  # type: ignore[attr-defined]
        first = client.submit(flowcontrol_flows.queued, "order-1", {"seconds": 0.1}, idempotency_key="order-7")
        again = client.submit(flowcontrol_flows.queued, "order-2", {"seconds": 0.1}, idempotency_key="order-7")
        assert again.instance_id == first.instance_id == "order-1"
        assert client.wait("order-1", timeout=30).is_completed()
    assert [i["metadata"]["name"] for i in kube.list(INSTANCES, e2e)["items"] if "order" in i["metadata"]["name"]] == [
        "order-1"
    ]
