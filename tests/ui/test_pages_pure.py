"""The UI's pure parts: the graph source, the version diff, signal forms, label filters, queues."""

from __future__ import annotations

import shutil

import pytest
from examples.orders import orders

from plait import Flow, RetryPolicy, task
from plait._ui import views
from plait._ui.diff import diff_definitions
from plait._ui.forms import FormError, form_fields, payload_from_form
from plait._ui.graph import NodeInfo, dot_source, render_svg


@task
def first(x: int) -> int:
    return x


@task(retries=RetryPolicy(max_retries=2, initial_delay_secs=1, backoff_multiplier=2))
def second(x: int) -> int:
    return x


@task
def third(x: int) -> int:
    return x


def test_the_graph_has_every_node_and_edge_and_writes_each_state_out() -> None:
    spec = orders.definition.to_data()
    source = dot_source(
        spec, {"validate": NodeInfo("succeeded", "2 attempts"), "decide": NodeInfo("failed")}, lambda i: f"?step={i}"
    )
    for node in spec["nodes"]:
        assert f'"{node["id"]}" [' in source
    for edge in spec["edges"]:
        assert f'"{edge["from"]}" -> "{edge["to"]}"' in source
    # the state is text in the node, not only a colour
    assert "✓ succeeded\\n2 attempts" in source
    assert "✗ failed" in source
    assert 'URL="?step=validate"' in source


def test_names_with_quotes_are_escaped_in_the_source() -> None:
    flow = Flow('odd"name').then(first, name='we"ird\\step').build()
    source = dot_source(flow.definition.to_data(), {})
    assert '"we\\"ird\\\\step"' in source


@pytest.mark.skipif(shutil.which("dot") is None, reason="needs Graphviz (make ui-deps)")
async def test_dot_renders_an_svg_with_a_link_per_step() -> None:
    spec = orders.definition.to_data()
    svg = await render_svg(dot_source(spec, {}, lambda i: f"/x?step={i}"))
    assert svg.startswith("<svg")
    assert 'id="step&#45;validate"' in svg  # dot writes '-' as an entity
    assert 'xlink:href="/x?step=charge"' in svg


def test_the_diff_lists_steps_added_removed_and_changed() -> None:
    old = Flow("f").then(first).then(second).build().definition.to_data()
    new_second = task(name="second", retries=5)(second.fn if hasattr(second, "fn") else second)
    new = Flow("f").then(first).then(new_second).then(third).build().definition.to_data()
    diff = diff_definitions(old, new)
    assert diff.added == ["third"]
    assert diff.removed == []
    assert [c.id for c in diff.changed] == ["second"]
    assert [f.field for f in diff.changed[0].changes] == ["retry"]
    assert "second -> third" in diff.edges_added
    assert [f.field for f in diff.workflow] == ["steps"]
    assert diff.states() == {"third": "added", "second": "changed"}
    back = diff_definitions(new, old)
    assert back.removed == ["third"] and not back.added
    assert diff_definitions(old, old).empty


def test_a_flat_schema_becomes_a_form_and_the_form_a_payload() -> None:
    schema = {
        "type": "object",
        "properties": {
            "approved": {"type": "boolean"},
            "by": {"type": "string", "title": "Reviewer"},
            "level": {"$ref": "#/$defs/Level"},
            "score": {"type": "number"},
        },
        "required": ["by", "level"],
        "$defs": {"Level": {"type": "string", "enum": ["low", "high"]}},
    }
    fields = form_fields(schema)
    assert fields is not None
    assert [(f.name, f.type, f.required) for f in fields] == [  # required first, in their order
        ("by", "string", True),
        ("level", "string", True),
        ("approved", "boolean", False),
        ("score", "number", False),
    ]
    assert fields[1].choices == ("low", "high")
    payload = payload_from_form(
        fields, {"field.approved": "on", "field.by": "ada", "field.level": "high", "field.score": "0.5"}
    )
    assert payload == {"approved": True, "by": "ada", "level": "high", "score": 0.5}
    with pytest.raises(FormError, match="Reviewer is required"):
        payload_from_form(fields, {"field.level": "low"})
    with pytest.raises(FormError, match="must be a number"):
        payload_from_form(fields, {"field.by": "a", "field.level": "low", "field.score": "x"})
    # nested objects and arrays need the JSON text area
    assert form_fields({"type": "object", "properties": {"items": {"type": "array"}}}) is None
    assert form_fields(None) is None


def test_label_filters_read_like_kubectl_selectors() -> None:
    requirements = views.parse_selector("team=a, tier!=db,canary,!old")
    assert views.selected({"team": "a", "canary": ""}, requirements)
    assert not views.selected({"team": "b", "canary": ""}, requirements)
    assert not views.selected({"team": "a", "tier": "db", "canary": ""}, requirements)
    assert not views.selected({"team": "a"}, requirements)
    assert not views.selected({"team": "a", "canary": "", "old": "1"}, requirements)
    with pytest.raises(views.SelectorError):
        views.parse_selector("a=b=c")


def _instance(name: str, phase: str, created: str, **status: object) -> dict[str, object]:
    return {
        "metadata": {"name": name, "namespace": "ns", "creationTimestamp": created, "labels": {"team": name[0]}},
        "spec": {"workflow": "w"},
        "status": {"phase": phase, **status},
    }


def test_instance_rows_filter_and_put_the_newest_first() -> None:
    items = [
        _instance("a1", "Running", "2026-01-01T00:00:01Z"),
        _instance("b1", "Failed", "2026-01-01T00:00:02Z", error="boom"),
        _instance("a2", "Failed", "2026-01-01T00:00:03Z"),
    ]
    rows, matched = views.instance_rows(items, 0.0, phase="Failed")
    assert [r.name for r in rows] == ["a2", "b1"] and matched == 2
    rows, _ = views.instance_rows(items, 0.0, selector=views.parse_selector("team=a"), limit=1)
    assert [r.name for r in rows] == ["a2"]
    assert views.phase_counts(items) == {"Running": 1, "Failed": 2}


def test_queues_show_queued_instances_in_order_and_held_tasks() -> None:
    queued = [
        _instance("q2", "Queued", "2026-01-01T00:00:02Z", concurrency={"key": "k", "maxRuns": 1, "position": 2}),
        _instance("q1", "Queued", "2026-01-01T00:00:03Z", concurrency={"key": "k", "maxRuns": 1, "position": 1}),
        _instance("r", "Running", "2026-01-01T00:00:01Z"),
    ]
    assert [(r.name, r.position) for r in views.queued(queued, 0.0)] == [("q1", 1), ("q2", 2)]
    task_body = {
        "metadata": {
            "name": "t",
            "namespace": "ns",
            "labels": {"plait.dev/held": "Concurrency"},
            "annotations": {"plait.dev/held-message": "waiting for a slot (1 of 1 used)"},
        },
        "spec": {"instance": "i", "step": "s"},
    }
    [row] = views.held([task_body, {**task_body, "status": {"phase": "Running"}}], 0.0)
    assert (row.step, row.reason, row.message) == ("s", "Concurrency", "waiting for a slot (1 of 1 used)")


def test_a_trace_link_needs_both_the_annotation_and_a_template() -> None:
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    instance = {"metadata": {"annotations": {"plait.dev/traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"}}}
    assert views.trace_link(instance, "http://jaeger/trace/{trace_id}") == f"http://jaeger/trace/{trace_id}"
    assert views.trace_link(instance, None) is None
    assert views.trace_link({"metadata": {}}, "http://jaeger/trace/{trace_id}") is None
