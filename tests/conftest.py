"""Fixtures shared by every test that talks to Kubernetes.

One real control plane per test session (etcd, kube-apiserver, kube-controller-manager built from
Go modules), a fresh namespace per test, CRD installation, and clients that impersonate service
accounts so RBAC is tested for real. Tests that need no cluster never start one.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from plait._devenv.controlplane import ControlPlane
from plait._kube.client import JSON, NAMESPACES, Kube, Resource
from plait._kube.connection import Connection, load_connection

REPO = Path(__file__).resolve().parents[1]
ROLES = Resource("rbac.authorization.k8s.io", "v1", "roles", "Role")
ROLEBINDINGS = Resource("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding")
# operator, worker and namespace fixtures for every test directory; a real Jaeger for the tracing tests
pytest_plugins = ["tests.k8s.fixtures", "tests.k8s.jaeger"]


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    plane = ControlPlane(tmp_path_factory.mktemp("control-plane"))
    plane.start()
    previous = os.environ.get("KUBECONFIG")
    os.environ["KUBECONFIG"] = str(plane.kubeconfig)  # before kopf or `kubernetes` read it
    try:
        yield plane
    finally:
        plane.stop()
        if previous is None:
            os.environ.pop("KUBECONFIG", None)
        else:
            os.environ["KUBECONFIG"] = previous


@pytest.fixture(scope="session")
def connection(control_plane: ControlPlane) -> Connection:
    return load_connection(control_plane.kubeconfig)


@pytest.fixture
def kube(connection: Connection) -> Iterator[Kube]:
    with Kube(connection) as client:
        yield client


@pytest.fixture
def namespace(kube: Kube, request: pytest.FixtureRequest) -> Iterator[str]:
    """A namespace of this test's own, deleted (without waiting) afterwards."""
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"{slug}-{uuid.uuid4().hex[:6]}"
    kube.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    yield name
    kube.delete(NAMESPACES, name)


@pytest.fixture
def impersonate(connection: Connection) -> Iterator[Callable[[str, str], Kube]]:
    """``impersonate(namespace, service_account)``: a client acting as that service account."""
    clients: list[Kube] = []

    def factory(namespace: str, service_account: str) -> Kube:
        client = Kube(connection.as_service_account(namespace, service_account))
        clients.append(client)
        return client

    yield factory
    for client in clients:
        client.close()


@pytest.fixture
def grant(kube: Kube) -> Callable[[str, str, list[JSON], JSON], None]:
    """``grant(namespace, role, rules, subject)``: a Role with ``rules``, bound to one RoleBinding
    ``subject`` (a User, a ServiceAccount, ...)."""

    def create(namespace: str, role: str, rules: list[JSON], subject: JSON) -> None:
        kube.create(ROLES, {"metadata": {"name": role}, "rules": rules}, namespace)
        binding = {
            "metadata": {"name": role},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role},
            "subjects": [subject],
        }
        kube.create(ROLEBINDINGS, binding, namespace)

    return create


@pytest.fixture(scope="session")
def plait_crds(control_plane: ControlPlane, connection: Connection) -> None:
    """plait's CRDs, generated from the models, installed and Established."""
    from plait._kube.crds import all_crds
    from plait._kube.install import apply_crds

    with Kube(connection) as client:
        apply_crds(client, all_crds())
