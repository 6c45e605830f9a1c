"""The pure parts of the CLI: the step tree, the instance view, plain progress lines, formats, inputs."""

from __future__ import annotations

import argparse
import io
from typing import Any

import pytest
from examples.etl import etl
from examples.orders import orders

from plait import Flow, task
from plait._kube import idempotency
from plait.cli.common import CommandError
from plait.cli.follow import PlainDisplay, truncate
from plait.cli.format import compact, duration, table, visible_len
from plait.cli.instances import build_instance, list_lines, status_lines
from plait.cli.steptree import last_errors, render_rows, step_rows, tree_prefix
from plait.cli.view import Style, instance_lines, progress_bar

T0 = "2026-11-22T10:00:00.000000Z"


def at(seconds: float) -> str:
    return f"2026-11-22T10:00:{seconds:09.6f}Z"


def summary(step: str, state: str, start: float, end: float | None = None, attempts: int = 1, runs: int = 1) -> Any:
    out: dict[str, Any] = {"id": step, "state": state, "attempts": attempts, "runs": runs, "startedAt": at(start)}
    if end is not None:
        out["finishedAt"] = at(end)
    return out


ORDERS = orders.definition.to_data()
NOW = 1795341630.0  # 2026-11-22T10:00:30Z


def states(rows: Any) -> dict[str, str]:
    return {row.label: row.state for row in rows}


def test_tree_of_the_order_flow_while_it_waits_for_approval() -> None:
    status = {
        "phase": "AwaitingSignal",
        "steps": [
            summary("validate", "succeeded", 0, 0.05),
            summary("price", "succeeded", 0.05, 0.1),
            summary("reserve_stock", "succeeded", 0.05, 1.55, attempts=2),
            summary("fraud_score", "succeeded", 0.05, 0.2),
            summary("decide", "succeeded", 1.5, 1.6),
            summary("request_approval", "succeeded", 1.6, 1.7),
            summary("approval", "waiting", 1.7, attempts=0, runs=0),
        ],
    }
    tasks = [
        {"spec": {"step": "reserve_stock", "attempt": 1}, "status": {"phase": "Failed", "error": "ConnectionError: x"}},
        {"spec": {"step": "reserve_stock", "attempt": 2}, "status": {"phase": "Succeeded"}},
    ]
    rows = step_rows(ORDERS, status, tasks)
    assert [(tree_prefix(r.guides), r.label) for r in rows] == [
        ("", "validate"),
        ("", "fork (3 branches)"),
        ("├─ ", "price"),
        ("├─ ", "reserve_stock"),
        ("├─ ", "fraud_score"),
        ("└─ ", "decide (join)"),
        ("", "request_approval"),
        ("", "approval (signal)"),
        ("", "route branch_0"),
        ("├─ ", "branch_0::key_fn (key)"),
        ("├─ ", "approved"),
        ("│  ├─ ", "charge"),
        ("│  └─ ", "confirm"),
        ("└─ ", "rejected"),
        ("   └─ ", "release_stock"),
        ("", "summarize"),
    ]
    assert states(rows)["fork (3 branches)"] == "succeeded"
    assert states(rows)["approval (signal)"] == "waiting"
    assert states(rows)["route branch_0"] == "pending" and states(rows)["charge"] == "pending"
    reserve = next(r for r in rows if r.label == "reserve_stock")
    assert reserve.attempts == 2 and reserve.note == "attempt 1 failed: ConnectionError: x"
    fork = rows[1]
    assert (fork.started, fork.finished) == (at(0.05), at(1.6))

    lines = render_rows(rows, NOW)
    assert lines[0].split() == ["STEP", "STATE", "ATTEMPTS", "DURATION", "NOTE"]
    assert lines[4].split()[:6] == ["├─", "reserve_stock", "✓", "succeeded", "2", "1.5s"]
    assert "attempt 1 failed: ConnectionError: x" in lines[4]


def test_a_taken_route_skips_the_other_branch_and_a_finished_instance_the_rest() -> None:
    steps = [summary(s, "succeeded", 0, 0.1) for s in ("validate", "price", "reserve_stock", "fraud_score")]
    steps += [summary(s, "succeeded", 1, 2) for s in ("decide", "request_approval", "approval")]
    steps += [summary("branch_0::key_fn", "succeeded", 2, 2.1), summary("release_stock", "running", 2.1)]
    rows = step_rows(ORDERS, {"phase": "Running", "steps": steps})
    assert states(rows)["approved"] == "skipped" and states(rows)["charge"] == "skipped"
    assert states(rows)["rejected"] == "running" and states(rows)["route branch_0"] == "running"
    assert states(rows)["summarize"] == "pending"

    failed = step_rows(ORDERS, {"phase": "Failed", "steps": [*steps[:4], summary("decide", "failed", 1, 2)]})
    assert states(failed)["decide (join)"] == "failed" and states(failed)["fork (3 branches)"] == "failed"
    assert states(failed)["summarize"] == "not run" and states(failed)["route branch_0"] == "not run"

    cancelled = step_rows(ORDERS, {"phase": "Cancelled", "steps": [summary("validate", "running", 0)]})
    assert states(cancelled)["validate"] == "cancelled"


def test_loops_delays_and_child_flows() -> None:
    status = {
        "phase": "Waiting",
        "steps": [
            summary("plan", "succeeded", 0, 0.1),
            summary("extract_page", "succeeded", 0.1, 0.5, attempts=4, runs=4),
            summary("settle", "waiting", 0.5, attempts=0),
        ],
    }
    rows = step_rows(etl.definition.to_data(), status)
    assert [r.label for r in rows] == [
        "plan",
        "loop loop_0 (max 100)",
        "extract_page",
        "settle (delay 2s)",
        "transform",
        "load",
    ]
    assert rows[1].note == "4 iterations" and rows[2].note == "4 runs"
    assert rows[3].state == "waiting"

    @task
    def one(x: int) -> int:
        return x

    @task
    def two(x: int) -> int:
        return x

    inner = Flow("inner").then(two).build()
    outer = Flow("outer").then(one).then_flow(inner).build()
    rows = step_rows(outer.definition.to_data(), {"phase": "Running", "steps": [summary("one", "succeeded", 0, 1)]})
    assert [(tree_prefix(r.guides), r.label) for r in rows][:2] == [("", "one"), ("", "flow inner")]
    assert rows[2].kind == "task" and tree_prefix(rows[2].guides) == "└─ "


def test_definition_view_shows_policies() -> None:
    lines = render_rows(step_rows(ORDERS), NOW, states=False)
    text = "\n".join(lines)
    assert lines[0].split() == ["STEP", "KIND", "OPTIONS"]
    assert "retries 3 (500ms x2, max 5s)" in text and "retries 4 (1s x2, max 10s), timeout 30s" in text
    assert "timeout 24h then fail" in text


def test_without_a_definition_the_summary_is_a_flat_list() -> None:
    rows = step_rows(None, {"phase": "Running", "steps": [summary("a", "succeeded", 0, 1), summary("b", "running", 1)]})
    assert [(r.label, r.state, r.guides) for r in rows] == [("a", "succeeded", ()), ("b", "running", ())]


def test_last_errors_keeps_the_latest_failed_attempt() -> None:
    tasks = [
        {"spec": {"step": "s", "attempt": 2}, "status": {"phase": "TimedOut", "error": "too slow"}},
        {"spec": {"step": "s", "attempt": 1}, "status": {"phase": "Failed", "error": "bad\n  input"}},
        {"spec": {"step": "t", "attempt": 1}, "status": {"phase": "Lost"}},
    ]
    assert last_errors(tasks) == {"s": "attempt 2 timed out: too slow", "t": "attempt 1 lost its worker"}


def instance(phase: str, **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "o-1", "namespace": "shop", "creationTimestamp": "2026-11-22T10:00:00Z"},
        "spec": {"workflow": "order-processing"},
        "status": {"phase": phase, "startedAt": T0, **status},
    }


def test_instance_view_header_and_footer() -> None:
    waiting = instance("AwaitingSignal", message="waiting for signal approval", progress="6/12", steps=[
        summary("approval", "waiting", 1, attempts=0)
    ])  # fmt: skip
    lines = instance_lines(waiting, {"spec": ORDERS}, [], NOW)
    assert lines[0] == "o-1   workflow order-processing   namespace shop"
    assert lines[1] == "AwaitingSignal   waiting for signal approval"
    assert lines[2] == "[██████████░░░░░░░░░░]   6/12 steps   started 30s ago   running for 30s"
    assert lines[-1] == "send it: plait signal o-1 approval '{...}'"

    done = instance("Succeeded", finishedAt=at(2.5), output={"ok": True}, progress="12/12")
    lines = instance_lines(done, {"spec": ORDERS}, [], NOW, Style(fancy=False))
    assert lines[2].startswith("[####################]") and lines[2].endswith("took 2.5s")
    assert lines[-1] == 'result: {"ok": true}   (all of it: plait result o-1)'

    failed = instance("Failed", error="TaskError: boom")
    assert instance_lines(failed, None, [], NOW)[-1] == "error: TaskError: boom"
    pending = instance_lines({**instance("Pending"), "status": {}}, None, [], NOW)
    assert "no worker has published workflow 'order-processing'" in pending[-1]


def test_plain_display_prints_one_line_per_change() -> None:
    out = io.StringIO()
    display = PlainDisplay(out)
    first = instance("Running", steps=[summary("validate", "running", 0)])
    display.show(first, {"spec": ORDERS}, [], NOW)
    display.show(first, {"spec": ORDERS}, [], NOW)  # nothing new: nothing printed
    second = instance(
        "Running", steps=[summary("validate", "succeeded", 0, 0.05), summary("price", "retrying", 0.05, attempts=2)]
    )
    display.show(second, {"spec": ORDERS}, [], NOW)
    failed_attempt = [{"spec": {"step": "price", "attempt": 1}, "status": {"phase": "Failed", "error": "E: x"}}]
    third = instance(
        "Running", steps=[summary("validate", "succeeded", 0, 0.05), summary("price", "running", 0.05, attempts=2)]
    )
    display.show(third, {"spec": ORDERS}, failed_attempt, NOW)
    fourth = instance(
        "Running", steps=[summary("validate", "succeeded", 0, 0.05), summary("price", "succeeded", 0.05, 1, attempts=2)]
    )
    display.show(fourth, {"spec": ORDERS}, failed_attempt, NOW)
    lines = [line.split(" ", 1)[1] for line in out.getvalue().splitlines()]
    assert lines == [
        "o-1: workflow order-processing, namespace shop",
        "  validate: running",
        "o-1: Running",
        "  validate: succeeded, in 50ms",
        "  price: retrying, attempt 2",
        "  price: running, attempt 2 (attempt 1 failed: E: x)",  # why it is on attempt 2, said once
        "  price: succeeded, attempt 2, in 950ms",
    ]


def test_status_and_list_lines() -> None:
    body = instance("Paused", message="paused: lunch", progress="3/5", currentStep="b")
    body["metadata"]["annotations"] = {"plait.dev/pause": "lunch", "other": "x"}
    text = "\n".join(status_lines(body, NOW))
    assert "Phase:        Paused" in text and "Annotation:   plait.dev/pause=lunch" in text and "other" not in text
    lines = list_lines([body], NOW, all_namespaces=True)
    assert lines[0].split() == ["NAMESPACE", "NAME", "WORKFLOW", "PHASE", "STEP", "PROGRESS", "DURATION", "AGE"]
    assert lines[1].split() == ["shop", "o-1", "order-processing", "Paused", "b", "3/5", "30s", "30s"]


def args(**values: Any) -> argparse.Namespace:
    defaults = {"filename": None, "workflow": None, "input": None, "name": None, "generate_name": False}
    return argparse.Namespace(
        **{**defaults, "ttl": None, "definition_hash": None, "idempotency_key": None, "traceparent": None, **values}
    )


def test_build_instance_names() -> None:
    plain = build_instance(args(workflow="nightly-etl", input='{"pages": 2}'))
    assert plain["metadata"] == {"generateName": "nightly-etl-"} and plain["spec"]["input"] == {"pages": 2}
    named = build_instance(args(workflow="nightly-etl", name="tonight", ttl=60))
    assert named["metadata"] == {"name": "tonight"} and named["spec"] == {
        "workflow": "nightly-etl",
        "ttlSecondsAfterFinished": 60,
    }
    manifest = "examples/order-instance.yaml"
    assert build_instance(args(filename=manifest))["metadata"] == {"name": "order-a-1001"}
    assert build_instance(args(filename=manifest, generate_name=True))["metadata"] == {"generateName": "order-a-1001-"}
    assert build_instance(args(filename=manifest, name="o2"))["metadata"] == {"name": "o2"}
    with pytest.raises(CommandError, match="not both"):
        build_instance(args(filename=manifest, workflow="x"))


def test_build_instance_with_an_idempotency_key_labels_it_for_lookup() -> None:
    keyed = build_instance(args(workflow="payments", idempotency_key="invoice-42"))
    assert keyed["spec"]["idempotencyKey"] == "invoice-42"
    assert keyed["metadata"]["labels"] == {"plait.dev/idempotency-key": idempotency.digest("invoice-42")}


def test_build_instance_with_a_traceparent_annotates_it_and_refuses_a_malformed_one() -> None:
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    traced = build_instance(args(workflow="payments", traceparent=traceparent))
    assert traced["metadata"]["annotations"] == {"plait.dev/traceparent": traceparent}
    with pytest.raises(CommandError, match="not a W3C traceparent"):
        build_instance(args(workflow="payments", traceparent="00-xyz-01"))


def test_status_lines_say_where_a_queued_instance_waits_and_what_a_duplicate_points_at() -> None:
    queued = instance("Queued", concurrency={"key": "acme", "maxRuns": 2, "position": 3})
    assert "Concurrency:  key 'acme', at most 2 at once, position 3" in status_lines(queued, NOW)
    duplicate = instance("Cancelled", duplicateOf="pay-1")
    duplicate["spec"]["idempotencyKey"] = "invoice-42"
    assert "Duplicate of: pay-1 (idempotency key 'invoice-42')" in status_lines(duplicate, NOW)


def test_formats() -> None:
    assert [duration(s) for s in (None, 0.053, 1.25, 42, 123, 7322, 200000)] == [
        "-", "53ms", "1.2s", "42s", "2m03s", "2h02m", "2d07h"
    ]  # fmt: skip
    assert [compact(s) for s in (86400, 5400, 10, 0.5, 2.5, 172800)] == ["24h", "90m", "10s", "500ms", "2.5s", "2d"]
    assert progress_bar("1/4", width=8) == "[██░░░░░░]" and progress_bar(None) == ""
    coloured = "\x1b[32m✓ ok\x1b[0m"
    assert visible_len(coloured) == 4
    assert table(["A", "B"], [[coloured, "x"]]) == ["A      B", f"{coloured}   x"]
    assert truncate("abcdef", 4) == "abc…\x1b[0m" and truncate("abc", 4) == "abc"


def test_definitions_diff_lists_the_changes_and_which_steps_could_move() -> None:
    from plait.cli.definitions import diff_lines

    @task
    def one(x: int) -> int:
        return x

    @task
    def two(x: int) -> int:
        return x

    @task
    def three(x: int) -> int:
        return x

    a = Flow("w").then(one).then(two).build().definition
    b = Flow("w").then(one).then(three).build().definition
    lines = diff_lines(a, b)
    assert lines[:4] == [
        f"workflow 'w': {a.hash[:12]} -> {b.hash[:12]}",
        "added:    three",
        "removed:  two",
        "changed:  -",
    ]
    assert lines[5].split() == ["AT", "STEP", "CAN", "MOVE", "WHY"]
    assert lines[6].split() == ["one", "yes"]
    assert lines[7].split()[:2] == ["two", "no"] and "'two', where the instance is, is not in the target" in lines[7]
