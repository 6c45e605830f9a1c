"""`plait dev up|env|status|down` manage a control plane from the shell, and clean up after it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from plait._devenv.binaries import (
    BINARIES_TAG,
    ETCD_VERSION,
    HELM_VERSION,
    JAEGER_TAG,
    JAEGER_VERSION,
    KUBERNETES_VERSION,
    PROMETHEUS_TAG,
    PROMETHEUS_VERSION,
    S3_TAG,
    VERSITYGW_VERSION,
)
from plait._devenv.controlplane import PlaneState, _alive
from plait._devenv.dev import DevEnvironment

REPO = Path(__file__).resolve().parents[2]


def plait(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PLAIT_DEV_DIR": str(directory)}
    env.pop("KUBECONFIG", None)
    return subprocess.run([sys.executable, "-m", "plait", *args], env=env, capture_output=True, text=True, timeout=180)


def test_dev_up_env_down(tmp_path: Path) -> None:
    directory = tmp_path / "dev"
    try:
        first = plait(directory, "dev", "up")
        assert first.returncode == 0, first.stderr
        assert str(directory / "kubeconfig") in first.stdout
        pids = {p.pid for p in PlaneState.load(directory / "state.json").processes}  # type: ignore[union-attr]
        assert len(pids) == 3
        assert "plait-operator" in first.stdout and "plait-worker" in first.stdout

        again = plait(directory, "dev", "up")
        assert again.returncode == 0, again.stderr
        assert {p.pid for p in PlaneState.load(directory / "state.json").processes} == pids  # type: ignore[union-attr]

        status = plait(directory, "dev", "status")
        assert status.returncode == 0 and status.stdout.count("running") == 5, status.stdout

        plait_bin = Path(sys.executable).parent
        shell = subprocess.run(
            ["bash", "-c", 'eval "$(plait dev env)" && kubectl get ns'],
            env={**os.environ, "PLAIT_DEV_DIR": str(directory), "PATH": f"{plait_bin}:{os.environ['PATH']}"},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert shell.returncode == 0, shell.stderr
        assert "kube-system" in shell.stdout and "default" in shell.stdout
        published = ""
        for _ in range(100):  # the worker publishes the examples' definitions once it is up
            published = subprocess.run(
                ["bash", "-c", 'eval "$(plait dev env)" && kubectl get workflowdefinitions -o name'],
                env={**os.environ, "PLAIT_DEV_DIR": str(directory), "PATH": f"{plait_bin}:{os.environ['PATH']}"},
                capture_output=True, text=True, timeout=60,
            ).stdout  # fmt: skip
            if "order-processing" in published:
                break
            time.sleep(0.2)
        assert "order-processing" in published
    finally:
        records = (PlaneState.load(directory / "state.json") or PlaneState(0, 0, 0, 0)).processes
        records += DevEnvironment(directory).components()
        down = plait(directory, "dev", "down")
    assert down.returncode == 0, down.stderr
    assert len(records) == 5 and not any(_alive(r) for r in records)
    assert plait(directory, "dev", "status").returncode == 1


def test_python_and_build_script_agree_on_versions() -> None:
    versions = dict(
        line.split("=", 1)
        for line in (REPO / "hack" / "versions.env").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert versions["KUBERNETES_VERSION"] == KUBERNETES_VERSION
    assert versions["ETCD_VERSION"] == ETCD_VERSION
    assert versions["HELM_VERSION"] == HELM_VERSION
    assert versions["PLAIT_BINARIES_TAG"] == BINARIES_TAG
    assert versions["PROMETHEUS_VERSION"] == PROMETHEUS_VERSION
    assert versions["PLAIT_PROMETHEUS_TAG"] == PROMETHEUS_TAG
    assert versions["VERSITYGW_VERSION"] == VERSITYGW_VERSION and versions["PLAIT_S3_TAG"] == S3_TAG
    assert f"versity/versitygw {VERSITYGW_VERSION}" in (REPO / "hack" / "s3" / "go.mod").read_text()
    assert f"k8s.io/kubernetes {KUBERNETES_VERSION}" in (REPO / "hack" / "kube" / "go.mod").read_text()
    assert f"helm.sh/helm/v3 {HELM_VERSION}" in (REPO / "hack" / "helm" / "go.mod").read_text()
    assert f"prometheus/prometheus {PROMETHEUS_VERSION}" in (REPO / "hack" / "prometheus" / "go.mod").read_text()
    assert versions["JAEGER_VERSION"] == JAEGER_VERSION
    assert versions["PLAIT_JAEGER_TAG"] == JAEGER_TAG
    assert f"jaegertracing/jaeger {JAEGER_VERSION}" in (REPO / "hack" / "jaeger" / "go.mod").read_text()
