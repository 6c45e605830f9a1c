"""A real Prometheus scraping the release through Kubernetes service discovery (the Services'
`metrics` ports, as the chart's ServiceMonitor selects them), with the chart's PrometheusRule
groups loaded as rule files: an alert fires for a real cause, and every Grafana dashboard query
returns data once a workload ran."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from plait._devenv.binaries import PROMETHEUS_NAMES, find_binaries
from plait._devenv.controlplane import free_port
from plait._kube.models import WorkflowInstance
from tests.node.support import CHART, NAMESPACE, RELEASE, NodeCluster, wait_for
from tests.node.test_rollout import phases, submit_etl

# the rules as the chart renders them, with a `for:` this test can wait out
RULE_VALUES = ["--set", "metrics.prometheusRule.enabled=true", "--set", "metrics.prometheusRule.pendingFor=10s"]
RATE_INTERVAL = "30s"  # Grafana's $__rate_interval for a 2s scrape interval, rounded up


class Prometheus:
    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=10.0)

    def get(self, path: str, **params: str) -> Any:
        response = self.http.get(path, params=params)
        response.raise_for_status()
        body = response.json()
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.get("/api/v1/query", query=expr)["result"]
        return result


def configuration(cluster: NodeCluster, directory: Path) -> Path:
    pki = cluster.plane.pki
    rendered = cluster.helm("template", RELEASE, str(CHART), "-n", NAMESPACE, *RULE_VALUES).stdout
    (rule,) = [d for d in yaml.safe_load_all(rendered) if d and d["kind"] == "PrometheusRule"]
    (directory / "rules.yaml").write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    scrape = {
        "job_name": "plait",
        "kubernetes_sd_configs": [
            {
                "role": "endpoints",
                "api_server": cluster.plane.server,
                "tls_config": {
                    "ca_file": str(pki / "ca.crt"),
                    "cert_file": str(pki / "admin.crt"),
                    "key_file": str(pki / "admin.key"),
                },
                "namespaces": {"names": [NAMESPACE]},
            }
        ],
        # what the chart's ServiceMonitor selects, and the target labels prometheus-operator adds
        "relabel_configs": [
            {
                "source_labels": ["__meta_kubernetes_service_label_app_kubernetes_io_name"],
                "regex": "plait",
                "action": "keep",
            },
            {
                "source_labels": ["__meta_kubernetes_service_label_app_kubernetes_io_instance"],
                "regex": RELEASE,
                "action": "keep",
            },
            {"source_labels": ["__meta_kubernetes_endpoint_port_name"], "regex": "metrics", "action": "keep"},
            {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
            {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
            {"source_labels": ["__meta_kubernetes_service_name"], "target_label": "service"},
        ],
    }
    config = {
        "global": {"scrape_interval": "2s", "evaluation_interval": "2s"},
        "rule_files": ["rules.yaml"],
        "scrape_configs": [scrape],
    }
    path = directory / "prometheus.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def prometheus(cluster: NodeCluster, release: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    directory = tmp_path_factory.mktemp("prometheus")
    config = configuration(cluster, directory)
    port = free_port()
    binary = find_binaries(also=PROMETHEUS_NAMES).path("prometheus")
    with open(directory / "prometheus.log", "wb") as log:
        process = subprocess.Popen(
            [str(binary), f"--config.file={config}", f"--storage.tsdb.path={directory / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=log, stderr=subprocess.STDOUT, cwd=directory,
        )  # fmt: skip
    client = Prometheus(f"http://127.0.0.1:{port}")
    try:
        wait_for(lambda: _ready(client, process), 60, "Prometheus to be ready")
        yield client
    finally:
        client.http.close()
        process.terminate()
        process.wait(timeout=30)


def _ready(client: Prometheus, process: subprocess.Popen[bytes]) -> bool:
    assert process.poll() is None, "Prometheus exited; see its prometheus.log"
    try:
        return client.http.get("/-/ready").status_code == 200
    except httpx.TransportError:
        return False


def test_service_discovery_finds_the_operator_and_every_worker_pod(
    cluster: NodeCluster, prometheus: Prometheus
) -> None:
    def targets_up() -> list[dict[str, Any]] | None:
        active = prometheus.get("/api/v1/targets", state="active")["activeTargets"]
        return active if len(active) == 3 and all(t["health"] == "up" for t in active) else None

    targets = wait_for(targets_up, 60, "three healthy targets")
    pods = {p["metadata"]["name"] for p in cluster.pods("app.kubernetes.io/name=plait")}
    assert {t["labels"]["pod"] for t in targets} == pods
    assert {t["labels"]["namespace"] for t in targets} == {NAMESPACE}
    assert prometheus.query('max(plait_operator_leader{namespace="plait"})')[0]["value"][1] == "1"


def test_an_alert_fires_for_a_real_cause(cluster: NodeCluster, prometheus: Prometheus) -> None:
    """An instance of a workflow no pool serves stays Pending: PlaitInstancesPending fires after its `for:`."""
    name = f"orphan-{uuid.uuid4().hex[:6]}"
    body = {"apiVersion": "plait.dev/v1alpha1", "kind": "WorkflowInstance", "metadata": {"name": name},
            "spec": {"workflow": "nobody-serves-this", "input": {}}}  # fmt: skip
    with cluster.kube() as kube:
        kube.create(WorkflowInstance.RESOURCE, body, NAMESPACE)
        try:

            def firing() -> dict[str, Any] | None:
                alerts = prometheus.get("/api/v1/alerts")["alerts"]
                found = [a for a in alerts if a["labels"]["alertname"] == "PlaitInstancesPending"]
                return found[0] if found and found[0]["state"] == "firing" else None

            pending_since = time.monotonic()
            alert = wait_for(firing, 90, "PlaitInstancesPending to fire")
            assert time.monotonic() - pending_since >= 10, "fired before its for: of 10s"
        finally:
            kube.delete(WorkflowInstance.RESOURCE, name, NAMESPACE)
    assert alert["labels"]["workflow"] == "nobody-serves-this"
    assert alert["labels"]["severity"] == "warning"
    assert "nobody-serves-this" in alert["annotations"]["summary"]


def test_every_dashboard_query_returns_data_after_a_workload(cluster: NodeCluster, prometheus: Prometheus) -> None:
    with cluster.kube() as kube:
        names = submit_etl(kube, f"dash-{uuid.uuid4().hex[:4]}", 10, pages=2)
        wait_for(lambda: set(phases(kube, names).values()) == {"Succeeded"}, 120, "the workload to finish")
    time.sleep(6)  # three scrapes after the last step
    dashboard = json.loads((CHART / "dashboards" / "plait.json").read_text())
    empty = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"].replace("$namespace", NAMESPACE).replace("$__rate_interval", RATE_INTERVAL)
            if not prometheus.query(expr):
                empty.append(f"{panel['title']}: {target['expr']}")
    assert not empty, "dashboard queries without data:\n" + "\n".join(empty)
