"""The chart's alert rules through promtool, Prometheus' own checker: they load (`promtool check
rules`), and each alert fires at its threshold after its `for:` and not before (`promtool test
rules` with tests/ops/alerts.test.yaml). tests/node watches one fire in a real Prometheus."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from plait._devenv.binaries import PROMETHEUS_NAMES, find_binaries
from tests.ops.support import find, render

# helm comes with the control-plane binaries, promtool with Prometheus': built like the cluster's
pytestmark = pytest.mark.cluster

CASES = Path(__file__).with_name("alerts.test.yaml")


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    binary = find_binaries(also=PROMETHEUS_NAMES).path("promtool")
    return subprocess.run([str(binary), *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def chart_rules(tmp_path: Path) -> dict[str, Any]:
    manifests = render(tmp_path, {"metrics": {"prometheusRule": {"enabled": True}}})
    return {"groups": find(manifests, "PrometheusRule")["spec"]["groups"]}


def test_the_rule_files_load_in_prometheus(tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(chart_rules(tmp_path)))
    checked = promtool("check", "rules", "rules.yaml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 7 rules found" in checked.stdout


def test_every_alert_fires_at_its_threshold_after_its_for(tmp_path: Path) -> None:
    rules = chart_rules(tmp_path)
    alerts = [rule for group in rules["groups"] for rule in group["rules"] if "alert" in rule]
    tested = {
        test["alertname"] for case in yaml.safe_load(CASES.read_text())["tests"] for test in case["alert_rule_test"]
    }
    assert {a["alert"] for a in alerts} == tested, "every alert of the chart has promtool cases"
    for alert in alerts:  # the cases pin labels; the annotations' wording is the chart's business
        alert.pop("annotations")
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules))
    (tmp_path / CASES.name).write_text(CASES.read_text())
    tested_run = promtool("test", "rules", CASES.name, cwd=tmp_path)
    assert tested_run.returncode == 0, tested_run.stdout + tested_run.stderr
