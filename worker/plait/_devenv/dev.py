"""``plait dev``: a local plait installation on this machine.

A control plane (:mod:`plait._devenv.controlplane`) plus, once it is ready, the plait CRDs, an
operator process and a worker process running ``examples/``; or, with a node
(:mod:`plait._devenv.node`), the control plane and a real kubelet, where ``helm install`` runs
plait as pods. Every process is recorded in the environment's directory, so ``plait dev down``
from any shell stops exactly what ``up`` started (and the node puts the host back as it was).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from plait._devenv.binaries import Binaries, find_binaries
from plait._devenv.controlplane import ControlPlane, ProcessRecord, _alive, _tail, _terminate, spawn
from plait._devenv.node import Node, check_machine, node_address


def default_directory() -> Path:
    explicit = os.environ.get("PLAIT_DEV_DIR")
    if explicit:
        return Path(explicit)
    state = os.environ.get("XDG_STATE_HOME")
    return (Path(state) if state else Path.home() / ".local" / "state") / "plait" / "dev"


@dataclass
class Component:
    """A plait process started by ``plait dev up`` beside the control plane."""

    name: str
    args: list[str]


class DevEnvironment:
    def __init__(self, directory: Path | None = None, binaries: Binaries | None = None) -> None:
        self.directory = (directory or default_directory()).resolve()
        self.plane = ControlPlane(self.directory, binaries)
        self.node = Node(self.directory / "node", self.plane)
        recorded = self.plane.state()
        if recorded is not None and recorded.node_ip is not None and self.node.running():
            self.plane.node_ip = recorded.node_ip  # a plain `up` keeps the node it has

    @property
    def kubeconfig(self) -> Path:
        return self.plane.kubeconfig

    @property
    def components_file(self) -> Path:
        return self.directory / "components.json"

    def components(self) -> list[ProcessRecord]:
        try:
            return [ProcessRecord(**r) for r in json.loads(self.components_file.read_text())]
        except (FileNotFoundError, json.JSONDecodeError):
            return []

    def _save_components(self, records: list[ProcessRecord]) -> None:
        self.components_file.write_text(json.dumps([asdict(r) for r in records], indent=2))

    def up(self, components: list[Component], prepare: Callable[[], None] | None = None, *, node: bool = False) -> None:
        """Start the control plane (and the node, with ``node``), run ``prepare`` (install CRDs),
        then start each component.

        Idempotent: what already runs is left alone.
        """
        if node:
            check_machine()
            self.node.check_free()  # a refused node starts nothing, not even the control plane
            self.plane.node_ip = node_address()
        self.plane.start()
        if node:
            self.node.start()
        if prepare is not None:
            prepare()
        records = [r for r in self.components() if _alive(r)]
        running = {r.name for r in records}
        started = []
        for component in components:
            if component.name in running:
                continue
            record, child = self._launch(component)
            records.append(record)
            started.append((record, child))
            self._save_components(records)
        for record, child in started:
            self._check_started(record, child)

    def _launch(self, component: Component) -> tuple[ProcessRecord, subprocess.Popen[bytes]]:
        log_path = self.plane.logs / f"{component.name}.log"
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), "PYTHONUNBUFFERED": "1"}
        child = spawn([sys.executable, "-m", "plait", *component.args], log_path, self.directory, env)
        return ProcessRecord(name=component.name, pid=child.pid, binary=sys.executable, log=str(log_path)), child

    @staticmethod
    def _check_started(record: ProcessRecord, child: subprocess.Popen[bytes], settle: float = 1.0) -> None:
        deadline = time.monotonic() + settle
        while time.monotonic() < deadline:
            if child.poll() is not None:
                raise RuntimeError(f"{record.name} exited right after start; see {record.log}:\n{_tail(record.log)}")
            time.sleep(0.1)

    def down(self) -> list[str]:
        """Stop everything; returns what of the host the node could not put back (empty: all)."""
        for record in reversed(self.components()):
            _terminate(record)
        self._save_components([])
        leftovers = self.node.stop() if self.node.directory.exists() else []
        self.plane.stop()
        return leftovers

    def status(self) -> list[tuple[str, int, bool, str]]:
        """(name, pid, alive, log) of every recorded process."""
        state = self.plane.state()
        records = (state.processes if state else []) + self.node.status() + self.components()
        return [(r.name, r.pid, _alive(r), r.log) for r in records]

    def env_lines(self) -> list[str]:
        bin_dir = find_binaries(build=False).directory
        return [
            f"export KUBECONFIG={self.kubeconfig}",
            f'export PATH="{bin_dir}:$PATH"',
        ]
