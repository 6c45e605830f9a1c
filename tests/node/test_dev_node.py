"""`plait dev up --node` and `plait dev down` through the CLI: a Ready node, one per machine, a
clear refusal for a user who is not root, and a host put back exactly as it was."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from plait._devenv.binaries import find_binaries
from plait._devenv.host import read_host
from plait.cli import main
from tests.node.conftest import require_node_machine
from tests.node.support import REPO

NOBODY = 65534


def plait(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "plait", "dev", "--dir", str(directory), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=REPO, check=False)


def test_up_node_down_leaves_the_host_as_it_was(tmp_path: Path) -> None:
    require_node_machine()
    before = read_host()
    up = plait(tmp_path / "dev", "up", "--node")
    try:
        assert up.returncode == 0, up.stderr
        assert "node plait-node Ready" in up.stdout
        kubectl = [str(find_binaries().path("kubectl")), "--kubeconfig", str(tmp_path / "dev" / "kubeconfig")]
        nodes = subprocess.run([*kubectl, "get", "nodes", "-o", "json"], capture_output=True, text=True, check=True)
        (node,) = json.loads(nodes.stdout)["items"]
        assert {c["type"]: c["status"] for c in node["status"]["conditions"]}["Ready"] == "True"
        # one node per machine: a second environment is refused, and says which one runs
        second = plait(tmp_path / "other", "up", "--node")
        assert second.returncode != 0
        assert "already runs on this machine" in second.stderr and str(tmp_path / "dev") in second.stderr
        assert plait(tmp_path / "other", "status").returncode == 1, "a refused node starts nothing"
        assert read_host().differences(before), "a running node changes the host (or this test checks nothing)"
    finally:
        down = plait(tmp_path / "dev", "down")
    assert down.returncode == 0, down.stderr
    assert read_host().differences(before) == []
    assert plait(tmp_path / "dev", "status").returncode == 1  # nothing of it runs


def test_a_node_needs_root_and_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    home = Path(tempfile.mkdtemp(prefix="plait-nobody-"))  # a directory that user may use
    home.chmod(0o777)
    try:
        os.seteuid(NOBODY)  # this process, as a user who is not root, until put back
        try:
            code = main(["dev", "--dir", str(home / "dev"), "up", "--node"])
        finally:
            os.seteuid(0)
        assert code != 0
        err = capsys.readouterr().err
        assert "a plait dev node needs root" in err and "Traceback" not in err
        assert not (home / "dev").exists(), "nothing is started or written for a refused node"
    finally:
        shutil.rmtree(home)
