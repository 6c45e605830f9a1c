"""Tracing's pure parts: W3C traceparent parsing, derived ids, the operator's trace of an instance
and the spans it writes (into the SDK's in-memory exporter), and that tracing is off, without the
SDK even imported, when no endpoint is configured. The real export is tests/k8s/test_tracing.py."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from plait import _tracing
from plait._logging import JsonFormatter, log_context
from plait._tracing import SpanRecord, TraceParent, configured, derived_id, parse_traceparent
from plait_operator.tracing import OperatorTracing
from tests.k8s.support import REPO

VALID = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_a_valid_traceparent_parses_and_prints_back() -> None:
    parent = parse_traceparent(VALID)
    assert parent == TraceParent(0x4BF92F3577B34DA6A3CE929D0E0E4736, 0x00F067AA0BA902B7, True)
    assert parent.header == VALID
    assert parse_traceparent(VALID[:-2] + "00") == TraceParent(parent.trace_id, parent.span_id, False)
    assert parse_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future") is not None


@pytest.mark.parametrize(
    "value",
    [
        "",
        "nonsense",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",  # no flags
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",  # upper case
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # zero trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # zero span id
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # forbidden version
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",  # version 00 has nothing after
    ],
)
def test_a_malformed_traceparent_is_refused(value: str) -> None:
    assert parse_traceparent(value) is None


def test_derived_ids_are_stable_distinct_and_of_the_right_width() -> None:
    assert derived_id(64, "uid", "attempt", "a", "1") == derived_id(64, "uid", "attempt", "a", "1")
    assert derived_id(64, "uid", "attempt", "a", "1") != derived_id(64, "uid", "attempt", "a", "2")
    assert derived_id(64, "uid", "step", "a/b") != derived_id(64, "uid", "step/a", "b")  # parts stay apart
    assert 0 < derived_id(64, "x") < 2**64
    assert 2**64 < derived_id(128, "x") < 2**128


def test_only_an_endpoint_turns_tracing_on() -> None:
    assert not configured({})
    assert configured({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"})
    assert configured({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"})
    assert not configured({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x", "OTEL_SDK_DISABLED": "true"})
    assert not configured({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x", "OTEL_TRACES_EXPORTER": "none"})


def test_without_an_endpoint_nothing_imports_the_sdk() -> None:
    """The operator, the worker runtime, the client and the CLI, imported and asked to trace: no
    OpenTelemetry module is loaded, so tracing that is off costs nothing."""
    program = (
        "import sys, plait, plait.cli, plait._worker.runtime, plait_operator.main\n"
        "from plait import _tracing\n"
        "from plait._client.objects import instance_body\n"
        "assert plait.init_tracing() is False and not _tracing.enabled()\n"
        "assert plait_operator.main.OperatorTracing.start('me') is None\n"
        "body = instance_body('wf', 'id-1', None)\n"
        "assert 'plait.dev/traceparent' not in body['metadata']['annotations']\n"
        "plait.shutdown_tracing()\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('opentelemetry'))\n"
        "assert not loaded, loaded\n"
    )
    env = {key: value for key, value in os.environ.items() if not key.startswith("OTEL_")}
    subprocess.run([sys.executable, "-c", program], check=True, env=env, cwd=REPO, timeout=60)


@pytest.fixture
def exported(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    """Spans written through plait._tracing, kept in memory (the provider plait would install)."""
    exporter = InMemorySpanExporter()
    provider = _tracing.new_provider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(_tracing, "_provider", provider)
    yield exporter
    provider.shutdown()


def _instance(**annotations: str) -> dict[str, Any]:
    return {"metadata": {"name": "o-1", "namespace": "shop", "uid": "0f8e-uid", "annotations": annotations}}


def test_an_instance_is_traced_in_its_submitters_trace_or_one_derived_from_its_uid(
    exported: InMemorySpanExporter,
) -> None:
    tracing = OperatorTracing()
    submitted = tracing.trace(_instance(**{"plait.dev/traceparent": VALID}))
    assert submitted.trace_id == 0x4BF92F3577B34DA6A3CE929D0E0E4736 and submitted.submitter is not None
    own = tracing.trace(_instance())
    assert own.submitter is None and own.sampled and own.trace_id == tracing.trace(_instance()).trace_id
    broken = _instance(**{"plait.dev/traceparent": "00-nope"})
    assert tracing.trace(broken).trace_id == own.trace_id  # a fresh trace of its own
    assert "is not a W3C traceparent" in (tracing.invalid_traceparent(broken) or "")
    assert tracing.invalid_traceparent(_instance()) is None

    # The task of attempt 2 carries the attempt span's context, a child of the step span.
    header = tracing.task_traceparent(_instance(), "reserve_stock", 2)
    attempt = parse_traceparent(header)
    assert attempt is not None and attempt.trace_id == own.trace_id
    assert attempt.span_id == own.span_id("attempt", "reserve_stock", "2")


def test_a_span_is_written_once_with_the_ids_and_times_it_was_given(exported: InMemorySpanExporter) -> None:
    trace = OperatorTracing().trace(_instance())
    record = SpanRecord(
        "attempt reserve_stock #2",
        trace.trace_id,
        trace.span_id("attempt", "reserve_stock", "2"),
        trace.context("step", "reserve_stock"),
        100.0,
        100.5,
        {"plait.attempt": 2},
        [("claimed", 100.1, {"plait.worker": "w-1"})],
        error="ConnectionError: warehouse API timed out",
    )
    _tracing.write(record)
    root = SpanRecord("instance orders", trace.trace_id, trace.span_id("instance"), None, 99.0, 101.0, {})
    _tracing.write(root)
    attempt, instance = exported.get_finished_spans()
    assert attempt.context.trace_id == trace.trace_id
    assert attempt.context.span_id == trace.span_id("attempt", "reserve_stock", "2")
    assert attempt.parent is not None and attempt.parent.span_id == trace.span_id("step", "reserve_stock")
    assert (attempt.start_time, attempt.end_time) == (100_000_000_000, 100_500_000_000)
    assert attempt.events[0].name == "claimed" and attempt.events[0].timestamp == 100_100_000_000
    assert attempt.status.status_code.name == "ERROR"
    assert instance.parent is None and instance.context.trace_id == trace.trace_id
    assert instance.context.span_id == trace.span_id("instance")


def test_json_logs_carry_the_context_and_the_current_span(exported: InMemorySpanExporter) -> None:
    import json
    import logging

    record = logging.LogRecord("plait.test", logging.INFO, __file__, 1, "ran %s", ("charge",), None)
    with log_context(instance="shop/o-1", step="charge", attempt=2):
        plain = json.loads(JsonFormatter().format(record))
        with _tracing.task_span("run charge", VALID, {"plait.attempt": 2}):
            traced = json.loads(JsonFormatter().format(record))
    assert plain["message"] == "ran charge" and plain["instance"] == "shop/o-1" and plain["attempt"] == 2
    assert "trace_id" not in plain
    assert traced["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736" and len(traced["span_id"]) == 16
    (run,) = exported.get_finished_spans()
    assert run.parent is not None and run.parent.span_id == 0x00F067AA0BA902B7
