"""Real operator and worker processes for the Kubernetes tests (a pytest plugin: every test
directory can use these fixtures; tests/conftest.py loads it).

One operator per session watches every namespace named ``e2e-*``; each test gets such a
namespace and starts the workers it needs in it. Tests that kill or restart the operator run a
private one in a namespace the shared operator does not watch.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from plait._kube.client import NAMESPACES, Kube
from tests.k8s.support import PlaitProcess, operator_args, worker_args


def _tail(process: PlaitProcess, lines: int = 40) -> str:
    return "\n".join(process.output().splitlines()[-lines:])


@pytest.fixture(scope="session")
def operator(plait_crds: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlaitProcess]:
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    process = PlaitProcess(operator_args("--namespace", "e2e-*"), log).start()
    yield process
    process.terminate()


def _make_namespace(kube: Kube, prefix: str, request: pytest.FixtureRequest) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:36].strip("-")
    name = f"{prefix}-{slug}-{uuid.uuid4().hex[:5]}"
    kube.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name


@pytest.fixture
def e2e(kube: Kube, operator: PlaitProcess, request: pytest.FixtureRequest) -> Iterator[str]:
    """A namespace the shared operator watches."""
    name = _make_namespace(kube, "e2e", request)
    yield name
    if not operator.alive():
        pytest.fail(f"the shared operator died:\n{_tail(operator)}")
    print(f"--- operator log tail ---\n{_tail(operator)}")
    kube.delete(NAMESPACES, name)


@pytest.fixture
def own(kube: Kube, plait_crds: None, request: pytest.FixtureRequest) -> Iterator[str]:
    """A namespace no shared operator watches: the test runs its own."""
    name = _make_namespace(kube, "own", request)
    yield name
    kube.delete(NAMESPACES, name)


@pytest.fixture
def marks_dir(tmp_path: Path) -> Path:
    return tmp_path / "marks"


@contextmanager
def _started(tmp_path: Path, kind: str) -> Iterator[Callable[[list[str], dict[str, str] | None], PlaitProcess]]:
    """Start processes of one kind; kill them after the test and print their log tails."""
    started: list[PlaitProcess] = []

    def start(args: list[str], env: dict[str, str] | None = None) -> PlaitProcess:
        process = PlaitProcess(args, tmp_path / f"{kind}-{len(started)}.log", env=env)
        started.append(process.start())
        return process

    yield start
    for process in started:
        if process.alive():
            process.kill()
        print(f"--- {process.log.name} tail ---\n{_tail(process)}")


@pytest.fixture
def start_worker(tmp_path: Path, marks_dir: Path) -> Iterator[Callable[..., PlaitProcess]]:
    """``start_worker(namespace, *extra_args, module=..., env=...)``: a worker process, stopped after the test."""
    with _started(tmp_path, "worker") as start:

        def worker(
            namespace: str, *extra: str, module: str = "tests.k8s.flows", env: dict[str, str] | None = None
        ) -> PlaitProcess:
            return start(worker_args(namespace, module, *extra), {"PLAIT_TEST_MARKS": str(marks_dir), **(env or {})})

        yield worker


@pytest.fixture
def start_operator(tmp_path: Path) -> Iterator[Callable[..., PlaitProcess]]:
    """``start_operator(*extra_args, env=...)``: a private operator process, stopped after the test."""
    with _started(tmp_path, "operator") as start:

        def operator(*extra: str, env: dict[str, str] | None = None) -> PlaitProcess:
            return start(operator_args(*extra), env)

        yield operator
