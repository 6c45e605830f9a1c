"""Rendering the Helm chart, applying what it renders, and acting as the identities it creates.

The tests call the real ``helm`` and ``kubectl`` built with the control plane
(:func:`plait._devenv.binaries.find_binaries`) and point them at the test API server.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from plait._devenv.binaries import find_binaries
from plait._devenv.controlplane import ControlPlane
from plait._kube.client import Kube, Resource

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "plait"
KUBE_VERSION = "1.36.3"  # what `helm template` assumes; the test API server's version
RBAC_KINDS = ("ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding")
CLUSTER_SCOPED = ("ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition")

Manifest = dict[str, Any]


def tool(name: str) -> str:
    """``helm`` or ``kubectl``, built with the control plane (and built now if missing)."""
    return str(find_binaries().path(name))


# helm keeps caches and repository settings in $HOME by default; the tests keep theirs apart
_HELM_HOME = Path(tempfile.gettempdir()) / "plait-tests-helm"
_HELM_ENV = {f"HELM_{kind}_HOME": str(_HELM_HOME / kind.lower()) for kind in ("CACHE", "CONFIG", "DATA")}


def run(
    args: list[str],
    *,
    stdin: str | None = None,
    check: bool = True,
    kubeconfig: Path | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **_HELM_ENV, **({"KUBECONFIG": str(kubeconfig)} if kubeconfig else {})}
    result = subprocess.run(args, input=stdin, capture_output=True, text=True, timeout=timeout, check=False, env=env)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args[:3])} ... failed ({result.returncode}):\n{result.stderr}{result.stdout}")
    return result


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run([tool("helm"), *args], check=check)


def values_file(directory: Path, values: dict[str, Any]) -> Path:
    path = directory / f"values-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def template_args(release: str, namespace: str, values: Path | None, *extra: str) -> list[str]:
    args = ["template", release, str(CHART), "--namespace", namespace, "--kube-version", KUBE_VERSION, *extra]
    return [*args, "--values", str(values)] if values is not None else args


def render(
    tmp_path: Path, values: dict[str, Any] | None = None, *, release: str = "plait", namespace: str = "plait"
) -> list[Manifest]:
    """``helm template`` with these values; every non-empty document, parsed."""
    path = values_file(tmp_path, values) if values else None
    out = helm(*template_args(release, namespace, path)).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def render_text(
    tmp_path: Path, values: dict[str, Any] | None = None, *, release: str = "plait", namespace: str = "plait"
) -> str:
    path = values_file(tmp_path, values) if values else None
    return helm(*template_args(release, namespace, path, "--include-crds")).stdout


def kinds(manifests: Iterable[Manifest]) -> list[str]:
    return sorted(m["kind"] for m in manifests)


def find(manifests: Iterable[Manifest], kind: str, name: str | None = None) -> Manifest:
    found = [m for m in manifests if m["kind"] == kind and (name is None or m["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def kubectl(
    plane: ControlPlane, *args: str, stdin: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    return run([tool("kubectl"), "--kubeconfig", str(plane.kubeconfig), *args], stdin=stdin, check=check)


def dump(manifests: Iterable[Manifest]) -> str:
    return "---\n".join(yaml.safe_dump(m) for m in manifests)


@contextmanager
def applied(plane: ControlPlane, manifests: list[Manifest]) -> Iterator[list[Manifest]]:
    """Apply ``manifests`` for real; afterwards delete the cluster-scoped ones (namespaces go with the test)."""
    kubectl(plane, "apply", "-f", "-", stdin=dump(manifests))
    try:
        yield manifests
    finally:
        cluster_wide = [m for m in manifests if m["kind"] in CLUSTER_SCOPED]
        if cluster_wide:
            kubectl(plane, "delete", "--ignore-not-found", "--wait=false", "-f", "-", stdin=dump(cluster_wide))


def service_account_token(kube: Kube, namespace: str, name: str, seconds: int = 3600) -> str:
    """A real, signed token for a service account (the TokenRequest API, as a kubelet gets one)."""
    token_request = Resource("", "v1", f"serviceaccounts/{name}/token", "TokenRequest")
    body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": seconds}}
    token: str = kube.create(token_request, body, namespace)["status"]["token"]
    return token


def token_kubeconfig(plane: ControlPlane, path: Path, token: str, namespace: str) -> Path:
    """A kubeconfig that authenticates with ``token`` only (no admin certificate in it)."""
    admin = yaml.safe_load(plane.kubeconfig.read_text())
    cluster = admin["clusters"][0]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [cluster],
        "users": [{"name": "sa", "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": cluster["name"], "user": "sa", "namespace": namespace}}],
        "current-context": "sa",
    }
    path.write_text(json.dumps(config))
    path.chmod(0o600)
    return path


def container_args(deployment: Manifest, env: dict[str, str]) -> list[str]:
    """The container's args with ``$(VAR)`` references expanded as the kubelet would."""
    args: list[str] = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    expanded = []
    for arg in args:
        for key, value in env.items():
            arg = arg.replace(f"$({key})", value)
        expanded.append(arg)
    return expanded


def with_option(args: list[str], option: str, value: str) -> list[str]:
    """Replace ``--option=...`` in ``args`` (the chart's fixed ports become free ones in tests)."""
    prefix = f"{option}="
    assert any(a.startswith(prefix) for a in args), f"{option} missing from {args}"
    return [f"{prefix}{value}" if a.startswith(prefix) else a for a in args]
