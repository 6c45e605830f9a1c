"""What a node changes on the machine outside its own directory, read and put back.

A kubelet, containerd and the CNI bridge change the host: iptables chains and rules, a bridge
interface, cgroups in every hierarchy, mounts, network namespaces, sysctls and a few well-known
directories. :func:`read_host` reads all of that into a :class:`HostState`; the node saves one
before it starts and :func:`restore_host` undoes, after it stopped, exactly what differs and is
the node's. Used by :mod:`plait._devenv.node` and by the test that checks teardown.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

CGROUPS = Path("/sys/fs/cgroup")
NETNS = Path("/run/netns")
# sysctls the kubelet, kube-proxy and the bridge plugin may set
SYSCTLS = (
    "net.ipv4.ip_forward",
    "net.ipv4.conf.all.route_localnet",
    "net.bridge.bridge-nf-call-iptables",
    "net.bridge.bridge-nf-call-ip6tables",
    "net.netfilter.nf_conntrack_max",
    "net.netfilter.nf_conntrack_tcp_timeout_established",
    "net.netfilter.nf_conntrack_tcp_timeout_close_wait",
    "vm.overcommit_memory",
    "vm.panic_on_oom",
    "kernel.panic",
    "kernel.panic_on_oops",
    "kernel.keys.root_maxkeys",
    "kernel.keys.root_maxbytes",
)
# directories a kubelet, containerd or the CNI plugins create when they do not exist
HOST_PATHS = (
    "/run/containerd",
    "/run/netns",
    "/var/lib/cni",
    "/var/log/pods",
    "/var/log/containers",
    "/var/lib/kubelet",
    "/var/lib/containerd",
    "/etc/cni",
    "/opt/cni",
    "/etc/kubernetes",
)
# iptables chains and rules that are a node's: the kubelet's and kube-proxy's, the CNI plugins'
NODE_MARKERS = ("KUBE-", "CNI-")
IPTABLES = (("ipv4", "iptables"), ("ipv6", "ip6tables"))


@dataclass
class HostState:
    sysctls: dict[str, str | None]
    iptables: dict[str, list[str]]  # "ipv4 filter" -> chain declarations and rules, no counters
    links: list[str]
    netns: list[str]
    cgroups: dict[str, list[str]]  # hierarchy -> its top-level cgroups
    mounts: list[str]
    paths: dict[str, bool]

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, path: Path) -> HostState | None:
        try:
            return cls(**json.loads(path.read_text()))
        except FileNotFoundError:
            return None

    def differences(self, now: HostState) -> list[str]:
        """What ``now`` has that this state had not, or lacks, one line each."""
        found = []
        for key, before in self.sysctls.items():
            if now.sysctls.get(key) != before:
                found.append(f"sysctl {key}: {before} -> {now.sysctls.get(key)}")
        for table in sorted(set(self.iptables) | set(now.iptables)):
            before_lines, now_lines = _set_up(self.iptables.get(table, [])), _set_up(now.iptables.get(table, []))
            if bool(before_lines) != bool(now_lines):
                found.append(f"iptables table {table}: {'added' if now_lines else 'removed'}")
            found += [f"iptables {table}: added {line}" for line in now_lines if line not in before_lines]
            found += [f"iptables {table}: removed {line}" for line in before_lines if line not in now_lines]
        found += _list_changes("link", self.links, now.links)
        found += _list_changes("network namespace", self.netns, now.netns)
        for hierarchy in sorted(set(self.cgroups) | set(now.cgroups)):
            found += _list_changes(
                f"cgroup {hierarchy}", self.cgroups.get(hierarchy, []), now.cgroups.get(hierarchy, [])
            )
        found += _list_changes(
            "mount", *([p for p in m if not _image_build_mount(p)] for m in (self.mounts, now.mounts))
        )
        for path, existed in self.paths.items():
            if now.paths.get(path) != existed:
                found.append(f"path {path}: {'created' if not existed else 'removed'}")
        return found


def _set_up(lines: list[str]) -> list[str]:
    """A table's lines less its built-in chains with the default policy (``:INPUT ACCEPT``): the
    kernel makes those the first time anything reads the table and keeps them, so a machine
    whose iptables were never used and the same machine after a node are alike."""
    return [line for line in lines if not (line.startswith(":") and line.endswith(" ACCEPT"))]


def _list_changes(kind: str, before: list[str], now: list[str]) -> list[str]:
    return [f"{kind} added: {x}" for x in now if x not in before] + [
        f"{kind} removed: {x}" for x in before if x not in now
    ]


def read_host() -> HostState:
    return HostState(
        sysctls={key: _read_sysctl(key) for key in SYSCTLS},
        iptables=_read_iptables(),
        links=sorted(p.name for p in Path("/sys/class/net").iterdir()),
        netns=sorted(p.name for p in NETNS.iterdir()) if NETNS.is_dir() else [],
        cgroups={h.name: sorted(c.name for c in h.iterdir() if c.is_dir()) for h in _hierarchies()},
        mounts=sorted(set(_mount_points())),
        paths={path: os.path.lexists(path) for path in HOST_PATHS},
    )


def _sysctl_path(key: str) -> Path:
    return Path("/proc/sys") / key.replace(".", "/")


def _read_sysctl(key: str) -> str | None:
    try:
        return " ".join(_sysctl_path(key).read_text().split())
    except OSError:
        return None


def _hierarchies() -> list[Path]:
    return sorted(p for p in CGROUPS.iterdir() if p.is_dir() and not p.is_symlink()) if CGROUPS.is_dir() else []


def _mount_points() -> list[str]:
    with open("/proc/self/mountinfo") as mountinfo:
        return [line.split()[4].replace("\\040", " ") for line in mountinfo]


def _image_build_mount(point: str) -> bool:
    """A container being built by buildah or podman (their storage), not the node's."""
    return "/containers/storage/overlay/" in point and point.endswith("/merged")


def _read_iptables() -> dict[str, list[str]]:
    tables: dict[str, list[str]] = {}
    for family, command in IPTABLES:
        save = shutil.which(f"{command}-save")
        if save is None:
            continue
        table = None
        for line in subprocess.run([save], capture_output=True, text=True, check=True).stdout.splitlines():
            if line.startswith("*"):
                table = f"{family} {line[1:]}"
                tables[table] = []
            elif table is not None and line.startswith(":"):
                tables[table].append(line.rsplit(" ", 1)[0])  # the chain and its policy, not its counters
            elif table is not None and line.startswith("-"):
                tables[table].append(line)
    return tables


def is_node_rule(line: str) -> bool:
    return any(marker in line for marker in NODE_MARKERS)


def restore_host(before: HostState, *, bridge: str, cgroup: str, directory: Path) -> list[str]:
    """Undo what the stopped node left: its mounts and network namespaces, the bridge, its cgroups,
    iptables chains and rules, sysctls it changed and directories it created. Returns what still
    differs from ``before`` afterwards (empty when the host is back as it was)."""
    for point in sorted({p for p in _mount_points() if _within(p, directory)}, key=len, reverse=True):
        subprocess.run(["umount", "--lazy", point], capture_output=True, check=False)
    for name in set(os.listdir(NETNS) if NETNS.is_dir() else ()) - set(before.netns):
        if name.startswith("cni-"):
            subprocess.run(["umount", "--lazy", str(NETNS / name)], capture_output=True, check=False)
            (NETNS / name).unlink(missing_ok=True)
    if Path("/sys/class/net", bridge).exists():
        subprocess.run(["ip", "link", "delete", bridge], capture_output=True, check=False)
    for hierarchy in _hierarchies():
        _remove_cgroup_tree(hierarchy / cgroup.strip("/"))
    _restore_iptables(before)
    for key, value in before.sysctls.items():
        if value is not None and _read_sysctl(key) != value:
            _sysctl_path(key).write_text(value)
    for path, existed in before.paths.items():
        if not existed and os.path.lexists(path) and not _holds_mounts(path):
            if os.path.islink(path) or not os.path.isdir(path):
                os.unlink(path)
            else:
                shutil.rmtree(path, ignore_errors=True)
    return before.differences(read_host())


def _within(path: str, directory: Path) -> bool:
    return path == str(directory) or path.startswith(f"{directory}/")


def _holds_mounts(path: str) -> bool:
    return any(_within(point, Path(path)) for point in _mount_points())


def _remove_cgroup_tree(root: Path) -> None:
    if not root.is_dir():
        return
    for current, directories, _ in os.walk(root, topdown=False):
        for name in directories:
            _rmdir(Path(current) / name)
    _rmdir(root)


def _rmdir(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.rmdir()


def cgroup_pids(cgroup: str) -> set[int]:
    """Every process in ``cgroup`` or below it, in any hierarchy."""
    pids: set[int] = set()
    for hierarchy in _hierarchies():
        root = hierarchy / cgroup.strip("/")
        if not root.is_dir():
            continue
        for procs in root.rglob("cgroup.procs"):
            try:
                pids.update(int(pid) for pid in procs.read_text().split())
            except OSError:
                continue
    return pids


def create_cgroup(cgroup: str) -> None:
    """``cgroup`` in every hierarchy (the kubelet's --cgroup-root must exist); a new v1 cpuset
    gets its parent's CPUs and memory nodes, or no process could join it."""
    for hierarchy in _hierarchies():
        path = hierarchy / cgroup.strip("/")
        path.mkdir(exist_ok=True)
        for name in ("cpuset.cpus", "cpuset.mems"):
            own = path / name
            if own.exists() and not own.read_text().strip():
                own.write_text((hierarchy / name).read_text())


def _restore_iptables(before: HostState) -> None:
    now = _read_iptables()
    for table, lines in now.items():
        family, name = table.split()
        command = dict(IPTABLES)[family]
        old = before.iptables.get(table, [])
        node_chains = [
            chain
            for line in lines
            if line.startswith(":") and line not in old and is_node_rule(chain := line[1:].split()[0])
        ]
        for line in lines:
            # rules in the node's own chains go with them; its jumps from the built-in chains here
            if line.startswith("-A ") and line not in old and is_node_rule(line) and line.split()[1] not in node_chains:
                _iptables(command, name, ["-D", *shlex.split(line)[1:]])
        for chain in node_chains:
            _iptables(command, name, ["-F", chain])
        for chain in node_chains:
            _iptables(command, name, ["-X", chain])
        # a table the node's tools created goes again (iptables-nft keeps empty ones)
        if table not in before.iptables and _only_empty_builtin_chains(table) and shutil.which("nft"):
            nft_family = "ip" if family == "ipv4" else "ip6"
            subprocess.run(["nft", "delete", "table", nft_family, name], capture_output=True, check=False)


def _only_empty_builtin_chains(table: str) -> bool:
    return all(line.startswith(":") and line.split()[1] == "ACCEPT" for line in _read_iptables().get(table, []))


def _iptables(command: str, table: str, args: list[str]) -> None:
    subprocess.run([command, "-w", "-t", table, *args], capture_output=True, check=False)
