"""A signal's payload schema (``wait_for_signal(..., schema=)``): part of the definition and its
hash when given, absent (and every earlier version's hash unchanged) when not, checked at build."""

from __future__ import annotations

from typing import Any

import pytest

from plait import Flow, task
from plait._core.definition import Definition, SignalNode

SCHEMA = {"type": "object", "properties": {"by": {"type": "string"}}, "required": ["by"]}


@task
def ask(x: str) -> str:
    return x


@task
def after(p: dict[str, Any]) -> str:
    return str(p)


def approval(**options: Any) -> Definition:
    return Flow("approval").then(ask).wait_for_signal("approve", timeout="1h", **options).then(after).build().definition


def test_a_flow_without_a_schema_keeps_the_hash_it_had_before_schemas_existed() -> None:
    definition = approval()
    (signal,) = [n for n in definition.to_data()["nodes"] if n["kind"] == "signal"]
    assert "payloadSchema" not in signal
    # computed by the release before payload schemas: a published version keeps its name
    assert definition.hash == "67aed3c2f3d2e60a1702f9ca4cd51e6dc329cac15b62277f20a7ebd9f07d52a2"


def test_a_schema_is_in_the_definition_and_its_hash_and_round_trips() -> None:
    definition = approval(schema=SCHEMA)
    node = definition.nodes["approve"]
    assert isinstance(node, SignalNode) and node.payload_schema == SCHEMA
    (signal,) = [n for n in definition.to_data()["nodes"] if n["kind"] == "signal"]
    assert signal["payloadSchema"] == SCHEMA
    assert definition.hash != approval().hash
    again = Definition.from_data(definition.to_data())
    assert again.hash == definition.hash and again.nodes["approve"] == node
    hash(node)  # nodes stay hashable


@pytest.mark.parametrize(
    ("schema", "error", "message"),
    [
        ({"type": "nope"}, ValueError, "signal 'approve': not a valid JSON Schema"),
        ({"type": "object", "default": {1, 2}}, ValueError, "signal 'approve': schema is not JSON"),
        ("{}", TypeError, "schema must be a JSON Schema (a dict), got str"),
    ],
)
def test_a_wrong_schema_fails_the_build_with_a_message(schema: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        approval(schema=schema)
