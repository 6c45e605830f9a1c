"""Flow control in the authoring API: what ``Concurrency``, ``@task(concurrency=, rate_limit=)`` and
``Flow(concurrency=)`` accept, the definitions they give, and the local runner running them."""

from __future__ import annotations

import pytest

from plait import Concurrency, Flow, RateLimit, run_workflow, task
from plait._core.definition import Definition, TaskNode
from plait._core.flowcontrol import key_value


@task(concurrency=Concurrency(2, key="customer.id"), rate_limit="10/s")
def call_api(order: dict[str, object]) -> dict[str, object]:
    return {**order, "called": True}


@task(concurrency=3)
def ship(order: dict[str, object]) -> str:
    return f"shipped {order['customer']}"


def test_limits_are_part_of_the_definition_and_round_trip() -> None:
    flow = Flow("orders", concurrency=Concurrency(1, key="customer.id", strategy="cancel_in_progress"))
    workflow = flow.then(call_api).then(ship).build()
    definition = workflow.definition
    assert definition.concurrency == Concurrency(1, "customer.id", "cancel_in_progress")
    api = definition.nodes["call_api"]
    assert isinstance(api, TaskNode)
    assert api.concurrency == Concurrency(2, "customer.id") and api.rate_limit == RateLimit("10/s")
    data = definition.to_data()
    assert data["concurrency"] == {"maxRuns": 1, "key": "customer.id", "strategy": "cancel_in_progress"}
    assert data["nodes"][0]["rateLimit"] == {"limit": "10/s"}
    assert Definition.from_data(data).hash == definition.hash


def test_an_unlimited_flow_keeps_its_hash() -> None:
    @task
    def plain(x: int) -> int:
        return x

    data = Flow("plain").then(plain).build().definition.to_data()
    assert "concurrency" not in data and "concurrency" not in data["nodes"][0]
    limited = Flow("plain", concurrency=2).then(plain).build().definition
    assert limited.hash != Flow("plain").then(plain).build().definition.hash


def test_the_local_runner_accepts_limited_flows_and_ignores_the_limits() -> None:
    workflow = Flow("orders", concurrency=1).then(call_api).then(ship).build()
    assert run_workflow(workflow, {"customer": {"id": "acme"}}) == "shipped {'id': 'acme'}"


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Concurrency(0), "max_runs must be a whole number >= 1, got 0"),
        (lambda: Concurrency(True), "max_runs must be a whole number >= 1"),
        (lambda: Concurrency(2, key="customer..id"), "key must be a dotted path into the input"),
        (lambda: Concurrency(2, strategy="newest"), "strategy must be one of queue, cancel_newest, cancel_in_progress"),
        (lambda: RateLimit("10 per second"), 'rate_limit must look like "10/s"'),
        (lambda: RateLimit("0/s"), "the count must be at least 1"),
        (lambda: task(rate_limit="fast")(lambda x: x), 'rate_limit must look like "10/s"'),
        (
            lambda: task(concurrency=Concurrency(1, strategy="cancel_newest"))(lambda x: x),
            "a task attempt can only wait for a slot",
        ),
    ],
)
def test_bad_limits_say_what_is_wrong(build: object, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        build()  # type: ignore[operator]


def test_wrong_types_are_refused() -> None:
    with pytest.raises(TypeError, match="takes a whole number or a Concurrency"):
        Flow("x", concurrency="2")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match='takes a string like "10/s" or a RateLimit'):
        task(rate_limit=10)  # type: ignore[call-overload]


def test_rates_and_their_intervals() -> None:
    assert RateLimit("10/s").interval == pytest.approx(0.1)
    assert RateLimit("120/m").per_second == pytest.approx(2.0)
    assert RateLimit("5/2h").interval == pytest.approx(1440.0)


def test_keys_are_read_from_the_input_by_dotted_path() -> None:
    value = {"customer": {"id": "acme", "tier": 2, "tags": ["a", "b"]}}
    assert key_value(value, None) is None
    assert key_value(value, "customer.id") == "acme"
    assert key_value(value, "customer.tier") == "2"
    assert key_value(value, "customer.tags.1") == "b"
    with pytest.raises(KeyError):
        key_value(value, "customer.name")
    with pytest.raises(KeyError):
        key_value(7, "customer")
