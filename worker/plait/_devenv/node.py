"""A real Kubernetes node beside the local control plane: containerd, kubelet, scheduler, kube-proxy.

``plait dev up --node`` and the node test tier start one, so the Helm chart's pods run for real.
Linux and root only. Everything the node keeps lives in its directory (``<dev dir>/node``):
configuration, containerd's images and state, the kubelet's root, pod logs, CNI address leases,
logs, ``state.json`` (its processes) and ``host-before.json`` (the host as it was before the node
started, :mod:`plait._devenv.host`). ``stop()`` ends its processes, its containers and their
shims, and puts the host back as it was. One node per machine: ``/run/plait/node.lock`` names the
directory of the node that runs.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import platform
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from plait._devenv.binaries import NODE_NAMES, cache_dir, find_binaries
from plait._devenv.controlplane import (
    ControlPlane,
    ControlPlaneError,
    ProcessRecord,
    RecordedState,
    _alive,
    _tail,
    _terminate,
    free_port,
    spawn,
)
from plait._devenv.host import HostState, cgroup_pids, create_cgroup, read_host, restore_host
from plait._kube.client import Kube, Resource
from plait._kube.connection import load_connection
from plait.errors import PlaitError

NODE_NAME = "plait-node"
BRIDGE = "plait0"
POD_SUBNET = "10.244.0.0/24"
CGROUP = "/plait-node"  # the kubelet's --cgroup-root: every pod's cgroup is below it
LOCK = Path("/run/plait/node.lock")
PAUSE_IMAGE = "localhost/plait-pause:1"
NODES = Resource("", "v1", "nodes", "Node", namespaced=False)
# Debian packages (hack/install-node-deps.sh) and where they put what the node runs
RUNTIME_FILES = {
    "containerd": "/usr/bin/containerd",
    "containerd-shim-runc-v2": "/usr/bin/containerd-shim-runc-v2",
    "ctr": "/usr/bin/ctr",
    "runc": "/usr/sbin/runc",
    "CNI bridge plugin": "/usr/lib/cni/bridge",
    "CNI host-local plugin": "/usr/lib/cni/host-local",
    "CNI loopback plugin": "/usr/lib/cni/loopback",
}


class NodeError(ControlPlaneError):
    """The machine cannot run a node, or the node failed to start or to stop cleanly."""


@dataclass
class NodeState(RecordedState):
    node_ip: str
    processes: list[ProcessRecord] = field(default_factory=list)


def check_machine() -> None:
    """Fail with what is missing when this machine cannot run a node."""
    if platform.system() != "Linux":
        raise NodeError(f"a plait dev node runs on Linux only (this is {platform.system()})")
    if os.geteuid() != 0:
        raise NodeError(
            "a plait dev node needs root: containerd and the kubelet manage cgroups, mounts, network "
            "namespaces and iptables. Run it as root (or without --node for a control plane only)."
        )
    missing = [f"{name} ({path})" for name, path in RUNTIME_FILES.items() if not os.access(path, os.X_OK)]
    missing += [tool for tool in ("ip", "iptables", "iptables-save", "umount") if shutil.which(tool) is None]
    if missing:
        raise NodeError(
            f"missing for a node: {', '.join(missing)}; install them with hack/install-node-deps.sh "
            "(containerd, runc, containernetworking-plugins, iptables from Debian's packages)"
        )


def node_address() -> str:
    """This machine's own IPv4 address (not loopback): pods reach the API server there."""
    out = subprocess.run(["ip", "-j", "-4", "addr", "show", "scope", "global", "up"], capture_output=True, text=True)
    for interface in json.loads(out.stdout or "[]"):
        if interface.get("ifname") == BRIDGE:
            continue
        for address in interface.get("addr_info", []):
            if address.get("family") == "inet":
                return str(address["local"])
    raise NodeError("this machine has no global IPv4 address for the node (ip -4 addr show scope global)")


class Node:
    """The node rooted at ``directory``, registered with ``plane`` (started with its node_ip)."""

    def __init__(self, directory: Path, plane: ControlPlane) -> None:
        self.directory = directory.resolve()
        self.plane = plane
        self._children: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def state_file(self) -> Path:
        return self.directory / "state.json"

    @property
    def host_file(self) -> Path:
        return self.directory / "host-before.json"

    @property
    def socket(self) -> Path:
        return self.directory / "containerd.sock"

    @property
    def logs(self) -> Path:
        return self.directory / "logs"

    def state(self) -> NodeState | None:
        return NodeState.load(self.state_file)

    def running(self) -> bool:
        state = self.state()
        return state is not None and len(state.processes) == 4 and all(_alive(p) for p in state.processes)

    # -- start -------------------------------------------------------------------------------

    def start(self, timeout: float = 180.0) -> None:
        """Start containerd, import the images, start the scheduler, kube-proxy and the kubelet,
        and wait until the node is Ready. Idempotent."""
        check_machine()
        if self.plane.node_ip is None:
            raise NodeError("the control plane must be started for a node (ControlPlane(node_ip=...))")
        binaries = find_binaries(also=NODE_NAMES)
        with self._lock():
            if self.running():
                return
            self._stop_processes()
            self.directory.mkdir(parents=True, exist_ok=True)
            self.logs.mkdir(exist_ok=True)
            if not self.host_file.exists():  # else a previous node was not torn down: keep its "before"
                read_host().save(self.host_file)
            state = NodeState(node_ip=self.plane.node_ip)
            state.save(self.state_file)
            try:
                create_cgroup(CGROUP)
                self._write_configuration(state)
                self._launch(
                    state, "containerd", "/usr/bin/containerd", ["--config", str(self.directory / "containerd.toml")]
                )
                self._wait(state, "containerd", self._containerd_ready, timeout)
                self.import_images()
                scheduler_port = free_port()
                kubeconfig = str(self.plane.kubeconfig)
                self._launch(
                    state,
                    "kube-scheduler",
                    str(binaries.path("kube-scheduler")),
                    [
                        f"--kubeconfig={kubeconfig}",
                        f"--authentication-kubeconfig={kubeconfig}",
                        f"--authorization-kubeconfig={kubeconfig}",
                        "--leader-elect=false",
                        "--bind-address=127.0.0.1",
                        f"--secure-port={scheduler_port}",
                        "--v=1",
                    ],
                )
                self._launch(
                    state,
                    "kube-proxy",
                    str(binaries.path("kube-proxy")),
                    [f"--config={self.directory / 'kube-proxy.yaml'}", "--v=1"],
                )
                self._launch(
                    state,
                    "kubelet",
                    str(binaries.path("kubelet")),
                    [
                        f"--config={self.directory / 'kubelet.yaml'}",
                        f"--kubeconfig={kubeconfig}",
                        f"--root-dir={self.directory / 'kubelet'}",
                        f"--node-ip={state.node_ip}",
                        f"--hostname-override={NODE_NAME}",
                        "--v=1",
                    ],
                )
                self._wait(state, "kubelet", self._node_ready, timeout)
            except BaseException:
                self._stop_locked()
                raise

    def check_free(self) -> None:
        """Raise :class:`NodeError` when another directory's node holds the machine (checked
        before anything is started for this one)."""
        with self._guard():
            self._refuse_other_owner()

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """Hold the machine's node lock: refuse when another directory's node runs."""
        with self._guard():
            self._refuse_other_owner()
            LOCK.write_text(str(self.directory))
            yield

    @staticmethod
    @contextlib.contextmanager
    def _guard() -> Iterator[None]:
        LOCK.parent.mkdir(parents=True, exist_ok=True)
        with open(LOCK.with_suffix(".guard"), "w") as guard:
            fcntl.flock(guard, fcntl.LOCK_EX)  # one start or stop at a time
            yield

    def _refuse_other_owner(self) -> None:
        owner = LOCK.read_text().strip() if LOCK.exists() else ""
        if owner and owner != str(self.directory):
            other = NodeState.load(Path(owner) / "state.json")
            if other is not None and any(_alive(p) for p in other.processes):
                raise NodeError(
                    f"a plait dev node already runs on this machine (from {owner}); one node at a "
                    f"time: stop it first (plait dev down --dir {Path(owner).parent})"
                )
            if Path(owner, "host-before.json").exists():
                raise NodeError(
                    f"the node of {owner} stopped without putting the host back; "
                    f"run plait dev down --dir {Path(owner).parent} first"
                )

    def _write_configuration(self, state: NodeState) -> None:
        d = self.directory
        pki = self.plane.pki
        (d / "cni").mkdir(exist_ok=True)
        (d / "cni" / "plait.conflist").write_text(
            json.dumps(
                {
                    "cniVersion": "0.4.0",
                    "name": "plait",
                    "plugins": [
                        {
                            "type": "bridge",
                            "bridge": BRIDGE,
                            "isGateway": True,
                            # traffic never leaves the machine: no masquerading
                            "ipMasq": False,
                            "hairpinMode": True,
                            "ipam": {
                                "type": "host-local",
                                "ranges": [[{"subnet": POD_SUBNET}]],
                                "routes": [{"dst": "0.0.0.0/0"}],
                                "dataDir": str(d / "cni" / "leases"),
                            },
                        }
                    ],
                },
                indent=2,
            )
        )
        (d / "containerd.toml").write_text(
            f"""# containerd of the plait dev node: everything under {d}
version = 2
root = "{d / "containerd" / "root"}"
state = "{d / "containerd" / "state"}"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "{self.socket}"

[plugins."io.containerd.internal.v1.opt"]
  path = "{d / "containerd" / "opt"}"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  # root here lacks CAP_SYS_RESOURCE: without this every pod fails with
  # "can't get final child's PID from pipe"
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "{RUNTIME_FILES["runc"]}"
        Root = "{d / "containerd" / "runc"}"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{d / "cni"}"
"""
        )
        kubelet = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            # the cgroups here are a v1/v2 hybrid: the kubelet refuses v1 unless told
            "failCgroupV1": False,
            "cgroupDriver": "cgroupfs",
            "cgroupRoot": CGROUP,
            "containerRuntimeEndpoint": f"unix://{self.socket}",
            "address": state.node_ip,
            "port": free_port(),
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": free_port(),
            # the API server (logs, exec) presents the admin certificate of the plane's CA
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": False},
                "x509": {"clientCAFile": str(pki / "ca.crt")},
            },
            "authorization": {"mode": "AlwaysAllow"},
            "podLogsDir": str(d / "pod-logs"),
            "resolvConf": "",  # no DNS for pods: they reach the API server by address
            "failSwapOn": False,
            "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
            # images are imported, never pulled: keep them
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "serializeImagePulls": False,
        }
        (d / "kubelet.yaml").write_text(json.dumps(kubelet, indent=2))
        proxy = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": str(self.plane.kubeconfig)},
            "hostnameOverride": NODE_NAME,
            "mode": "iptables",
            "clusterCIDR": POD_SUBNET,
            # leave the host's conntrack sysctls alone
            "conntrack": {"maxPerCore": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
            "iptables": {"localhostNodePorts": False},
            "metricsBindAddress": f"127.0.0.1:{free_port()}",
            "healthzBindAddress": f"127.0.0.1:{free_port()}",
        }
        (d / "kube-proxy.yaml").write_text(json.dumps(proxy, indent=2))

    def _launch(self, state: NodeState, name: str, binary: str, args: list[str]) -> None:
        log_path = self.logs / f"{name}.log"
        child = spawn([binary, *args], log_path, self.directory)
        self._children[name] = child
        state.processes.append(ProcessRecord(name=name, pid=child.pid, binary=binary, log=str(log_path)))
        state.save(self.state_file)

    def _wait(self, state: NodeState, name: str, probe: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for record in state.processes:
                child = self._children.get(record.name)
                if child is not None and child.poll() is not None:
                    raise NodeError(f"{record.name} exited during start-up; see {record.log}:\n{_tail(record.log)}")
            if probe():
                return
            time.sleep(0.2)
        record = next(p for p in state.processes if p.name == name)
        raise NodeError(f"{name} was not ready after {timeout:.0f}s; see {record.log}:\n{_tail(record.log)}")

    def ctr(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [RUNTIME_FILES["ctr"], "--address", str(self.socket), "--namespace", "k8s.io", *args]
        return subprocess.run(command, capture_output=True, text=True, check=check, timeout=300)

    def _containerd_ready(self) -> bool:
        return self.socket.exists() and self.ctr("version", check=False).returncode == 0

    def import_images(self) -> list[str]:
        """Import the image archives `hack/build-images.sh` made (the pause image at least) that
        changed since this node last imported them; returns their names."""
        archives = sorted(p for p in (cache_dir() / "images").glob("*.tar") if not p.name.endswith("rootfs.tar"))
        if not any(p.name == "pause.tar" for p in archives):
            raise NodeError(
                f"no pause image in {cache_dir() / 'images'}: build it with `hack/build-images.sh pause` "
                "(or `make images`, which builds plait's images too)"
            )
        record = self.directory / "images.json"
        imported: dict[str, float] = json.loads(record.read_text()) if record.exists() else {}
        changed = [p for p in archives if imported.get(p.name) != p.stat().st_mtime]
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(lambda archive: self.ctr("images", "import", str(archive)), changed))
        imported.update({archive.name: archive.stat().st_mtime for archive in changed})
        record.write_text(json.dumps(imported, indent=2))
        return [p.name for p in changed]

    def _node_ready(self) -> bool:
        try:
            with Kube(load_connection(self.plane.kubeconfig), timeout=5.0) as kube:
                node = kube.get(NODES, NODE_NAME)
        except (httpx.HTTPError, OSError, PlaitError):
            return False
        conditions = node.get("status", {}).get("conditions", [])
        return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)

    # -- stop --------------------------------------------------------------------------------

    def stop(self) -> list[str]:
        """Stop the node and put the host back as it was; returns what could not be restored."""
        with self._lock():
            leftovers = self._stop_locked()
            LOCK.unlink(missing_ok=True)
            return leftovers

    def _stop_locked(self) -> list[str]:
        self._stop_processes()
        before = HostState.load(self.host_file)
        if before is None:
            return []
        leftovers = restore_host(before, bridge=BRIDGE, cgroup=CGROUP, directory=self.directory)
        if not leftovers:
            self.host_file.unlink()
        return leftovers

    def _stop_processes(self) -> None:
        """The kubelet first (so it restarts nothing), then every container, containerd and its shims."""
        state = self.state()
        records = state.processes if state else []
        for name in ("kubelet", "kube-proxy", "kube-scheduler"):
            for record in [r for r in records if r.name == name]:
                _terminate(record)
        for _ in range(50):
            pids = cgroup_pids(CGROUP)
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)
        for record in [r for r in records if r.name == "containerd"]:
            _terminate(record)
        for pid in self._shims():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for child in self._children.values():
            if child.poll() is None:
                child.kill()
            child.wait()
        self._children.clear()
        if state is not None:
            state.processes = []
            state.save(self.state_file)

    def _shims(self) -> list[int]:
        """containerd-shim processes of this node's containerd (they outlive it)."""
        address = str(self.socket).encode()
        pids = []
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if cmdline and cmdline[0].endswith(b"containerd-shim-runc-v2") and address in cmdline:
                pids.append(int(proc.name))
        return pids

    def status(self) -> list[ProcessRecord]:
        state = self.state()
        return state.processes if state else []
