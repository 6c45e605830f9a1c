"""`helm install` of the chart's defaults plus the example worker pool, on a real node: the pods
become Ready through their own probes, run as the images' non-root user on a read-only root
filesystem, and run the order example to the end, signal included."""

from __future__ import annotations

import json

from plait._kube.models import WorkflowInstance
from tests.node.support import NAMESPACE, REPO, NodeCluster, ready, wait_for

OPERATOR = "app.kubernetes.io/component=operator"
WORKERS = "app.kubernetes.io/component=worker,plait.dev/pool=examples"
# run inside each pod: who am I, and may I write to / (no) and /tmp (the chart's emptyDir)
INSIDE = """
import json, os
def writable(path):
    try:
        open(os.path.join(path, "plait-probe"), "w").close()
        return True
    except OSError as error:
        return error.strerror
print(json.dumps({"uid": os.getuid(), "gid": os.getgid(), "root": writable("/"), "tmp": writable("/tmp")}))
"""


def test_operator_and_workers_become_ready_through_their_probes(cluster: NodeCluster, release: str) -> None:
    (operator,) = cluster.pods(OPERATOR)
    workers = cluster.pods(WORKERS)
    assert len(workers) == 2  # examples/helm-values.yaml's replicas
    for pod in [operator, *workers]:
        assert ready(pod), pod["status"]
        (container,) = pod["spec"]["containers"]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        (status,) = pod["status"]["containerStatuses"]
        assert status["ready"] and status["restartCount"] == 0, status
        assert pod["spec"]["nodeName"] == "plait-node"
    images = {pod["spec"]["containers"][0]["image"] for pod in [operator, *workers]}
    assert images == {"ghcr.io/plait-dev/plait-operator:0.1.0", "ghcr.io/plait-dev/plait-examples:0.1.0"}


def test_pods_run_as_non_root_on_a_read_only_root_filesystem(cluster: NodeCluster, release: str) -> None:
    for pod in [*cluster.pods(OPERATOR), *cluster.pods(WORKERS)]:
        name = pod["metadata"]["name"]
        out = cluster.kubectl("-n", NAMESPACE, "exec", name, "--", "python3", "-c", INSIDE).stdout
        seen = json.loads(out)
        assert seen == {"uid": 65532, "gid": 65532, "root": "Read-only file system", "tmp": True}, (name, seen)


def test_the_order_example_runs_through_the_pods(cluster: NodeCluster, release: str) -> None:
    examples = REPO / "examples"
    cluster.kubectl("-n", NAMESPACE, "apply", "-f", str(examples / "order-instance.yaml"))
    name = "order-a-1001"
    with cluster.kube() as kube:

        def phase() -> str | None:
            body = kube.get(WorkflowInstance.RESOURCE, name, NAMESPACE)
            return (body.get("status") or {}).get("phase")

        wait_for(lambda: phase() == "AwaitingSignal", 90, f"{name} to wait for its approval")
        cluster.kubectl("-n", NAMESPACE, "create", "-f", str(examples / "approval-signal.yaml"))
        wait_for(lambda: phase() in ("Succeeded", "Failed"), 90, f"{name} to finish")
        status = kube.get(WorkflowInstance.RESOURCE, name, NAMESPACE)["status"]
    assert status["phase"] == "Succeeded", status
    # every step ran in a worker pod, and its log says so
    logs = cluster.kubectl("-n", NAMESPACE, "logs", "-l", WORKERS, "--prefix", "--tail=-1").stdout
    ran = [line for line in logs.splitlines() if f"instance={name} " in line and "outcome=succeeded" in line]
    steps = {line.split(" step=")[1].split()[0] for line in ran}
    assert {"validate", "charge", "confirm", "summarize"} <= steps, logs[-2000:]
    assert all(line.startswith("[pod/plait-worker-examples-") for line in ran)
