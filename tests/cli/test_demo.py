"""`make demo` from a fresh clone: what a newcomer types first must end with a Succeeded instance.

The real Makefile target in a `git clone` of the committed HEAD, with its own virtualenv (`make
install` from the pip cache) and its own `plait dev` directory; only the control-plane binary cache
is shared. It runs twice (the second run must also work), then `make demo-down` must leave no
process behind.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from plait._devenv.controlplane import PlaneState, _alive
from plait._devenv.dev import DevEnvironment
from plait._kube.client import Kube
from plait._kube.connection import load_connection
from plait._kube.models import WorkflowInstance
from tests.k8s.support import REPO

pytestmark = pytest.mark.cluster


def processes_mentioning(text: str) -> list[tuple[int, str]]:
    """Live processes whose command line or working directory mentions ``text``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(entry / "cwd")
            state = next(line for line in (entry / "status").read_text().splitlines() if line.startswith("State:"))
        except (OSError, StopIteration):
            continue
        if "zombie" not in state and (text in cmdline or cwd.startswith(text)):
            found.append((int(entry.name), cmdline))
    return found


@pytest.mark.timeout(900)
def test_make_demo_from_a_fresh_clone(tmp_path: Path) -> None:
    clone = tmp_path / "plait"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True, timeout=120)
    dev_dir = tmp_path / "dev"
    env = {**os.environ, "PLAIT_DEV_DIR": str(dev_dir)}
    for name in ("KUBECONFIG", "VIRTUAL_ENV", "VENV", "PLAIT_BIN_DIR", "MAKEFLAGS"):
        env.pop(name, None)

    def make(target: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["make", target], cwd=clone, env=env, capture_output=True, text=True, timeout=600)

    try:
        first = make("demo")
        assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-4000:]
        assert (clone / ".venv" / "bin" / "kubectl-plait").exists()
        out = first.stdout
        assert "order-a-1001: AwaitingSignal (waiting for signal approval), progress 6/12" in out
        assert "workflowsignal.plait.dev/order-a-1001-approval-" in out
        assert "order-a-1001: Succeeded, progress 12/12" in out
        assert '"order confirmed, approved by alice"' in out
        assert "kubectl get wfi,wft,wfsig" in out and "make demo-down" in out
        with Kube(load_connection(dev_dir / "kubeconfig")) as kube:
            instance = kube.get(WorkflowInstance.RESOURCE, "order-a-1001", "default")
            assert instance["status"]["phase"] == "Succeeded"
            first_uid = instance["metadata"]["uid"]

        again = make("demo")  # idempotent: the previous demo instance is replaced by a new run
        assert again.returncode == 0, again.stdout[-4000:] + again.stderr[-4000:]
        assert "order-a-1001: Succeeded, progress 12/12" in again.stdout
        with Kube(load_connection(dev_dir / "kubeconfig")) as kube:
            instance = kube.get(WorkflowInstance.RESOURCE, "order-a-1001", "default")
            assert instance["status"]["phase"] == "Succeeded" and instance["metadata"]["uid"] != first_uid
    finally:
        state = PlaneState.load(dev_dir / "state.json")
        records = (state.processes if state else []) + DevEnvironment(dev_dir).components()
        down = make("demo-down")
    assert down.returncode == 0, down.stderr
    assert len(records) == 5, records  # etcd, kube-apiserver, kube-controller-manager, operator, worker
    assert not [r for r in records if _alive(r)]
    assert processes_mentioning(str(tmp_path)) == []
