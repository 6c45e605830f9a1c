"""Tracing end to end: a real operator and two real workers export OTLP to a real Jaeger, and the
order example's trace read back from Jaeger's query API is one tree across the three processes:
the instance, its steps, each attempt (a retry as two), the workers' runs under the attempts they
ran, the task's own span under its run, and the submitter's trace when the client had a span."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from examples.orders import orders
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from plait import KubernetesBackend, WorkflowClient
from plait._devenv.controlplane import ControlPlane
from plait._devenv.jaeger import Jaeger
from plait._kube.client import CORE_EVENTS, LEASES, Kube
from plait._kube.models import INSTANCES, TASKS, WORKER_LABEL
from plait._worker.membership import JOIN_GRACE_SECONDS
from plait_operator.tracing import OperatorTracing
from tests.k8s.jaeger import otel_env
from tests.k8s.support import PlaitProcess, instance_body, send_signal, submit, wait_for, wait_phase

pytestmark = pytest.mark.cluster

ORDER = {
    "order_id": "A-1001",
    "customer": "ada@example.com",
    "items": [{"sku": "BOOK-7", "quantity": 2, "unit_price": 30.0}, {"sku": "PEN-1", "quantity": 5, "unit_price": 2.5}],
}
TASK_STEPS = ["validate", "price", "reserve_stock", "fraud_score", "decide", "request_approval", "charge", "confirm"]


def _tags(span: dict[str, Any]) -> dict[str, Any]:
    return {tag["key"]: tag["value"] for tag in span.get("tags") or []}


def _parent(span: dict[str, Any]) -> str | None:
    return next((ref["spanID"] for ref in span.get("references") or [] if ref["refType"] == "CHILD_OF"), None)


def _complete_trace(jaeger: Jaeger, trace_id: str, root_name: str, runs: int) -> dict[str, Any]:
    """The trace once its root span and at least ``runs`` worker spans arrived."""

    def arrived() -> dict[str, Any] | None:
        found = jaeger.trace(trace_id)
        if found is None:
            return None
        names = [span["operationName"] for span in found["spans"]]
        return found if root_name in names and sum(n.startswith("run ") for n in names) >= runs else None

    result: dict[str, Any] = wait_for(arrived, timeout=30, interval=0.3, what=f"trace {trace_id} in Jaeger")
    return result


def _run_order(kube: Kube, namespace: str, name: str) -> dict[str, Any]:
    wait_phase(kube, namespace, name, "AwaitingSignal", timeout=60)
    send_signal(kube, namespace, name, "approval", {"approved": True, "by": "alice"})
    return wait_phase(kube, namespace, name, "Succeeded", timeout=60)


def _check_tree(trace: dict[str, Any], workers: set[str]) -> dict[str, list[dict[str, Any]]]:
    """Every span's parent is in the trace (one root), and the parent of each kind is the expected
    one; returns the spans by name."""
    spans = {span["spanID"]: span for span in trace["spans"]}
    services = {pid: process["serviceName"] for pid, process in trace["processes"].items()}
    by_name: dict[str, list[dict[str, Any]]] = {}
    for span in spans.values():
        by_name.setdefault(span["operationName"], []).append(span)
    roots = [span for span in spans.values() if _parent(span) not in spans]
    assert len(roots) == 1, [(r["operationName"], _parent(r)) for r in roots]
    for span in spans.values():
        name, parent = span["operationName"], spans.get(_parent(span) or "")
        service = services[span["processID"]]
        if name.startswith("attempt "):
            assert service == "plait-operator" and parent is not None
            assert parent["operationName"] == f"step {_tags(span)['plait.step']}", name
        elif name.startswith("run "):
            assert service == "plait-worker" and parent is not None and parent["operationName"].startswith("attempt ")
            worker = _tags(span)["plait.worker"]
            assert worker in workers and _tags(parent)["plait.worker"] == worker, "the attempt names its worker"
            assert _tags(parent)["plait.attempt"] == _tags(span)["plait.attempt"]
        elif name.startswith(("step ", "signal ", "delay ", "queued")):
            assert service == "plait-operator" and parent is not None
            assert parent["operationName"] == "instance order-processing", name
    return by_name


def test_the_order_examples_trace_spans_the_operator_and_two_workers(
    kube: Kube,
    own: str,
    control_plane: ControlPlane,
    jaeger: Jaeger,
    start_operator: Callable[..., PlaitProcess],
    start_worker: Callable[..., PlaitProcess],
) -> None:
    start_operator("--namespace", own, env=otel_env(jaeger))
    workers_started = [
        start_worker(own, "--concurrency", "2", "--log-format", "json", module="examples.orders", env=otel_env(jaeger))
        for _ in range(2)
    ]
    leases = wait_for(
        lambda: len(items := kube.list(LEASES, own, label_selector=WORKER_LABEL)["items"]) == 2 and items,
        what="two worker Leases",
    )
    workers = {lease["spec"]["holderIdentity"] for lease in leases}
    time.sleep(JOIN_GRACE_SECONDS + 1)  # both count each other

    # An instance of its own trace (kubectl apply sets no traceparent).
    body = submit(kube, own, "order-1", "order-processing", ORDER)
    _run_order(kube, own, "order-1")
    trace_id = f"{OperatorTracing().trace(body).trace_id:032x}"
    tasks = kube.list(TASKS, own)["items"]
    trace = _complete_trace(jaeger, trace_id, "instance order-processing", runs=len(tasks))
    by_name = _check_tree(trace, workers)
    (instance,) = by_name["instance order-processing"]
    assert _parent(instance) is None and _tags(instance)["plait.phase"] == "Succeeded"
    for step in TASK_STEPS:
        (span,) = by_name[f"step {step}"]
        assert _tags(span)["plait.outcome"] == "succeeded", step
    (wait,) = by_name["signal approval"]
    assert _tags(wait)["plait.outcome"] == "received"

    # The warehouse fails the first attempt: the retry is a second attempt span of the same step.
    first, second = sorted(by_name["attempt reserve_stock #1"] + by_name["attempt reserve_stock #2"], key=_tags_attempt)
    assert _tags(first)["plait.outcome"] == "failed" and _tags(first)["error"] is True
    assert _tags(second)["plait.outcome"] == "succeeded"
    assert _parent(first) == _parent(second) == by_name["step reserve_stock"][0]["spanID"]

    # charge's own span (the OpenTelemetry API in the task) under the worker's run of charge.
    (user_span,) = by_name["payment-gateway charge"]
    (run_charge,) = by_name["run charge"]
    assert _parent(user_span) == run_charge["spanID"]
    assert _tags(user_span)["payment.approved_by"] == "alice"
    runs = {span["spanID"]: span for name, spans in by_name.items() if name.startswith("run ") for span in spans}
    ran_on = {_tags(span)["plait.worker"] for span in runs.values()}

    # The workers' JSON log lines of a run carry its trace and span ids: logs and traces join.
    logged = [json.loads(line) for w in workers_started for line in w.output().splitlines() if line.startswith("{")]
    ran = [line for line in logged if line["message"].startswith("ran task=") and line.get("trace_id") == trace_id]
    assert len(ran) == len(runs), "one 'ran' line per run span"
    for line in ran:
        assert line["span_id"] in runs and _tags(runs[line["span_id"]])["plait.step"] == line["step"]
        assert line["instance"] == f"{own}/order-1" and line["worker"] in workers

    # Submitted by a client inside a span of its own: the instance joins the submitter's trace.
    provider = TracerProvider(resource=Resource.create({"service.name": "checkout-frontend"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{jaeger.otlp_endpoint}/v1/traces")))
    backend = KubernetesBackend(own, kubeconfig=str(control_plane.kubeconfig))
    with (
        WorkflowClient(backend) as client,  # type: ignore[attr-defined]
        provider.get_tracer("test").start_as_current_span("checkout") as checkout,
    ):
        client.submit(orders, "order-2", ORDER)
    provider.shutdown()
    submitted = kube.get(INSTANCES, "order-2", own)
    _run_order(kube, own, "order-2")
    submitter_trace = f"{checkout.get_span_context().trace_id:032x}"
    assert OperatorTracing().trace(submitted).trace_id == checkout.get_span_context().trace_id
    trace = _complete_trace(jaeger, submitter_trace, "instance order-processing", runs=len(TASK_STEPS) + 2)
    by_name = _check_tree(trace, workers)
    (root,) = by_name["checkout"]
    (instance,) = by_name["instance order-processing"]
    assert _parent(instance) == root["spanID"]
    ran_on |= {
        _tags(span)["plait.worker"] for name, spans in by_name.items() if name.startswith("run ") for span in spans
    }
    assert ran_on == workers, "both workers ran some of the steps"


def _tags_attempt(span: dict[str, Any]) -> int:
    return int(_tags(span)["plait.attempt"])


def test_an_invalid_traceparent_is_reported_and_the_instance_traced_on_its_own(
    kube: Kube,
    own: str,
    jaeger: Jaeger,
    start_operator: Callable[..., PlaitProcess],
    start_worker: Callable[..., PlaitProcess],
) -> None:
    start_operator("--namespace", own, env=otel_env(jaeger))
    start_worker(own, module="examples.orders", env=otel_env(jaeger))
    manifest = instance_body("order-x", "order-processing", ORDER)
    manifest["metadata"]["annotations"] = {"plait.dev/traceparent": "not-a-trace"}
    body = kube.create(INSTANCES, manifest, own)
    wait_phase(kube, own, "order-x", "AwaitingSignal", timeout=60)

    def warned() -> list[dict[str, Any]]:
        events = kube.list(CORE_EVENTS, own, field_selector="involvedObject.name=order-x")["items"]
        return [e for e in events if e["reason"] == "InvalidTraceparent" and e["type"] == "Warning"]

    (event,) = wait_for(warned, timeout=20, what="the InvalidTraceparent Event")
    assert "'not-a-trace' is not a W3C traceparent" in event["message"]
    trace_id = f"{OperatorTracing().trace(body).trace_id:032x}"
    found = wait_for(lambda: jaeger.trace(trace_id), timeout=30, interval=0.3, what="the instance's own trace")
    assert any(span["operationName"] == "attempt validate #1" for span in found["spans"])
