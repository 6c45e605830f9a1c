"""Workflows with flow control for the Kubernetes tests (``plait worker tests.k8s.flowcontrol_flows``)."""

from __future__ import annotations

import time
from typing import Any

from plait import Concurrency, Flow, RateLimit, get_task_context, task
from tests.k8s.flows import mark


@task
def hold(job: dict[str, Any]) -> str:
    """Runs ``job["seconds"]``, noting start and end (overlaps are measured from the marks)."""
    mark("hold-start")
    deadline = time.monotonic() + float(job.get("seconds", 0.5))
    ctx = get_task_context()
    while time.monotonic() < deadline:
        if ctx is not None and ctx.is_cancelled():
            mark("hold-cancelled")
            return "cancelled"
        time.sleep(0.02)
    mark("hold-end")
    return f"held {job.get('customer', '-')}"


@task(concurrency=2)
def scarce(job: dict[str, Any]) -> str:
    mark("scarce-start")
    time.sleep(float(job.get("seconds", 0.5)))
    mark("scarce-end")
    return "done"


@task(concurrency=Concurrency(1, key="customer"))
def scarce_per_customer(job: dict[str, Any]) -> str:
    mark("keyed-start")
    time.sleep(float(job.get("seconds", 0.5)))
    mark("keyed-end")
    return "done"


@task(rate_limit="10/s")
def call_api(job: dict[str, Any]) -> str:
    mark("call")
    return "called"


@task(rate_limit=RateLimit("2/s", key="customer"))
def call_api_per_customer(job: dict[str, Any]) -> str:
    mark("call")
    return "called"


queued = Flow("fc-queue", concurrency=Concurrency(2)).then(hold).build()
per_customer = Flow("fc-keyed", concurrency=Concurrency(1, key="customer")).then(hold).build()
newest = Flow("fc-newest", concurrency=Concurrency(1, key="customer", strategy="cancel_newest")).then(hold).build()
in_progress = (
    Flow("fc-in-progress", concurrency=Concurrency(1, key="customer", strategy="cancel_in_progress")).then(hold).build()
)
task_limited = Flow("fc-task-concurrency").then(scarce).build()
task_keyed = Flow("fc-task-keyed").then(scarce_per_customer).build()
rated = Flow("fc-rated").then(call_api).build()
rated_per_customer = Flow("fc-rated-keyed").then(call_api_per_customer).build()
