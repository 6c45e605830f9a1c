"""The CLI as users meet it in a shell: through kubectl's plugin mechanism, and live on a terminal."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from plait._devenv.binaries import find_binaries
from plait._kube.client import Kube
from tests.cli.conftest import Result
from tests.k8s.support import REPO, send_signal, wait_phase

pytestmark = pytest.mark.cluster

Plait = Callable[..., Result]
VENV_BIN = Path(sys.executable).parent


def test_kubectl_plait_works_through_the_plugin_mechanism(
    plait: Plait, serve: Callable[..., Any], cli_ns: str, kube: Kube
) -> None:
    assert (VENV_BIN / "kubectl-plait").exists(), "the kubectl-plait console script is not installed"
    serve(cli_ns)
    assert plait("submit", "greeting", '{"name": "kube"}', "--name", "via-kubectl", "--wait", "-n", cli_ns).code == 0
    env = {
        **os.environ,
        "PATH": f"{VENV_BIN}{os.pathsep}{find_binaries(build=False).directory}{os.pathsep}/usr/bin:/bin",
    }

    plugins = subprocess.run(["kubectl", "plugin", "list"], env=env, capture_output=True, text=True, timeout=60)
    assert str(VENV_BIN / "kubectl-plait") in plugins.stdout

    got = subprocess.run(
        ["kubectl", "plait", "get", "via-kubectl", "-n", cli_ns], env=env, capture_output=True, text=True, timeout=60
    )
    assert got.returncode == 0, got.stderr
    assert got.stdout.splitlines()[0].split()[:3] == ["via-kubectl", "workflow", "greeting"]
    assert any(line.startswith("shout ") and "succeeded" in line for line in got.stdout.splitlines())
    assert "kubectl plait result via-kubectl" in got.stdout  # hints name the command the user typed

    missing = subprocess.run(
        ["kubectl", "plait", "status", "nope", "-n", cli_ns], env=env, capture_output=True, text=True, timeout=60
    )
    assert missing.returncode == 1
    assert "list them with `kubectl plait list`" in missing.stderr


def read_pty(process: subprocess.Popen[bytes], master: int, timeout: float, until: bytes | None = None) -> bytes:
    """What the child writes to its terminal for ``timeout`` seconds, or until it has written ``until``."""
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not (until and until in b"".join(chunks)):
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:  # the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        elif process.poll() is not None:
            break
    return b"".join(chunks)


def test_get_watch_redraws_a_live_tree_on_a_terminal(serve: Callable[..., Any], cli_ns: str, kube: Kube) -> None:
    serve(cli_ns)
    subprocess.run(
        [sys.executable, "-m", "plait", "submit", "gate", '"tty"', "--name", "live", "-n", cli_ns],
        check=True,
        capture_output=True,
    )
    wait_phase(kube, cli_ns, "live", "AwaitingSignal")
    master, slave = pty.openpty()
    env = {**os.environ, "COLUMNS": "120", "LINES": "40", "TERM": "xterm"}
    env.pop("NO_COLOR", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "plait", "get", "live", "--watch", "-n", cli_ns],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        cwd=REPO,
    )
    os.close(slave)
    try:
        # its first frame (however long the start takes), then a tick or two while it waits
        before = read_pty(process, master, 30.0, until=b"\x1b[34mAwaitingSignal")
        before += read_pty(process, master, 1.5)
        send_signal(kube, cli_ns, "live", "go", {"ok": True})
        after = read_pty(process, master, 30.0)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
        os.close(master)
    screen = (before + after).decode()
    assert "\x1b[" in screen and "F\x1b[J" in screen  # cursor up and clear: redrawn in place
    assert "\x1b[34mAwaitingSignal" in screen  # coloured phase
    assert "◷ waiting" in screen and "✓ succeeded" in screen
    assert "\x1b[32mSucceeded" in after.decode()
    assert 'result: {"got": {"ok": true}}' in after.decode()
