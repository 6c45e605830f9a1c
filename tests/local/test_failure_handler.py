"""``Flow(...).on_failure(fn)`` in local runs: users' own tests of their workflows see it."""

from __future__ import annotations

from typing import Any

import pytest

from plait import Flow, InMemoryBackend, TaskError, WorkflowFailure, run_durable_workflow, run_workflow, task


def test_the_handler_runs_in_process_with_the_error_and_the_input_and_the_run_still_fails() -> None:
    seen: list[WorkflowFailure] = []

    def charge(order: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError(f"card declined for {order['id']}")

    def refund(failure: WorkflowFailure) -> None:
        seen.append(failure)

    flow = Flow("orders").then(lambda order: order).then(charge).on_failure(refund).build()
    with pytest.raises(TaskError, match="RuntimeError: card declined for A-1") as raised:
        run_workflow(flow, {"id": "A-1"})
    assert "in charge" in str(raised.value)  # the traceback is the failed step's, not the handler's
    [failure] = seen
    assert (failure.error, failure.input, failure.workflow) == (
        "RuntimeError: card declined for A-1",
        {"id": "A-1"},
        "orders",
    )


def test_a_failing_handler_does_not_loop_and_a_successful_run_never_calls_it() -> None:
    calls: list[str] = []

    @task(retries=1)
    def alert(failure: dict[str, Any]) -> None:
        calls.append(failure["error"])
        raise ConnectionError("pager down")

    def boom(x: int) -> int:
        raise ValueError("bad input")

    failing = Flow("failing").then(boom).on_failure(alert).build()
    status = run_durable_workflow(failing, "f-1", 1, backend=InMemoryBackend())
    assert status.is_failed() and status.error == "ValueError: bad input"
    assert calls == ["ValueError: bad input", "ValueError: bad input"]  # its own retry, then no more

    fine = Flow("fine").then(lambda x: x + 1).on_failure(alert).build()
    assert run_workflow(fine, 1) == 2 and len(calls) == 2
