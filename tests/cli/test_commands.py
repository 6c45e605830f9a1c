"""Every CLI command against the real control plane, with a real operator and worker."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from plait._kube.client import Kube
from plait._kube.models import CANCEL_ANNOTATION, INSTANCES, PAUSE_ANNOTATION, WorkflowSignal
from tests.cli.conftest import Result
from tests.k8s.support import REPO, wait_phase

pytestmark = pytest.mark.cluster

Plait = Callable[..., Result]


def annotations(kube: Kube, namespace: str, name: str) -> dict[str, Any]:
    return kube.get(INSTANCES, name, namespace)["metadata"].get("annotations") or {}


def test_submit_wait_get_status_result_list(plait: Plait, serve: Callable[..., Any], cli_ns: str) -> None:
    serve(cli_ns)

    submitted = plait("submit", "greeting", '{"name": "ada"}', "--name", "hi", "--wait", "-n", cli_ns)
    assert submitted.code == 0, submitted.err
    assert json.loads(submitted.out) == "HELLO ADA!"
    assert "workflowinstance.plait.dev/hi created" in submitted.err

    got = plait("get", "hi", "-n", cli_ns)
    assert got.code == 0
    lines = got.out.splitlines()
    assert lines[0].split()[:3] == ["hi", "workflow", "greeting"]
    assert lines[1] == "Succeeded"
    assert "2/2 steps" in lines[2]
    assert any(line.startswith("greet ") and "✓ succeeded" in line for line in lines)
    assert any(line.startswith("shout ") and "✓ succeeded" in line for line in lines)
    assert 'result: "HELLO ADA!"' in got.out

    as_json = json.loads(plait("get", "hi", "-n", cli_ns, "-o", "json").out)
    assert as_json["status"]["phase"] == "Succeeded" and "checkpoint" not in as_json["status"]
    assert yaml.safe_load(plait("get", "hi", "-n", cli_ns, "-o", "yaml").out)["metadata"]["name"] == "hi"

    status = plait("status", "hi", "-n", cli_ns)
    assert status.code == 0
    assert "Phase:        Succeeded" in status.out and "Progress:     2/2" in status.out
    assert "Condition:    Completed=True (Succeeded)" in status.out
    assert json.loads(plait("status", "hi", "-n", cli_ns, "-o", "json").out)["output"] == "HELLO ADA!"

    result = plait("result", "hi", "-n", cli_ns)
    assert (result.code, json.loads(result.out)) == (0, "HELLO ADA!")
    assert yaml.safe_load(plait("result", "hi", "-n", cli_ns, "-o", "yaml").out) == "HELLO ADA!"

    generated = plait("submit", "greeting", '{"name": "bob"}', "-n", cli_ns)
    assert generated.code == 0
    other = generated.out.split()[0].split("/")[1]
    assert other.startswith("greeting-") and other != "hi"
    wait_phase_cli(plait, cli_ns, other)

    listing = plait("list", "-n", cli_ns)
    assert listing.code == 0
    header, *rows = listing.out.splitlines()
    assert header.split() == ["NAME", "WORKFLOW", "PHASE", "STEP", "PROGRESS", "DURATION", "AGE"]
    assert sorted(row.split()[:3] for row in rows) == sorted(
        [["hi", "greeting", "Succeeded"], [other, "greeting", "Succeeded"]]
    )
    assert plait("list", "-n", cli_ns, "--phase", "failed").err.startswith("no WorkflowInstances matching")
    assert sorted(plait("list", "-n", cli_ns, "--workflow", "greeting", "-o", "name").out.split()) == sorted(
        ["workflowinstance.plait.dev/hi", f"workflowinstance.plait.dev/{other}"]
    )
    everywhere = plait("list", "-A", "--workflow", "greeting")
    assert everywhere.out.splitlines()[0].split()[0] == "NAMESPACE"
    assert any(line.split()[:2] == [cli_ns, "hi"] for line in everywhere.out.splitlines())
    assert len(json.loads(plait("list", "-n", cli_ns, "-o", "json").out)["items"]) == 2


def wait_phase_cli(plait: Plait, namespace: str, name: str) -> None:
    waited = plait("result", name, "--wait", "--timeout", "60", "-n", namespace)
    assert waited.code == 0, waited.err


def test_order_example_signal_and_watch(plait: Plait, serve: Callable[..., Any], cli_ns: str, kube: Kube) -> None:
    serve(cli_ns)
    manifest = str(REPO / "examples" / "order-instance.yaml")
    assert plait("submit", "-f", manifest, "-n", cli_ns).code == 0

    waiting = plait("get", "order-a-1001", "--watch", "--until", "AwaitingSignal", "--timeout", "60", "-n", cli_ns)
    assert waiting.code == 0, waiting.err
    assert "approval (signal): waiting" in waiting.out
    assert "order-a-1001: AwaitingSignal (waiting for signal approval), progress 6/12" in waiting.out
    for step in ("validate", "price", "reserve_stock", "fraud_score", "decide (join)", "request_approval"):
        assert f"  {step}: succeeded" in waiting.out

    tree = plait("get", "order-a-1001", "-n", cli_ns).out
    assert "send it: plait signal order-a-1001 approval '{...}'" in tree
    assert "├─ reserve_stock" in tree and "└─ decide (join)" in tree and "│  ├─ charge" in tree

    again = plait("submit", "-f", manifest, "-n", cli_ns)
    assert again.code == 1
    assert "WorkflowInstance 'order-a-1001' already exists" in again.err and "--generate-name" in again.err
    second = plait("submit", "-f", manifest, "--generate-name", "-n", cli_ns)
    assert second.code == 0 and second.out.startswith("workflowinstance.plait.dev/order-a-1001-")

    typo = plait("signal", "order-a-1001", "aproval", "{}", "-n", cli_ns)
    assert typo.code == 1 and "never waits for a signal named 'aproval' (it waits for: approval)" in typo.err

    sent = plait("signal", "order-a-1001", "approval", '{"approved": true, "by": "bob"}', "-n", cli_ns)
    assert sent.code == 0, sent.err
    assert sent.out.startswith("workflowsignal.plait.dev/order-a-1001-approval-")
    signals = kube.list(WorkflowSignal.RESOURCE, cli_ns)["items"]
    assert [s["spec"] for s in signals] == [
        {"instance": "order-a-1001", "name": "approval", "payload": {"approved": True, "by": "bob"}}
    ]

    finished = plait("get", "order-a-1001", "-w", "--timeout", "60", "-n", cli_ns)
    assert finished.code == 0, finished.err
    assert "  summarize: succeeded" in finished.out
    assert finished.out.rstrip().endswith("order-a-1001: Succeeded, progress 12/12")

    result = plait("result", "order-a-1001", "-n", cli_ns)
    assert json.loads(result.out) == "order confirmed, approved by bob"
    tree = plait("get", "order-a-1001", "-n", cli_ns).out
    assert [line.split()[:3] for line in tree.splitlines() if "release_stock" in line or "rejected" in line] == [
        ["└─", "rejected", "-"],
        ["└─", "release_stock", "-"],
    ]
    assert "- skipped" in tree

    logs = plait("logs", "order-a-1001", "-n", cli_ns)
    assert logs.code == 0
    reasons = [line.split()[2] for line in logs.out.splitlines()[1:]]
    assert reasons[0] == "Started" and reasons[-1] == "Succeeded"
    assert [e["reason"] for e in json.loads(plait("logs", "order-a-1001", "-n", cli_ns, "-o", "json").out)["items"]][
        -1
    ] == "Succeeded"
    followed = plait("logs", "order-a-1001", "-f", "-n", cli_ns)  # finished: prints and returns
    assert followed.code == 0 and "Succeeded" in followed.out


def test_failed_instance(plait: Plait, serve: Callable[..., Any], cli_ns: str) -> None:
    serve(cli_ns)
    submitted = plait("submit", "failing", '"boom"', "--name", "bad", "--wait", "--timeout", "60", "-n", cli_ns)
    assert submitted.code == 1
    assert submitted.out == ""
    assert "error: bad failed:" in submitted.err and "no luck on attempt 2" in submitted.err

    result = plait("result", "bad", "-n", cli_ns)
    assert result.code == 1 and "no luck on attempt 2" in result.err

    tree = plait("get", "bad", "-n", cli_ns).out
    doomed = next(line for line in tree.splitlines() if line.startswith("doomed"))
    assert "✗ failed" in doomed and " 2 " in doomed and "attempt 2 failed: ValueError: no luck on attempt 2" in doomed
    assert tree.splitlines()[1] == "Failed" or tree.splitlines()[1].startswith("Failed ")
    assert "error: " in tree.splitlines()[-1]

    watched = plait("get", "bad", "--watch", "-n", cli_ns)
    assert watched.code == 1 and "bad: Failed" in watched.out
    assert "Warning" in plait("logs", "bad", "-n", cli_ns).out


def test_pause_resume_cancel(plait: Plait, serve: Callable[..., Any], cli_ns: str, kube: Kube) -> None:
    serve(cli_ns)
    assert plait("submit", "gate", '"x"', "--name", "g", "-n", cli_ns).code == 0
    wait_phase(kube, cli_ns, "g", "AwaitingSignal")

    not_yet = plait("result", "g", "-n", cli_ns)
    assert not_yet.code == 3
    assert "g has not finished: it is AwaitingSignal" in not_yet.err and "plait result g --wait" in not_yet.err

    paused = plait("pause", "g", "--reason", "lunch break", "--wait", "-n", cli_ns)
    assert paused.code == 0, paused.err
    assert annotations(kube, cli_ns, "g")[PAUSE_ANNOTATION] == "lunch break"
    assert paused.out.splitlines()[-1] == "g is Paused"
    status = plait("status", "g", "-n", cli_ns).out
    assert "Phase:        Paused" in status and "Annotation:   plait.dev/pause=lunch break" in status
    assert "resume it: plait resume g" in plait("get", "g", "-n", cli_ns).out

    assert plait("resume", "g", "-n", cli_ns).code == 0
    assert PAUSE_ANNOTATION not in annotations(kube, cli_ns, "g")
    wait_phase(kube, cli_ns, "g", "AwaitingSignal")
    assert "nothing to resume" in plait("resume", "g", "-n", cli_ns).err

    cancelled = plait("cancel", "g", "--reason", "changed my mind", "--wait", "-n", cli_ns)
    assert cancelled.code == 0, cancelled.err
    assert annotations(kube, cli_ns, "g")[CANCEL_ANNOTATION] == "changed my mind"
    result = plait("result", "g", "-n", cli_ns)
    assert result.code == 1 and "changed my mind" in result.err
    again = plait("cancel", "g", "-n", cli_ns)
    assert again.code == 0 and "already finished (Cancelled): nothing to cancel" in again.err
    late = plait("signal", "g", "go", "-n", cli_ns)
    assert late.code == 1 and "already finished (Cancelled)" in late.err
    reasons = [line.split()[2] for line in plait("logs", "g", "-n", cli_ns).out.splitlines()[1:]]
    assert reasons == ["Started", "Paused", "Resumed", "Cancelled"]


def test_signal_before_the_wait_is_buffered(plait: Plait, serve: Callable[..., Any], cli_ns: str) -> None:
    assert plait("submit", "gate", '"early"', "--name", "e", "-n", cli_ns).code == 0  # no worker yet: Pending
    sent = plait("signal", "e", "go", '{"n": 1}', "--signal-name", "e-go-1", "-n", cli_ns)
    assert sent.code == 0 and "e-go-1" in sent.out
    twice = plait("signal", "e", "go", "--signal-name", "e-go-1", "-n", cli_ns)
    assert twice.code == 1 and "already exists" in twice.err
    serve(cli_ns)
    waited = plait("result", "e", "--wait", "--timeout", "60", "-n", cli_ns)
    assert (waited.code, json.loads(waited.out)) == (0, {"got": {"n": 1}})


def test_definitions(plait: Plait, serve: Callable[..., Any], cli_ns: str) -> None:
    empty = plait("definitions", "-n", cli_ns)
    assert empty.code == 1 and "no published workflows" in empty.err
    serve(cli_ns)
    listing = plait("definitions", "-n", cli_ns)
    assert listing.code == 0
    rows = {line.split()[0]: line.split() for line in listing.out.splitlines()[1:]}
    assert set(rows) >= {"greeting", "failing", "gate", "order-processing", "nightly-etl"}
    assert rows["greeting"][2:4] == ["default", "2"] and rows["greeting"][-1] == "yes"

    one = plait("definitions", "order-processing", "-n", cli_ns)
    assert "reserve_stock" in one.out and "retries 3 (500ms x2, max 5s)" in one.out
    assert "approval (signal)" in one.out and "timeout 24h then fail" in one.out
    version = one.out.splitlines()[1].split()[1]
    assert plait("definitions", "order-processing", "--version", version[:6], "-n", cli_ns).code == 0
    objects = json.loads(plait("definitions", "greeting", "-n", cli_ns, "-o", "json").out)["items"]
    assert [o["spec"]["workflow"] for o in objects] == ["greeting"]
    assert plait("definitions", "nope", "-n", cli_ns).code == 1


def test_submit_validates_the_input_against_the_published_schema(
    plait: Plait, serve: Callable[..., Any], cli_ns: str, kube: Kube
) -> None:
    serve(cli_ns)
    bad = plait("submit", "greeting", '{"nom": "ada"}', "-n", cli_ns)
    assert bad.code == 1
    assert "does not match the input schema of workflow 'greeting' at (root): 'name' is a required property" in bad.err
    assert kube.list(INSTANCES, cli_ns)["items"] == []

    unknown = plait("submit", "no-such-flow", "-n", cli_ns, "--name", "orphan")
    assert unknown.code == 0
    assert "warning: no worker has published workflow 'no-such-flow'" in unknown.err
    assert "greeting" in unknown.err  # it lists what is published


def test_submit_with_an_idempotency_key_runs_once(
    plait: Plait, serve: Callable[..., Any], cli_ns: str, kube: Kube
) -> None:
    serve(cli_ns)
    first = plait("submit", "greeting", '{"name": "ada"}', "--idempotency-key", "signup-ada", "-n", cli_ns)
    assert first.code == 0, first.err
    name = first.out.split()[0].split("/")[1]
    again = plait("submit", "greeting", '{"name": "ada"}', "--idempotency-key", "signup-ada", "-n", cli_ns)
    assert again.code == 0, again.err
    assert again.out.startswith(
        f"workflowinstance.plait.dev/{name} unchanged: submitted with idempotency key 'signup-ada' before"
    )
    assert [item["metadata"]["name"] for item in kube.list(INSTANCES, cli_ns)["items"]] == [name]
    wait_phase(kube, cli_ns, name, "Succeeded")
    status = plait("status", name, "-n", cli_ns)
    assert "Phase:" in status.out and "Succeeded" in status.out
