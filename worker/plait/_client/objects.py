"""What the client writes and reads, without I/O: instance and signal bodies, and the
``WorkflowStatus`` an instance object stands for.

The status comes from the operator's checkpoint in ``status.checkpoint`` (so it carries what a
local run's does: output, error, reason and who, the delay or signal waited for), with the
requests the operator has not acted on yet laid over it: an instance whose cancel annotation is
set reads ``cancelling`` until the operator cancels it, one whose pause annotation is set reads
``paused``. So a client sees its own requests at once. Used by :mod:`plait._client.aio`; the
CLI's ``plait signal`` builds its signals here too.
"""

from __future__ import annotations

from typing import Any

from plait import _tracing
from plait._core import snapshot as st
from plait._core.snapshot import Snapshot
from plait._ids import INSTANCE_ID_ANNOTATION, instance_id_of, instance_name
from plait._kube import checkpoints, idempotency
from plait._kube.client import JSON
from plait._kube.models import (
    API_VERSION,
    CANCEL_ANNOTATION,
    CANCELLED_BY_ANNOTATION,
    FINISHED_PHASES,
    IDEMPOTENCY_LABEL,
    PAUSE_ANNOTATION,
    PAUSED_BY_ANNOTATION,
    TRACEPARENT_ANNOTATION,
    object_name,
)
from plait._local.status import WorkflowStatus

#: The status of an instance whose cancellation is asked for and not carried out yet (plait).
CANCELLING = "cancelling"
#: What ``list(phase=...)`` accepts besides sayiir's status strings: the Kubernetes phases.
PHASE_STATUSES = {
    "Pending": st.IN_PROGRESS,
    "Queued": st.IN_PROGRESS,
    "Running": st.IN_PROGRESS,
    "Waiting": st.WAITING,
    "AwaitingSignal": st.AWAITING_SIGNAL,
    "Paused": st.PAUSED,
    "Succeeded": st.COMPLETED,
    "Failed": st.FAILED,
    "Cancelled": st.CANCELLED,
}


def instance_body(workflow: str, instance_id: str, value: Any, idempotency_key: str | None = None) -> JSON:
    """A ``WorkflowInstance`` for ``instance_id`` (named by :func:`plait._ids.instance_name`); in the
    trace of the caller's current OpenTelemetry span, if there is one."""
    annotations = {INSTANCE_ID_ANNOTATION: instance_id}
    if (traceparent := _tracing.current_traceparent()) is not None:
        annotations[TRACEPARENT_ANNOTATION] = traceparent
    body: JSON = {
        "apiVersion": API_VERSION,
        "kind": "WorkflowInstance",
        "metadata": {"name": instance_name(instance_id), "annotations": annotations},
        "spec": {"workflow": workflow, "input": value},
    }
    if idempotency_key is not None:
        body["spec"]["idempotencyKey"] = idempotency_key
        body["metadata"]["labels"] = {IDEMPOTENCY_LABEL: idempotency.digest(idempotency_key)}
    return body


def signal_body(instance: str, name: str, payload: Any, object_name_: str | None = None) -> JSON:
    """A ``WorkflowSignal`` for the instance object named ``instance`` (a generated name by default)."""
    metadata = (
        {"name": object_name_} if object_name_ else {"generateName": f"{object_name(f'{instance}-{name}', 200)}-"}
    )
    return {
        "apiVersion": API_VERSION,
        "kind": "WorkflowSignal",
        "metadata": metadata,
        "spec": {"instance": instance, "name": name, "payload": payload},
    }


def phase_of(body: JSON | None) -> str:
    return str(((body or {}).get("status") or {}).get("phase") or "Pending")


def is_finished(body: JSON | None) -> bool:
    return phase_of(body) in FINISHED_PHASES


def snapshot_of(body: JSON) -> Snapshot | None:
    """The operator's checkpoint of an instance, once it started."""
    checkpoint = (body.get("status") or {}).get("checkpoint")
    return Snapshot.from_data(checkpoints.load(checkpoint)) if checkpoint else None


def buffered_signals(body: JSON) -> list[tuple[str, Any]]:
    """Signals the instance took and has not consumed, oldest first per name."""
    snapshot = snapshot_of(body)
    if snapshot is None:
        return []
    return [(name, payload) for name, payloads in snapshot.signals.items() for payload in payloads]


def status_of(body: JSON) -> WorkflowStatus:
    """The sayiir ``WorkflowStatus`` of an instance object, pending requests included."""
    meta, spec, status = body["metadata"], body.get("spec") or {}, body.get("status") or {}
    annotations = meta.get("annotations") or {}
    snapshot = snapshot_of(body)
    phase = phase_of(body)
    if snapshot is not None:
        result = WorkflowStatus.of(snapshot)
    elif phase == "Failed":  # refused before it started (invalid input, say)
        result = WorkflowStatus(st.FAILED, error=status.get("error") or status.get("message"))
    elif phase == "Cancelled":  # cancelled before its definition was published
        result = WorkflowStatus(
            st.CANCELLED,
            reason=annotations.get(CANCEL_ANNOTATION) or None,
            cancelled_by=annotations.get(CANCELLED_BY_ANNOTATION),
        )
    else:
        result = WorkflowStatus(st.IN_PROGRESS)
    if phase not in FINISHED_PHASES:
        if CANCEL_ANNOTATION in annotations:
            result = WorkflowStatus(
                CANCELLING,
                reason=annotations[CANCEL_ANNOTATION] or None,
                cancelled_by=annotations.get(CANCELLED_BY_ANNOTATION),
            )
        elif PAUSE_ANNOTATION in annotations and not result.is_paused():
            result = WorkflowStatus(
                st.PAUSED,
                reason=annotations[PAUSE_ANNOTATION] or None,
                paused_by=annotations.get(PAUSED_BY_ANNOTATION),
            )
    result.instance_id = instance_id_of(body)
    result.workflow_id = spec.get("workflow")
    return result
