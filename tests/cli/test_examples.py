"""The examples run locally (no cluster), as scripts, and their manifests match their workflows."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from examples.etl import etl
from examples.orders import orders

from plait import InMemoryBackend, WorkflowError, resume_workflow, run_durable_workflow, run_workflow, send_signal
from plait._kube.models import WorkflowInstance, WorkflowSchedule, WorkflowSignal
from plait._scheduling.cron import Cron

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
ORDER = yaml.safe_load((EXAMPLES / "order-instance.yaml").read_text())["spec"]["input"]


def test_etl_runs_locally() -> None:
    assert run_workflow(etl, {"source": "s3://bucket/export", "pages": 3}) == {"loaded": 9, "checksum": 70}


@pytest.mark.parametrize(
    ("review", "output"),
    [
        ({"approved": True, "by": "alice"}, "order confirmed, approved by alice"),
        ({"approved": False, "by": "bob"}, "order rejected by bob; stock released"),
    ],
)
def test_orders_wait_for_approval_then_route_on_it(review: dict[str, Any], output: str) -> None:
    backend = InMemoryBackend()
    waiting = run_durable_workflow(orders, "order-1", ORDER, backend=backend)
    assert waiting.is_awaiting_signal() and waiting.signal_name == "approval"
    send_signal("order-1", "approval", review, backend)
    finished = resume_workflow(orders, "order-1", backend)
    assert finished.output == output


def test_orders_reject_a_bad_order_at_validation() -> None:
    with pytest.raises(WorkflowError, match="items"):
        run_workflow(orders, {**ORDER, "items": []})


@pytest.mark.parametrize("script", ["orders.py", "etl.py"])
def test_examples_run_as_scripts(script: str) -> None:
    result = subprocess.run([sys.executable, str(EXAMPLES / script)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()


@pytest.mark.parametrize(
    ("manifest", "workflow"), [("order-instance.yaml", orders), ("etl-instance.yaml", etl)], ids=["orders", "etl"]
)
def test_instance_manifests_match_their_workflows(manifest: str, workflow: Any) -> None:
    body = WorkflowInstance.model_validate(yaml.safe_load((EXAMPLES / manifest).read_text()))
    assert body.spec.workflow == workflow.workflow_id
    if workflow.definition.input_schema:
        jsonschema.validate(body.spec.input, workflow.definition.input_schema)


def test_approval_signal_manifest_matches_the_order() -> None:
    signal = WorkflowSignal.model_validate(yaml.safe_load((EXAMPLES / "approval-signal.yaml").read_text()))
    instance = yaml.safe_load((EXAMPLES / "order-instance.yaml").read_text())
    assert signal.spec.instance == instance["metadata"]["name"]
    assert signal.spec.name in {getattr(node, "signal", None) for node in orders.definition.nodes.values()}


def test_the_schedule_manifest_runs_the_etl_nightly_on_valid_input() -> None:
    schedule = WorkflowSchedule.model_validate(yaml.safe_load((EXAMPLES / "etl-schedule.yaml").read_text()))
    assert schedule.spec.workflow == etl.workflow_id
    assert Cron.parse(schedule.spec.schedule, schedule.spec.timeZone).explain() == "At 02:00 every day"
    if etl.definition.input_schema:
        jsonschema.validate(schedule.spec.input, etl.definition.input_schema)
