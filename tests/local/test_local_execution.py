"""Local execution through the public API: shapes, lifecycle, timeouts, retries, pydantic, stores."""

from __future__ import annotations

import asyncio
import itertools
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

import plait
from plait import (
    BackendError,
    Flow,
    InMemoryBackend,
    InstanceAlreadyExistsError,
    LoopResult,
    RetryPolicy,
    SqliteBackend,
    TaskError,
    WorkflowClient,
    WorkflowError,
    cancel_workflow,
    get_task_context,
    pause_workflow,
    resume_workflow,
    run_durable_workflow,
    run_workflow,
    send_signal,
    task,
    unpause_workflow,
)


@task
def inc(x: int) -> int:
    return x + 1


@task
def double(x: int) -> int:
    return x * 2


def test_every_shape_in_one_flow() -> None:
    @task
    def body(x: int) -> LoopResult[int]:
        return LoopResult.again(x + 1) if x < 10 else LoopResult.done(x)

    child = Flow("child").then(double).build()
    workflow = (
        Flow("shapes")
        .then(inc)
        .fork()
        .branch(double)
        .branch(inc, double, name="inc_then_double")
        .join(lambda parts: parts["double"] + parts["inc_then_double"], name="add")
        .route(lambda x: "big" if x > 5 else "small", keys=["big", "small"])
        .branch("big", inc)
        .branch("small", double)
        .done()
        .then(lambda envelope: envelope["result"], name="unwrap")
        .loop(body, max_iterations=20)
        .then_flow(child)
        .delay("short", "10ms")
        .build()
    )
    # 1 -> 2 -> (4, 6) -> 10 -> big: 11 -> 11 -> loop: 11 -> child: 22
    assert run_workflow(workflow, 1) == 22


def test_durable_delay_waits_then_resumes() -> None:
    workflow = Flow("delay").then(inc).delay("nap", 0.2).then(double).build()
    backend = InMemoryBackend()
    status = run_durable_workflow(workflow, "d-1", 1, backend=backend)
    assert status.is_waiting() and status.delay_id == "nap" and status.wake_at is not None
    assert resume_workflow(workflow, "d-1", backend).is_waiting()
    time.sleep(0.25)
    done = resume_workflow(workflow, "d-1", backend)
    assert done.is_completed() and done.output == 4


def test_signals_before_and_after_the_wait() -> None:
    workflow = Flow("sig").then(inc).wait_for_signal("approve").then(lambda p: p["by"], name="approver").build()
    backend = InMemoryBackend()
    waiting = run_durable_workflow(workflow, "s-1", 1, backend=backend)
    assert waiting.is_awaiting_signal() and waiting.signal_name == "approve"
    send_signal("s-1", "approve", {"by": "alice"}, backend)
    assert resume_workflow(workflow, "s-1", backend).output == "alice"

    early = WorkflowClient(backend)
    early.submit(workflow, "s-2", 1)
    early.send_signal("s-2", "approve", {"by": "bob"})
    early.send_signal("s-2", "approve", {"by": "carol"})
    assert resume_workflow(workflow, "s-2", backend).output == "bob"


def test_signal_timeout_fails_clearly_unless_the_flow_continues() -> None:
    failing = Flow("t1").wait_for_signal("go", timeout=0.1).then(inc).build()
    backend = InMemoryBackend()
    run_durable_workflow(failing, "t-1", None, backend=backend)
    time.sleep(0.15)
    status = resume_workflow(failing, "t-1", backend)
    assert status.is_failed() and status.error == "SignalTimeout: signal 'go' not received within 0.1s"

    lenient = Flow("t2").wait_for_signal("go", timeout=0.1, on_timeout="continue").then(lambda p: p is None).build()
    run_durable_workflow(lenient, "t-2", None, backend=backend)
    time.sleep(0.15)
    assert resume_workflow(lenient, "t-2", backend).output is True


def test_pause_unpause_and_cancel() -> None:
    workflow = Flow("p").then(inc).delay("d", 0.05).then(double).build()
    backend = InMemoryBackend()
    run_durable_workflow(workflow, "p-1", 1, backend=backend)
    pause_workflow("p-1", backend, reason="maintenance", paused_by="ops")
    time.sleep(0.06)
    paused = resume_workflow(workflow, "p-1", backend)
    assert paused.is_paused() and paused.reason == "maintenance" and paused.paused_by == "ops"
    unpause_workflow("p-1", backend)
    assert resume_workflow(workflow, "p-1", backend).output == 4

    run_durable_workflow(workflow, "c-1", 1, backend=backend)
    cancel_workflow("c-1", backend, reason="obsolete", cancelled_by="bob")
    cancelled = resume_workflow(workflow, "c-1", backend)
    assert cancelled.is_cancelled() and (cancelled.reason, cancelled.cancelled_by) == ("obsolete", "bob")
    with pytest.raises(BackendError, match="Cannot pause workflow in state: Cancelled"):
        pause_workflow("c-1", backend)
    with pytest.raises(BackendError, match="Snapshot not found: nope"):
        cancel_workflow("nope", backend)


def test_conflict_policies() -> None:
    workflow = Flow("c").then(inc).build()
    backend = InMemoryBackend()
    assert run_durable_workflow(workflow, "x", 1, backend=backend).output == 2
    with pytest.raises(InstanceAlreadyExistsError, match="Workflow instance already exists: x"):
        run_durable_workflow(workflow, "x", 5, backend=backend)
    assert run_durable_workflow(workflow, "x", 5, backend=backend, conflict_policy="use_existing").output == 2
    assert run_durable_workflow(workflow, "x", 5, backend=backend, conflict_policy="terminate_existing").output == 6
    with pytest.raises(ValueError, match="conflict_policy"):
        run_durable_workflow(workflow, "x", 5, backend=backend, conflict_policy="merge")


def test_run_workflow_with_an_instance_id_is_durable_and_insists_on_completion() -> None:
    backend = InMemoryBackend()
    assert run_workflow(Flow("a").then(inc).build(), 1, instance_id="a-1", backend=backend) == 2
    with pytest.raises(WorkflowError, match="status=waiting"):
        run_workflow(Flow("b").delay("d", 60).build(), 1, instance_id="b-1", backend=backend)


def test_sync_and_async_timeouts_are_enforced() -> None:
    @task(timeout="100ms")
    def sleepy(x: int) -> int:
        time.sleep(2)
        return x

    @task(timeout=0.1)
    async def async_sleepy(x: int) -> int:
        await asyncio.sleep(2)
        return x

    for fn in (sleepy, async_sleepy):
        started = time.monotonic()
        with pytest.raises(TaskError, match=r"timed out after 0\.1s"):
            run_workflow(Flow("t").then(fn).build(), 1)
        assert time.monotonic() - started < 1.0


def test_a_task_raising_its_own_timeout_error_is_a_failure_not_a_timeout() -> None:
    @task(timeout=5)
    def raises() -> None:
        raise TimeoutError("the database did not answer")

    with pytest.raises(TaskError, match="TimeoutError: the database did not answer"):
        run_workflow(Flow("t").then(lambda x: raises(), name="call").build(), 1)


def test_retries_back_off_and_stop_at_the_limit() -> None:
    attempts: list[float] = []

    @task(retries=RetryPolicy(max_retries=2, initial_delay_secs=0.05, backoff_multiplier=2))
    def always_fails(x: int) -> int:
        attempts.append(time.monotonic())
        raise RuntimeError(f"attempt {len(attempts)}")

    status = run_durable_workflow(Flow("r").then(always_fails).build(), "r-1", 1)
    assert status.is_failed() and status.error == "RuntimeError: attempt 3"
    assert len(attempts) == 3
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert gaps[0] >= 0.05 and gaps[1] >= 0.1


class Order(BaseModel):
    id: int
    amount: float


class Receipt(BaseModel):
    order_id: int
    total: float


@task
def charge(order: Order) -> Receipt:
    assert isinstance(order, Order)
    return Receipt(order_id=order.id, total=order.amount * 1.2)


def test_pydantic_models_are_validated_in_and_dumped_out() -> None:
    workflow = Flow("orders").then(charge).build()
    assert run_workflow(workflow, {"id": 7, "amount": 10}) == {"order_id": 7, "total": 12.0}
    assert workflow.definition.input_schema is not None
    assert workflow.definition.input_schema["required"] == ["id", "amount"]
    with pytest.raises(TaskError, match="ValidationError"):
        run_workflow(workflow, {"id": "not a number"})


def test_outputs_must_be_json() -> None:
    with pytest.raises(TaskError, match="not JSON-serializable"):
        run_workflow(Flow("j").then(lambda x: {1, 2}, name="a_set").build(), 1)
    assert run_workflow(Flow("t").then(lambda x: (x, "tuple"), name="tup").build(), 1) == [1, "tuple"]


def test_get_task_context_inside_and_outside_tasks() -> None:
    seen: list[Any] = []

    @task
    def look(x: int) -> int:
        ctx = get_task_context()
        assert ctx is not None
        seen.append((ctx.workflow_id, ctx.instance_id, ctx.task_id, ctx.attempt, ctx.workflow_metadata))
        return x

    workflow = Flow("ctx", metadata={"team": "a"}).then(look).build()
    run_durable_workflow(workflow, "ctx-1", 1)
    assert seen == [("ctx", "ctx-1", "look", 1, {"team": "a"})]
    assert get_task_context() is None


def test_client_submit_status_and_task_results() -> None:
    backend = InMemoryBackend()
    client = WorkflowClient(backend)
    workflow = Flow("c").then(inc).then(double).build()
    submitted = client.submit(workflow, "k-1", 3)
    assert submitted.is_in_progress()
    assert resume_workflow(workflow, "k-1", backend).output == 8
    assert client.get_task_result("k-1", "inc") == 4
    assert client.get_task_result("k-1", "double") == 8
    assert client.get_task_result("k-1", "missing") is None
    assert client.status("k-1").is_completed()


def test_tasks_with_the_same_id_but_different_functions_are_refused() -> None:
    with pytest.raises(ValueError, match="already used by another function"):
        Flow("dup").then(lambda x: x, name="same").then(lambda x: x + 1, name="same")


async def test_run_workflow_works_inside_a_running_event_loop() -> None:
    @task
    async def later(x: int) -> int:
        await asyncio.sleep(0.01)
        return x + 1

    assert run_workflow(Flow("a").then(later).then(inc).build(), 1) == 3


def test_sqlite_store_survives_a_crashed_process(tmp_path: Path) -> None:
    store = tmp_path / "store.db"
    log = tmp_path / "ran.log"
    program = textwrap.dedent(
        f"""
        import os, sys
        from plait import Flow, SqliteBackend, run_durable_workflow, resume_workflow, task

        LOG = {str(log)!r}

        def note(name):
            with open(LOG, "a") as f:
                f.write(name + "\\n")

        @task
        def first(x):
            note("first")
            return x + 1

        @task
        def second(x):
            note("second")
            if sys.argv[1] == "crash":
                os._exit(9)  # the process dies mid-task
            return x * 10

        wf = Flow("crashy").then(first).then(second).build()
        backend = SqliteBackend({str(store)!r})
        if sys.argv[1] == "crash":
            run_durable_workflow(wf, "c-1", 1, backend=backend)
        else:
            print(resume_workflow(wf, "c-1", backend).output)
        """
    )
    crashed = subprocess.run([sys.executable, "-c", program, "crash"], capture_output=True, text=True)
    assert crashed.returncode == 9
    resumed = subprocess.run([sys.executable, "-c", program, "resume"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.strip() == "20"
    assert log.read_text().split() == ["first", "second", "second"]  # `first` finished: not run again
    assert SqliteBackend(store).load("c-1")["status"] == "completed"  # type: ignore[index]


def test_public_api_is_pinned() -> None:
    assert plait.__all__ == sorted(plait.__all__)
    for name in plait.__all__:
        assert hasattr(plait, name), name
