"""The node tier: a control plane with a real node (containerd, kubelet, scheduler, kube-proxy),
the chart installed on it from the images `make images` built, a real Prometheus scraping it.

One node per session, and one per machine (the node's lock). The files run in name order:
test_dev_node starts and removes a node of its own through the CLI before the session's node
starts; test_uninstall removes the release last. A machine that cannot run a node fails this tier
with the reason, never skips it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from plait._devenv.binaries import cache_dir
from plait._devenv.controlplane import ControlPlane
from plait._devenv.node import Node, NodeError, check_machine, node_address
from tests.node.support import CHART, NAMESPACE, RELEASE, REPO, NodeCluster

IMAGES = ("operator.tar", "worker.tar", "example-0.1.0.tar", "pause.tar")


def require_node_machine() -> None:
    try:
        check_machine()
    except NodeError as error:
        pytest.fail(f"the node tier (tests/node) cannot run on this machine: {error}", pytrace=False)
    missing = [name for name in IMAGES if not (cache_dir() / "images" / name).exists()]
    if missing:
        pytest.fail(f"the node tier needs the images: {', '.join(missing)} missing; run `make images`", pytrace=False)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeCluster]:
    require_node_machine()
    directory = tmp_path_factory.mktemp("node-cluster")
    plane = ControlPlane(directory, node_ip=node_address())
    node = Node(directory / "node", plane)
    plane.start()
    try:
        node.start()
        yield NodeCluster(plane, node)
    finally:
        leftovers = node.stop()
        plane.stop()
    assert not leftovers, f"the node did not put the host back: {leftovers}"


@pytest.fixture(scope="session")
def release(cluster: NodeCluster) -> str:
    """The chart installed with its defaults plus the example worker pool; Ready through its probes."""
    cluster.helm(
        "install", RELEASE, str(CHART), "--namespace", NAMESPACE, "--create-namespace",
        "-f", str(REPO / "examples" / "helm-values.yaml"), "--wait", "--timeout", "180s",
    )  # fmt: skip
    return RELEASE
