"""Version retention on the real control plane: a WorkflowDefinition version that no instance uses
and no live worker serves is deleted after the retention period; the ones in use stay, and so does
the newest version of each workflow; ``plait definitions`` shows the instances on each version."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from plait import Flow
from plait._kube.client import Kube
from plait._kube.models import API_VERSION, DEFINITIONS, INSTANCES, UNUSED_SINCE_ANNOTATION
from plait.cli import main
from tests.k8s.flows import double, inc, square
from tests.k8s.flows import sequence as served
from tests.k8s.support import PlaitProcess, submit, wait_for, wait_phase

RETENTION = 3.0


def publish(kube: Kube, namespace: str, flow: Flow) -> str:
    """A version of the ``sequence`` workflow that no worker serves, published as a worker would."""
    definition = flow.build().definition
    name = f"sequence-{definition.hash[:12]}"
    body = {"apiVersion": API_VERSION, "kind": "WorkflowDefinition", "metadata": {"name": name}}
    kube.create(DEFINITIONS, {**body, "spec": definition.to_data()}, namespace)
    time.sleep(1.1)  # creationTimestamp has seconds: the next one is newer
    return name


def names(kube: Kube, namespace: str) -> set[str]:
    return {d["metadata"]["name"] for d in kube.list(DEFINITIONS, namespace)["items"]}


def test_only_versions_nobody_uses_or_serves_are_deleted_after_the_retention(
    kube: Kube,
    own: str,
    start_operator: Callable[..., PlaitProcess],
    start_worker: Callable[..., PlaitProcess],
    capsys: pytest.CaptureFixture[str],
) -> None:
    worker = start_worker(own)
    serving = f"sequence-{served.definition_hash[:12]}"
    wait_for(lambda: serving in names(kube, own), what="the worker's definitions")
    time.sleep(1.1)
    unused = publish(kube, own, Flow("sequence").then(inc).then(square))
    pinned = publish(kube, own, Flow("sequence").then(double).then(square))
    newest = publish(kube, own, Flow("sequence").then(square))
    pinned_hash = kube.get(DEFINITIONS, pinned, own)["spec"]["hash"]
    submit(kube, own, "on-old", "sequence", 1, definitionHash=pinned_hash)  # no worker runs that version
    start_operator("--namespace", own, "--definition-retention", str(RETENTION))
    wait_phase(kube, own, "on-old", "Running", timeout=30)

    def marked(name: str) -> bool:
        annotations = kube.get(DEFINITIONS, name, own)["metadata"].get("annotations") or {}
        return UNUSED_SINCE_ANNOTATION in annotations

    wait_for(lambda: marked(unused), timeout=30, what="the unused version to be marked")
    wait_for(lambda: unused not in names(kube, own), timeout=30, what="the unused version to be deleted")
    time.sleep(2 * RETENTION)  # sweeps enough to delete anything else they would
    assert {serving, pinned, newest} <= names(kube, own)
    assert not any(marked(name) for name in (serving, pinned, newest))

    # plait definitions counts the instances on each version
    assert main(["definitions", "sequence", "-n", own]) == 0
    rows = {line.split()[1]: line.split() for line in capsys.readouterr().out.splitlines() if "sequence" in line}
    assert rows[pinned_hash[:12]][4] == "1"
    assert rows[served.definition_hash[:12]][4] == "0"

    # the worker goes away, and the instance: their versions follow; the newest stays
    worker.terminate()
    kube.delete(INSTANCES, "on-old", own)
    wait_for(lambda: pinned not in names(kube, own) and serving not in names(kube, own), timeout=60)
    assert newest in names(kube, own)
