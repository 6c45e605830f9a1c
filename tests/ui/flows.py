"""Workflows the browser tests run on a real worker (``plait worker tests.ui.flows``)."""

from __future__ import annotations

from examples.orders import orders

from plait import Concurrency, Flow, task


@task
def hello(name: str) -> str:
    return f"hello {name}"


@task
def bye(payload: dict[str, object]) -> str:
    return f"bye {payload.get('by')}"


@task
def boom(text: str) -> str:
    raise ValueError(f"the disk is full (while writing {text!r})")


gate = Flow("gate").then(hello).wait_for_signal("go").then(bye).build()
broken = Flow("broken").then(hello).then(boom).build()
# a signal with a JSON Schema: the UI offers a form for its payload
APPROVAL_SCHEMA = {
    "type": "object",
    "properties": {
        "by": {"type": "string", "title": "Approved by"},
        "amount": {"type": "integer", "title": "Amount", "minimum": 1, "description": "in euros"},
        "level": {"type": "string", "enum": ["low", "high"], "default": "low"},
        "approved": {"type": "boolean", "title": "Approved"},
    },
    "required": ["by", "amount"],
}
approval = Flow("approval").then(hello).wait_for_signal("approve", schema=APPROVAL_SCHEMA).then(bye).build()
one_at_a_time = Flow("one-at-a-time", concurrency=Concurrency(1)).then(hello).wait_for_signal("go").then(bye).build()

__all__ = ["approval", "broken", "gate", "one_at_a_time", "orders"]
