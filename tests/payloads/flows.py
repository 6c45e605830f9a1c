"""Workflows with large values (``plait worker tests.payloads.flows``)."""

from __future__ import annotations

import hashlib
from typing import Any

from plait import Flow, RetryPolicy, get_task_context, task
from tests.k8s.flows import mark

MB = 1_000_000
BRANCHES = 500
PIECE = 100 * 1024


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@task
def reverse(value: dict[str, Any]) -> dict[str, Any]:
    """5 MB in, 5 MB out (the input reversed), with what it saw."""
    mark("reverse")
    return {"seen": digest(value["data"]), "data": value["data"][::-1]}


@task
def measure(value: dict[str, Any]) -> dict[str, Any]:
    mark("measure")
    return {"size": len(value["data"]), "seen": value["seen"], "data": value["data"]}


large = Flow("large").then(reverse).then(measure).build()


@task
def piece(n: int) -> str:
    """100 KiB, different in every branch."""
    ctx = get_task_context()
    return (f"{n}:{ctx.path if ctx else '-'}:" + "p" * PIECE)[:PIECE]


@task
def gather(parts: dict[str, str]) -> dict[str, Any]:
    mark("gather")
    return {"branches": len(parts), "bytes": sum(len(p) for p in parts.values()), "distinct": len(set(parts.values()))}


def _fanout() -> Flow:
    fork = Flow("fanout").fork()
    for index in range(BRANCHES):
        fork = fork.branch(piece, name=f"b{index:03d}")
    return fork.join(gather)


fanout = _fanout().build()


@task
def produce(n: int) -> dict[str, Any]:
    """An output over the inline limit (200 kB)."""
    mark("produce")
    return {"n": n, "blob": "b" * 200_000}


@task(retries=RetryPolicy(max_retries=1, initial_delay_secs=0.2))
def consume(value: dict[str, Any]) -> dict[str, Any]:
    mark("consume")
    return {"n": value["n"], "size": len(value["blob"])}


# the delay leaves time to tamper with the stored output between the two steps
handoff = Flow("handoff").then(produce).delay("pause", 3).then(consume).build()


@task
def grow(n: int) -> str:
    """Over the 256 KiB inline limit of a worker without a payload store."""
    mark("grow")
    return "g" * 300_000


oversized = Flow("oversized").then(grow).build()
