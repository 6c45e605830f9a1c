"""``python -m bench.ui [--instances 1000] [--views 50]``: what the web UI costs the API server.

A fresh control plane holds ``--instances`` WorkflowInstances (phases spread over the list);
``plait ui`` runs against it as a child process. The run then opens the instance list and an
instance page ``--views`` times each, keeps live streams (SSE) of both open while it changes 100
instances, and counts, from the API server's own ``apiserver_request_total``, every request the UI
made by verb and resource. Beside it: what a UI that lists on every page view would have cost
(one LIST of every instance per view), the page render times, and how long a change took to reach
an open stream. Nothing else talks to the plait resources meanwhile (no operator, no worker).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from bench.k8s import _spawn, samples
from plait._devenv.controlplane import ControlPlane, free_port
from plait._kube.client import NAMESPACES, Kube
from plait._kube.connection import load_connection
from plait._kube.crds import all_crds
from plait._kube.install import apply_crds
from plait._kube.models import INSTANCES

PHASES = ("Running", "Succeeded", "Failed", "AwaitingSignal", "Succeeded", "Succeeded")
WATCHED = ("workflowinstances", "workflowtasks", "workflowdefinitions", "workflowsignals", "events", "namespaces")


def requests(kube: Kube) -> Counter[str]:
    """Requests the API server served, as ``VERB resource``, for the kinds the UI reads."""
    counts: Counter[str] = Counter()
    for labels, value in samples(kube.raw("GET", "/metrics").text, "apiserver_request_total"):
        if labels.get("resource") in WATCHED and not labels.get("subresource"):
            counts[f"{labels['verb']} {labels['resource']}"] += int(value)
    return counts


def _populate(kube: Kube, namespace: str, count: int) -> None:
    for index in range(count):
        name = f"order-{index:05d}"
        body = {
            "apiVersion": "plait.dev/v1alpha1",
            "kind": "WorkflowInstance",
            "metadata": {"name": name, "labels": {"team": f"t{index % 4}"}},
            "spec": {"workflow": "order-processing", "input": {"order_id": index}},
        }
        kube.create(INSTANCES, body, namespace)
        status = {"phase": PHASES[index % len(PHASES)], "progress": f"{index % 7}/7", "currentStep": "charge"}
        kube.patch(INSTANCES, name, {"status": status}, namespace, subresource="status")


def _timed_get(client: httpx.Client, url: str) -> float:
    started = time.perf_counter()
    response = client.get(url)
    response.raise_for_status()
    return time.perf_counter() - started


class Stream(threading.Thread):
    """An open live stream (what a browser tab holds): notes when each event arrived."""

    def __init__(self, url: str, needle: str | None = None) -> None:
        super().__init__(daemon=True)
        self.url, self.needle = url, needle
        self.arrivals: list[tuple[float, str]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        with httpx.stream("GET", self.url, headers={"Accept": "text/event-stream"}, timeout=None) as response:
            for line in response.iter_lines():
                if self.stop.is_set():
                    return
                if line.startswith("data:"):
                    self.arrivals.append((time.perf_counter(), line))


def run(instances: int, views: int, log: Any = print) -> dict[str, Any]:
    scratch = Path(tempfile.mkdtemp(prefix="plait-bench-ui-"))
    plane = ControlPlane(scratch / "plane")
    plane.start()
    ui = None
    try:
        kube = Kube(load_connection(plane.kubeconfig))
        apply_crds(kube, all_crds())
        namespace = "bench-ui"
        kube.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
        log(f"creating {instances} instances ...")
        _populate(kube, namespace, instances)
        listing = kube.raw("GET", f"/apis/plait.dev/v1alpha1/namespaces/{namespace}/workflowinstances")
        list_bytes = len(listing.content)
        port = free_port()
        env = {"KUBECONFIG": str(plane.kubeconfig), "PYTHONUNBUFFERED": "1", "PATH": "/usr/bin:/bin"}
        before = requests(kube)
        ui = _spawn(["ui", "--port", str(port), "-n", namespace], env, scratch / "ui.log")
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError((scratch / "ui.log").read_text()[-2000:])
            time.sleep(0.1)
        with httpx.Client(timeout=60) as client:
            first = _timed_get(client, f"{base}/instances")  # starts the watches
            list_times = [_timed_get(client, f"{base}/instances") for _ in range(views)]
            detail_times = [_timed_get(client, f"{base}/instances/{namespace}/order-00007") for _ in range(views)]
        after_views = requests(kube)
        streams = [Stream(f"{base}/instances"), Stream(f"{base}/instances/{namespace}/order-00001")]
        for stream in streams:
            stream.start()
        time.sleep(2)  # the first render of each stream
        latencies = []
        for index in range(100):
            seen = len(streams[0].arrivals)
            sent = time.perf_counter()
            kube.patch(
                INSTANCES, f"order-{index:05d}", {"status": {"phase": "Paused"}}, namespace, subresource="status"
            )
            while len(streams[0].arrivals) == seen and time.perf_counter() - sent < 10:
                time.sleep(0.005)
            if len(streams[0].arrivals) > seen:
                latencies.append(streams[0].arrivals[seen][0] - sent)
        time.sleep(1)
        for stream in streams:
            stream.stop.set()
        after_streams = requests(kube)
        during_views = after_views - before
        during_streams = after_streams - after_views
        page_views = 1 + 2 * views
        result = {
            "instances": instances,
            "page_views": page_views,
            "ui_requests_for_page_views": dict(sorted(during_views.items())),
            "ui_requests_while_streaming_100_changes": {
                k: v for k, v in sorted(during_streams.items()) if not k.startswith("PATCH")
            },
            "lists_per_page_view": round(
                sum(v for k, v in during_views.items() if k.startswith("LIST")) / page_views, 3
            ),
            "naive_lists": page_views,
            "naive_list_bytes": page_views * list_bytes,
            "one_list_bytes": list_bytes,
            "first_page_seconds": round(first, 3),
            "list_page_p50_seconds": round(statistics.median(list_times), 4),
            "instance_page_p50_seconds": round(statistics.median(detail_times), 4),
            "change_to_stream_p50_seconds": round(statistics.median(latencies), 4) if latencies else None,
            "change_to_stream_max_seconds": round(max(latencies), 4) if latencies else None,
            "changes_seen": len(latencies),
        }
        return result
    finally:
        if ui is not None:
            ui.terminate()
            ui.wait(timeout=30)
        plane.stop()
        shutil.rmtree(scratch, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ui", description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=1000)
    parser.add_argument("--views", type=int, default=50, help="views of each page (list and instance)")
    args = parser.parse_args()
    result = run(args.instances, args.views, log=lambda m: print(m, file=sys.stderr))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
