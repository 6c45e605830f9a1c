"""Where the control-plane binaries live, and how they get there.

plait builds etcd, kube-apiserver, kube-controller-manager, kubectl and helm, the node's kubelet,
kube-scheduler and kube-proxy, Prometheus with promtool, and Jaeger (the tracing tests' OTLP
backend) from Go modules (``hack/build-binaries.sh``) into a cache directory keyed by their
versions. The control plane, ``plait dev`` and the tests find them here; a source checkout builds
what is missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from plait.errors import PlaitError

KUBERNETES_VERSION = "v1.36.3"
ETCD_VERSION = "v3.6.8"
HELM_VERSION = "v3.22.0"
PROMETHEUS_VERSION = "v0.316.0"
BINARIES_TAG = f"k8s-{KUBERNETES_VERSION}-etcd-{ETCD_VERSION}-helm-{HELM_VERSION}"
PROMETHEUS_TAG = f"prometheus-{PROMETHEUS_VERSION}"
VERSITYGW_VERSION = "v1.8.0"  # the S3-compatible server of the payload tests (plait._devenv.s3server)
S3_TAG = f"versitygw-{VERSITYGW_VERSION}"
JAEGER_VERSION = "v1.75.0"
JAEGER_TAG = f"jaeger-{JAEGER_VERSION}"
NAMES = ("etcd", "kube-apiserver", "kube-controller-manager", "kubectl", "helm")
NODE_NAMES = ("kubelet", "kube-scheduler", "kube-proxy")
PROMETHEUS_NAMES = ("prometheus", "promtool")


class BinariesMissing(PlaitError):
    """The control-plane binaries are not built and cannot be built from here."""


@dataclass(frozen=True)
class Binaries:
    """The Kubernetes binaries in ``directory``; Prometheus' (a version of its own) beside it."""

    directory: Path
    names: tuple[str, ...] = NAMES
    prometheus_directory: Path | None = None

    def path(self, name: str) -> Path:
        if name in PROMETHEUS_NAMES and self.prometheus_directory is not None:
            return self.prometheus_directory / name
        return self.directory / name

    @property
    def missing(self) -> list[str]:
        return [name for name in self.names if not os.access(self.path(name), os.X_OK)]


def cache_dir() -> Path:
    explicit = os.environ.get("PLAIT_CACHE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "plait"


def build_script() -> Path | None:
    """`hack/build-binaries.sh` of the source checkout this package runs from, if any."""
    for parent in Path(__file__).resolve().parents:
        candidate = parent / "hack" / "build-binaries.sh"
        if candidate.is_file():
            return candidate
    return None


def find_binaries(*, build: bool = True, also: tuple[str, ...] = ()) -> Binaries:
    """The control plane's cached binaries, and ``also`` these (of NODE_NAMES, PROMETHEUS_NAMES);
    builds the missing ones from a source checkout when ``build``."""
    override = os.environ.get("PLAIT_BIN_DIR")
    names = tuple(dict.fromkeys((*NAMES, *also)))
    if override:
        binaries = Binaries(Path(override), names)
    else:
        binaries = Binaries(cache_dir() / "bin" / BINARIES_TAG, names, cache_dir() / "bin" / PROMETHEUS_TAG)
    if not binaries.missing:
        return binaries
    script = build_script()
    if not build or override or script is None:
        raise BinariesMissing(
            f"missing control-plane binaries {', '.join(binaries.missing)} in {binaries.directory}; "
            "build them from a plait source checkout with `hack/build-binaries.sh` "
            "(needs the Go toolchain), or point PLAIT_BIN_DIR at a directory holding them"
        )
    if shutil.which("go") is None:
        raise BinariesMissing(
            "the Go toolchain is not on PATH; plait builds its local Kubernetes control plane "
            "from Go modules. Install Go >= 1.26 and try again."
        )
    args = [str(script)] if set(also) - set(NAMES) else [str(script), "--control-plane"]
    subprocess.run(args, check=True, env={**os.environ, "PLAIT_CACHE_DIR": str(cache_dir())})
    if binaries.missing:
        raise BinariesMissing(f"{script} finished but {', '.join(binaries.missing)} are still missing")
    return binaries


def find_jaeger(*, build: bool = True) -> Path:
    """The cached Jaeger binary; built from a source checkout when missing and ``build``."""
    path = cache_dir() / "bin" / JAEGER_TAG / "jaeger"
    if os.access(path, os.X_OK):
        return path
    script = build_script()
    if not build or script is None or shutil.which("go") is None:
        raise BinariesMissing(
            f"Jaeger {JAEGER_VERSION} is not built ({path} is missing); build it from a plait source checkout "
            "with `hack/build-binaries.sh --jaeger` (needs the Go toolchain)"
        )
    subprocess.run([str(script), "--jaeger"], check=True, env={**os.environ, "PLAIT_CACHE_DIR": str(cache_dir())})
    if not os.access(path, os.X_OK):
        raise BinariesMissing(f"{script} --jaeger finished but {path} is still missing")
    return path
