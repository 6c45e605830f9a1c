"""Throughput and latency through the real API server, beside that API server's own ceiling.

One run starts a fresh local control plane, runs a real operator and real workers and measures,
after a warm-up:

- a 10-step linear flow over many instances at once (saturation): end-to-end steps per second and
  API writes per step counted from the API server's own ``apiserver_request_total`` (in total and
  by resource and verb);
- the same flow with 1, 2, 4, 8 instances in flight: step-to-step latency (a step's result recorded
  to the next step claimed) and dispatch latency (task created to task claimed) as the load grows.
  The headline latency is the level whose throughput is nearest half the saturated one: latency
  at saturation is queueing, set by how many instances wait, not by plait;
- a fan-out of 50 with a join, and a signal-driven flow (signal sent to the next step claimed);
- how steps per second, latency and the operator's memory change from 100 to 10,000 instances in
  flight (instances that ran a step and wait for a signal);
- last, with plait stopped, the raw ceiling: custom-resource creates and status patches per
  second a Python client gets from the same API server, at the concurrency that maximises it.

Completion is read from the operator's ``/metrics``, never by listing instances, so the harness
adds no load to the API server it measures. ``run()`` returns the figures; ``python -m bench``
prints them and writes ``bench-results.json`` and the plots.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from plait._client.objects import signal_body
from plait._devenv.controlplane import ControlPlane, free_port
from plait._kube.client import JSON, NAMESPACES, AsyncKube, Kube, Resource
from plait._kube.connection import Connection, load_connection
from plait._kube.crds import all_crds
from plait._kube.install import apply_crds
from plait._kube.models import (
    API_VERSION,
    DISPATCHED_AT_ANNOTATION,
    INSTANCES,
    SIGNALS,
    TASKS,
    parse_rfc3339,
)

REPO = Path(__file__).resolve().parents[1]
PLAIT_RESOURCES = {"workflowinstances", "workflowtasks", "workflowsignals", "workflowdefinitions", "events"}
WRITE_VERBS = {"POST", "PUT", "PATCH", "DELETE", "APPLY"}


@dataclass
class Sizes:
    """How much work each scenario does; ``quick`` is the smoke test's."""

    linear_instances: int = 300
    saturated_rounds: int = 2  # of the unlimited and the limited saturated runs, taking turns
    latency_instances: int = 60  # per load level
    latency_in_flight: tuple[int, ...] = (1, 2, 4, 8)
    fanout_instances: int = 10
    signal_instances: int = 200
    scaling_levels: tuple[int, ...] = (100, 1000, 10000)
    workers: int = 2
    concurrency: int = 32
    ceiling_seconds: float = 4.0
    ceiling_levels: tuple[int, ...] = (1, 4, 16, 64)

    @classmethod
    def quick(cls) -> Sizes:
        return cls(
            linear_instances=12,
            saturated_rounds=1,
            latency_instances=4,
            latency_in_flight=(1, 2),
            fanout_instances=2,
            signal_instances=6,
            scaling_levels=(5, 15),
            workers=2,
            concurrency=8,
            ceiling_seconds=0.5,
            ceiling_levels=(1, 4),
        )


def percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def cpu_seconds(pid: int) -> float:
    """User and system CPU time the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


# -- the cluster under test ----------------------------------------------------------------------


@dataclass
class Cluster:
    plane: ControlPlane
    connection: Connection
    kube: Kube
    namespace: str
    operator: subprocess.Popen[bytes] | None = None
    operator_port: int = 0
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    worker_ports: list[int] = field(default_factory=list)
    logs: Path = Path(".")
    extra_args: tuple[str, ...] = ()  # of the operator and every worker (the payload store's options)
    extra_env: dict[str, str] = field(default_factory=dict)

    def start_processes(self, sizes: Sizes) -> None:
        env = {**os.environ, "KUBECONFIG": str(self.plane.kubeconfig), "PYTHONPATH": str(REPO), **self.extra_env}
        self.operator_port = free_port()
        self.operator = _spawn(
            [
                "operator",
                "--namespace",
                self.namespace,
                "--no-leader-election",
                "--metrics-port",
                str(self.operator_port),
                *self.extra_args,
            ],
            env,
            self.logs / "operator.log",
        )
        for n in range(sizes.workers):
            port = free_port()
            self.worker_ports.append(port)
            args = ["worker", "bench.flows", "--namespace", self.namespace, "--concurrency", str(sizes.concurrency)]
            args += ["--metrics-port", str(port), *self.extra_args]
            self.workers.append(_spawn(args, env, self.logs / f"worker-{n}.log"))
        for port in [self.operator_port, *self.worker_ports]:
            _wait_ready(port)

    def stop_processes(self) -> None:
        processes = [*self.workers, *([self.operator] if self.operator else [])]
        for process in processes:
            if process.poll() is None:
                process.terminate()
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def operator_cpu(self) -> float:
        return cpu_seconds(self.operator.pid) if self.operator else 0.0

    def workers_cpu(self) -> float:
        return sum(cpu_seconds(worker.pid) for worker in self.workers)

    def operator_metrics(self) -> str:
        return httpx.get(f"http://127.0.0.1:{self.operator_port}/metrics", timeout=10).text

    def finished(self, workflow: str) -> float:
        return sample_sum(self.operator_metrics(), "plait_instances_finished_total", workflow=workflow)

    def waiting(self, workflow: str) -> float:
        return sample_sum(self.operator_metrics(), "plait_instances", workflow=workflow, phase="AwaitingSignal")

    def writes(self) -> Counter[tuple[str, str]]:
        """Successful writes the API server counted, by (resource or resource/subresource, verb)."""
        counts: Counter[tuple[str, str]] = Counter()
        for labels, value in samples(self.kube.raw("GET", "/metrics").text, "apiserver_request_total"):
            if labels.get("verb") in WRITE_VERBS and labels.get("code", "").startswith("2"):
                resource = "/".join(filter(None, (labels.get("resource", ""), labels.get("subresource"))))
                counts[(resource, labels["verb"])] += int(value)
        return counts


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as handle:
        return subprocess.Popen(
            [sys.executable, "-m", "plait", *args], env=env, stdout=handle, stderr=subprocess.STDOUT
        )


def _wait_ready(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"process on port {port} never became ready")


def samples(text: str, name: str) -> Iterator[tuple[dict[str, str], float]]:
    """(labels, value) of each sample of metric ``name`` in Prometheus text."""
    for line in text.splitlines():
        if line.startswith(name + "{"):
            yield dict(re.findall(r'(\w+)="([^"]*)"', line)), float(line.rsplit(" ", 1)[1])


def sample_sum(text: str, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` that carry these labels."""
    return sum(value for found, value in samples(text, name) if all(found.get(k) == v for k, v in labels.items()))


@contextmanager
def cluster(
    sizes: Sizes,
    plane: ControlPlane | None = None,
    extra_args: tuple[str, ...] = (),
    extra_env: dict[str, str] | None = None,
) -> Iterator[Cluster]:
    """A control plane (fresh unless given), the CRDs, one namespace, an operator and workers
    (with ``extra_args`` and ``extra_env``)."""
    own = plane is None
    scratch = Path(tempfile.mkdtemp(prefix="plait-bench-"))
    plane = plane or ControlPlane(scratch / "plane")
    if own:
        plane.start()
    connection = load_connection(plane.kubeconfig)
    kube = Kube(connection)
    apply_crds(kube, all_crds())
    namespace = f"bench-{int(time.time())}-{os.urandom(2).hex()}"
    kube.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    under_test = Cluster(
        plane, connection, kube, namespace, logs=scratch, extra_args=extra_args, extra_env=extra_env or {}
    )
    try:
        under_test.start_processes(sizes)
        yield under_test
    finally:
        under_test.stop_processes()
        kube.close()
        if own:
            plane.stop()
        shutil.rmtree(scratch, ignore_errors=True)


# -- the raw ceiling -------------------------------------------------------------------------------


async def _ceiling_at(connection: Connection, namespace: str, concurrency: int, seconds: float) -> float:
    """Creates then status patches of WorkflowSignals (no operator cares) per second."""
    writes = 0
    deadline = time.monotonic() + seconds
    async with AsyncKube(connection, max_connections=concurrency) as kube:

        async def writer(lane: int) -> None:
            nonlocal writes
            n = 0
            while time.monotonic() < deadline:
                name = f"ceiling-{concurrency}-{lane}-{n}"
                await kube.create(SIGNALS, signal_body("none", "x", n, name), namespace)
                await kube.patch(
                    SIGNALS,
                    name,
                    {"status": {"phase": "Rejected", "message": "ceiling"}},
                    namespace,
                    subresource="status",
                )
                writes += 2
                n += 1

        started = time.monotonic()
        await asyncio.gather(*(writer(lane) for lane in range(concurrency)))
        return writes / (time.monotonic() - started)


def raw_ceiling(connection: Connection, kube: Kube, sizes: Sizes) -> dict[str, Any]:
    namespace = f"ceiling-{int(time.time())}"
    kube.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    by_concurrency = {
        c: asyncio.run(_ceiling_at(connection, namespace, c, sizes.ceiling_seconds)) for c in sizes.ceiling_levels
    }
    kube.delete(NAMESPACES, namespace)
    best = max(by_concurrency, key=lambda c: by_concurrency[c])
    return {"writes_per_second": by_concurrency[best], "best_concurrency": best, "by_concurrency": by_concurrency}


# -- scenarios -------------------------------------------------------------------------------------


def _create_all(cluster: Cluster, resource: Resource, bodies: list[JSON]) -> dict[str, float]:
    """Create the objects, 32 at a time; returns when each was sent, by name."""
    sent: dict[str, float] = {}

    async def create_all() -> None:
        async with AsyncKube(cluster.connection, max_connections=32) as kube:
            semaphore = asyncio.Semaphore(32)

            async def one(body: JSON) -> None:
                async with semaphore:
                    sent[body["metadata"]["name"]] = time.time()
                    await kube.create(resource, body, cluster.namespace)

            await asyncio.gather(*(one(body) for body in bodies))

    asyncio.run(create_all())
    return sent


def _create_instances(cluster: Cluster, prefix: str, workflow: str, count: int, value: Any = 0, start: int = 0) -> None:
    bodies = [
        {"apiVersion": API_VERSION, "kind": "WorkflowInstance", "metadata": {"name": f"{prefix}-{n}"},
         "spec": {"workflow": workflow, "input": value}}
        for n in range(start, start + count)
    ]  # fmt: skip
    _create_all(cluster, INSTANCES, bodies)


def _send_signals(cluster: Cluster, prefix: str, count: int) -> dict[str, float]:
    """Send one ``go`` signal to each instance; returns when each was sent."""
    sent = _create_all(
        cluster, SIGNALS, [signal_body(f"{prefix}-{n}", "go", n, f"{prefix}-{n}-go") for n in range(count)]
    )
    return {name.removesuffix("-go"): at for name, at in sent.items()}


def _wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"benchmark timed out waiting for {what}")
        time.sleep(0.1)  # each look is a scrape of the operator's /metrics: keep the harness's load small


def _tasks(cluster: Cluster, prefix: str) -> dict[str, list[dict[str, Any]]]:
    by_instance: dict[str, list[dict[str, Any]]] = {}
    for task in cluster.kube.list(TASKS, cluster.namespace)["items"]:
        if task["spec"]["instance"].startswith(prefix + "-"):
            by_instance.setdefault(task["spec"]["instance"], []).append(task)
    return by_instance


def _dispatch_latencies(tasks: dict[str, list[dict[str, Any]]]) -> list[float]:
    out = []
    for attempts in tasks.values():
        for task in attempts:
            created = (task["metadata"].get("annotations") or {}).get(DISPATCHED_AT_ANNOTATION)
            claim = ((task.get("status") or {}).get("claim") or {}).get("claimedAt")
            if created and claim:
                out.append(parse_rfc3339(claim) - parse_rfc3339(created))
    return out


def _step_latencies(tasks: dict[str, list[dict[str, Any]]]) -> list[float]:
    """From one step's result to the next step's claim, within each linear instance."""
    out = []
    for attempts in tasks.values():
        done = sorted(
            (t for t in attempts if (t.get("status") or {}).get("finishedAt")),
            key=lambda t: t["status"]["claim"]["claimedAt"],
        )
        for previous, following in itertools.pairwise(done):
            out.append(
                parse_rfc3339(following["status"]["claim"]["claimedAt"])
                - parse_rfc3339(previous["status"]["finishedAt"])
            )
    return out


@dataclass
class Scenario:
    name: str
    instances: int
    steps: int
    seconds: float
    plait_writes: Counter[str]  # by "resource verb"
    step_latencies: list[float]
    dispatch_latencies: list[float]
    operator_cpu_seconds: float

    @property
    def steps_per_second(self) -> float:
        return self.steps / self.seconds

    def summary(self) -> dict[str, Any]:
        def ms(value: float | None) -> float | None:
            return None if value is None else round(value * 1000, 2)

        return {
            "instances": self.instances,
            "steps": self.steps,
            "seconds": round(self.seconds, 2),
            "steps_per_second": round(self.steps_per_second, 1),
            "api_writes_per_step": round(sum(self.plait_writes.values()) / self.steps, 2),
            "operator_cpu_ms_per_step": round(self.operator_cpu_seconds * 1000 / self.steps, 2),
            "api_writes_per_step_by_kind": {
                kind: round(count / self.steps, 2) for kind, count in sorted(self.plait_writes.items())
            },
            "step_latency_p50_ms": ms(percentile(self.step_latencies, 0.5)),
            "step_latency_p99_ms": ms(percentile(self.step_latencies, 0.99)),
            "dispatch_latency_p50_ms": ms(percentile(self.dispatch_latencies, 0.5)),
            "dispatch_latency_p99_ms": ms(percentile(self.dispatch_latencies, 0.99)),
        }


def _plait_writes(before: Counter[tuple[str, str]], after: Counter[tuple[str, str]]) -> Counter[str]:
    """Writes plait made, by "resource verb": everything on its resources except the harness's own
    instance and signal creations."""
    made: Counter[str] = Counter()
    for (resource, verb), count in (after - before).items():
        if resource.split("/")[0] in PLAIT_RESOURCES and not (
            resource in ("workflowinstances", "workflowsignals") and verb == "POST"
        ):
            made[f"{resource} {verb}"] += count
    return made


def run_flow(
    cluster: Cluster,
    name: str,
    workflow: str,
    count: int,
    steps_each: int,
    timeout: float,
    in_flight: int | None = None,
) -> Scenario:
    """``count`` instances, all at once, or at most ``in_flight`` running at a time (a moderate load)."""
    before = cluster.writes()
    baseline = cluster.finished(workflow)
    cpu_before = cluster.operator_cpu()
    started = time.monotonic()
    if in_flight is None:
        _create_instances(cluster, name, workflow, count)
    else:
        created = 0
        while created < count:
            running = created - (cluster.finished(workflow) - baseline)
            if running < in_flight:
                _create_instances(
                    cluster, name, workflow, min(in_flight - int(running), count - created), start=created
                )
                created += min(in_flight - int(running), count - created)
            time.sleep(0.05)
    _wait(lambda: cluster.finished(workflow) - baseline >= count, timeout, f"{count} {workflow} instances")
    seconds = time.monotonic() - started
    cpu = cluster.operator_cpu() - cpu_before
    writes = _plait_writes(before, cluster.writes())
    tasks = _tasks(cluster, name)
    step_latencies = _step_latencies(tasks) if steps_each > 1 and "fanout" not in workflow else []
    return Scenario(name, count, count * steps_each, seconds, writes, step_latencies, _dispatch_latencies(tasks), cpu)


def run_signals(cluster: Cluster, name: str, count: int, timeout: float) -> tuple[Scenario, dict[str, float]]:
    """Instances run a step and wait; then one signal each, and time until they are done."""
    workflow = "bench-signal"
    baseline_finished = cluster.finished(workflow)
    baseline_waiting = cluster.waiting(workflow)
    before = cluster.writes()
    cpu_before = cluster.operator_cpu()
    started = time.monotonic()
    _create_instances(cluster, name, workflow, count)
    _wait(lambda: cluster.waiting(workflow) - baseline_waiting >= count, timeout, f"{count} instances to wait")
    waiting_after = time.monotonic() - started
    operator_rss = rss_mb(cluster.operator.pid) if cluster.operator else 0.0
    signalled_at = time.monotonic()
    sent = _send_signals(cluster, name, count)
    _wait(lambda: cluster.finished(workflow) - baseline_finished >= count, timeout, f"{count} signalled instances")
    seconds = time.monotonic() - started
    signal_phase = time.monotonic() - signalled_at
    writes = _plait_writes(before, cluster.writes())
    tasks = _tasks(cluster, name)
    after_signal = []
    for instance, attempts in tasks.items():
        for task in attempts:
            claim = ((task.get("status") or {}).get("claim") or {}).get("claimedAt")
            if task["spec"]["step"] == "after" and claim and instance in sent:
                after_signal.append(parse_rfc3339(claim) - sent[instance])
    cpu = cluster.operator_cpu() - cpu_before
    scenario = Scenario(name, count, count * 2, seconds, writes, after_signal, _dispatch_latencies(tasks), cpu)
    extra = {
        "seconds_to_all_waiting": round(waiting_after, 2),
        "first_steps_per_second": round(count / waiting_after, 1),
        "signal_phase_steps_per_second": round(count / signal_phase, 1),
        "operator_rss_mb_while_waiting": round(operator_rss, 1),
    }
    return scenario, extra


# -- the whole run -----------------------------------------------------------------------------------


def run(quick: bool = False, plane: ControlPlane | None = None, log: Any = print) -> dict[str, Any]:
    sizes = Sizes.quick() if quick else Sizes()
    results: dict[str, Any] = {}
    with cluster(sizes, plane) as under_test:
        log("warming up ...")
        run_flow(under_test, "warmup", "bench-linear10", max(4, sizes.linear_instances // 10), 10, 300)
        # Unlimited and limited (limits that never bind) take turns, and each keeps its best round:
        # a passing disturbance of the machine lands on one round, not on one side of the comparison.
        rounds: dict[str, list[Scenario]] = {"linear": [], "limited": []}
        for n in range(sizes.saturated_rounds):
            for name, workflow, what in (
                ("linear", "bench-linear10", "a 10-step flow"),
                ("limited", "bench-limited10", "the same flow with flow control limits that never bind"),
            ):
                log(f"{name} (round {n + 1}): {sizes.linear_instances} instances of {what} ...")
                scenario = run_flow(under_test, f"{name}{n}", workflow, sizes.linear_instances, 10, 900)
                rounds[name].append(scenario)
                log(f"  {scenario.summary()}")
        linear, limited = (max(rounds[name], key=lambda s: s.steps_per_second) for name in ("linear", "limited"))
        load_curve = []
        for level in sizes.latency_in_flight:
            log(f"latency: {sizes.latency_instances} instances, {level} at a time ...")
            scenario = run_flow(
                under_test, f"latency{level}", "bench-linear10", sizes.latency_instances, 10, 900, in_flight=level
            )
            load_curve.append((level, scenario))
            log(f"  {scenario.summary()}")
        half_load = linear.steps_per_second / 2
        headline_level, headline = min(load_curve, key=lambda point: abs(point[1].steps_per_second - half_load))
        log(f"fan-out: {sizes.fanout_instances} instances of a fan-out of 50 ...")
        fanout = run_flow(under_test, "fanout", "bench-fanout50", sizes.fanout_instances, 51, 900)
        log(f"  {fanout.summary()}")
        log(f"signals: {sizes.signal_instances} instances waiting for a signal ...")
        signals, signal_extra = run_signals(under_test, "signal", sizes.signal_instances, 900)
        log(f"  {signals.summary()} {signal_extra}")
        scaling = []
        for level in sizes.scaling_levels:
            log(f"scaling: {level} instances in flight ...")
            scenario, extra = run_signals(under_test, f"scale{level}", level, 1800)
            point = {"instances_in_flight": level, **scenario.summary(), **extra}
            point["operator_rss_mb"] = round(rss_mb(under_test.operator.pid), 1) if under_test.operator else None
            scaling.append(point)
            log(f"  {point}")
        operator_rss = rss_mb(under_test.operator.pid) if under_test.operator else 0.0
        worker_rss = [rss_mb(w.pid) for w in under_test.workers]
        # The ceiling is the API server's alone, so measured last: the objects it writes would
        # load whatever came after it.
        under_test.stop_processes()
        log("measuring the raw ceiling of the API server ...")
        ceiling = raw_ceiling(under_test.connection, under_test.kube, sizes)
        log(f"  {ceiling['writes_per_second']:.0f} writes/s at concurrency {ceiling['best_concurrency']}")
        linear_summary = linear.summary()
        latency = headline.summary()
        results["k8s"] = {
            "steps_per_second": linear_summary["steps_per_second"],
            "step_latency_p50_ms": latency["step_latency_p50_ms"],
            "step_latency_p99_ms": latency["step_latency_p99_ms"],
            "dispatch_latency_p50_ms": latency["dispatch_latency_p50_ms"],
            "dispatch_latency_p99_ms": latency["dispatch_latency_p99_ms"],
            "latency_measured_at": {
                "instances_in_flight": headline_level,
                "steps_per_second": latency["steps_per_second"],
                "share_of_saturated_throughput": round(headline.steps_per_second / linear.steps_per_second, 2),
            },
            "api_writes_per_step": linear_summary["api_writes_per_step"],
            "api_writes_per_step_by_kind": linear_summary["api_writes_per_step_by_kind"],
            "raw_ceiling_writes_per_second": round(ceiling["writes_per_second"], 1),
            "raw_ceiling": ceiling,
            "operator_rss_mb": round(operator_rss, 1),
            "worker_rss_mb": [round(r, 1) for r in worker_rss],
            "instances_in_flight_max": max(sizes.scaling_levels),
            "workers": sizes.workers,
            "worker_concurrency": sizes.concurrency,
            "linear10_saturated": linear_summary,
            "limited10_saturated": limited.summary(),
            "linear10_load_curve": [
                {"instances_in_flight": level, **scenario.summary()} for level, scenario in load_curve
            ],
            "fanout50": fanout.summary(),
            "signal": {**signals.summary(), **signal_extra},
            "scaling": scaling,
        }
        results["_latencies"] = {
            "step_to_step": headline.step_latencies,
            "dispatch": headline.dispatch_latencies,
            "step_to_step_saturated": linear.step_latencies,
            "signal_to_step": signals.step_latencies,
        }
    return results
