"""What an instance's ``status`` says, derived from its engine snapshot.

The phase, the step summary, ``currentStep``/``progress`` for ``kubectl get``, the conditions
(with ``lastTransitionTime`` kept while a condition's status does not change) and the checkpoint
itself.
"""

from __future__ import annotations

from typing import Any

from plait._core import snapshot as st
from plait._core.definition import Definition, DelayNode, SignalNode, TaskNode
from plait._core.flowcontrol import key_value
from plait._core.snapshot import Snapshot, StepProgress
from plait._kube import checkpoints
from plait._kube.models import now_rfc3339, parse_rfc3339, rfc3339

PHASES = {
    st.IN_PROGRESS: "Running",
    st.WAITING: "Waiting",
    st.AWAITING_SIGNAL: "AwaitingSignal",
    st.PAUSED: "Paused",
    st.COMPLETED: "Succeeded",
    st.FAILED: "Failed",
    st.CANCELLED: "Cancelled",
}
_ACTIVE = ("running", "retrying", "waiting")


def phase_of(snapshot: Snapshot) -> str:
    return "Pending" if snapshot.root is None else PHASES[snapshot.status]


def with_conditions(
    previous: list[dict[str, Any]] | None, generation: int | None, *updates: tuple[str, str, str, str]
) -> list[dict[str, Any]]:
    """``previous`` with the conditions ``updates`` (type, status, reason, message) in place of theirs."""
    kinds = {kind for kind, *_ in updates}
    kept = [c for c in previous or [] if c.get("type") not in kinds]
    return kept + [_condition(previous, generation, *update) for update in updates]


def _condition(
    previous: list[dict[str, Any]] | None, generation: int | None, kind: str, status: str, reason: str, message: str
) -> dict[str, Any]:
    old = next((c for c in previous or [] if c.get("type") == kind), None)
    since = old["lastTransitionTime"] if old and old.get("status") == status else now_rfc3339()
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
        "lastTransitionTime": since,
    }


def render(instance: dict[str, Any], definition: Definition, snapshot: Snapshot) -> dict[str, Any]:
    """The full status for ``snapshot`` (merge-patched over the previous one)."""
    previous = instance.get("status") or {}
    generation = instance["metadata"].get("generation")
    phase = phase_of(snapshot)
    leaves = [
        n
        for n in definition.nodes.values()
        if isinstance(n, TaskNode | DelayNode | SignalNode) and n is not definition.on_failure
    ]
    done = sum(1 for n in leaves if n.id in snapshot.steps and snapshot.steps[n.id]["state"] == "succeeded")
    active = [node_id for node_id, s in snapshot.steps.items() if s["state"] in _ACTIVE]
    status: dict[str, Any] = {
        "phase": phase,
        "definitionHash": definition.hash,
        "observedGeneration": generation,
        "startedAt": previous.get("startedAt") or now_rfc3339(),
        "currentStep": ",".join(active)[:120] or None,
        "progress": f"{len(leaves) if phase == 'Succeeded' else done}/{len(leaves)}",
        "steps": [_summary(node_id, s) for node_id, s in snapshot.steps.items()],
        "checkpoint": checkpoint_of(snapshot),
        "message": _message(snapshot, phase),
    }
    finished = snapshot.finished
    if finished:
        status["finishedAt"] = previous.get("finishedAt") or now_rfc3339()
        status["output"] = snapshot.output if snapshot.status == st.COMPLETED else None
        status["error"] = snapshot.error
    paused = snapshot.paused is not None and not finished
    status["conditions"] = with_conditions(
        previous.get("conditions"),
        generation,
        ("Accepted", "True", "Started", "the instance runs"),
        (
            "Completed",
            "True" if finished else "False",
            _completed_reason(snapshot, phase) if finished else "InProgress",
            status["message"],
        ),
        (
            "Paused",
            "True" if paused else "False",
            "PauseRequested" if paused else "NotPaused",
            f"paused: {(snapshot.paused or {}).get('reason') or 'no reason given'}" if paused else "",
        ),
    )
    if definition.concurrency is not None:
        status["concurrency"] = running_concurrency(instance, definition)
    return status


def running_concurrency(instance: dict[str, Any], definition: Definition) -> dict[str, Any]:
    """``status.concurrency`` of a started instance: the group whose slot it holds (what a restarted
    operator counts), without the queue position it may have had."""
    assert definition.concurrency is not None
    previous = (instance.get("status") or {}).get("concurrency") or {}
    out: dict[str, Any] = {"maxRuns": definition.concurrency.max_runs}
    try:
        key = key_value((instance.get("spec") or {}).get("input"), definition.concurrency.key)
    except KeyError:
        key = None
    if key is not None:
        out["key"] = key
    for stale in ("position", "queuedAt"):
        if previous.get(stale) is not None:
            out[stale] = None
    return out


def checkpoint_of(snapshot: Snapshot) -> str:
    """The snapshot as the ``status.checkpoint`` string: compact (empty fields left out; every write
    of it costs the API server in proportion to its size; compressed when large), its step summary
    in ``status.steps``."""
    data = {key: value for key, value in snapshot.to_data().items() if value not in (None, [], {})}
    data.pop("steps", None)
    return checkpoints.dump(data)


def changes(previous: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
    """The merge patch from ``previous`` to ``status``: only what changed, removals as nulls."""
    patch = {key: value for key, value in status.items() if previous.get(key) != value}
    patch.update({key: None for key in previous if key not in status and previous[key] is not None})
    return patch


def snapshot_of(status: dict[str, Any]) -> Snapshot | None:
    """The snapshot a status holds: the checkpoint, with the step summary put back."""
    checkpoint = status.get("checkpoint")
    if not checkpoint:
        return None
    data = checkpoints.load(checkpoint)
    data["steps"] = {
        step["id"]: {
            "state": step["state"],
            "attempts": step.get("attempts", 0),
            "runs": step.get("runs", 0),
            **({"startedAt": parse_rfc3339(step["startedAt"])} if step.get("startedAt") else {}),
            **({"finishedAt": parse_rfc3339(step["finishedAt"])} if step.get("finishedAt") else {}),
        }
        for step in status.get("steps") or []
    }
    return Snapshot.from_data(data)


def _summary(node_id: str, summary: StepProgress) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": node_id,
        "state": summary["state"],
        "attempts": summary.get("attempts", 0),
        "runs": summary.get("runs", 0),
    }
    if summary.get("startedAt") is not None:
        out["startedAt"] = rfc3339(summary["startedAt"])
    if summary.get("finishedAt") is not None:
        out["finishedAt"] = rfc3339(summary["finishedAt"])
    return out


def _completed_reason(snapshot: Snapshot, phase: str) -> str:
    """The final phase, or for a deadline its Job-like reason ``DeadlineExceeded``."""
    if phase == "Failed" and (snapshot.error or "").startswith("DeadlineExceeded:"):
        return "DeadlineExceeded"
    return phase


def _message(snapshot: Snapshot, phase: str) -> str:
    handler = snapshot.failure_handler
    if phase == "Failed":
        also = (
            f"; its failure handler failed too: {handler.get('error')}"
            if handler and handler["state"] == "failed"
            else ""
        )
        return f"failed: {snapshot.error}{also}"[:1024]
    if handler is not None and phase != "Cancelled":
        return f"failed: {snapshot.error}; running its failure handler"[:1024]
    if phase == "Cancelled":
        reason = (snapshot.cancelled or {}).get("reason")
        return f"cancelled: {reason or 'no reason given'}"
    if phase == "Paused":
        return f"paused at the next step boundary: {(snapshot.paused or {}).get('reason') or 'no reason given'}"
    if phase == "AwaitingSignal":
        names = sorted({wait.signal for wait in snapshot.waiting_signals.values()})
        return f"waiting for signal {', '.join(names)}"
    if phase == "Waiting":
        wake = snapshot.wake_at
        return f"waiting until {rfc3339(wake)}" if wake else "waiting"
    if phase == "Succeeded":
        return "succeeded"
    retrying = sorted((timer.at, timer.node_id) for timer in snapshot.timers.values() if timer.kind == "retry")
    if retrying and not snapshot.running:
        at, node_id = retrying[0]
        return f"step {node_id} failed; retrying at {rfc3339(at)}"
    return f"running {len(snapshot.running)} task(s)"
