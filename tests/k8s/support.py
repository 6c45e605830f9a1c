"""Running real plait processes against the test control plane, and waiting for what they do."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from plait._devenv.controlplane import free_port
from plait._kube.client import Kube
from plait._kube.models import INSTANCES, SIGNALS

REPO = Path(__file__).resolve().parents[2]


class PlaitProcess:
    """``plait operator`` or ``plait worker`` as a child process with its own log file."""

    def __init__(self, args: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.args = args
        self.log = log
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.process: subprocess.Popen[bytes] | None = None
        self.metrics_port: int | None = None
        if "--metrics-port" in args:
            self.metrics_port = int(args[args.index("--metrics-port") + 1])

    def start(self) -> PlaitProcess:
        handle = open(self.log, "ab")  # noqa: SIM115 - the child owns it for its lifetime
        self.process = subprocess.Popen(
            [sys.executable, "-m", "plait", *self.args], stdout=handle, stderr=subprocess.STDOUT, env=self.env, cwd=REPO
        )
        handle.close()
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        if self.alive():
            assert self.process is not None
            self.process.kill()
            self.process.wait()

    def terminate(self, timeout: float = 30) -> int:
        assert self.process is not None
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def operator_args(*extra: str) -> list[str]:
    return ["operator", "--no-leader-election", "--metrics-port", str(free_port()), "--lease-grace", "1", *extra]


def worker_args(namespace: str, module: str = "tests.k8s.flows", *extra: str) -> list[str]:
    return ["worker", module, "--namespace", namespace, "--metrics-port", str(free_port()), *extra]


def wait_for(
    predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.05, what: str = "condition"
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def instance_body(name: str, workflow: str, value: Any = None, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "plait.dev/v1alpha1",
        "kind": "WorkflowInstance",
        "metadata": {"name": name},
        "spec": {"workflow": workflow, "input": value, **spec},
    }


def submit(kube: Kube, namespace: str, name: str, workflow: str, value: Any = None, **spec: Any) -> dict[str, Any]:
    return kube.create(INSTANCES, instance_body(name, workflow, value, **spec), namespace)


def phase(kube: Kube, namespace: str, name: str) -> str | None:
    return (kube.get(INSTANCES, name, namespace).get("status") or {}).get("phase")


def wait_phase(kube: Kube, namespace: str, name: str, *phases: str, timeout: float = 60.0) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        body = kube.get(INSTANCES, name, namespace)
        return body if (body.get("status") or {}).get("phase") in phases else None

    try:
        result: dict[str, Any] = wait_for(reached, timeout, interval=0.1, what=f"{name} to be {'/'.join(phases)}")
    except AssertionError:
        status = kube.get(INSTANCES, name, namespace).get("status")
        raise AssertionError(f"{name} did not reach {phases}; status: {status}") from None
    return result


def send_signal(
    kube: Kube, namespace: str, instance: str, name: str, payload: Any, signal_name: str | None = None
) -> None:
    kube.create(
        SIGNALS,
        {
            "apiVersion": "plait.dev/v1alpha1",
            "kind": "WorkflowSignal",
            "metadata": {"generateName": f"{instance}-{name}-"} if signal_name is None else {"name": signal_name},
            "spec": {"instance": instance, "name": name, "payload": payload},
        },
        namespace,
    )


def marks(directory: Path, instance: str) -> list[str]:
    path = directory / f"{instance}.log"
    return path.read_text().split("\n")[:-1] if path.exists() else []
