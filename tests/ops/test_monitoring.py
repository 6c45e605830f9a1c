"""The alert rules and the Grafana dashboard query only metrics the operator and the worker export,
with labels those metrics have, in PromQL that parses."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import promql_parser
import pytest
from prometheus_client import CollectorRegistry

from plait._worker.metrics import WorkerMetrics
from plait_operator.metrics import OperatorMetrics
from tests.ops.support import CHART, find, render

# helm comes with the control-plane binaries: these tests need them like the cluster tests do
pytestmark = pytest.mark.cluster

# series suffixes of each metric type in the exposition format
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}
# labels Prometheus attaches to every scraped series (the chart's selector uses `namespace`)
TARGET_LABELS = {"namespace", "job", "instance", "pod", "service", "container", "endpoint"}


def exported() -> dict[str, set[str]]:
    """Every series name both registries can export, with its label names (before any series exists)."""
    series: dict[str, set[str]] = {}
    for metrics in (OperatorMetrics(CollectorRegistry()), WorkerMetrics(CollectorRegistry())):
        # prometheus_client keeps the label names of a metric that has no series yet in `_labelnames`,
        # on the metric objects and on the families of collectors that compute theirs
        declared = {m._name: m._labelnames for m in vars(metrics).values() if hasattr(m, "_labelnames")}
        for family in metrics.registry.collect():
            label_names = set(getattr(family, "_labelnames", None) or declared[family.name])
            for suffix in SUFFIXES[family.type]:
                series[family.name + suffix] = label_names | ({"le"} if suffix == "_bucket" else set())
    return series


def selectors(expr: str) -> list[tuple[str, set[str]]]:
    found: list[tuple[str, set[str]]] = []

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            found.append((node.name, {m.name for m in node.matchers.matchers}))

    promql_parser.walk(promql_parser.parse(expr), visit)
    return found


def grouping_labels(expr: str) -> set[str]:
    """Labels named in ``by (...)`` and ``on (...)`` clauses."""
    return {label.strip() for group in re.findall(r"\b(?:by|on)\s*\(([^)]*)\)", expr) for label in group.split(",")} - {
        ""
    }


def check(expr: str, where: str, series: dict[str, set[str]]) -> None:
    used = selectors(expr)
    assert used, f"{where}: no metric in {expr!r}"
    names_here: set[str] = set()
    for name, matched in used:
        if name in ("vector",):
            continue
        assert name.startswith("plait_"), f"{where}: {name} is not a plait metric"
        assert name in series, f"{where}: {name} is exported by neither the operator nor the worker"
        assert matched <= series[name] | TARGET_LABELS, f"{where}: {name} has no label {matched - series[name]}"
        names_here |= series[name]
    assert grouping_labels(expr) <= names_here | TARGET_LABELS | {"le"}, f"{where}: groups by a label none has"


def test_the_registries_export_what_the_issue_asks_for() -> None:
    series = exported()
    for name in (
        "plait_instances",
        "plait_steps_dispatched_total",
        "plait_steps_completed_total",
        "plait_steps_failed_total",
        "plait_steps_retried_total",
        "plait_step_schedule_to_start_seconds_bucket",
        "plait_step_run_seconds_bucket",
        "plait_reconcile_duration_seconds_bucket",
        "plait_reconcile_errors_total",
        "plait_queue_depth",
        "plait_queue_oldest_task_age_seconds",
        "plait_lease_expiries_total",
        "plait_worker_tasks_claimed_total",
        "plait_worker_tasks_succeeded_total",
        "plait_worker_tasks_failed_total",
        "plait_worker_tasks_timed_out_total",
        "plait_worker_claim_conflicts_total",
        "plait_worker_tasks_in_flight",
        "plait_worker_task_duration_seconds_bucket",
    ):
        assert name in series, name
    assert series["plait_instances"] == {"workflow", "phase"}
    assert series["plait_worker_task_duration_seconds_bucket"] == {"workflow", "queue", "outcome", "le"}
    allowed = {"workflow", "queue", "phase", "outcome", "reason", "le"}
    for name, label_names in series.items():
        assert label_names <= allowed, f"{name}: {label_names - allowed}"


@pytest.fixture(scope="module")
def monitoring(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    values = {"metrics": {"prometheusRule": {"enabled": True}, "dashboard": {"enabled": True}}}
    manifests = render(tmp_path_factory.mktemp("monitoring"), values)
    return {
        "rules": find(manifests, "PrometheusRule")["spec"]["groups"][0]["rules"],
        "dashboard": json.loads(find(manifests, "ConfigMap")["data"]["plait.json"]),
    }


def test_alert_rules_use_only_exported_metrics(monitoring: dict[str, Any]) -> None:
    series = exported()
    alerts = {rule["alert"]: rule for rule in monitoring["rules"]}
    assert set(alerts) == {
        "PlaitOperatorDown",
        "PlaitInstancesPending",
        "PlaitInstancesStuck",
        "PlaitTasksUnclaimed",
        "PlaitWorkflowFailureRate",
        "PlaitTaskLeasesExpiring",
        "PlaitReconcileErrors",
    }
    for name, rule in alerts.items():
        check(rule["expr"], name, series)
        assert rule["labels"]["severity"] in ("critical", "warning")
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        # annotation templates name only labels the expression keeps
        kept = grouping_labels(rule["expr"])
        for label in re.findall(r"\$labels\.(\w+)", json.dumps(rule["annotations"])):
            assert label in kept, f"{name}: annotation uses $labels.{label}, which the expression drops"


def test_dashboard_panels_use_only_exported_metrics(monitoring: dict[str, Any]) -> None:
    series = exported()
    dashboard = monitoring["dashboard"]
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len(panels) >= 15
    used: set[str] = set()
    for panel in panels:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            # Grafana's variables, as Grafana would substitute them
            expr = target["expr"].replace("$__rate_interval", "1m").replace("$namespace", ".*")
            check(expr, f"panel {panel['title']!r}", series)
            used |= {name for name, _ in selectors(expr)}
    # every family of both processes appears on the dashboard
    families = {re.sub(r"_(bucket|count|sum)$", "", name) for name in series}
    shown = {re.sub(r"_(bucket|count|sum)$", "", name) for name in used}
    assert families <= shown, f"not on the dashboard: {sorted(families - shown)}"
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert variables == {"datasource", "namespace"}


def test_the_dashboard_file_is_the_one_the_chart_ships(monitoring: dict[str, Any]) -> None:
    assert monitoring["dashboard"] == json.loads((CHART / "dashboards" / "plait.json").read_text())
    assert Path(CHART / "dashboards" / "plait.json").read_text().endswith("\n")
