"""``WorkflowStatus``: the outcome of a local run, with sayiir's status strings and predicates."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from plait._core import snapshot as st
from plait._core.snapshot import Snapshot

_REPR_NAMES = {
    st.COMPLETED: "Completed",
    st.FAILED: "Failed",
    st.CANCELLED: "Cancelled",
    st.PAUSED: "Paused",
    st.WAITING: "Waiting",
    st.AWAITING_SIGNAL: "AwaitingSignal",
}


def iso(seconds: float | None) -> str | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC).isoformat()


class WorkflowStatus:
    """Where an instance stands: ``status`` is one of ``in_progress``, ``waiting``,
    ``awaiting_signal``, ``paused``, ``completed``, ``failed``, ``cancelled`` (and, on a cluster,
    ``cancelling`` between a cancel request and the operator carrying it out)."""

    __slots__ = (
        "cancelled_by",
        "delay_id",
        "error",
        "instance_id",
        "output",
        "paused_by",
        "reason",
        "signal_id",
        "signal_name",
        "status",
        "wake_at",
        "workflow_id",
    )

    def __init__(
        self,
        status: str,
        *,
        output: Any = None,
        error: str | None = None,
        reason: str | None = None,
        cancelled_by: str | None = None,
        paused_by: str | None = None,
        wake_at: str | None = None,
        delay_id: str | None = None,
        signal_id: str | None = None,
        signal_name: str | None = None,
    ) -> None:
        self.status = status
        self.output = output
        self.error = error
        self.reason = reason
        self.cancelled_by = cancelled_by
        self.paused_by = paused_by
        self.wake_at = wake_at
        self.delay_id = delay_id
        self.signal_id = signal_id
        self.signal_name = signal_name
        # plait: which instance of which workflow (what WorkflowClient.list() needs to say)
        self.instance_id: str | None = None
        self.workflow_id: str | None = None

    @classmethod
    def of(cls, snapshot: Snapshot) -> WorkflowStatus:
        """The status a snapshot stands for."""
        status = cls(snapshot.status, output=snapshot.output, error=snapshot.error)
        status.instance_id, status.workflow_id = snapshot.instance_id, snapshot.workflow
        if snapshot.cancelled is not None and snapshot.status == st.CANCELLED:
            status.reason, status.cancelled_by = snapshot.cancelled.get("reason"), snapshot.cancelled.get("by")
        if snapshot.paused is not None and snapshot.status == st.PAUSED:
            status.reason, status.paused_by = snapshot.paused.get("reason"), snapshot.paused.get("by")
        delays = [(timer.at, timer.node_id) for timer in snapshot.timers.values() if timer.kind == "delay"]
        if snapshot.waiting_signals:
            path, wait = next(iter(snapshot.waiting_signals.items()))
            status.signal_id, status.signal_name = wait.node_id, wait.signal
            status.wake_at = iso(snapshot.timers[path].at) if path in snapshot.timers else None
        elif delays:
            at, node_id = min(delays)
            status.delay_id, status.wake_at = node_id, iso(at)
        return status

    def is_completed(self) -> bool:
        return self.status == st.COMPLETED

    def is_failed(self) -> bool:
        return self.status == st.FAILED

    def is_cancelled(self) -> bool:
        return self.status == st.CANCELLED

    def is_in_progress(self) -> bool:
        return self.status == st.IN_PROGRESS

    def is_paused(self) -> bool:
        return self.status == st.PAUSED

    def is_waiting(self) -> bool:
        return self.status == st.WAITING

    def is_awaiting_signal(self) -> bool:
        return self.status == st.AWAITING_SIGNAL

    def __repr__(self) -> str:
        name = _REPR_NAMES.get(self.status)
        if name is None:
            return f"WorkflowStatus::{self.status}"
        if self.status == st.FAILED:
            return f"WorkflowStatus::Failed({self.error})"
        if self.status in (st.CANCELLED, st.PAUSED):
            by = self.cancelled_by if self.status == st.CANCELLED else self.paused_by
            return f"WorkflowStatus::{name}(reason={_opt(self.reason)}, by={_opt(by)})"
        if self.status == st.WAITING:
            return f"WorkflowStatus::Waiting(delay_id={_opt(self.delay_id)}, wake_at={_opt(self.wake_at)})"
        if self.status == st.AWAITING_SIGNAL:
            return (
                f"WorkflowStatus::AwaitingSignal(signal_name={_opt(self.signal_name)}, "
                f"signal_id={_opt(self.signal_id)}, wake_at={_opt(self.wake_at)})"
            )
        return f"WorkflowStatus::{name}"


def _opt(value: str | None) -> str:
    return "None" if value is None else f'Some("{value}")'
