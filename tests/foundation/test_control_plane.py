"""The test control plane is a real Kubernetes: CRDs, kopf, garbage collection and RBAC work."""

from __future__ import annotations

import gc
import textwrap
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import pytest
from kopf.testing import KopfRunner

from plait._kube.client import CRDS, Kube, Resource
from plait._kube.install import apply_crds, established
from plait.errors import Forbidden, NotFound

WIDGETS = Resource("test.plait.dev", "v1", "widgets", "Widget")
CONFIGMAPS = Resource("", "v1", "configmaps", "ConfigMap")

WIDGET_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.test.plait.dev"},
    "spec": {
        "group": "test.plait.dev",
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {"type": "object", "properties": {"size": {"type": "integer"}}},
                            "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                        },
                    }
                },
            }
        ],
    },
}

HANDLER = """
import kopf
from plait._kube.connection import load_connection

@kopf.on.login()
def login(**_):
    c = load_connection()
    return kopf.ConnectionInfo(
        server=c.server, ca_path=c.ca_file, certificate_path=c.cert_file, private_key_path=c.key_file
    )

@kopf.on.event("test.plait.dev", "v1", "widgets")
async def measure(body, patch, **_):
    if body.get("status", {}).get("measured") is None:
        patch.status["measured"] = body["spec"]["size"] * 2
"""


def wait_for(predicate: Callable[[], object], timeout: float = 30.0, interval: float = 0.1) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


# KopfRunner stops kopf's event loop with aiohttp connections still open: their transports are
# collected (and warned about) here rather than blamed on whichever test runs next.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_crd_is_established_and_a_kopf_handler_patches_status(kube: Kube, namespace: str, tmp_path: Path) -> None:
    apply_crds(kube, [WIDGET_CRD])
    assert established(kube.get(CRDS, "widgets.test.plait.dev"))
    handlers = tmp_path / "handlers.py"
    handlers.write_text(textwrap.dedent(HANDLER))

    with KopfRunner(["run", "--standalone", "--namespace", namespace, str(handlers)]) as runner:
        kube.create(
            WIDGETS,
            {"apiVersion": "test.plait.dev/v1", "kind": "Widget", "metadata": {"name": "w1"}, "spec": {"size": 21}},
            namespace,
        )
        listing = kube.list(WIDGETS, namespace)  # the handler may have been quicker than this list
        seen = next((w["status"]["measured"] for w in listing["items"] if "measured" in w.get("status", {})), None)
        events = kube.watch(
            WIDGETS, namespace, resource_version=listing["metadata"]["resourceVersion"], timeout_seconds=30
        )
        with closing(events):
            for event in events if seen is None else []:
                if event.object.get("status", {}).get("measured") is not None:
                    seen = event.object["status"]["measured"]
                    break
    gc.collect()
    assert runner.exception is None, runner.output
    assert seen == 42


def test_deleting_an_owner_garbage_collects_its_dependents(kube: Kube, namespace: str) -> None:
    owner = kube.create(CONFIGMAPS, {"metadata": {"name": "owner"}, "data": {}}, namespace)
    kube.create(
        CONFIGMAPS,
        {
            "metadata": {
                "name": "dependent",
                "ownerReferences": [
                    {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner["metadata"]["uid"]}
                ],
            },
            "data": {},
        },
        namespace,
    )
    kube.delete(CONFIGMAPS, "owner", namespace, propagation="Background")

    def gone() -> bool:
        try:
            kube.get(CONFIGMAPS, "dependent", namespace)
        except NotFound:
            return True
        return False

    wait_for(gone, timeout=60)


def test_a_service_account_without_a_role_is_forbidden_and_with_one_is_allowed(
    namespace: str, impersonate: Callable[[str, str], Kube], grant: Callable[..., None]
) -> None:
    robot = impersonate(namespace, "robot")
    with pytest.raises(Forbidden) as refused:
        robot.create(CONFIGMAPS, {"metadata": {"name": "nope"}}, namespace)
    assert refused.value.status == 403

    grant(
        namespace,
        "cm-writer",
        [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create"]}],
        {"kind": "ServiceAccount", "name": "robot", "namespace": namespace},
    )
    created = wait_for(lambda: _try_create(robot, namespace), timeout=10)
    assert created


def _try_create(client: Kube, namespace: str) -> bool:
    try:
        client.create(CONFIGMAPS, {"metadata": {"name": "allowed"}}, namespace)
    except Forbidden:
        return False
    return True
