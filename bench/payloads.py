"""The cost of the payload store: a 10-step flow passing a 100 KiB value along, inline (no store)
and offloaded (versitygw, the same S3-compatible server the tests run), in the same run.

Per step: wall time at a moderate load, operator and worker CPU, API writes, and the bytes the
API server stores per instance (its object and its tasks). ``run()`` returns the figures and the
ratios offloaded / inline; ``python -m bench`` prints them.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import k8s
from plait._devenv.controlplane import ControlPlane
from plait._devenv.s3server import BUCKET, S3Server
from plait._kube.models import INSTANCES, TASKS

VALUE_BYTES = 100 * 1024
STEPS = 10


def _bytes(body: dict[str, Any]) -> int:
    meta = {k: v for k, v in body["metadata"].items() if k != "managedFields"}
    return len(json.dumps({**body, "metadata": meta}, separators=(",", ":")))


def _variant(
    plane: ControlPlane, sizes: k8s.Sizes, count: int, extra: tuple[str, ...], env: dict[str, str]
) -> dict[str, Any]:
    with k8s.cluster(sizes, plane, extra, env) as cluster:
        value = {"n": 0, "blob": "v" * VALUE_BYTES}
        worker_cpu = sum(k8s.cpu_seconds(w.pid) for w in cluster.workers)
        before, cpu = cluster.writes(), cluster.operator_cpu()
        started = time.monotonic()
        k8s._create_instances(cluster, "pay", "bench-payload10", count, value)
        k8s._wait(lambda: cluster.finished("bench-payload10") >= count, 600, f"{count} payload instances")
        seconds = time.monotonic() - started
        steps = count * STEPS
        writes = k8s._plait_writes(before, cluster.writes())
        instances = cluster.kube.list(INSTANCES, cluster.namespace)["items"]
        tasks = cluster.kube.list(TASKS, cluster.namespace)["items"]
        return {
            "steps_per_second": steps / seconds,
            "operator_cpu_ms_per_step": 1000 * (cluster.operator_cpu() - cpu) / steps,
            "worker_cpu_ms_per_step": 1000
            * (sum(k8s.cpu_seconds(w.pid) for w in cluster.workers) - worker_cpu)
            / steps,
            "api_writes_per_step": sum(writes.values()) / steps,
            "instance_object_bytes_max": max(_bytes(i) for i in instances),
            "task_object_bytes_mean": sum(_bytes(t) for t in tasks) / max(1, len(tasks)),
            "stored_bytes_per_instance": (sum(_bytes(i) for i in instances) + sum(_bytes(t) for t in tasks)) / count,
        }


def run(quick: bool = False, plane: ControlPlane | None = None, log: Any = print) -> dict[str, Any]:
    sizes = k8s.Sizes.quick() if quick else k8s.Sizes(workers=2, concurrency=16)
    count = 3 if quick else 10
    scratch = Path(tempfile.mkdtemp(prefix="plait-bench-payloads-"))
    own = plane is None
    plane = plane or ControlPlane(scratch / "plane")
    if own:
        plane.start()
    server = S3Server(scratch / "s3", scratch / "versitygw.log").start()
    try:
        log(f"payloads: {count} instances of {STEPS} steps passing {VALUE_BYTES // 1024} KiB, inline ...")
        inline = _variant(plane, sizes, count, (), {})
        log("payloads: the same, offloaded to the payload store ...")
        store = ("--payload-store", f"s3://{BUCKET}/bench")
        offloaded = _variant(plane, sizes, count, store, server.env)
    finally:
        server.stop()
        if own:
            plane.stop()
    ratios = {key: offloaded[key] / inline[key] for key in inline if inline[key]}
    return {
        "payloads": {
            "value_bytes": VALUE_BYTES,
            "instances": count,
            "inline": inline,
            "offloaded": offloaded,
            "ratio": ratios,
        }
    }


def table(results: dict[str, Any]) -> str:
    figures = results["payloads"]
    rows = [f"payload store: {figures['instances']} x {STEPS} steps passing {figures['value_bytes'] // 1024} KiB"]
    rows.append(f"  {'':32} {'inline':>12} {'offloaded':>12} {'ratio':>8}")
    for key, value in figures["inline"].items():
        rows.append(f"  {key:32} {value:12.1f} {figures['offloaded'][key]:12.1f} {figures['ratio'].get(key, 0):8.2f}")
    return "\n".join(rows)
