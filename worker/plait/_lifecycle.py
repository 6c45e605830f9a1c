"""What sayiir lets a caller do to an instance in each state, with sayiir's error texts.

Shared by the local API (:mod:`plait._local.api`) and the cluster client
(:mod:`plait._client.aio`), so ``pause``, ``unpause``, ``cancel`` and ``send_signal`` refuse the
same things everywhere. States are sayiir's status strings (``completed``, ``paused``, ...).
"""

from __future__ import annotations

from plait._core import snapshot as st
from plait.errors import BackendError

_FINISHED_NAMES = {st.COMPLETED: "Completed", st.FAILED: "Failed", st.CANCELLED: "Cancelled"}


def missing(instance_id: str) -> BackendError:
    return BackendError(f"Snapshot not found: {instance_id}")


def state_name(status: str) -> str:
    """sayiir's name of a state in its errors: the three final ones, else ``InProgress``."""
    return _FINISHED_NAMES.get(status, "Paused" if status == st.PAUSED else "InProgress")


def check_pause(status: str) -> None:
    if status in st.TERMINAL:
        raise BackendError(f"Cannot pause workflow in state: {state_name(status)}")


def check_unpause(status: str) -> None:
    if status != st.PAUSED:
        raise BackendError(
            f'Cannot pause workflow in state: Workflow is not paused (current state: "{state_name(status)}")'
        )


def should_cancel(status: str) -> bool:
    """Whether a cancel request is to be recorded: not when already cancelled (a no-op, as in sayiir)."""
    if status in (st.COMPLETED, st.FAILED):
        raise BackendError(f"Cannot cancel workflow in state: {state_name(status)}")
    return status != st.CANCELLED


def should_signal(status: str) -> bool:
    """A signal for a finished instance is dropped without an error, as sayiir does."""
    return status not in st.TERMINAL
