"""Fixtures of the CLI tests: an operator of their own, a namespace per test, workers, and a runner.

The operator of ``tests/k8s`` watches ``e2e-*``; these tests run theirs on ``cli-*`` so that both
suites can share one control plane without two operators acting on the same instances. Commands
run in-process through :func:`plait.cli.main` (fast, and the output is captured) unless a test
needs a real process (exit codes without a traceback, kubectl's plugin mechanism, a terminal).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from plait._kube.client import NAMESPACES, Kube
from plait._kube.models import RESOURCES, WorkflowDefinition
from plait.cli import main
from plait.errors import ClusterError
from tests.k8s.support import PlaitProcess, operator_args, wait_for, worker_args

FLOWS = frozenset({"greeting", "failing", "gate", "order-processing", "nightly-etl"})  # tests.cli.flows


def _tail(process: PlaitProcess, lines: int = 40) -> str:
    return "\n".join(process.output().splitlines()[-lines:])


@pytest.fixture(scope="session")
def cli_operator(plait_crds: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlaitProcess]:
    log = tmp_path_factory.mktemp("cli-operator") / "operator.log"
    process = PlaitProcess(operator_args("--namespace", "cli-*"), log).start()
    yield process
    process.terminate()


@pytest.fixture
def cli_ns(kube: Kube, cli_operator: PlaitProcess, request: pytest.FixtureRequest) -> Iterator[str]:
    """A namespace the CLI tests' operator watches."""
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:36].strip("-")
    name = f"cli-{slug}-{uuid.uuid4().hex[:5]}"
    kube.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})

    def storage_ready() -> bool:  # right after the CRDs are installed: "storage is (re)initializing"
        try:
            for model in RESOURCES:
                kube.list(model.RESOURCE, name)
        except ClusterError:
            return False
        return True

    wait_for(storage_ready, timeout=30, what="the plait resources to be served")
    yield name
    if not cli_operator.alive():
        pytest.fail(f"the CLI tests' operator died:\n{_tail(cli_operator)}")
    kube.delete(NAMESPACES, name)


@pytest.fixture
def serve(kube: Kube, tmp_path: Path) -> Iterator[Callable[..., PlaitProcess]]:
    """``serve(namespace, module=...)``: a worker, running once it has published ``expect``."""
    started: list[PlaitProcess] = []

    def start(namespace: str, module: str = "tests.cli.flows", expect: frozenset[str] = FLOWS) -> PlaitProcess:
        process = PlaitProcess(worker_args(namespace, module), tmp_path / f"worker-{len(started)}.log")
        started.append(process.start())

        def published() -> bool:
            try:
                items = kube.list(WorkflowDefinition.RESOURCE, namespace)["items"]
            except ClusterError:  # "storage is (re)initializing" right after the CRDs were installed
                return False
            return expect <= {item["spec"]["workflow"] for item in items} or not process.alive()

        wait_for(published, timeout=60, what="the worker to publish its definitions")
        assert process.alive(), _tail(process)
        return process

    yield start
    for process in started:
        if process.alive():
            process.kill()
        print(f"--- {process.log.name} tail ---\n{_tail(process)}")


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def plait(capsys: pytest.CaptureFixture[str]) -> Callable[..., Result]:
    """``plait("get", "x", "-n", ns)``: the CLI in-process, with its exit code and output."""

    def run(*args: str) -> Result:
        capsys.readouterr()
        code = main(list(args))
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run
