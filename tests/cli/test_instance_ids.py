"""Instance ids that are no Kubernetes names, submitted from Python, looked up by the CLI (and back)."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from plait import KubernetesBackend, WorkflowClient
from plait._devenv.controlplane import ControlPlane
from plait._ids import instance_name
from tests.cli import flows
from tests.cli.conftest import Result
from tests.k8s.support import PlaitProcess

pytestmark = pytest.mark.cluster
LONG_ID = "Kunde #4711 / Bestellung " + "ü" * 80 + " " + "x" * 14  # 200 bytes of UTF-8


@pytest.fixture
def client(control_plane: ControlPlane, cli_ns: str) -> WorkflowClient:
    return WorkflowClient(KubernetesBackend(cli_ns, kubeconfig=str(control_plane.kubeconfig)))


def test_the_cli_takes_the_ids_a_client_submitted(
    client: WorkflowClient, cli_ns: str, serve: Callable[..., PlaitProcess], plait: Callable[..., Result]
) -> None:
    assert len(LONG_ID.encode()) == 200
    serve(cli_ns)
    with client:  # type: ignore[attr-defined]
        client.submit(flows.gate, "Order_42", "ada")
        client.submit(flows.greeting, LONG_ID, {"name": "bob"})
        assert plait("result", LONG_ID, "--wait", "--timeout", "60", "-n", cli_ns).out.strip() == '"HELLO BOB!"'
        status = plait("status", "Order_42", "-n", cli_ns)
        assert status.code == 0 and instance_name("Order_42") in status.out
        assert "plait.dev/instance-id=Order_42" in status.out
        signal = plait("signal", "Order_42", "go", '{"ok": true}', "-n", cli_ns)
        assert signal.code == 0, signal.err
        assert client.wait("Order_42", timeout=60).output == {"got": {"ok": True}}  # type: ignore[attr-defined]
        tree = plait("get", "Order_42", "-n", cli_ns)
        assert tree.code == 0 and "Succeeded" in tree.out
        assert plait("result", "order_42", "-n", cli_ns).code == 1  # another id: no such instance


def test_a_cli_submit_with_an_id_is_found_by_the_client(
    client: WorkflowClient, cli_ns: str, serve: Callable[..., PlaitProcess], plait: Callable[..., Result]
) -> None:
    serve(cli_ns)
    created = plait("submit", "greeting", '{"name": "cy"}', "--name", "Run_7", "-o", "json", "-n", cli_ns)
    assert created.code == 0, created.err
    assert json.loads(created.out)["metadata"]["name"] == instance_name("Run_7")
    with client:  # type: ignore[attr-defined]
        assert client.wait("Run_7", timeout=60).output == "HELLO CY!"  # type: ignore[attr-defined]
