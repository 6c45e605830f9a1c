"""Workflows the CLI tests run on a real worker (``plait worker tests.cli.flows``), next to the examples."""

from __future__ import annotations

from typing import Any

from examples.etl import etl
from examples.orders import orders
from pydantic import BaseModel

from plait import Flow, RetryPolicy, get_task_context, task


class Person(BaseModel):
    name: str


@task
def greet(person: Person) -> str:
    return f"hello {person.name}"


@task
def shout(text: str) -> str:
    return text.upper() + "!"


@task(retries=RetryPolicy(max_retries=1, initial_delay_secs=0.2, backoff_multiplier=1))
def doomed(x: Any) -> Any:
    ctx = get_task_context()
    raise ValueError(f"no luck on attempt {ctx.attempt if ctx else 0}")


@task
def received(payload: Any) -> Any:
    return {"got": payload}


greeting = Flow("greeting").then(greet).then(shout).build()
failing = Flow("failing").then(shout).then(doomed).build()
gate = Flow("gate").then(shout).wait_for_signal("go", timeout="10m").then(received).build()

__all__ = ["etl", "failing", "gate", "greeting", "orders"]
