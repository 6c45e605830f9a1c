"""The CRDs come from the models, stay in sync on disk, and the API server enforces them."""

from __future__ import annotations

from pathlib import Path

import pytest

from plait._kube.client import Kube
from plait._kube.crds import all_crds, file_name, render
from plait._kube.models import WorkflowInstance, WorkflowSignal
from plait.errors import Invalid

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("directory", ["crds", "charts/plait/crds"])
def test_crd_files_match_the_models(directory: str) -> None:
    expected = {file_name(doc): render(doc) for doc in all_crds()}
    on_disk = {p.name: p.read_text() for p in (REPO / directory).glob("*.yaml")}
    assert on_disk == expected, f"{directory} drifted from the models: run `make crds`"


def instance(name: str, **spec: object) -> dict[str, object]:
    return {"apiVersion": "plait.dev/v1alpha1", "kind": "WorkflowInstance", "metadata": {"name": name}, "spec": spec}


def test_the_api_server_rejects_malformed_instances(kube: Kube, namespace: str, plait_crds: None) -> None:
    with pytest.raises(Invalid, match=r"spec\.workflow"):
        kube.create(WorkflowInstance.RESOURCE, instance("no-workflow", input=1), namespace)
    with pytest.raises(Invalid, match="ttlSecondsAfterFinished"):
        kube.create(WorkflowInstance.RESOURCE, instance("bad-ttl", workflow="w", ttlSecondsAfterFinished=-1), namespace)
    with pytest.raises(Invalid, match="definitionHash"):
        kube.create(WorkflowInstance.RESOURCE, instance("bad-hash", workflow="w", definitionHash="abc"), namespace)


def test_an_instance_spec_cannot_change_but_applying_it_again_is_fine(
    kube: Kube, namespace: str, plait_crds: None
) -> None:
    resource = WorkflowInstance.RESOURCE
    body = instance("fixed", workflow="orders", input={"id": 1})
    kube.patch(resource, "fixed", body, namespace, patch_type="apply", field_manager="user", force=True)
    kube.patch(resource, "fixed", body, namespace, patch_type="apply", field_manager="user", force=True)
    with pytest.raises(Invalid, match="spec is immutable"):
        kube.patch(resource, "fixed", {"spec": {"input": {"id": 2}}}, namespace)
    got = kube.get(resource, "fixed", namespace)
    assert got["spec"]["input"] == {"id": 1}


def test_signals_are_immutable_and_selectable_by_instance(kube: Kube, namespace: str, plait_crds: None) -> None:
    resource = WorkflowSignal.RESOURCE
    for name, target in (("s1", "a"), ("s2", "b"), ("s3", "a")):
        kube.create(
            resource,
            {"apiVersion": "plait.dev/v1alpha1", "kind": "WorkflowSignal", "metadata": {"name": name},
             "spec": {"instance": target, "name": "approve", "payload": {"ok": True}}},
            namespace,
        )  # fmt: skip
    selected = kube.list(resource, namespace, field_selector="spec.instance=a")
    assert sorted(item["metadata"]["name"] for item in selected["items"]) == ["s1", "s3"]
    with pytest.raises(Invalid, match="send a new signal instead"):
        kube.patch(resource, "s1", {"spec": {"payload": 2}}, namespace)
