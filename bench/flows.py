"""The workflows the Kubernetes benchmark runs: a 10-step line (also with flow control limits that
never bind, for their cost), a fan-out of 50, a signal-driven flow."""

from __future__ import annotations

from typing import Any

from plait import Concurrency, Flow, task

FANOUT = 50


@task
def step(x: int) -> int:
    return x + 1


@task
def gather(parts: dict[str, int]) -> int:
    return sum(parts.values())


@task(concurrency=100_000)
def limited_step(x: int) -> int:
    return x + 1


def _linear(name: str, steps: int, *, limited: bool = False) -> Flow:
    flow = Flow(name, concurrency=Concurrency(100_000) if limited else None)
    for i in range(steps):
        flow.then(limited_step if limited else step, name=f"s{i}")
    return flow


linear10 = _linear("bench-linear10", 10).build()
# Every instance and every task passes a gate that never holds anything back: the cost of the checks.
limited10 = _linear("bench-limited10", 10, limited=True).build()

_fork = Flow("bench-fanout50").fork()
for _i in range(FANOUT):
    _fork.branch(step, name=f"b{_i}")
fanout50 = _fork.join(gather).build()

signalled = Flow("bench-signal").then(step, name="before").wait_for_signal("go").then(step, name="after").build()


@task
def carry(value: dict[str, Any]) -> dict[str, Any]:
    """Pass a large value on, changed (each step's output is new bytes: no upload is skipped)."""
    blob = value["blob"]
    return {"n": value["n"] + 1, "blob": blob[1:] + blob[:1]}


_payload = Flow("bench-payload10")
for _i in range(10):
    _payload.then(carry, name=f"c{_i}")
payload10 = _payload.build()
