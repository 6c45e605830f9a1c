"""The operator's reading of the world as engine events, without a cluster (plait_operator.world)."""

from __future__ import annotations

from typing import Any

from plait import Flow, task
from plait._core.engine import decide, new_snapshot
from plait._core.events import (
    Cancel,
    Pause,
    SignalReceived,
    Started,
    TaskFailed,
    TaskLost,
    TaskSucceeded,
    TaskTimedOut,
    Unpause,
)
from plait._core.snapshot import Snapshot
from plait_operator.world import control_events, result_events, signal_events


@task
def first(x: int) -> int:
    return x


WORKFLOW = Flow("world").then(first).wait_for_signal("approval").build()


def started() -> Snapshot:
    snapshot = new_snapshot(WORKFLOW.definition, "i")
    return decide(WORKFLOW.definition, snapshot, Started(1), 0.0).snapshot


def instance(annotations: dict[str, str] | None = None, **meta: Any) -> dict[str, Any]:
    return {"metadata": {"name": "i", "annotations": annotations or {}, **meta}}


def test_annotations_and_deletion_become_lifecycle_events() -> None:
    snapshot = started()
    assert control_events(instance(), snapshot) == []
    assert control_events(instance({"plait.dev/pause": "lunch"}), snapshot) == [Pause("lunch", "plait.dev/pause")]
    assert control_events(instance({"plait.dev/cancel": ""}), snapshot) == [
        Cancel("cancel requested", "plait.dev/cancel")
    ]
    deleted = instance({"plait.dev/pause": ""}, deletionTimestamp="2026-01-01T00:00:00Z")
    assert control_events(deleted, snapshot) == [Cancel("the instance was deleted", "kubernetes")]

    paused = decide(WORKFLOW.definition, snapshot, Pause("lunch"), 0.0).snapshot
    assert control_events(instance({"plait.dev/pause": "lunch"}), paused) == []  # already paused
    assert control_events(instance(), paused) == [Unpause()]  # the annotation was removed

    finished = decide(WORKFLOW.definition, snapshot, Cancel("done"), 0.0).snapshot
    assert control_events(instance({"plait.dev/cancel": ""}), finished) == []


def test_who_asked_comes_from_the_by_annotations_the_client_sets() -> None:
    snapshot = started()
    pause = {"plait.dev/pause": "audit", "plait.dev/paused-by": "ops"}
    assert control_events(instance(pause), snapshot) == [Pause("audit", "ops")]
    cancel = {"plait.dev/cancel": "stop", "plait.dev/cancelled-by": ""}  # the client's "nobody said"
    assert control_events(instance(cancel), snapshot) == [Cancel("stop", None)]


def task_body(path: str, attempt: int, phase: str | None, **status: Any) -> dict[str, Any]:
    return {"spec": {"path": path, "attempt": attempt}, "status": {"phase": phase, **status} if phase else {}}


def test_only_results_of_the_attempts_the_checkpoint_waits_for_count() -> None:
    snapshot = started()  # attempt 1 of step "0" runs
    tasks = [
        task_body("0", 1, "Running"),
        task_body("0", 2, "Succeeded", output=5),  # not dispatched (yet): stale
        task_body("1", 1, "Succeeded", output=5),  # no such attempt running
    ]
    assert result_events(tasks, snapshot) == []
    outcomes = {
        "Succeeded": TaskSucceeded("0", 1, 7),
        "Failed": TaskFailed("0", 1, "ValueError: no"),
        "TimedOut": TaskTimedOut("0", 1),
        "Lost": TaskLost("0", 1, "lease expired"),
        "Released": TaskLost("0", 1, "Released"),
    }
    for phase, expected in outcomes.items():
        status = {"Succeeded": {"output": 7}, "Failed": {"error": "ValueError: no"}, "Lost": {"error": "lease expired"}}
        body = task_body("0", 1, phase, **status.get(phase, {}))
        assert result_events([body], snapshot) == [expected]


def signal(name: str, signal_name: str, created: str, revision: str) -> dict[str, Any]:
    meta = {"name": name, "uid": f"uid-{name}", "creationTimestamp": created, "resourceVersion": revision}
    return {"metadata": meta, "spec": {"instance": "i", "name": signal_name, "payload": name}}


def test_signals_come_in_arrival_order_and_unknown_names_are_rejected() -> None:
    snapshot = started()
    signals = [
        signal("late", "approval", "2026-01-01T00:00:02Z", "10"),
        signal("second", "approval", "2026-01-01T00:00:01Z", "9"),
        signal("first", "approval", "2026-01-01T00:00:01Z", "8"),
        signal("typo", "aproval", "2026-01-01T00:00:00Z", "7"),
    ]
    accepted, rejected = signal_events(WORKFLOW.definition, snapshot, signals)
    assert [name for _, name in accepted] == ["first", "second", "late"]
    assert accepted[0][0] == SignalReceived("approval", "first", id="uid-first")
    assert [(body["metadata"]["name"], why) for body, why in rejected] == [
        ("typo", "workflow 'world' never waits for signal 'aproval' (it waits for: approval)")
    ]

    finished = decide(WORKFLOW.definition, snapshot, Cancel("done"), 0.0).snapshot
    accepted, rejected = signal_events(WORKFLOW.definition, finished, signals[:1])
    assert accepted == [] and rejected[0][1] == "instance i already finished"
