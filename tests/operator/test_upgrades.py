"""What the operator answers to ``plait.dev/upgrade``, without a cluster: the version it names
(``latest``, a hash or a unique prefix), and the outcome for the condition."""

from __future__ import annotations

from typing import Any

import pytest

from plait import Flow, task
from plait._core.definition import Definition
from plait._core.engine import decide, new_snapshot
from plait._core.events import Started, TaskSucceeded
from plait._core.snapshot import Snapshot
from plait._kube.models import UPGRADE_ANNOTATION
from plait.errors import DefinitionError
from plait_operator.definitions import DefinitionCatalog
from plait_operator.upgrades import pending, plan


@task
def a(x: int) -> int:
    return x + 1


@task
def b(x: int) -> int:
    return x * 2


@task
def c(x: int) -> int:
    return x - 1


V1 = Flow("w").then(a).then(b).build().definition
V2 = Flow("w").then(a).then(b).then(c).build().definition
V3 = Flow("w").then(a).then(c).build().definition
V4 = Flow("w").then(a).then(c).then(b).build().definition  # c added before b: b moves


def catalog(*versions: Definition) -> DefinitionCatalog:
    found = DefinitionCatalog()
    for second, definition in enumerate(versions):
        meta = {
            "namespace": "ns",
            "name": f"w-{definition.hash[:12]}",
            "creationTimestamp": f"2026-01-01T00:00:0{second}Z",
        }
        found.observe("ADDED", {"metadata": meta, "spec": definition.to_data()})
    return found


def at_b() -> Snapshot:
    snapshot = new_snapshot(V1, "i")
    decide(V1, snapshot, Started(1), 0.0)
    decide(V1, snapshot, TaskSucceeded("0", 1, 2), 0.0)
    return snapshot


def instance(value: str) -> dict[str, Any]:
    return {"metadata": {"namespace": "ns", "name": "i", "annotations": {UPGRADE_ANNOTATION: value}}, "spec": {}}


def test_the_catalog_resolves_latest_a_hash_and_a_unique_prefix() -> None:
    versions = catalog(V1, V2)
    assert versions.matching("ns", "w", "latest") is not None
    assert versions.matching("ns", "w", "latest").hash == V2.hash
    assert versions.matching("ns", "w", V1.hash[:6]).hash == V1.hash
    with pytest.raises(DefinitionError, match="has no published version 'zzz'"):
        versions.matching("ns", "w", "zzz")
    with pytest.raises(DefinitionError, match="has no published version ''"):
        versions.matching("ns", "w", "")
    with pytest.raises(DefinitionError, match="no published version in namespace ns"):
        versions.matching("ns", "other", "latest")


def test_the_outcomes() -> None:
    versions = catalog(V1, V2, V3)
    moved = plan(versions, instance(V2.hash[:8]), V1, at_b(), starting=False)
    assert moved.reason == "Upgraded" and moved.definition is not None and moved.definition.hash == V2.hash
    assert moved.snapshot is not None and moved.snapshot.definition_hash == V2.hash
    assert moved.condition()[:3] == ("Upgraded", "True", "Upgraded")

    refused = plan(versions, instance(V3.hash), V1, at_b(), starting=False)
    assert refused.condition()[1:3] == ("False", "UpgradeRefused") and refused.taken
    assert "step 'b', where the instance is, is not in the target" in refused.message
    assert f"runs on, on version {V1.hash[:12]}" in refused.message

    assert plan(versions, instance(V1.hash), V1, at_b(), starting=False).reason == "UpToDate"
    assert "started on" in plan(versions, instance(V1.hash), V1, at_b(), starting=True).message
    assert "name a definition hash" in plan(versions, instance(" "), V1, at_b(), starting=False).message
    assert "has no published version" in plan(versions, instance("nope"), V1, at_b(), starting=False).message

    shifted = plan(catalog(V1, V4), instance("latest"), V1, at_b(), starting=False)
    assert shifted.moved == {"1": "2"} and "these steps do not run for it: c" in shifted.message
    waiting = pending(shifted, {"1": "b"})
    assert not waiting.taken and waiting.condition()[1:3] == ("False", "UpgradePending")
    assert "running step(s) b (at 1, 2 in the new version) must finish first" in waiting.message
