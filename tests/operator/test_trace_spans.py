"""The operator's spans of an instance, from the engine's decisions (no cluster): each written once
when what it covers ends, with the times the objects and the checkpoint hold and the parents its
derived ids name. The same spans through a real operator and Jaeger: tests/k8s/test_tracing.py."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from plait import Flow, RetryPolicy, _tracing, task
from plait._core.engine import decide, new_snapshot
from plait._core.events import (
    Cancel,
    DispatchTask,
    Event,
    SignalReceived,
    Started,
    TaskFailed,
    TaskSucceeded,
    TimerFired,
)
from plait._kube.models import rfc3339
from plait_operator.store import task_name
from plait_operator.tracing import OperatorTracing


@task(retries=RetryPolicy(max_retries=1, initial_delay_secs=0))
def fetch(value: int) -> int:
    return value


@task
def store(value: Any) -> str:
    return "stored"


# paths: fetch "0", the delay "1", the signal wait "2", store "3"
FLOW = Flow("pipeline").then(fetch).delay("cool", 5).wait_for_signal("go", timeout=60).then(store).build()


@pytest.fixture
def exported(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = _tracing.new_provider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(_tracing, "_provider", provider)
    yield exporter
    provider.shutdown()


class Instance:
    """An instance driven through the engine as the actor drives it, its spans written after each decision."""

    def __init__(self) -> None:
        self.definition = FLOW.definition
        self.snapshot = new_snapshot(self.definition, "i-1")
        self.body: dict[str, Any] = {
            "metadata": {"name": "i-1", "namespace": "ns", "uid": "uid-1", "annotations": {}},
            "status": {},
        }
        self.tasks: dict[str, dict[str, Any]] = {}
        self.tracing = OperatorTracing()
        self.trace = self.tracing.trace(self.body)

    def apply(self, event: Event, at: float) -> None:
        before = self.tracing.before(self.snapshot)
        decision = decide(self.definition, self.snapshot, event, at)
        self.snapshot = decision.snapshot
        self.body["status"].setdefault("startedAt", rfc3339(at))
        for command in decision.commands:
            if isinstance(command, DispatchTask):
                name = task_name("i-1", "uid-1", command.path, command.attempt)
                self.tasks[name] = {
                    "metadata": {"name": name, "annotations": {"plait.dev/dispatched-at": rfc3339(at)}},
                    "spec": {"step": command.node_id, "path": command.path, "attempt": command.attempt,
                             "task": command.task, "queue": command.queue},
                }  # fmt: skip
        results = [event] if isinstance(event, TaskSucceeded | TaskFailed) else []
        self.tracing.reconciled(
            self.body, self.definition, self.snapshot, before, results, decision.commands, self.tasks, at
        )

    def ran(self, path: str, attempt: int, claimed: float, finished: float, error: str | None = None) -> None:
        """A worker claimed the attempt and reported it; the operator records it at ``finished + 0.01``."""
        body = self.tasks[task_name("i-1", "uid-1", path, attempt)]
        body["status"] = {
            "phase": "Failed" if error else "Succeeded",
            "claim": {"holder": "worker-a", "claimedAt": rfc3339(claimed)},
            "finishedAt": rfc3339(finished),
        }
        event = TaskFailed(path, attempt, error) if error else TaskSucceeded(path, attempt, 1)
        self.apply(event, finished + 0.01)


def _spans(exported: InMemorySpanExporter) -> dict[str, ReadableSpan]:
    spans = {span.name: span for span in exported.get_finished_spans()}
    assert len(spans) == len(exported.get_finished_spans()), "each span written once"
    return spans


def _parent(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def test_a_run_writes_each_span_once_with_its_times_and_parents(exported: InMemorySpanExporter) -> None:
    run = Instance()
    run.apply(Started(1), 100.0)
    run.ran("0", 1, 100.2, 100.5, error="ConnectionError: down")  # retried at once
    run.ran("0", 2, 100.6, 101.0)  # the delay starts at 101.01
    assert _spans(exported).keys() == {"attempt fetch #1", "attempt fetch #2", "step fetch"}
    run.apply(TimerFired("1"), 106.01)  # the signal wait starts
    run.apply(SignalReceived("go", {"ok": True}, id="s-1"), 110.0)
    run.ran("3", 1, 110.1, 110.3)
    spans = _spans(exported)
    trace = run.trace
    instance = spans["instance pipeline"]
    assert instance.parent is None and instance.context.trace_id == trace.trace_id
    assert (instance.start_time, instance.end_time) == (100_000_000_000, 110_310_000_000)
    assert instance.attributes["plait.phase"] == "Succeeded"

    first, second, step = spans["attempt fetch #1"], spans["attempt fetch #2"], spans["step fetch"]
    assert _parent(first) == _parent(second) == step.context.span_id == trace.span_id("step", "0")
    assert first.attributes["plait.outcome"] == "failed" and first.status.status_code.name == "ERROR"
    assert [(e.name, e.timestamp) for e in first.events] == [("claimed", 100_200_000_000)]
    assert first.attributes["plait.worker"] == "worker-a" and first.attributes["plait.queued_seconds"] == 0.2
    assert (second.start_time, second.end_time) == (100_510_000_000, 101_000_000_000)
    assert step.start_time == 100_000_000_000 and step.attributes["plait.attempts"] == 2
    assert step.attributes["plait.outcome"] == "succeeded" and _parent(step) == instance.context.span_id

    delay = spans["delay cool"]
    assert (delay.start_time, delay.end_time) == (101_010_000_000, 106_010_000_000)
    assert delay.attributes["plait.outcome"] == "elapsed" and _parent(delay) == instance.context.span_id
    wait = spans["signal go"]
    assert (wait.start_time, wait.end_time) == (106_010_000_000, 110_000_000_000)
    assert wait.attributes["plait.outcome"] == "received"
    assert spans["step store"].attributes["plait.outcome"] == "succeeded"


def test_a_signal_that_never_comes_ends_its_wait_timed_out(exported: InMemorySpanExporter) -> None:
    run = Instance()
    run.apply(Started(1), 100.0)
    run.ran("0", 1, 100.1, 100.2)
    run.apply(TimerFired("1"), 105.3)
    run.apply(TimerFired("2"), 165.3)  # the signal's timeout
    spans = _spans(exported)
    wait = spans["signal go"]
    assert (wait.start_time, wait.end_time) == (105_300_000_000, 165_300_000_000)
    assert wait.attributes["plait.outcome"] == "timed_out" and wait.status.status_code.name == "ERROR"
    assert spans["instance pipeline"].attributes["plait.phase"] == "Failed"


def test_a_cancel_ends_the_running_attempt_and_its_step_cancelled(exported: InMemorySpanExporter) -> None:
    run = Instance()
    run.apply(Started(1), 100.0)
    run.apply(Cancel("not needed", "ops"), 100.4)
    spans = _spans(exported)
    assert spans["attempt fetch #1"].attributes["plait.outcome"] == "cancelled"
    assert spans["attempt fetch #1"].end_time == 100_400_000_000
    assert spans["step fetch"].attributes["plait.outcome"] == "cancelled"
    assert spans["instance pipeline"].attributes["plait.phase"] == "Cancelled"
    assert spans["instance pipeline"].status.status_code.name == "UNSET"  # a cancel is no error
