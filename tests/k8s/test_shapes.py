"""Every flow shape runs to Succeeded on real workers, through the real API server."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from plait._kube.client import Kube
from tests.k8s.support import PlaitProcess, send_signal, submit, wait_phase

CASES: list[tuple[str, Any, Any]] = [
    ("sequence", 3, 9),
    ("fork-join", 3, {"sum": 4 + 6 + 9, "parts": {"inc": 4, "double": 6, "square": 9}}),
    ("route", 12, {"branch": "big", "result": "big:12"}),
    ("loop", 1, 50),
    ("delay", 1, 4),
    ("child", 2, 37),
    ("pydantic", {"id": 7, "amount": 10}, {"order_id": 7, "charged": 11.0}),
]


@pytest.mark.parametrize(("workflow", "value", "expected"), CASES, ids=[c[0] for c in CASES])
def test_shape_succeeds_with_the_right_output(
    kube: Kube, e2e: str, start_worker: Callable[..., PlaitProcess], workflow: str, value: Any, expected: Any
) -> None:
    start_worker(e2e)
    submit(kube, e2e, "run-1", workflow, value)
    done = wait_phase(kube, e2e, "run-1", "Succeeded", "Failed")
    status = done["status"]
    assert status["phase"] == "Succeeded", status
    assert status["output"] == expected
    assert status["progress"].split("/")[0] == status["progress"].split("/")[1]
    assert any(c["type"] == "Completed" and c["status"] == "True" for c in status["conditions"])


def test_signal_sent_after_the_wait(kube: Kube, e2e: str, start_worker: Callable[..., PlaitProcess]) -> None:
    start_worker(e2e)
    submit(kube, e2e, "late", "signal", 1)
    waiting = wait_phase(kube, e2e, "late", "AwaitingSignal")
    assert "approve" in waiting["status"]["message"]
    send_signal(kube, e2e, "late", "approve", {"by": "alice"})
    assert wait_phase(kube, e2e, "late", "Succeeded")["status"]["output"] == "approved by alice"


def test_signal_sent_before_the_wait_is_buffered(
    kube: Kube, e2e: str, start_worker: Callable[..., PlaitProcess]
) -> None:
    send_signal(kube, e2e, "early", "approve", {"by": "bob"}, signal_name="first")
    send_signal(kube, e2e, "early", "approve", {"by": "carol"}, signal_name="second")
    submit(kube, e2e, "early", "signal", 1)
    start_worker(e2e)
    assert wait_phase(kube, e2e, "early", "Succeeded")["status"]["output"] == "approved by bob"
