"""What the world says, as engine events: the pure half of an instance's reconcile.

An actor (:mod:`plait_operator.instances`) keeps what the watches showed of its instance, its
tasks and its signals; these functions turn that into the events the engine core takes
(annotations into pause, unpause and cancel; finished tasks into results; pending signals, in
arrival order, into deliveries or rejections). No I/O: tests call them with plain objects.
"""

from __future__ import annotations

from collections.abc import Iterable

from plait._core.definition import Definition, SignalNode
from plait._core.events import (
    Cancel,
    Event,
    Pause,
    SignalReceived,
    TaskFailed,
    TaskLost,
    TaskSucceeded,
    TaskTimedOut,
    Unpause,
)
from plait._core.snapshot import Snapshot
from plait._kube.client import JSON
from plait._kube.models import (
    CANCEL_ANNOTATION,
    CANCELLED_BY_ANNOTATION,
    PAUSE_ANNOTATION,
    PAUSED_BY_ANNOTATION,
    TASK_RESULT_PHASES,
    revision,
)

TaskResult = TaskSucceeded | TaskFailed | TaskTimedOut | TaskLost


def control_events(instance: JSON, snapshot: Snapshot) -> list[Event]:
    """Deletion and the control annotations, as what they ask of the instance now."""
    if snapshot.finished:
        return []
    meta = instance["metadata"]
    annotations = meta.get("annotations") or {}
    if "deletionTimestamp" in meta:
        return [Cancel("the instance was deleted", "kubernetes")]
    if CANCEL_ANNOTATION in annotations:
        by = requester(annotations, CANCEL_ANNOTATION, CANCELLED_BY_ANNOTATION)["by"]
        return [Cancel(annotations[CANCEL_ANNOTATION] or "cancel requested", by)]
    if PAUSE_ANNOTATION in annotations and snapshot.paused is None:
        return [Pause(**requester(annotations, PAUSE_ANNOTATION, PAUSED_BY_ANNOTATION))]
    if PAUSE_ANNOTATION not in annotations and snapshot.paused is not None:
        return [Unpause()]
    return []


def requester(annotations: dict[str, str], request: str, by: str) -> dict[str, str | None]:
    """Reason and author of a pause or cancel annotation (the client sets ``by``; kubectl users do not)."""
    return {"reason": annotations[request] or None, "by": annotations.get(by, request) or None}


def result_events(tasks: Iterable[JSON], snapshot: Snapshot) -> list[TaskResult]:
    """The results of the attempts the snapshot is waiting for (stale attempts are left out)."""
    events: list[TaskResult] = []
    for body in tasks:
        spec, status = body["spec"], body.get("status") or {}
        phase = status.get("phase")
        if phase not in TASK_RESULT_PHASES or snapshot.running.get(spec["path"]) != spec["attempt"]:
            continue
        path, attempt = spec["path"], spec["attempt"]
        if phase == "Succeeded":
            events.append(TaskSucceeded(path, attempt, status.get("output")))
        elif phase == "Failed":
            events.append(TaskFailed(path, attempt, status.get("error") or "the task failed"))
        elif phase == "TimedOut":
            events.append(TaskTimedOut(path, attempt))
        else:
            events.append(TaskLost(path, attempt, status.get("error") or phase))
    return events


def signal_events(
    definition: Definition, snapshot: Snapshot, signals: Iterable[JSON]
) -> tuple[list[tuple[SignalReceived, str]], list[tuple[JSON, str]]]:
    """Pending signals in arrival order: the events (with each signal's object name) and the
    signals to reject (with why): those for a finished instance or a name it never waits for."""
    waited = {node.signal for node in definition.nodes.values() if isinstance(node, SignalNode)}
    accepted: list[tuple[SignalReceived, str]] = []
    rejected: list[tuple[JSON, str]] = []
    for body in sorted(signals, key=_arrival):
        spec = body.get("spec") or {}
        meta = body["metadata"]
        if snapshot.finished:
            rejected.append((body, f"instance {spec.get('instance')} already finished"))
        elif spec.get("name") not in waited:
            names = ", ".join(sorted(waited)) or "none"
            why = f"workflow {definition.name!r} never waits for signal {spec.get('name')!r} (it waits for: {names})"
            rejected.append((body, why))
        else:
            accepted.append((SignalReceived(spec["name"], spec.get("payload"), id=meta.get("uid")), meta["name"]))
    return accepted, rejected


def _arrival(body: JSON) -> tuple[str, int]:
    """First in, first out: creation time, then the etcd revision that created it."""
    return body["metadata"].get("creationTimestamp", ""), revision(body)


def newer(candidate: JSON, current: JSON | None) -> bool:
    return current is None or revision(candidate) > revision(current)
