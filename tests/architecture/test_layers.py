"""The layer contracts of pyproject.toml hold, and they catch a layer broken on purpose.

``make lint`` runs ``lint-imports`` on the tree itself; these tests run it on a copy of the
packages, once as it is and once with one forbidden import added, so a contract that stopped
biting (a typo in a module name, a package without ``__init__``) fails here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": f"{tree / 'worker'}{os.pathsep}{tree / 'operator'}"}
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(REPO / "pyproject.toml"), "--no-cache"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for package in ("worker/plait", "operator/plait_operator"):
        shutil.copytree(REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def _add_import(tree: Path, module: str, statement: str) -> None:
    path = tree / module
    path.write_text(
        path.read_text().replace(
            "from __future__ import annotations\n", f"from __future__ import annotations\n{statement}\n", 1
        )
    )


def test_the_packages_keep_every_contract(tree: Path) -> None:
    result = _lint(tree)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "imported"),
    [
        ("plait._core.engine", "plait._kube.client"),  # the core reaching for an adapter
        ("plait._core.frames", "time"),  # or for the clock
        ("plait_operator.store", "plait._worker.runtime"),  # the operator importing worker code
        ("plait.cli.control", "plait_operator.controller"),  # a second bridge from the CLI
        ("plait._kube.client", "plait._local.backends"),  # one adapter importing the other
        ("plait._core.snapshot", "plait._payloads.store"),  # the core doing the store's I/O
        ("plait._payloads.store", "plait._kube.client"),  # the store knowing of Kubernetes
    ],
)
def test_a_forbidden_import_breaks_a_contract(tree: Path, module: str, imported: str) -> None:
    root = "operator" if module.startswith("plait_operator") else "worker"
    _add_import(tree, f"{root}/{module.replace('.', '/')}.py", f"import {imported}")
    result = _lint(tree)
    assert result.returncode != 0
    assert f"{module} -> {imported}" in result.stdout, result.stdout
