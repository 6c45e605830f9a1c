"""The workflows the Kubernetes benchmark runs: a 10-step line, a fan-out of 50, a signal-driven flow."""

from __future__ import annotations

from plait import Flow, task

FANOUT = 50


@task
def step(x: int) -> int:
    return x + 1


@task
def gather(parts: dict[str, int]) -> int:
    return sum(parts.values())


def _linear(name: str, steps: int) -> Flow:
    flow = Flow(name)
    for i in range(steps):
        flow.then(step, name=f"s{i}")
    return flow


linear10 = _linear("bench-linear10", 10).build()

_fork = Flow("bench-fanout50").fork()
for _i in range(FANOUT):
    _fork.branch(step, name=f"b{_i}")
fanout50 = _fork.join(gather).build()

signalled = Flow("bench-signal").then(step, name="before").wait_for_signal("go").then(step, name="after").build()
