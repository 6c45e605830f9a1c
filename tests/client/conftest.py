"""Fixtures of the client tests: a backend on the test control plane, clients and embedded workers.

Namespaces are the shared operator's (``e2e-*``, from tests/k8s/fixtures.py): the real operator
drives every instance these tests submit; embedded workers run in this process.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from plait import KubernetesBackend, Worker, WorkerHandle, WorkflowClient
from plait._devenv.controlplane import ControlPlane
from tests.client import flows

pytestmark = pytest.mark.cluster


@pytest.fixture
def backend(control_plane: ControlPlane, e2e: str) -> KubernetesBackend:
    return KubernetesBackend(e2e, kubeconfig=str(control_plane.kubeconfig))


@pytest.fixture
def client(backend: KubernetesBackend) -> Iterator[WorkflowClient]:
    with WorkflowClient(backend) as client:  # type: ignore[attr-defined]
        yield client


@pytest.fixture
def start_worker(backend: KubernetesBackend) -> Iterator[Callable[..., WorkerHandle]]:
    """``start_worker(worker_id="w1", **options)``: an embedded worker serving tests.client.flows,
    shut down and joined after the test."""
    flows.RELEASE.clear()
    flows.RUNNING.clear()
    handles: list[WorkerHandle] = []

    def start(worker_id: str = "embedded-1", **options: float) -> WorkerHandle:
        handle = Worker(worker_id, backend, claim_ttl=options.pop("claim_ttl", 15.0), **options).start(  # type: ignore[arg-type]
            flows.WORKFLOWS
        )
        handles.append(handle)
        return handle

    yield start
    flows.RELEASE.set()
    for handle in handles:
        handle.shutdown()
    for handle in handles:
        handle.join(timeout=60)
