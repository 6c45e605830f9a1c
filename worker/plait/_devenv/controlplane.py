"""A real, local Kubernetes control plane: etcd, kube-apiserver and kube-controller-manager.

Started the way controller-runtime's envtest does it: etcd on free loopback ports, an API server
with its own CA and serving certificate, an admin client certificate in ``system:masters``,
service-account signing keys and RBAC authorization, plus the controller manager for garbage
collection, namespace deletion and service accounts. Used by the pytest fixtures and by
``plait dev``; it stops what it started and nothing else.

Everything lives in one directory: ``pki/``, ``etcd/`` (data), ``logs/``, ``kubeconfig`` and
``state.json`` (the processes and ports of the running plane, so another process can stop it).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Self

import httpx

from plait._devenv.binaries import Binaries, find_binaries
from plait._devenv.pki import issue_apiserver_certificate, write_pki
from plait.errors import PlaitError

log = logging.getLogger(__name__)

CONTROLLERS = (
    "garbage-collector-controller",
    "namespace-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "root-ca-certificate-publisher-controller",
    "clusterrole-aggregation-controller",
)
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"


class ControlPlaneError(PlaitError):
    """A control-plane process failed to start or to become ready."""


@dataclass
class ProcessRecord:
    name: str
    pid: int
    binary: str
    log: str


class RecordedState:
    r"""A dataclass kept as JSON in a file, its ``processes`` as :class:`ProcessRecord`\ s."""

    processes: list[ProcessRecord]

    @classmethod
    def load(cls, path: Path) -> Self | None:
        try:
            raw = json.loads(path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        raw["processes"] = [ProcessRecord(**p) for p in raw.get("processes", [])]
        return cls(**raw)

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))  # type: ignore[call-overload]
        tmp.replace(path)


def spawn(command: list[str], log_path: Path, cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """A process of the dev environment: logging to ``log_path``, in a session of its own (it
    outlives `plait dev up`, and ^C in that shell does not reach it)."""
    with open(log_path, "ab") as log_file:
        return subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=cwd,
            env=env,
        )


@dataclass
class PlaneState(RecordedState):
    etcd_client_port: int
    etcd_peer_port: int
    apiserver_port: int
    controller_manager_port: int
    processes: list[ProcessRecord] = field(default_factory=list)
    # set when the plane serves a real node: the API server listens on this address of the
    # machine too (pods reach it there) and the controller manager runs every controller
    node_ip: str | None = None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _is_ours(record: ProcessRecord) -> bool:
    """The pid still runs the binary we started (pids get reused)."""
    try:
        cmdline = Path(f"/proc/{record.pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return bool(cmdline) and cmdline[0].decode(errors="replace") == record.binary


def _alive(record: ProcessRecord) -> bool:
    if not _is_ours(record):
        return False
    try:
        state = Path(f"/proc/{record.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _terminate(record: ProcessRecord, timeout: float = 10.0) -> None:
    if not _is_ours(record):
        return
    try:
        os.kill(record.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(record):
            return
        time.sleep(0.05)
    try:
        os.kill(record.pid, signal.SIGKILL)
    except ProcessLookupError:
        return


class ControlPlane:
    """One local control plane rooted at ``directory``.

    ``start()`` is idempotent: when the plane recorded in the directory is running and ready it
    is reused. ``stop()`` terminates exactly the processes recorded there.
    """

    def __init__(self, directory: Path, binaries: Binaries | None = None, *, node_ip: str | None = None) -> None:
        self.directory = directory.resolve()
        self._binaries = binaries
        self.node_ip = node_ip
        self._children: dict[str, subprocess.Popen[bytes]] = {}

    # -- paths -------------------------------------------------------------------------------

    @property
    def pki(self) -> Path:
        return self.directory / "pki"

    @property
    def logs(self) -> Path:
        return self.directory / "logs"

    @property
    def kubeconfig(self) -> Path:
        return self.directory / "kubeconfig"

    @property
    def state_file(self) -> Path:
        return self.directory / "state.json"

    @property
    def binaries(self) -> Binaries:
        if self._binaries is None:
            self._binaries = find_binaries()
        return self._binaries

    def state(self) -> PlaneState | None:
        return PlaneState.load(self.state_file)

    @property
    def server(self) -> str:
        state = self.state()
        if state is None:
            raise ControlPlaneError(f"no control plane recorded in {self.directory}")
        return f"https://127.0.0.1:{state.apiserver_port}"

    # -- lifecycle ---------------------------------------------------------------------------

    def running(self) -> bool:
        state = self.state()
        return (
            state is not None
            and state.node_ip == self.node_ip
            and len(state.processes) == 3
            and all(_alive(p) for p in state.processes)
            and self._ready(state.apiserver_port)
        )

    def start(self, timeout: float = 120.0) -> None:
        if self.running():
            log.info("control plane already running server=%s kubeconfig=%s", self.server, self.kubeconfig)
            return
        self.stop()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        if not (self.pki / "sa.key").exists():
            write_pki(self.pki)
        if self.node_ip is not None:
            issue_apiserver_certificate(self.pki, [self.node_ip])
        previous = self.state()
        state = PlaneState(
            etcd_client_port=free_port(),
            etcd_peer_port=free_port(),
            apiserver_port=previous.apiserver_port if previous else free_port(),
            controller_manager_port=free_port(),
            node_ip=self.node_ip,
        )
        if previous and not self._port_free(previous.apiserver_port):
            state.apiserver_port = free_port()
        try:
            self._launch(state, "etcd", self._etcd_args(state))
            self._wait(state, "etcd", lambda: self._etcd_healthy(state), timeout)
            self._launch(state, "kube-apiserver", self._apiserver_args(state))
            self._wait(state, "kube-apiserver", lambda: self._ready(state.apiserver_port), timeout)
            self._write_kubeconfig(state.apiserver_port)
            self._launch(state, "kube-controller-manager", self._controller_manager_args(state))
            self._wait(state, "kube-controller-manager", lambda: self._controller_manager_healthy(state), timeout)
        except BaseException:
            self.stop()
            raise
        log.info("control plane ready server=https://127.0.0.1:%d kubeconfig=%s", state.apiserver_port, self.kubeconfig)

    def stop(self) -> None:
        """Stop the recorded processes, newest first. Keeps etcd data, certificates and logs."""
        state = self.state()
        if state is not None:
            for record in reversed(state.processes):
                _terminate(record)
            state.processes = []
            state.save(self.state_file)
        for child in self._children.values():
            if child.poll() is None:
                child.kill()
            child.wait()
        self._children.clear()

    def stop_process(self, name: str) -> None:
        """Stop one process of the plane (failure tests stop the API server this way)."""
        state = self._require_state()
        for record in [p for p in state.processes if p.name == name]:
            _terminate(record)
            state.processes.remove(record)
        state.save(self.state_file)
        child = self._children.pop(name, None)
        if child is not None:
            child.wait()

    def start_process(self, name: str, timeout: float = 60.0) -> None:
        """Start one stopped process again on its previous ports, and wait until it is ready."""
        state = self._require_state()
        args = {
            "etcd": self._etcd_args,
            "kube-apiserver": self._apiserver_args,
            "kube-controller-manager": self._controller_manager_args,
        }[name](state)
        self._launch(state, name, args)
        probe = {
            "etcd": lambda: self._etcd_healthy(state),
            "kube-apiserver": lambda: self._ready(state.apiserver_port),
            "kube-controller-manager": lambda: self._controller_manager_healthy(state),
        }[name]
        self._wait(state, name, probe, timeout)

    def _require_state(self) -> PlaneState:
        state = self.state()
        if state is None:
            raise ControlPlaneError(f"no control plane recorded in {self.directory}")
        return state

    # -- processes ---------------------------------------------------------------------------

    def _launch(self, state: PlaneState, name: str, args: list[str]) -> None:
        binary = str(self.binaries.path(name))
        log_path = self.logs / f"{name}.log"
        child = spawn([binary, *args], log_path, self.directory)
        self._children[name] = child
        state.processes.append(ProcessRecord(name=name, pid=child.pid, binary=binary, log=str(log_path)))
        state.save(self.state_file)
        log.info("started %s pid=%d logs=%s", name, child.pid, log_path)

    def _wait(self, state: PlaneState, name: str, probe: Callable[[], bool], timeout: float) -> None:
        record = next(p for p in reversed(state.processes) if p.name == name)
        child = self._children[name]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if child.poll() is not None:
                raise ControlPlaneError(f"{name} exited during start-up; see {record.log}:\n{_tail(record.log)}")
            if probe():
                return
            time.sleep(0.1)
        raise ControlPlaneError(f"{name} was not ready after {timeout:.0f}s; see {record.log}:\n{_tail(record.log)}")

    def _etcd_args(self, state: PlaneState) -> list[str]:
        client = f"http://127.0.0.1:{state.etcd_client_port}"
        peer = f"http://127.0.0.1:{state.etcd_peer_port}"
        return [
            "--name=plait",
            f"--data-dir={self.directory / 'etcd'}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=plait={peer}",
            "--listen-metrics-urls=",
            "--unsafe-no-fsync=true",  # a local throwaway store: skip fsync, as envtest does
            "--log-level=warn",
        ]

    def _apiserver_args(self, state: PlaneState) -> list[str]:
        pki = self.pki
        if state.node_ip is None:
            address = ["--bind-address=127.0.0.1", "--advertise-address=127.0.0.1"]
        else:  # pods reach the API server at the machine's address; kubectl logs/exec reach the kubelet
            address = [
                "--bind-address=0.0.0.0",
                f"--advertise-address={state.node_ip}",
                "--kubelet-preferred-address-types=InternalIP",
                f"--kubelet-client-certificate={pki / 'admin.crt'}",
                f"--kubelet-client-key={pki / 'admin.key'}",
            ]
        return [
            f"--etcd-servers=http://127.0.0.1:{state.etcd_client_port}",
            *address,
            f"--secure-port={state.apiserver_port}",
            f"--cert-dir={pki}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
            "--authorization-mode=RBAC",
            "--service-cluster-ip-range=10.0.0.0/24",
            "--allow-privileged=true",
            "--max-requests-inflight=1000",
            "--max-mutating-requests-inflight=500",
            "--v=1",
        ]

    def _controller_manager_args(self, state: PlaneState) -> list[str]:
        return [
            f"--kubeconfig={self.kubeconfig}",
            f"--authentication-kubeconfig={self.kubeconfig}",
            f"--authorization-kubeconfig={self.kubeconfig}",
            # a node runs Deployments, Services and PodDisruptionBudgets: every controller but node
            # CIDR allocation (the node's CNI configuration assigns pod addresses)
            f"--controllers={','.join(CONTROLLERS) if state.node_ip is None else '*,-nodeipam'}",
            f"--service-account-private-key-file={self.pki / 'sa.key'}",
            f"--root-ca-file={self.pki / 'ca.crt'}",
            "--use-service-account-credentials=false",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            f"--secure-port={state.controller_manager_port}",
            f"--cert-dir={self.directory / 'kcm-certs'}",
            "--v=1",
        ]

    # -- probes ------------------------------------------------------------------------------

    def _admin_client(self) -> httpx.Client:
        context = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        context.load_cert_chain(str(self.pki / "admin.crt"), str(self.pki / "admin.key"))
        return httpx.Client(verify=context, timeout=2.0)

    def _ready(self, port: int) -> bool:
        try:
            with self._admin_client() as client:
                return client.get(f"https://127.0.0.1:{port}/readyz").status_code == 200
        except httpx.HTTPError:
            return False

    @staticmethod
    def _etcd_healthy(state: PlaneState) -> bool:
        try:
            response = httpx.get(f"http://127.0.0.1:{state.etcd_client_port}/health", timeout=2.0)
        except httpx.HTTPError:
            return False
        return response.status_code == 200 and response.json().get("health") == "true"

    @staticmethod
    def _controller_manager_healthy(state: PlaneState) -> bool:
        try:
            response = httpx.get(
                f"https://127.0.0.1:{state.controller_manager_port}/healthz", verify=False, timeout=2.0
            )
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    @staticmethod
    def _port_free(port: int) -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                return False
        return True

    def _write_kubeconfig(self, port: int) -> None:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "plait-local",
                    "cluster": {
                        "server": f"https://127.0.0.1:{port}",
                        "certificate-authority": str(self.pki / "ca.crt"),
                    },
                }
            ],
            "users": [
                {
                    "name": "plait-admin",
                    "user": {
                        "client-certificate": str(self.pki / "admin.crt"),
                        "client-key": str(self.pki / "admin.key"),
                    },
                }
            ],
            "contexts": [
                {
                    "name": "plait-local",
                    "context": {"cluster": "plait-local", "user": "plait-admin", "namespace": "default"},
                }
            ],
            "current-context": "plait-local",
        }
        tmp = self.kubeconfig.with_suffix(".tmp")
        tmp.write_text(json.dumps(config, indent=2))
        tmp.chmod(0o600)
        tmp.replace(self.kubeconfig)


def _tail(path: str, lines: int = 20) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
