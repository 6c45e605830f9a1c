"""Day-two moves on the example pool while it works: `helm upgrade` to a new image tag with 50
instances running, a worker pod deleted mid-task, a node drain held back by the pool's
PodDisruptionBudget. Nothing is lost or stuck, and every step's result is recorded once."""

from __future__ import annotations

import collections
import uuid
from typing import Any

import yaml
from examples.etl import etl

from plait import run_workflow
from plait._kube.client import Kube
from plait._kube.models import WorkflowInstance, WorkflowTask
from tests.node.support import CHART, NAMESPACE, RELEASE, REPO, WORKER_POOL, NodeCluster, wait_for

WORKERS = "app.kubernetes.io/component=worker,plait.dev/pool=examples"
EXAMPLES_IMAGE = "ghcr.io/plait-dev/plait-examples"


def submit_etl(kube: Kube, prefix: str, count: int, **job: Any) -> list[str]:
    names = [f"{prefix}-{n:02d}" for n in range(count)]
    for name in names:
        body = {
            "apiVersion": "plait.dev/v1alpha1",
            "kind": "WorkflowInstance",
            "metadata": {"name": name},
            "spec": {"workflow": "nightly-etl", "input": {"source": f"s3://exports/{name}", **job}},
        }
        kube.create(WorkflowInstance.RESOURCE, body, NAMESPACE)
    return names


def phases(kube: Kube, names: list[str]) -> dict[str, str | None]:
    items = kube.list(WorkflowInstance.RESOURCE, NAMESPACE)["items"]
    return {
        i["metadata"]["name"]: (i.get("status") or {}).get("phase") for i in items if i["metadata"]["name"] in names
    }


def tasks_of(kube: Kube, names: list[str]) -> list[dict[str, Any]]:
    return [t for t in kube.list(WorkflowTask.RESOURCE, NAMESPACE)["items"] if t["spec"]["instance"] in names]


def test_helm_upgrade_rolls_the_pool_while_50_instances_run(cluster: NodeCluster, release: str, tmp_path: Any) -> None:
    tag = f"0.1.0-rolled-{uuid.uuid4().hex[:4]}"
    cluster.node.ctr("images", "tag", f"{EXAMPLES_IMAGE}:0.1.0", f"{EXAMPLES_IMAGE}:{tag}")
    job = {"pages": 8, "page_seconds": 1}  # 400 one-second pages on 16 slots: the rollout lands mid-run
    expected = run_workflow(etl, {"source": "s3://exports/x", "pages": 8})  # in-process
    before = {p["metadata"]["name"] for p in cluster.pods(WORKERS)}
    with cluster.kube() as kube:
        names = submit_etl(kube, "rolled", 50, **job)
        wait_for(lambda: list(phases(kube, names).values()).count("Running") >= 10, 60, "instances to run")
        pool = yaml.safe_load((REPO / "examples" / "helm-values.yaml").read_text())
        pool["workers"]["pools"][0]["image"]["tag"] = tag
        values = tmp_path / "rolled.yaml"
        values.write_text(yaml.safe_dump(pool))
        cluster.helm("upgrade", RELEASE, str(CHART), "-n", NAMESPACE, "-f", str(values), "--wait", "--timeout", "180s")
        wait_for(
            lambda: all(p in ("Succeeded", "Failed") for p in phases(kube, names).values()), 240, "all 50 to finish"
        )
        finished = {
            i["metadata"]["name"]: i["status"] for i in kube.list(WorkflowInstance.RESOURCE, NAMESPACE)["items"]
        }
        tasks = tasks_of(kube, names)
    for name in names:
        assert finished[name]["phase"] == "Succeeded", (name, finished[name])
        assert finished[name]["output"] == expected
    succeeded = collections.Counter(
        (t["spec"]["instance"], t["spec"]["step"], t["spec"]["path"])
        for t in tasks
        if t["status"]["phase"] == "Succeeded"
    )
    assert set(succeeded.values()) == {1}, "a step's result recorded twice"
    assert len(succeeded) == 50 * (1 + 8 + 2)  # plan, eight pages, transform, load
    after = {p["metadata"]["name"]: p for p in cluster.pods(WORKERS)}
    assert before.isdisjoint(after), "every old pod was replaced"
    assert {p["spec"]["containers"][0]["image"] for p in after.values()} == {f"{EXAMPLES_IMAGE}:{tag}"}
    # the work outlasted the rollout: the new pods recorded results too
    holders = {t["status"]["claim"]["holder"] for t in tasks if t["status"]["phase"] == "Succeeded"}
    assert any(h.startswith(pod) for h in holders for pod in after), holders


def test_a_deleted_worker_pod_hands_its_task_back(cluster: NodeCluster, release: str) -> None:
    """SIGTERM lets the task run for the pool's drainSeconds (20), then releases it to another pod."""
    with cluster.kube() as kube:
        (name,) = submit_etl(kube, f"handback-{uuid.uuid4().hex[:4]}", 1, pages=1, page_seconds=30)

        def claimed_page() -> dict[str, Any] | None:
            found = [
                t
                for t in tasks_of(kube, [name])
                if t["spec"]["step"] != "plan" and (t.get("status") or {}).get("claim")
            ]
            return found[0] if found else None

        task = wait_for(claimed_page, 60, "the page task to be claimed")
        holder = task["status"]["claim"]["holder"]  # POD_NAME-pid-suffix
        (holder_pod,) = [
            p["metadata"]["name"] for p in cluster.pods(WORKERS) if holder.startswith(p["metadata"]["name"])
        ]
        cluster.kubectl("-n", NAMESPACE, "delete", "pod", holder_pod, "--wait=false")
        wait_for(lambda: phases(kube, [name])[name] in ("Succeeded", "Failed"), 150, f"{name} to finish")
        attempts = sorted(
            (t for t in tasks_of(kube, [name]) if t["spec"]["step"] == task["spec"]["step"]),
            key=lambda t: t["spec"]["attempt"],
        )
        assert phases(kube, [name])[name] == "Succeeded"
    first, second = attempts
    assert first["status"]["phase"] == "Released", first["status"]
    assert holder_pod in first["status"]["error"]
    assert second["status"]["phase"] == "Succeeded"
    assert not second["status"]["claim"]["holder"].startswith(holder_pod)


def test_a_node_drain_is_held_back_by_the_pools_disruption_budget(cluster: NodeCluster, release: str) -> None:
    wait_for(lambda: len(cluster.ready_pods(WORKERS)) == 2, 120, "two ready workers")
    pdb = cluster.kubectl("-n", NAMESPACE, "get", "pdb", WORKER_POOL, "-o", "json").stdout
    assert '"maxUnavailable": 1' in pdb
    drain = cluster.kubectl(
        "drain", "plait-node", f"--pod-selector={WORKERS}", "--timeout=20s", "--delete-emptydir-data", check=False
    )
    try:
        assert drain.returncode != 0, "a drain that evicts every worker pod ignored the budget"
        assert "disruption budget" in drain.stderr + drain.stdout
        evicted = [line for line in drain.stdout.splitlines() if line.startswith("pod/") and "evicted" in line]
        assert len(evicted) == 1, drain.stdout
    finally:
        cluster.kubectl("uncordon", "plait-node")
    wait_for(lambda: len(cluster.ready_pods(WORKERS)) == 2, 120, "the pool to be whole again")
