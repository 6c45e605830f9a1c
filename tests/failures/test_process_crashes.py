"""Processes die for real (SIGKILL, SIGTERM, SIGSTOP); workflows keep their promises.

- the operator killed at random moments while 50 instances of mixed shapes run: every instance
  finishes with the right output and no step runs twice;
- a worker stopped with SIGTERM hands its task back at once (no waiting for the lease);
- a frozen worker (SIGSTOP past its lease) loses its claim: the task reruns elsewhere, the frozen
  attempt stops on its own when it thaws, and its late result is refused.
"""

from __future__ import annotations

import collections
import os
import random
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from plait._kube.client import Kube
from plait._kube.models import TASKS
from tests.k8s.support import PlaitProcess, marks, send_signal, submit, wait_for, wait_phase

MIX: list[tuple[str, Any, Any]] = [
    ("sequence", 1, 5),
    ("fork-join", 2, {"sum": 3 + 4 + 4, "parts": {"inc": 3, "double": 4, "square": 4}}),
    ("route", 3, {"branch": "small", "result": "small:3"}),
    ("loop", 0, 50),
    ("child", 1, 17),
    ("delay", 2, 6),
    ("retries", 4, 5),
    ("signal", 1, "approved by ops"),
]


def test_operator_killed_at_random_moments_loses_and_repeats_nothing(
    kube: Kube, own: str, start_operator: Callable[..., PlaitProcess], start_worker: Callable[..., PlaitProcess],
    marks_dir: Path,
) -> None:  # fmt: skip
    rng = random.Random(7)
    operator = start_operator("--namespace", own)
    start_worker(own, "--concurrency", "16")
    expected: dict[str, Any] = {}
    for n in range(50):
        workflow, value, output = MIX[n % len(MIX)]
        name = f"{workflow}-{n}"
        submit(kube, own, name, workflow, value)
        expected[name] = output
        if workflow == "signal":
            send_signal(kube, own, name, "approve", {"by": "ops"})
    kills = 0
    deadline = time.monotonic() + 25
    while time.monotonic() < deadline and kills < 6:
        time.sleep(rng.uniform(0.2, 1.5))
        operator.kill()
        kills += 1
        operator = start_operator("--namespace", own)
    for name, output in expected.items():
        done = wait_phase(kube, own, name, "Succeeded", "Failed", timeout=90)
        assert done["status"]["phase"] == "Succeeded", (name, done["status"])
        assert done["status"]["output"] == output, name
        runs = collections.Counter(
            (line.split()[0], line.split()[3], line.split()[1]) for line in marks(marks_dir, name)
        )
        repeated = {key: count for key, count in runs.items() if count > 1}
        assert not repeated, f"{name}: steps ran more than once: {repeated}"
    assert kills >= 3


def test_sigterm_hands_a_running_task_back_at_once(
    kube: Kube, e2e: str, start_worker: Callable[..., PlaitProcess], marks_dir: Path
) -> None:
    leaving = start_worker(e2e, "--lease-seconds", "60", "--drain-seconds", "0.5")
    submit(kube, e2e, "handback", "slow", 3)
    wait_for(lambda: "nap-start" in " ".join(marks(marks_dir, "handback")), what="the nap to start")
    stopped_at = time.monotonic()
    assert leaving.terminate(timeout=20) == 0
    start_worker(e2e, "--lease-seconds", "60")
    done = wait_phase(kube, e2e, "handback", "Succeeded", timeout=30)
    assert time.monotonic() - stopped_at < 20  # far less than the 60 s lease: it was handed back
    assert done["status"]["output"] == "rested 3"
    attempts = sorted(
        (
            t
            for t in kube.list(TASKS, e2e, field_selector="spec.instance=handback")["items"]
            if t["spec"]["step"] == "nap"
        ),
        key=lambda t: t["spec"]["attempt"],
    )
    assert [t["status"]["phase"] for t in attempts] == ["Released", "Succeeded"]


def test_a_frozen_worker_loses_its_claim_and_its_late_result_is_refused(
    kube: Kube, e2e: str, start_worker: Callable[..., PlaitProcess], marks_dir: Path
) -> None:
    frozen = start_worker(e2e, "--lease-seconds", "2")
    submit(kube, e2e, "frozen", "slow", 4)
    wait_for(lambda: "nap-start" in " ".join(marks(marks_dir, "frozen")), what="the nap to start")
    os.kill(frozen.pid, signal.SIGSTOP)
    try:
        thawed_by = start_worker(e2e, "--lease-seconds", "2")
        wait_for(
            lambda: sum(1 for line in marks(marks_dir, "frozen") if line.startswith("nap-start")) == 2,
            timeout=30,
            what="the task to rerun on the other worker",
        )
    finally:
        os.kill(frozen.pid, signal.SIGCONT)
    done = wait_phase(kube, e2e, "frozen", "Succeeded", timeout=30)
    assert done["status"]["output"] == "rested 4"
    lines = [line.split() for line in marks(marks_dir, "frozen")]
    by_pid = collections.defaultdict(list)
    for name, _, pid, _, _ in lines:
        by_pid[pid].append(name)
    # The frozen attempt noticed its lease was gone as soon as it thawed and stopped itself (the
    # thawed worker is healthy again and may well run the next step: only its naps matter here).
    assert [name for name in by_pid[str(frozen.pid)] if name.startswith("nap")] == ["nap-start", "nap-cancelled"]
    assert by_pid[str(thawed_by.pid)][:2] == ["nap-start", "nap-end"]
    attempts = sorted(
        (
            t
            for t in kube.list(TASKS, e2e, field_selector="spec.instance=frozen")["items"]
            if t["spec"]["step"] == "nap"
        ),
        key=lambda t: t["spec"]["attempt"],
    )
    assert [t["status"]["phase"] for t in attempts] == ["Lost", "Succeeded"]
    assert attempts[1]["status"]["claim"]["holder"] != attempts[0]["status"]["claim"]["holder"]
    # Never two holders at once: the second attempt began after the first one's lease was taken away.
    assert attempts[1]["status"]["claim"]["claimedAt"] >= attempts[0]["status"]["finishedAt"]
