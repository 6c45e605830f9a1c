"""Workers and the operator die mid-run; nothing finished is lost and nothing runs twice at once."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from plait._kube.client import Kube
from plait._kube.models import TASKS
from tests.k8s.support import PlaitProcess, marks, submit, wait_for, wait_phase


def test_a_worker_killed_mid_task_has_the_task_rerun_elsewhere_after_its_lease(
    kube: Kube, e2e: str, start_worker: Callable[..., PlaitProcess], marks_dir: Path
) -> None:
    doomed = start_worker(e2e, "--lease-seconds", "2")
    submit(kube, e2e, "k", "slow", 2)
    wait_for(lambda: "nap-start" in " ".join(marks(marks_dir, "k")), what="the nap to start")
    doomed.kill()
    survivor = start_worker(e2e, "--lease-seconds", "2")
    done = wait_phase(kube, e2e, "k", "Succeeded", timeout=45)
    assert done["status"]["output"] == "rested 2"
    lines = [line.split() for line in marks(marks_dir, "k")]
    starts = [pid for name, _, pid, *_ in lines if name == "nap-start"]
    assert starts[0] == str(doomed.pid) and starts[-1] == str(survivor.pid)
    assert [line[0] for line in lines].count("after-nap") == 1  # the next step ran once
    attempts = sorted(
        (t for t in kube.list(TASKS, e2e, field_selector="spec.instance=k")["items"] if t["spec"]["step"] == "nap"),
        key=lambda t: t["spec"]["attempt"],
    )
    assert [t["status"]["phase"] for t in attempts] == ["Lost", "Succeeded"]
    assert "lease expired" in attempts[0]["status"]["error"]
    step = next(s for s in done["status"]["steps"] if s["id"] == "nap")
    assert step["runs"] == 1


def test_killing_and_restarting_the_operator_mid_run_loses_and_duplicates_nothing(
    kube: Kube, own: str, start_operator: Callable[..., PlaitProcess], start_worker: Callable[..., PlaitProcess],
    marks_dir: Path,
) -> None:  # fmt: skip
    operator = start_operator("--namespace", own)
    start_worker(own)
    names = [f"i{n}" for n in range(6)]
    for name in names:
        submit(kube, own, name, "sequence", 1)
    submit(kube, own, "fan", "fork-join", 2)
    submit(kube, own, "looping", "loop", 0)
    for _ in range(3):
        time.sleep(0.7)
        operator.kill()
        operator = start_operator("--namespace", own)
    for name in names:
        assert wait_phase(kube, own, name, "Succeeded", timeout=60)["status"]["output"] == 5
        assert [line.split()[0] for line in marks(marks_dir, name)] == ["inc", "double", "inc"]
    assert wait_phase(kube, own, "fan", "Succeeded")["status"]["output"]["sum"] == 3 + 4 + 4
    assert wait_phase(kube, own, "looping", "Succeeded")["status"]["output"] == 50


def test_two_pools_with_different_flows_never_take_each_others_tasks(
    kube: Kube, e2e: str, start_worker: Callable[..., PlaitProcess]
) -> None:
    start_worker(e2e, module="tests.k8s.pool_a")
    start_worker(e2e, module="tests.k8s.pool_b")
    for n in range(4):
        submit(kube, e2e, f"a{n}", "alpha", n)
        submit(kube, e2e, f"b{n}", "beta", n)
    for n in range(4):
        assert wait_phase(kube, e2e, f"a{n}", "Succeeded")["status"]["output"] == f"alpha:{n}:alpha"
        assert wait_phase(kube, e2e, f"b{n}", "Succeeded")["status"]["output"] == f"beta:{n}:beta"
    holders: dict[str, set[str]] = {}
    for task in kube.list(TASKS, e2e)["items"]:
        holders.setdefault(task["spec"]["workflow"], set()).add(task["status"]["claim"]["holder"])
        assert task["spec"]["queue"] == ("gpu" if task["spec"]["workflow"] == "beta" else "default")
    assert len(holders["alpha"]) == 1 and len(holders["beta"]) == 1
    assert holders["alpha"] != holders["beta"]
