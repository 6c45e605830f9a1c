"""Workflows the client tests run, on an embedded ``plait.Worker`` or a ``plait worker`` process."""

from __future__ import annotations

import threading
import time
from typing import Any

from plait import Flow, get_task_context, task

#: Set by a test to let ``held`` finish (embedded workers share this process with the test).
RELEASE = threading.Event()
#: Set by ``held`` and ``nap`` when they start: the test knows a step is running.
RUNNING = threading.Event()


@task
def inc(x: int) -> int:
    return x + 1


@task
def double(x: int) -> int:
    return x * 2


@task
def approved(payload: dict[str, Any]) -> str:
    return f"approved by {payload['by']}"


@task
def held(x: int) -> int:
    """Runs until the test sets RELEASE (or the task is cancelled)."""
    ctx = get_task_context()
    RUNNING.set()
    while not RELEASE.wait(0.02):
        if ctx is not None and ctx.is_cancelled():
            return -1
    return x


@task
def nap(seconds: float) -> float:
    RUNNING.set()
    time.sleep(seconds)
    return seconds


gated = Flow("gated").then(held).wait_for_signal("approve").then(approved).build()
chained = Flow("chained").then(inc).then(double).then(inc).build()
approval = Flow("approval").then(inc).wait_for_signal("approve").then(approved).build()
holding = Flow("holding").then(held).then(inc).build()
napping = Flow("napping").then(nap).then(nap).build()
WORKFLOWS = [chained, approval, holding, napping, gated]
