"""Order processing: validate, then price, reserve stock and screen for fraud in parallel, ask a
human for approval and wait for their signal, then route on the verdict: charge the card (with
retries) and confirm, or release the stock.

Run it locally:   python examples/orders.py
On a cluster:     plait worker examples/orders.py   and   kubectl apply -f examples/order-instance.yaml
"""

from __future__ import annotations

from typing import Any

from opentelemetry import trace
from pydantic import BaseModel, Field

from plait import Flow, RetryPolicy, get_task_context, task

tracer = trace.get_tracer("examples.orders")  # spans started in a task nest under its attempt (docs/tracing.md)


class Item(BaseModel):
    sku: str
    quantity: int = Field(gt=0)
    unit_price: float = Field(gt=0)


class Order(BaseModel):
    order_id: str
    customer: str
    items: list[Item] = Field(min_length=1)
    country: str = "NL"


@task(timeout="10s")
def validate(order: Order) -> dict[str, Any]:
    """Check the order and normalise it for the steps after."""
    return order.model_dump()


@task
def price(order: dict[str, Any]) -> float:
    subtotal = sum(i["quantity"] * i["unit_price"] for i in order["items"])
    shipping = 0.0 if subtotal >= 100 else 7.5
    return round(subtotal + shipping, 2)


@task(retries=RetryPolicy(max_retries=3, initial_delay_secs=0.5, backoff_multiplier=2, max_delay_secs=5))
def reserve_stock(order: dict[str, Any]) -> list[str]:
    """Reserve every line. The (simulated) warehouse API times out on first contact, every time,
    so that the example shows a retry: the second attempt, half a second later, goes through."""
    ctx = get_task_context()
    if ctx is not None and ctx.attempt == 1:
        raise ConnectionError("warehouse API timed out")
    return [f"{i['sku']}x{i['quantity']}" for i in order["items"]]


@task
def fraud_score(order: dict[str, Any]) -> float:
    total_quantity = sum(i["quantity"] for i in order["items"])
    return 0.9 if order["country"] not in ("NL", "BE", "DE") or total_quantity > 50 else 0.1


@task
def decide(parts: dict[str, Any]) -> dict[str, Any]:
    """Join: one dict with the results of the three parallel branches."""
    return {
        "total": parts["price"],
        "reserved": parts["reserve_stock"],
        "risk": "high" if parts["fraud_score"] > 0.5 else "low",
    }


@task
def request_approval(decision: dict[str, Any]) -> dict[str, Any]:
    """Tell a reviewer (ticket, chat message...); the flow then waits for their `approval` signal."""
    return {**decision, "approval": "requested"}


def verdict(review: dict[str, Any]) -> str:
    """Route on the reviewer's signal payload, e.g. {"approved": true, "by": "alice"}."""
    return "approved" if review.get("approved") else "rejected"


@task(retries=RetryPolicy(max_retries=4, initial_delay_secs=1, backoff_multiplier=2, max_delay_secs=10), timeout="30s")
def charge(review: dict[str, Any]) -> dict[str, Any]:
    with tracer.start_as_current_span("payment-gateway charge") as span:  # a no-op unless tracing is on
        span.set_attribute("payment.approved_by", review.get("by", "a reviewer"))
        return {"charged": True, "approved_by": review.get("by", "a reviewer")}


@task
def confirm(receipt: dict[str, Any]) -> str:
    return f"order confirmed, approved by {receipt['approved_by']}"


@task
def release_stock(review: dict[str, Any]) -> str:
    return f"order rejected by {review.get('by', 'a reviewer')}; stock released"


orders = (
    Flow("order-processing", metadata={"team": "checkout"})
    .then(validate)
    .fork()
    .branch(price)
    .branch(reserve_stock)
    .branch(fraud_score)
    .join(decide)
    .then(request_approval)
    .wait_for_signal("approval", timeout="24h")
    .route(verdict, keys=["approved", "rejected"])
    .branch("approved", charge, confirm)
    .branch("rejected", release_stock)
    .done()
    .then(lambda routed: routed["result"], name="summarize")
    .build()
)


if __name__ == "__main__":
    from plait import InMemoryBackend, resume_workflow, run_durable_workflow, send_signal

    order = {
        "order_id": "A-1001",
        "customer": "ada@example.com",
        "items": [
            {"sku": "BOOK-7", "quantity": 2, "unit_price": 30.0},
            {"sku": "PEN-1", "quantity": 5, "unit_price": 2.5},
        ],
    }
    backend = InMemoryBackend()
    print(run_durable_workflow(orders, "order-A-1001", order, backend=backend))
    send_signal("order-A-1001", "approval", {"approved": True, "by": "alice"}, backend)
    print(resume_workflow(orders, "order-A-1001", backend).output)
