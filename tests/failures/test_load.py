"""A thousand instances applied at once all complete; the operator's memory stays bounded and it
creates every task once (late watch events do not make it repeat itself); after the TTL, no
WorkflowInstance and no WorkflowTask is left behind."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from bench import k8s
from plait._kube.client import Kube
from plait._kube.connection import Connection
from plait._kube.models import INSTANCES, TASKS
from tests.k8s.support import PlaitProcess, instance_body, wait_for

COUNT = 1000


def repeated_task_creations(kube: Kube) -> float:
    """Task creations the API server refused as already existing, by its own metrics."""
    metrics = kube.raw("GET", "/metrics").text
    return k8s.sample_sum(metrics, "apiserver_request_total", resource="workflowtasks", verb="POST", code="409")


def test_a_thousand_instances_complete_and_leave_nothing_behind(
    kube: Kube, connection: Connection, own: str, start_operator: Callable[..., PlaitProcess],
    start_worker: Callable[..., PlaitProcess],
) -> None:  # fmt: skip
    operator = start_operator("--namespace", own, "--default-ttl", "2")
    for _ in range(2):
        start_worker(own, "--concurrency", "32")
    time.sleep(1)
    baseline = k8s.rss_mb(operator.pid)
    repeated_before = repeated_task_creations(kube)

    def create(n: int) -> None:
        with Kube(connection) as client:
            for i in range(n, COUNT, 8):
                client.create(INSTANCES, instance_body(f"load-{i}", "sequence", i), own)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(create, range(8)))

    peak = baseline
    finished: dict[str, int] = {}

    def all_finished() -> bool:
        nonlocal peak
        peak = max(peak, k8s.rss_mb(operator.pid))
        remaining = kube.list(INSTANCES, own)["items"]
        for item in remaining:
            if (item.get("status") or {}).get("phase") == "Succeeded":
                assert item["status"]["output"] == (int(item["metadata"]["name"].split("-")[1]) + 1) * 2 + 1
                finished[item["metadata"]["name"]] = 1
            assert (item.get("status") or {}).get("phase") not in ("Failed", "Cancelled"), item["status"]
        return not remaining  # finished ones are deleted by the TTL

    wait_for(all_finished, timeout=600, interval=1.0, what="every instance to finish and be cleaned up")
    wait_for(lambda: not kube.list(TASKS, own)["items"], timeout=120, interval=1.0, what="every task to be collected")
    assert operator.alive()
    assert repeated_task_creations(kube) == repeated_before, "the operator created some tasks twice"
    print(f"operator RSS: baseline {baseline:.0f} MB, peak {peak:.0f} MB with {COUNT} instances")
    assert peak < baseline + 250, f"operator memory grew from {baseline:.0f} MB to {peak:.0f} MB"
