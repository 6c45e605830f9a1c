"""The payload tests' world: a real S3-compatible server (versitygw), an operator that offloads to
it (watching the ``pl-*`` namespaces, orphans swept after a few seconds), and workers with the
same store."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from plait._devenv.s3server import BUCKET, S3Server
from plait._kube.client import NAMESPACES, Kube
from tests.k8s.fixtures import _make_namespace, _started, _tail
from tests.k8s.support import PlaitProcess, operator_args, worker_args

STORE = f"s3://{BUCKET}/payloads"
ORPHAN_GRACE = 4.0


@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    root = tmp_path_factory.mktemp("s3")
    server = S3Server(root / "data", root / "versitygw.log").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def payload_operator(
    plait_crds: None, s3: S3Server, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PlaitProcess]:
    log = tmp_path_factory.mktemp("payload-operator") / "operator.log"
    args = operator_args("--namespace", "pl-*", "--payload-store", STORE, "--payload-orphan-grace", str(ORPHAN_GRACE))
    process = PlaitProcess(args, log, env=s3.env).start()
    yield process
    process.terminate()


@pytest.fixture
def pl(kube: Kube, payload_operator: PlaitProcess, s3: S3Server, request: pytest.FixtureRequest) -> Iterator[str]:
    """A namespace the payload operator watches."""
    name = _make_namespace(kube, "pl", request)
    yield name
    if not payload_operator.alive():
        pytest.fail(f"the payload operator died:\n{_tail(payload_operator)}")
    print(f"--- operator log tail ---\n{_tail(payload_operator)}")
    kube.delete(NAMESPACES, name)


@pytest.fixture
def store_worker(tmp_path: Path, marks_dir: Path, s3: S3Server) -> Iterator[Callable[..., PlaitProcess]]:
    """``store_worker(namespace, *extra_args)``: a worker of tests.payloads.flows with the payload store."""
    with _started(tmp_path, "worker") as start:

        def worker(namespace: str, *extra: str) -> PlaitProcess:
            args = worker_args(namespace, "tests.payloads.flows", "--payload-store", STORE, *extra)
            return start(args, {"PLAIT_TEST_MARKS": str(marks_dir), **s3.env})

        yield worker
