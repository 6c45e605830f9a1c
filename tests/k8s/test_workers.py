"""Several workers on one queue: they know each other by their Leases, share the tasks, write a
short task once, and never run a step twice while peers come and go."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from bench.k8s import sample_sum

from plait._kube.client import LEASES, Kube
from plait._kube.models import SERVES_ANNOTATION, TASKS, WORKER_LABEL
from plait._worker.membership import JOIN_GRACE_SECONDS
from tests.k8s.support import PlaitProcess, marks, submit, wait_for, wait_phase


def _worker_leases(kube: Kube, namespace: str) -> dict[str, dict]:
    items = kube.list(LEASES, namespace, label_selector=WORKER_LABEL)["items"]
    return {lease["spec"]["holderIdentity"]: lease for lease in items}


def _task_status_writes(kube: Kube) -> float:
    metrics = kube.raw("GET", "/metrics").text
    return sample_sum(metrics, "apiserver_request_total", resource="workflowtasks", subresource="status", verb="PATCH")


def _each_step_ran_once(kube: Kube, namespace: str, names: list[str], marks_dir: Path) -> None:
    for name in names:
        assert wait_phase(kube, namespace, name, "Succeeded", timeout=60)["status"]["output"] == 5
        assert [line.split()[0] for line in marks(marks_dir, name)] == ["inc", "double", "inc"], name


def test_workers_share_the_tasks_and_write_a_short_task_once(
    kube: Kube, e2e: str, start_worker: Callable[..., PlaitProcess], marks_dir: Path
) -> None:
    start_worker(e2e)
    start_worker(e2e)
    leases = wait_for(lambda: len(_worker_leases(kube, e2e)) == 2 and _worker_leases(kube, e2e), what="two Leases")
    for lease in leases.values():
        assert '"sequence"' not in lease["metadata"]["annotations"][SERVES_ANNOTATION]  # hashes, not names
        assert '"default"' in lease["metadata"]["annotations"][SERVES_ANNOTATION]
    time.sleep(JOIN_GRACE_SECONDS + 1)  # both count each other

    before = _task_status_writes(kube)
    names = [f"s{n}" for n in range(12)]
    for name in names:
        submit(kube, e2e, name, "sequence", 1)
    _each_step_ran_once(kube, e2e, names, marks_dir)
    writes = _task_status_writes(kube) - before

    tasks = kube.list(TASKS, e2e)["items"]
    assert len(tasks) == 3 * len(names)
    # claim and result in one write: two per task would be the claim-then-report protocol
    assert writes < 1.5 * len(tasks), f"{writes} status writes for {len(tasks)} tasks"
    holders = {task["status"]["claim"]["holder"] for task in tasks}
    assert holders == set(leases), "both workers took a share of the tasks"
    for task in tasks:
        claim = task["status"]["claim"]
        assert claim["claimedAt"] <= task["status"]["finishedAt"]
        assert task["status"]["phase"] == "Succeeded"


def test_peers_joining_and_leaving_mid_run_never_make_a_step_run_twice(
    kube: Kube, e2e: str, start_worker: Callable[..., PlaitProcess], marks_dir: Path
) -> None:
    leaving = start_worker(e2e)
    first = wait_for(lambda: _worker_leases(kube, e2e), what="the first Lease")
    start_worker(e2e)
    wait_for(lambda: len(_worker_leases(kube, e2e)) == 2, what="two Leases")
    time.sleep(JOIN_GRACE_SECONDS + 1)
    names = [f"p{n}" for n in range(45)]

    def submit_some(batch: list[str]) -> None:
        for name in batch:
            submit(kube, e2e, name, "sequence", 1)
            time.sleep(0.05)

    submit_some(names[:15])
    start_worker(e2e)  # joins while tasks flow: takes nothing at once until its peers count it
    wait_for(lambda: len(_worker_leases(kube, e2e)) == 3, what="three Leases")
    submit_some(names[15:30])
    leaving.terminate()  # SIGTERM: deletes its Lease, drains
    remaining = wait_for(lambda: len(_worker_leases(kube, e2e)) == 2 and _worker_leases(kube, e2e), what="a Lease gone")
    assert not set(first) & set(remaining), "the stopped worker's Lease is deleted"
    time.sleep(JOIN_GRACE_SECONDS)
    submit_some(names[30:])

    _each_step_ran_once(kube, e2e, names, marks_dir)
    holders = {task["status"]["claim"]["holder"] for task in kube.list(TASKS, e2e)["items"]}
    assert holders == set(first) | set(remaining)
