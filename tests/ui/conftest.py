"""Fixtures of the browser tests: one namespace, a worker and ``plait ui`` processes, and Chromium.

Everything is real: the session's control plane and operator (tests/k8s/fixtures.py), a worker
serving tests.ui.flows, ``plait ui`` as a child process, and Debian's Chromium driven by
Playwright (its own browser download is never used). One namespace for the module keeps the
browser and the worker warm across tests; each test names its own instances.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from plait._devenv.controlplane import free_port
from plait._kube.client import NAMESPACES, Kube
from plait._kube.connection import Connection
from plait._kube.models import DEFINITIONS
from tests.k8s.support import PlaitProcess, wait_for, worker_args
from tests.ui.support import UIProcess, answering

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "docs" / "images"
CHROMIUM = os.environ.get("PLAIT_CHROMIUM", "/usr/bin/chromium")


@pytest.fixture(scope="module")
def ui_ns(connection: Connection, operator: PlaitProcess) -> Iterator[str]:
    """A namespace the session's operator watches, for the whole module."""
    name = f"e2e-ui-{uuid.uuid4().hex[:6]}"
    with Kube(connection) as kube:
        kube.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        yield name
        kube.delete(NAMESPACES, name)


@pytest.fixture(scope="module")
def admin(connection: Connection) -> Iterator[Kube]:
    with Kube(connection) as kube:
        yield kube


@pytest.fixture(scope="module")
def worker(ui_ns: str, admin: Kube, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlaitProcess]:
    log = tmp_path_factory.mktemp("ui-worker") / "worker.log"
    process = PlaitProcess(worker_args(ui_ns, "tests.ui.flows"), log).start()
    wanted = {"gate", "broken", "one-at-a-time", "order-processing", "approval"}
    wait_for(
        lambda: (
            wanted <= {d["spec"]["workflow"] for d in admin.list(DEFINITIONS, ui_ns)["items"]} or not process.alive()
        ),
        timeout=60,
        what="the worker to publish",
    )
    assert process.alive(), process.output()[-3000:]
    yield process
    process.kill()
    print(f"--- worker log tail ---\n{process.output()[-3000:]}")


@pytest.fixture(scope="module")
def start_ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., UIProcess]]:
    """``start_ui(*args)``: a ``plait ui`` process (stopped after the module), once it answers."""
    started: list[PlaitProcess] = []

    def start(*args: str) -> UIProcess:
        port = free_port()
        log = tmp_path_factory.mktemp("ui") / "ui.log"
        process = PlaitProcess(["ui", "--port", str(port), *args], log).start()
        started.append(process)
        return answering(process, port)

    yield start
    for process in started:
        process.terminate()
        print(f"--- {process.log} tail ---\n{process.output()[-2000:]}")


@pytest.fixture(scope="module")
def ui(start_ui: Callable[..., UIProcess], ui_ns: str, worker: PlaitProcess) -> UIProcess:
    """The UI as the admin of the test control plane (the caller's kubeconfig)."""
    return start_ui("-n", ui_ns)


@pytest.fixture(scope="module")  # Playwright's sync API runs a loop: gone before async tests run
def browser() -> Iterator[Any]:
    if not shutil.which(CHROMIUM):
        pytest.fail(f"no Chromium at {CHROMIUM}: `make ui-deps` installs Debian's (or set PLAIT_CHROMIUM)")
    from playwright.sync_api import expect, sync_playwright

    # what a page shows arrives through the UI's watches and a live stream: on a loaded CI machine
    # that takes longer than Playwright's 5 s default for assertions, as long as actions may take
    expect.set_options(timeout=20_000)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    page.set_default_timeout(20_000)
    yield page
    context.close()


def screenshot(page: Any, name: str) -> None:
    """Save the page as docs/images/ui-NAME.png (docs/ui.md and the README show them)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"ui-{name}.png"), full_page=False)
