"""Large values on the real control plane, real workers and a real S3-compatible server: through
a workflow and back to the CLI and the client, a wide fork, deletion, the orphan sweep, a
corrupted object, the store down for a while, and no store at all."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from plait import KubernetesBackend, WorkflowClient
from plait._devenv.s3server import S3Server
from plait._kube.client import Kube
from plait._kube.models import INSTANCES
from plait._payloads import PayloadStore, refs
from plait.errors import NotFound
from tests.k8s.support import REPO, PlaitProcess, marks, submit, wait_for, wait_phase
from tests.k8s.test_lifecycle import events_for, tasks_of
from tests.payloads import flows
from tests.payloads.conftest import ORPHAN_GRACE, STORE

pytestmark = pytest.mark.cluster
MB = flows.MB
#: The bound docs/payloads.md states for the instance object of a 500-branch fork.
FANOUT_BOUND = 256 * 1024


@pytest.fixture
def aws(s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    """This process's environment has the store's credentials (as the client's would)."""
    for key, value in s3.env.items():
        monkeypatch.setenv(key, value)
    return s3


def plait_cli(s3: S3Server, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "plait", *args, "--payload-store", STORE],
        capture_output=True, text=True, env={**os.environ, **s3.env}, cwd=REPO, timeout=180,
    )  # fmt: skip


def objects_of(s3: S3Server, namespace: str, instance: str) -> dict[str, Path]:
    return s3.objects(f"payloads/{namespace}/{instance}/")


def size_of(body: dict[str, Any]) -> int:
    body = {**body, "metadata": {k: v for k, v in body["metadata"].items() if k != "managedFields"}}
    return len(json.dumps(body, separators=(",", ":")))


def test_a_5mb_input_and_output_go_through_a_workflow_and_back(
    kube: Kube, pl: str, aws: S3Server, store_worker: Callable[..., PlaitProcess], marks_dir: Path, tmp_path: Path
) -> None:
    store_worker(pl)
    data = secrets.token_hex(5 * MB // 2)  # 5 MB that do not compress
    expected = {"size": 5 * MB, "seen": flows.digest(data), "data": data[::-1]}
    backend = KubernetesBackend(pl, payload_store=STORE, payload_store_endpoint=aws.endpoint)
    with WorkflowClient(backend) as client:
        client.submit(flows.large, "five-mb", {"data": data})
        status = client.wait("five-mb", timeout=120)
        assert status.status == "completed", status
        assert status.output == expected
        assert client.get_task_result("five-mb", "reverse") == {"seen": flows.digest(data), "data": data[::-1]}

    body = kube.get(INSTANCES, "five-mb", pl)
    assert refs.is_ref(body["spec"]["input"]["data"])  # only the large field left the object
    assert body["spec"]["input"]["data"]["size"] == 5 * MB + 2
    assert refs.is_ref(body["status"]["output"]["data"]) and body["status"]["output"]["size"] == 5 * MB
    assert size_of(body) < 32 * 1024, size_of(body)
    assert [line.split()[0] for line in marks(marks_dir, "five-mb")] == ["reverse", "measure"]
    # the input's data, and the reversed data both outputs hold: the same bytes are one object
    assert len(objects_of(aws, pl, "five-mb")) == 2

    result = plait_cli(aws, "result", "five-mb", "-n", pl)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == expected
    got = plait_cli(aws, "get", "five-mb", "-n", pl, "-o", "json")
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout)["status"]["output"] == expected

    # the CLI offloads an input too (from a file: 5 MB do not fit on a command line)
    (tmp_path / "input.json").write_text(json.dumps({"data": data}))
    submitted = plait_cli(
        aws, "submit", "large", "@" + str(tmp_path / "input.json"), "--name", "from-cli", "--wait", "-n", pl
    )
    assert submitted.returncode == 0, submitted.stderr
    assert json.loads(submitted.stdout) == expected
    assert refs.is_ref(kube.get(INSTANCES, "from-cli", pl)["spec"]["input"]["data"])


@pytest.fixture
def sizes(kube: Kube) -> Iterator[Callable[[str, str], list[int]]]:
    """``sizes(namespace, name)``: starts recording the instance object's size (every 0.2 s)."""
    stop = threading.Event()
    threads: list[threading.Thread] = []

    def record(namespace: str, name: str) -> list[int]:
        seen: list[int] = []

        def loop() -> None:
            while not stop.is_set():
                with contextlib.suppress(NotFound):  # not created yet
                    seen.append(size_of(kube.get(INSTANCES, name, namespace)))
                stop.wait(0.2)

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        threads.append(thread)
        return seen

    yield record
    stop.set()
    for thread in threads:
        thread.join()


@pytest.mark.timeout(600)
def test_a_fork_of_500_branches_of_100_kib_each_stays_under_the_bound(
    kube: Kube, pl: str, aws: S3Server, store_worker: Callable[..., PlaitProcess], sizes: Callable[..., list[int]]
) -> None:
    store_worker(pl, "--concurrency", "16")
    store_worker(pl, "--concurrency", "16")
    seen = sizes(pl, "wide")
    submit(kube, pl, "wide", "fanout", 7)
    done = wait_phase(kube, pl, "wide", "Succeeded", "Failed", timeout=400)
    assert done["status"]["phase"] == "Succeeded", done["status"].get("error")
    output = done["status"]["output"]
    assert output["branches"] == flows.BRANCHES and output["distinct"] == flows.BRANCHES
    assert output["bytes"] == flows.BRANCHES * flows.PIECE
    largest = max([*seen, size_of(done)])
    print(f"instance object: largest {largest} bytes over {len(seen)} reads, at the end {size_of(done)}")
    assert largest < FANOUT_BOUND, largest
    assert len(objects_of(aws, pl, "wide")) >= flows.BRANCHES  # every branch's output, and the join's input


def test_deletion_and_ttl_remove_an_instances_objects(
    kube: Kube, pl: str, aws: S3Server, store_worker: Callable[..., PlaitProcess]
) -> None:
    store_worker(pl)
    submit(kube, pl, "deleted", "handoff", 1)
    submit(kube, pl, "expiring", "handoff", 2, ttlSecondsAfterFinished=2)
    for name in ("deleted", "expiring"):
        wait_phase(kube, pl, name, "Succeeded")
    assert objects_of(aws, pl, "deleted")
    kube.delete(INSTANCES, "deleted", pl)
    wait_for(lambda: not objects_of(aws, pl, "deleted"), 30, 0.2, "the deleted instance's objects to go")
    wait_for(lambda: not objects_of(aws, pl, "expiring"), 30, 0.2, "the expired instance's objects to go")
    with pytest.raises(NotFound):
        kube.get(INSTANCES, "expiring", pl)


def test_the_sweep_removes_objects_of_instances_that_do_not_exist(
    kube: Kube, pl: str, aws: S3Server, store_worker: Callable[..., PlaitProcess]
) -> None:
    store_worker(pl)
    submit(kube, pl, "kept", "handoff", 3)
    wait_phase(kube, pl, "kept", "Succeeded")
    # a client that crashed between storing an input and creating its instance
    asyncio.run(PayloadStore(STORE, endpoint=aws.endpoint).offload({"data": "o" * 100_000}, pl, "never-created"))
    assert objects_of(aws, pl, "never-created")
    started = time.monotonic()
    wait_for(lambda: not objects_of(aws, pl, "never-created"), 4 * ORPHAN_GRACE + 10, 0.2, "the orphans to be swept")
    assert time.monotonic() - started >= ORPHAN_GRACE - 1  # not before the grace period
    time.sleep(2)
    assert objects_of(aws, pl, "kept")  # an existing instance's objects stay, however old


def test_a_corrupted_object_is_detected_and_nothing_is_recorded_from_it(
    kube: Kube, pl: str, aws: S3Server, store_worker: Callable[..., PlaitProcess], marks_dir: Path
) -> None:
    store_worker(pl)
    submit(kube, pl, "tampered", "handoff", 4)
    wait_for(lambda: phase_of_step(kube, pl, "tampered", "produce") == "succeeded", 30, 0.02, "produce to finish")
    stored = objects_of(aws, pl, "tampered")  # during the 3 s delay, before consume reads it
    (path,) = stored.values()
    path.write_bytes(b'"' + b"x" * (path.stat().st_size - 2) + b'"')  # same size, other bytes
    failed = wait_phase(kube, pl, "tampered", "Failed", "Succeeded")
    assert failed["status"]["phase"] == "Failed"
    assert "PayloadCorrupted" in failed["status"]["error"] and "SHA-256" in failed["status"]["error"]
    assert failed["status"].get("output") is None
    assert [line.split()[0] for line in marks(marks_dir, "tampered")] == ["produce"]  # consume never ran
    consumes = [t for t in tasks_of(kube, pl, "tampered") if t["spec"]["step"] == "consume"]
    assert len(consumes) == 2  # its retry read the same object again
    assert all("PayloadCorrupted" in t["status"]["error"] and "output" not in t["status"] for t in consumes)
    assert any(e["reason"] == "Failed" for e in events_for(kube, pl, "tampered"))


def phase_of_step(kube: Kube, namespace: str, instance: str, step: str) -> str | None:
    steps = (kube.get(INSTANCES, instance, namespace).get("status") or {}).get("steps") or []
    return next((s["state"] for s in steps if s["id"] == step), None)


def test_the_store_down_for_a_while_delays_the_step_and_loses_nothing(
    kube: Kube, pl: str, aws: S3Server, store_worker: Callable[..., PlaitProcess], marks_dir: Path
) -> None:
    worker = store_worker(pl)
    aws.stop()
    try:
        submit(kube, pl, "outage", "handoff", 5)
        wait_for(lambda: marks(marks_dir, "outage"), 30, 0.1, "produce to run")
        wait_for(lambda: "payload store: could not store" in worker.output(), 30, 0.2, "the worker to retry")
        time.sleep(4)
        assert phase_of_step(kube, pl, "outage", "produce") == "running"
    finally:
        aws.start()
    done = wait_phase(kube, pl, "outage", "Succeeded", "Failed", timeout=120)
    assert done["status"]["phase"] == "Succeeded", done["status"].get("error")
    assert done["status"]["output"] == {"n": 5, "size": 200_000}
    assert [line.split()[0] for line in marks(marks_dir, "outage")] == ["produce", "consume"]  # ran once each


def test_without_a_store_large_values_are_refused_saying_how_to_configure_one(
    kube: Kube, e2e: str, start_worker: Callable[..., PlaitProcess]
) -> None:
    start_worker(e2e, module="tests.payloads.flows")
    submit(kube, e2e, "big-input", "large", {"data": "x" * (300 * 1024)})
    submit(kube, e2e, "big-output", "oversized", 1)
    refused = wait_phase(kube, e2e, "big-input", "Failed")
    accepted = next(c for c in refused["status"]["conditions"] if c["type"] == "Accepted")
    assert accepted["reason"] == "PayloadTooLarge"
    assert "--payload-store" in accepted["message"] and "docs/payloads.md" in accepted["message"]
    failed = wait_phase(kube, e2e, "big-output", "Failed")
    assert "PayloadTooLarge" in failed["status"]["error"] and "--payload-store" in failed["status"]["error"]
