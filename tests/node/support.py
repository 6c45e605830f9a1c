"""The node tier's handle on its cluster: the control plane with a real node, helm and kubectl
pointed at it, and the waits the tests share."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from plait._devenv.controlplane import ControlPlane
from plait._devenv.node import Node
from plait._kube.client import Kube, Resource
from plait._kube.connection import load_connection
from tests.k8s.support import wait_for as k8s_wait_for
from tests.ops.support import run
from tests.ops.support import tool as tool_path

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "plait"
RELEASE, NAMESPACE = "plait", "plait"
PODS = Resource("", "v1", "pods", "Pod")
WORKER_POOL = "plait-worker-examples"  # the Deployment of examples/helm-values.yaml's pool


@dataclass
class NodeCluster:
    plane: ControlPlane
    node: Node

    def run(
        self, tool: str, *args: str, stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return run([tool_path(tool), *args], stdin=stdin, check=check, kubeconfig=self.plane.kubeconfig, timeout=300)

    def helm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run("helm", *args, check=check)

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run("kubectl", *args, stdin=stdin, check=check)

    def kube(self) -> Kube:
        return Kube(load_connection(self.plane.kubeconfig))

    def pods(self, selector: str) -> list[dict[str, Any]]:
        out = self.kubectl("-n", NAMESPACE, "get", "pods", "-l", selector, "-o", "json").stdout
        items: list[dict[str, Any]] = json.loads(out)["items"]
        return items

    def ready_pods(self, selector: str) -> list[dict[str, Any]]:
        return [p for p in self.pods(selector) if ready(p) and not p["metadata"].get("deletionTimestamp")]


def ready(pod: dict[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.5) -> Any:
    """:func:`tests.k8s.support.wait_for`, polling at a pace that suits kubectl and pod start-up."""
    return k8s_wait_for(predicate, timeout, interval, what)
