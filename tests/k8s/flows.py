"""Workflows the Kubernetes tests run on real workers (``plait worker tests.k8s.flows``)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from plait import Flow, LoopResult, RetryPolicy, WorkflowFailure, get_task_context, task

MARKS = Path(os.environ.get("PLAIT_TEST_MARKS", "/tmp/plait-test-marks"))


def mark(name: str) -> None:
    """Note that a task ran (tests count the lines to see what ran how often)."""
    ctx = get_task_context()
    MARKS.mkdir(parents=True, exist_ok=True)
    with open(MARKS / f"{ctx.instance_id if ctx else 'none'}.log", "a") as log:
        log.write(f"{name} {ctx.attempt if ctx else 0} {os.getpid()} {ctx.path if ctx else '-'} {time.time():.3f}\n")


@task
def inc(x: int) -> int:
    mark("inc")
    return x + 1


@task
def double(x: int) -> int:
    mark("double")
    return x * 2


@task
def square(x: int) -> int:
    mark("square")
    return x * x


@task
def total(parts: dict[str, int]) -> dict[str, Any]:
    mark("total")
    return {"sum": sum(parts.values()), "parts": parts}


@task
def small(x: int) -> str:
    mark("small")
    return f"small:{x}"


@task
def big(x: int) -> str:
    mark("big")
    return f"big:{x}"


@task
def count_up(x: int) -> LoopResult[int]:
    mark("count_up")
    return LoopResult.again(x + 1) if x < 5 else LoopResult.done(x * 10)


@task
def approved(payload: dict[str, Any]) -> str:
    mark("approved")
    return f"approved by {payload['by']}"


class Order(BaseModel):
    id: int
    amount: float


class Receipt(BaseModel):
    order_id: int
    charged: float


@task
def charge(order: Order) -> Receipt:
    return Receipt(order_id=order.id, charged=round(order.amount * 1.1, 2))


@task(retries=RetryPolicy(max_retries=2, initial_delay_secs=0.5, backoff_multiplier=2))
def flaky(x: int) -> int:
    ctx = get_task_context()
    mark("flaky")
    if ctx is not None and ctx.attempt < 3:
        raise RuntimeError(f"flaky failure on attempt {ctx.attempt}")
    return x


@task(retries=RetryPolicy(max_retries=2, initial_delay_secs=0.3, backoff_multiplier=2))
def hopeless(x: int) -> int:
    mark("hopeless")
    raise ValueError("this never works")


@task(timeout="500ms")
def too_slow(x: int) -> int:
    time.sleep(3)
    return x


@task
def nap(seconds: float) -> float:
    """Runs for a while, noting start and end (kill and cancel tests)."""
    mark("nap-start")
    deadline = time.monotonic() + seconds
    ctx = get_task_context()
    while True:
        if ctx is not None and ctx.is_cancelled():  # checked once more after the last sleep, too
            mark("nap-cancelled")
            return -1
        if time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    mark("nap-end")
    return seconds


@task
def after_nap(x: float) -> str:
    mark("after-nap")
    return f"rested {x}"


@task
def echo(x: Any) -> Any:
    return x


sequence = Flow("sequence").then(inc).then(double).then(inc).build()
fork_join = Flow("fork-join").fork().branch(inc).branch(double).branch(square).join(total).build()
route = (
    Flow("route")
    .route(lambda x: "big" if x >= 10 else "small", keys=["big", "small"])
    .branch("big", big)
    .branch("small", small)
    .done()
    .build()
)
loop = Flow("loop").loop(count_up, max_iterations=10).build()
delay = Flow("delay").then(inc).delay("pause", "1s").then(double).build()
signal = Flow("signal").then(inc).wait_for_signal("approve", timeout="60s").then(approved).build()
child = Flow("child").then(inc).then_flow(Flow("inner").then(double).then(square).build()).then(inc).build()
pydantic_input = Flow("pydantic").then(charge).build()
retries = Flow("retries").then(flaky).then(inc).build()
exhausted = Flow("exhausted").then(hopeless).build()
timeout = Flow("timeout").then(too_slow).build()
slow = Flow("slow").then(nap).then(after_nap).build()
echoing = Flow("echo").then(echo).build()


@task
def unserializable(x: int) -> Any:
    return {"values": {x, x + 1}}  # a set is not JSON


@task
def loud_failure(x: int) -> int:
    raise RuntimeError("disk full " + "!" * 2_000_000)


not_json = Flow("not-json").then(unserializable).build()
huge_error = Flow("huge-error").then(loud_failure).build()


@task(concurrency=1)
def one_at_a_time(x: int) -> int:
    mark("one-at-a-time")
    time.sleep(0.3)
    return x + 1


limited = Flow("limited").then(one_at_a_time).build()  # a held task let through, under the chart's RBAC


def broken_for(instance: str) -> Path:
    """While this file exists, ``fragile`` fails for ``instance`` (a test "fixes the cause" by removing it)."""
    return MARKS / f"{instance}.broken"


@task
def fragile(x: int) -> int:
    ctx = get_task_context()
    mark("fragile")
    if ctx is not None and broken_for(ctx.instance_id).exists():
        raise RuntimeError("dependency down")
    return x + 1


recoverable = Flow("recoverable").then(inc).then(double).then(fragile).then(inc).build()
bounded = Flow("bounded", timeout="2s").then(nap).then(after_nap).build()  # a deadline from the flow


@task
def compensate(failure: WorkflowFailure) -> str:
    """Records what it was called with, for the test to read."""
    mark("compensate")
    (MARKS / f"{failure.instance_id}.failure.json").write_text(failure.model_dump_json())
    return "compensated"


@task
def pager(failure: WorkflowFailure) -> None:
    mark("pager")
    raise RuntimeError("the pager is down too")


compensated = Flow("compensated").then(inc).then(hopeless).on_failure(compensate).build()
badly_compensated = Flow("badly-compensated").then(hopeless).on_failure(pager).build()
