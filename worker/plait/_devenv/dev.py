"""``plait dev``: a local plait installation on this machine.

A control plane (:mod:`plait._devenv.controlplane`) plus, once it is ready, the plait CRDs, an
operator process and a worker process running ``examples/``. Every process is recorded in the
environment's directory, so ``plait dev down`` from any shell stops exactly what ``up`` started.
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
from plait._devenv.controlplane import ControlPlane, ProcessRecord, _alive, _tail, _terminate

DEFAULT_NAMESPACE = "default"


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

    def up(self, components: list[Component], prepare: Callable[[], None] | None = None) -> None:
        """Start the control plane, run ``prepare`` (install CRDs), then start each component.

        Idempotent: what already runs is left alone.
        """
        self.plane.start()
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
        with open(log_path, "ab") as log_file:
            child = subprocess.Popen(
                [sys.executable, "-m", "plait", *component.args],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=env,
                cwd=self.directory,
            )
        return ProcessRecord(name=component.name, pid=child.pid, binary=sys.executable, log=str(log_path)), child

    @staticmethod
    def _check_started(record: ProcessRecord, child: subprocess.Popen[bytes], settle: float = 1.0) -> None:
        deadline = time.monotonic() + settle
        while time.monotonic() < deadline:
            if child.poll() is not None:
                raise RuntimeError(f"{record.name} exited right after start; see {record.log}:\n{_tail(record.log)}")
            time.sleep(0.1)

    def down(self) -> None:
        for record in reversed(self.components()):
            _terminate(record)
        self._save_components([])
        self.plane.stop()

    def status(self) -> list[tuple[str, int, bool, str]]:
        """(name, pid, alive, log) of every recorded process."""
        state = self.plane.state()
        records = (state.processes if state else []) + self.components()
        return [(r.name, r.pid, _alive(r), r.log) for r in records]

    def env_lines(self) -> list[str]:
        bin_dir = find_binaries(build=False).directory
        return [
            f"export KUBECONFIG={self.kubeconfig}",
            f'export PATH="{bin_dir}:$PATH"',
        ]
