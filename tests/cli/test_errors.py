"""What the CLI says when something is wrong: it names the problem and the fix, exits non-zero, no traceback."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from plait._devenv.controlplane import ControlPlane, free_port
from tests.cli.conftest import Result

Plait = Callable[..., Result]


def run(*args: str, env: dict[str, str] | None = None, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "plait", *args],
        capture_output=True,
        text=True,
        timeout=60,
        input=stdin,
        env={**os.environ, **(env or {})},
    )


INSTANCE_COMMANDS = [
    ("get", "nope"),
    ("get", "nope", "--watch"),
    ("status", "nope"),
    ("result", "nope"),
    ("result", "nope", "--wait"),
    ("signal", "nope", "go", "{}"),
    ("pause", "nope"),
    ("resume", "nope"),
    ("cancel", "nope"),
    ("logs", "nope"),
]


@pytest.mark.cluster
@pytest.mark.parametrize("command", INSTANCE_COMMANDS, ids=[" ".join(c) for c in INSTANCE_COMMANDS])
def test_unknown_instance(plait: Plait, cli_ns: str, command: tuple[str, ...]) -> None:
    result = plait(*command, "-n", cli_ns)
    assert result.code == 1
    assert result.err == (
        f"error: no WorkflowInstance 'nope' in namespace '{cli_ns}'; "
        "list them with `plait list` (or `plait list -A` for every namespace)\n"
    )


@pytest.mark.cluster
def test_unknown_instance_in_a_real_process_has_no_traceback(control_plane: ControlPlane, cli_ns: str) -> None:
    result = run("get", "nope", "-n", cli_ns)
    assert result.returncode == 1
    assert result.stderr.startswith("error: no WorkflowInstance 'nope'") and "Traceback" not in result.stderr


def test_bad_json_says_where(plait: Plait) -> None:
    submitted = plait("submit", "greeting", '{"name": "ada",}')
    assert submitted.code == 1
    assert submitted.err == (
        "error: INPUT_JSON is not valid JSON: Expecting property name enclosed in double quotes at line 1, column 16\n"
        '  {"name": "ada",}\n'
        "                 ^\n"
    )
    bare = plait("signal", "x", "go", "yes please")
    assert bare.code == 1
    assert "PAYLOAD_JSON is not valid JSON: Expecting value at line 1, column 1" in bare.err
    assert "JSON strings need double quotes" in bare.err


def test_bad_json_in_a_file(plait: Plait, tmp_path: Path) -> None:
    path = tmp_path / "input.json"
    path.write_text('{\n  "name": "ada"\n  "age": 3\n}\n')
    result = plait("submit", "greeting", f"@{path}")
    assert result.code == 1
    assert f"INPUT_JSON is not valid JSON in {path}: Expecting ',' delimiter at line 3, column 3" in result.err
    assert '  "age": 3\n    ^' in result.err
    assert "cannot read" in plait("submit", "greeting", f"@{tmp_path / 'missing.json'}").err


def test_bad_manifests(plait: Plait, tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("apiVersion: plait.dev/v1alpha1\nkind: WorkflowInstance\nspec:\n  workflow: [x\n")
    result = plait("submit", "-f", str(broken))
    assert result.code == 1 and f"{broken} is not valid YAML at line 5, column 1" in result.err

    other = tmp_path / "pod.yaml"
    other.write_text("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n")
    result = plait("submit", "-f", str(other))
    assert result.code == 1 and "should hold exactly one WorkflowInstance (it has: Pod)" in result.err

    both = plait("submit", "greeting", "-f", str(other))
    assert both.code == 1 and "not both" in both.err
    neither = plait("submit")
    assert neither.code == 1 and "name the workflow to run" in neither.err


def test_unknown_phase(plait: Plait) -> None:
    result = plait("list", "--phase", "Done")
    assert result.code == 1 and "unknown phase 'Done'; phases are Pending, Queued, Running" in result.err


@pytest.fixture
def closed_port_kubeconfig(control_plane: ControlPlane, tmp_path: Path) -> tuple[Path, str]:
    """The test control plane's kubeconfig, pointing at a port nothing listens on."""
    config: dict[str, Any] = json.loads(control_plane.kubeconfig.read_text())
    server = f"https://127.0.0.1:{free_port()}"
    for cluster in config["clusters"]:
        cluster["cluster"]["server"] = server
    path = tmp_path / "kubeconfig"
    path.write_text(json.dumps(config))
    return path, server


UNREACHABLE_COMMANDS = [
    ("list",),
    ("get", "x"),
    ("get", "x", "--watch"),
    ("submit", "greeting", "{}"),
    ("signal", "x", "go"),
    ("definitions",),
    ("logs", "x"),
]


@pytest.mark.cluster
@pytest.mark.parametrize("command", UNREACHABLE_COMMANDS, ids=[" ".join(c) for c in UNREACHABLE_COMMANDS])
def test_no_cluster_reachable(closed_port_kubeconfig: tuple[Path, str], command: tuple[str, ...]) -> None:
    path, server = closed_port_kubeconfig
    result = run(*command, env={"KUBECONFIG": str(path)})
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith(f"error: cannot reach the Kubernetes API server at {server}")
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_no_kubeconfig(tmp_path: Path) -> None:
    result = run("list", env={"KUBECONFIG": str(tmp_path / "nothing-here")})
    assert result.returncode == 1
    assert f"no kubeconfig at {tmp_path / 'nothing-here'}" in result.stderr and "plait dev up" in result.stderr
    assert "Traceback" not in result.stderr


def test_every_command_and_option_has_help() -> None:
    from plait.cli import build_parser

    parser = build_parser()
    seen = []
    for action in parser._subparsers._group_actions:  # type: ignore[union-attr]
        for name, sub in action.choices.items():
            seen.append(name)
            assert sub.description or sub.format_help(), name
            for option in sub._actions:
                if isinstance(option, argparse._SubParsersAction):
                    continue  # `plait dev ACTION`: each action has its own help
                assert option.help, f"plait {name} {option.option_strings or option.dest} has no help"
    expected = {"submit", "get", "status", "result", "signal", "pause", "resume", "cancel", "list", "logs"}
    assert expected | {"definitions", "dev", "operator", "worker", "retry", "fork", "upgrade"} <= set(seen)


def test_an_unknown_log_format_in_the_environment_is_refused_before_anything_starts() -> None:
    result = run("worker", "examples.orders", env={"PLAIT_LOG_FORMAT": "xml"})
    assert result.returncode == 2
    assert "error: PLAIT_LOG_FORMAT must be one of text, json, not 'xml'" in result.stderr
    assert "Traceback" not in result.stderr
