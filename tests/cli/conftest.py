"""Fixtures of the CLI tests: a namespace per test, workers that have published, and a runner.

Namespaces are the shared operator's (``e2e-*``, from tests/k8s/fixtures.py). Commands run
in-process through :func:`plait.cli.main` (fast, and the output is captured) unless a test needs
a real process (exit codes without a traceback, kubectl's plugin mechanism, a terminal).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from plait._kube.client import Kube
from plait._kube.models import WorkflowDefinition
from plait.cli import main
from plait.errors import ClusterError
from tests.k8s.support import PlaitProcess, wait_for

FLOWS = frozenset({"greeting", "failing", "gate", "order-processing", "nightly-etl"})  # tests.cli.flows


@pytest.fixture
def cli_ns(e2e: str) -> str:
    """A namespace the session's operator watches."""
    return e2e


@pytest.fixture
def serve(kube: Kube, start_worker: Callable[..., PlaitProcess]) -> Callable[..., PlaitProcess]:
    """``serve(namespace, module=...)``: a worker, returned once it has published ``expect``."""

    def start(namespace: str, module: str = "tests.cli.flows", expect: frozenset[str] = FLOWS) -> PlaitProcess:
        process = start_worker(namespace, module=module)

        def published() -> bool:
            try:
                items = kube.list(WorkflowDefinition.RESOURCE, namespace)["items"]
            except ClusterError:
                return False
            return expect <= {item["spec"]["workflow"] for item in items} or not process.alive()

        wait_for(published, timeout=60, what="the worker to publish its definitions")
        assert process.alive(), process.output()[-3000:]
        return process

    return start


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
