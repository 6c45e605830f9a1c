"""The API server stops for ten seconds and comes back (etcd keeps its data): the operator and the
workers reconnect with backoff, without crashing, and every instance finishes."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from plait._devenv.controlplane import ControlPlane
from plait._kube.client import Kube
from tests.k8s.support import PlaitProcess, marks, submit, wait_for, wait_phase


def test_everything_finishes_after_a_ten_second_api_server_outage(
    kube: Kube, control_plane: ControlPlane, own: str, start_operator: Callable[..., PlaitProcess],
    start_worker: Callable[..., PlaitProcess], marks_dir: Path,
) -> None:  # fmt: skip
    operator = start_operator("--namespace", own)
    worker = start_worker(own, "--lease-seconds", "30")
    submit(kube, own, "across", "slow", 4)  # runs through the outage
    submit(kube, own, "waits", "delay", 1)  # its timer fires during the outage
    for n in range(5):
        submit(kube, own, f"seq-{n}", "sequence", n)
    wait_for(lambda: "nap-start" in " ".join(marks(marks_dir, "across")), what="the long task to start")

    control_plane.stop_process("kube-apiserver")
    try:
        time.sleep(10)
        assert operator.alive() and worker.alive()
    finally:
        control_plane.start_process("kube-apiserver")

    assert wait_phase(kube, own, "across", "Succeeded", timeout=90)["status"]["output"] == "rested 4"
    assert wait_phase(kube, own, "waits", "Succeeded", timeout=60)["status"]["output"] == 4
    for n in range(5):
        assert wait_phase(kube, own, f"seq-{n}", "Succeeded", timeout=60)["status"]["output"] == (n + 1) * 2 + 1
    assert operator.alive() and worker.alive()
    assert [line.split()[0] for line in marks(marks_dir, "across")].count("nap-start") == 1
    submit(kube, own, "after", "sequence", 10)  # and new work still flows
    assert wait_phase(kube, own, "after", "Succeeded", timeout=30)["status"]["output"] == 23
