"""Upgrade in place on the real control plane: a running instance moved to another version of its
workflow at a step boundary, or refused with a condition naming the step; marks files count each
step's runs (no step runs twice, none is lost).

``staged`` version 1 is inc, a wait for the signal ``go``, double (served by a worker running
``tests.k8s.upgrade_v1``); version 2 adds square at the end (``tests.k8s.upgrade_v2``); version 3,
published by the test only, has no wait.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from plait import Flow
from plait._kube.client import Kube
from plait._kube.models import API_VERSION, DEFINITIONS, INSTANCES, PAUSE_ANNOTATION, UPGRADE_ANNOTATION
from plait.cli import main
from tests.k8s.flows import double, inc, square
from tests.k8s.support import PlaitProcess, marks, send_signal, submit, wait_for, wait_phase
from tests.k8s.test_lifecycle import events_for
from tests.k8s.test_recovery import annotate, annotations
from tests.k8s.upgrade_v1 import staged as v1
from tests.k8s.upgrade_v2 import staged as v2

Worker = Callable[..., PlaitProcess]
V3 = Flow("staged").then(inc).then(double).then(square).build()


def published(kube: Kube, namespace: str) -> set[str]:
    return {d["spec"]["hash"] for d in kube.list(DEFINITIONS, namespace)["items"]}


def serve(kube: Kube, namespace: str, start_worker: Worker, *modules: str) -> None:
    """A worker per module, started in order, each once the one before published (so the last is latest)."""
    for module in modules:
        before = published(kube, namespace)
        start_worker(namespace, module=module)
        wait_for(lambda before=before: published(kube, namespace) > before, timeout=60, what=f"{module} to publish")
        time.sleep(1.1)  # creationTimestamp has seconds: the next version is newer


def publish(kube: Kube, namespace: str, definition: Any) -> None:
    body = {
        "apiVersion": API_VERSION,
        "kind": "WorkflowDefinition",
        "metadata": {"name": f"staged-{definition.hash[:12]}"},
    }
    kube.create(DEFINITIONS, {**body, "spec": definition.to_data()}, namespace)


def runs(directory: Path, instance: str) -> Counter[str]:
    return Counter(line.split()[0] for line in marks(directory, instance))


def upgraded(body: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in body["status"]["conditions"] if c["type"] == "Upgraded")


def step_state(kube: Kube, namespace: str, name: str, step: str) -> str | None:
    steps = kube.get(INSTANCES, name, namespace)["status"].get("steps") or []
    return next((s.get("state") for s in steps if s.get("id") == step), None)


def waiting(kube: Kube, namespace: str, name: str, **spec: Any) -> None:
    submit(kube, namespace, name, "staged", 1, **spec)
    wait_phase(kube, namespace, name, "AwaitingSignal")


def test_upgrades_that_map_run_the_added_step_and_no_step_twice(
    kube: Kube, e2e: str, start_worker: Worker, marks_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    serve(kube, e2e, start_worker, "tests.k8s.upgrade_v1", "tests.k8s.upgrade_v2")
    for name in ("m", "l1", "l2"):
        waiting(kube, e2e, name, definitionHash=v1.definition_hash)
    kube.patch(INSTANCES, "l1", {"metadata": {"labels": {"batch": "b"}}}, e2e)
    kube.patch(INSTANCES, "l2", {"metadata": {"labels": {"batch": "b"}}}, e2e)

    # waiting on a signal: moved to the latest version, then the signal comes
    assert main(["upgrade", "m", "--to", "latest", "--wait", "-n", e2e]) == 0
    assert "m Upgraded: moved from version" in capsys.readouterr().out
    body = kube.get(INSTANCES, "m", e2e)
    assert body["status"]["definitionHash"] == v2.definition_hash
    assert (upgraded(body)["status"], upgraded(body)["reason"]) == ("True", "Upgraded")
    assert UPGRADE_ANNOTATION not in annotations(kube, e2e, "m")
    assert "Upgraded" in [e["reason"] for e in events_for(kube, e2e, "m")]

    # many by label, to a prefix of the hash
    assert main(["upgrade", "-l", "batch=b", "--to", v2.definition_hash[:10], "--wait", "-n", e2e]) == 0
    assert capsys.readouterr().out.count("Upgraded: moved from version") == 2

    # paused at double (held back by the pause once the signal came), upgraded, then resumed
    waiting(kube, e2e, "p", definitionHash=v1.definition_hash)
    annotate(kube, e2e, "p", PAUSE_ANNOTATION, "maintenance")
    wait_phase(kube, e2e, "p", "Paused")
    send_signal(kube, e2e, "p", "go", 5)
    wait_for(lambda: step_state(kube, e2e, "p", "go") == "succeeded", what="the signal to be taken")
    assert runs(marks_dir, "p")["double"] == 0
    annotate(kube, e2e, "p", UPGRADE_ANNOTATION, v2.definition_hash)
    wait_for(lambda: UPGRADE_ANNOTATION not in annotations(kube, e2e, "p"), what="the upgrade to be taken")
    paused = kube.get(INSTANCES, "p", e2e)
    assert paused["status"]["phase"] == "Paused" and paused["status"]["definitionHash"] == v2.definition_hash
    annotate(kube, e2e, "p", PAUSE_ANNOTATION, None)

    for name in ("m", "l1", "l2"):
        send_signal(kube, e2e, name, "go", 5)
    for name in ("m", "l1", "l2", "p"):
        done = wait_phase(kube, e2e, name, "Succeeded", "Failed")
        assert done["status"]["output"] == 100, (name, done["status"])  # square(double(5)): version 2's last step ran
        assert runs(marks_dir, name) == {"inc": 1, "double": 1, "square": 1}, name

    assert main(["upgrade", "m", "--to", "latest", "-n", e2e]) == 1  # finished: nothing to move
    assert "is Succeeded: only a running, paused or waiting instance" in capsys.readouterr().err


def test_a_refused_upgrade_names_the_step_and_the_instance_runs_on_unchanged(
    kube: Kube, e2e: str, start_worker: Worker, marks_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    serve(kube, e2e, start_worker, "tests.k8s.upgrade_v1")
    publish(kube, e2e, v2.definition)
    time.sleep(1.1)
    publish(kube, e2e, V3.definition)  # the latest
    waiting(kube, e2e, "r", definitionHash=v1.definition_hash)
    before = kube.get(INSTANCES, "r", e2e)["status"]["checkpoint"]

    capsys.readouterr()
    assert main(["upgrade", "r", "--to", V3.definition.hash[:12], "--wait", "-n", e2e]) == 1
    assert "'go', where the instance is, is not in the target" in capsys.readouterr().err
    body = kube.get(INSTANCES, "r", e2e)
    condition = upgraded(body)
    assert (condition["status"], condition["reason"]) == ("False", "UpgradeRefused")
    assert (
        "step 'go'" in condition["message"] and f"runs on, on version {v1.definition_hash[:12]}" in condition["message"]
    )
    assert body["status"]["definitionHash"] == v1.definition_hash and body["status"]["checkpoint"] == before
    assert any(e["reason"] == "UpgradeRefused" and e["type"] == "Warning" for e in events_for(kube, e2e, "r"))

    annotate(kube, e2e, "r", UPGRADE_ANNOTATION, "ffff")  # no such version: refused too, the request removed
    wait_for(lambda: UPGRADE_ANNOTATION not in annotations(kube, e2e, "r"), what="the request to be removed")
    assert "has no published version 'ffff'" in upgraded(kube.get(INSTANCES, "r", e2e))["message"]

    send_signal(kube, e2e, "r", "go", 5)
    done = wait_phase(kube, e2e, "r", "Succeeded", "Failed")
    assert done["status"]["output"] == 10  # version 1: double(5), and no square
    assert runs(marks_dir, "r") == {"inc": 1, "double": 1}

    # what plait definitions diff says about the same versions
    assert main(["definitions", "diff", "staged", v1.definition_hash[:8], v2.definition_hash[:8], "-n", e2e]) == 0
    out = capsys.readouterr().out
    assert "added:    square" in out and "removed:  -" in out
    rows = {line.split()[0]: line.split()[1] for line in out.splitlines()[6:]}
    assert rows == {"inc": "yes", "go": "yes", "double": "yes"}
    assert main(["definitions", "diff", "staged", v1.definition_hash, "latest", "-n", e2e]) == 0
    out = capsys.readouterr().out
    assert "removed:  go" in out
    assert any(
        line.split()[:2] == ["go", "no"] and "'go', where the instance is, is not in the target" in line
        for line in out.splitlines()
    )
    assert main(["definitions", "diff", "staged", "nope", "latest", "-n", e2e]) == 1


def test_an_upgrade_that_moves_a_running_step_waits_for_the_next_step_boundary(
    kube: Kube, e2e: str, start_worker: Worker, marks_dir: Path
) -> None:
    from tests.k8s.flows import slow as slow_v1
    from tests.k8s.upgrade_slow_v2 import slow as slow_v2

    serve(kube, e2e, start_worker, "tests.k8s.flows", "tests.k8s.upgrade_slow_v2")
    submit(kube, e2e, "s", "slow", 3, definitionHash=slow_v1.definition_hash)
    wait_for(lambda: runs(marks_dir, "s")["nap-start"] == 1, what="the nap to start")
    annotate(kube, e2e, "s", UPGRADE_ANNOTATION, slow_v2.definition_hash)  # nap would move from 0 to 1

    def condition() -> dict[str, Any]:
        return next(
            (c for c in kube.get(INSTANCES, "s", e2e)["status"].get("conditions") or [] if c["type"] == "Upgraded"), {}
        )

    wait_for(lambda: condition().get("reason") == "UpgradePending", what="the upgrade to wait")
    assert "running step(s) nap (at 0, 1 in the new version) must finish first" in condition()["message"]
    assert UPGRADE_ANNOTATION in annotations(kube, e2e, "s")
    done = wait_phase(kube, e2e, "s", "Succeeded", "Failed")
    assert done["status"]["output"] == "rested 3"
    assert done["status"]["definitionHash"] == slow_v2.definition_hash  # moved once nap finished
    assert condition()["reason"] == "Upgraded" and "these steps do not run for it: echo" in condition()["message"]
    assert runs(marks_dir, "s") == {"nap-start": 1, "nap-end": 1, "after-nap": 1}
    assert UPGRADE_ANNOTATION not in annotations(kube, e2e, "s")
