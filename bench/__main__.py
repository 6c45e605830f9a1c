"""``python -m bench [--quick] [--out FILE] [--plots DIR]``: the whole benchmark in one run.

The local runner against sayiir, then Kubernetes mode through a fresh local control plane. Prints
a table, writes ``bench-results.json`` (machine and versions included) and PNG plots of the
latency distributions and of the scaling curve.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

from bench import k8s, local


def machine() -> dict[str, Any]:
    import importlib.metadata as metadata

    from plait._devenv.binaries import ETCD_VERSION, KUBERNETES_VERSION

    def version(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "kubernetes": KUBERNETES_VERSION,
        "etcd": ETCD_VERSION,
        "plait": version("plait"),
        "kopf": version("kopf"),
        "sayiir": version("sayiir"),
        "load_average_at_start": os.getloadavg(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def table(results: dict[str, Any]) -> str:
    k = results["k8s"]
    lo = results["local"]
    rows = [
        ("Kubernetes: steps/s (10-step flows)", k["steps_per_second"], ">= 100"),
        (
            "  step-to-step latency p50 / p99 (ms)",
            f"{k['step_latency_p50_ms']} / {k['step_latency_p99_ms']}",
            "<= 25 / 150",
        ),
        (
            "  dispatch latency p50 / p99 (ms)",
            f"{k['dispatch_latency_p50_ms']} / {k['dispatch_latency_p99_ms']}",
            "p50 <= 10",
        ),
        ("  API writes per step", k["api_writes_per_step"], "<= 4"),
        (
            f"  at {k['linear10_moderate_load']['instances_in_flight']} in flight: step p50 / p99 (ms)",
            f"{k['linear10_moderate_load']['step_latency_p50_ms']} / {k['linear10_moderate_load']['step_latency_p99_ms']}",
            "",
        ),
        (
            "  ... dispatch p50 / p99 (ms)",
            f"{k['linear10_moderate_load']['dispatch_latency_p50_ms']} / {k['linear10_moderate_load']['dispatch_latency_p99_ms']}",
            "",
        ),
        ("  raw ceiling: CR writes/s (same API server)", k["raw_ceiling_writes_per_second"], ""),
        (
            "  steps/s as a share of the ceiling's writes/s",
            round(k["steps_per_second"] / k["raw_ceiling_writes_per_second"], 3),
            "",
        ),
        ("  fan-out 50: steps/s", k["fanout50"]["steps_per_second"], ""),
        ("  signal -> next step p50 (ms)", k["signal"]["step_latency_p50_ms"], ""),
        ("  operator RSS (MB)", k["operator_rss_mb"], ""),
        ("  instances in flight, max", k["instances_in_flight_max"], ""),
        ("Local: plait us/step in-process", lo["plait_us_per_step"], ""),
        ("  sayiir us/step in-process", lo["sayiir_us_per_step"], ""),
        ("  ratio plait / sayiir", lo["ratio_vs_sayiir"], "<= 1"),
        (
            "  durable in-memory: plait / sayiir us/step",
            f"{lo['plait_durable_us_per_step']} / {lo['sayiir_durable_us_per_step']}",
            "",
        ),
    ]
    width = max(len(r[0]) for r in rows)
    lines = [f"{'metric'.ljust(width)}  {'value':>18}  target"]
    lines += [f"{name.ljust(width)}  {value!s:>18}  {target}" for name, value, target in rows]
    lines.append("scaling (instances in flight -> first steps/s, signal-phase steps/s, operator RSS MB):")
    for point in k["scaling"]:
        lines.append(
            f"  {point['instances_in_flight']:>6} -> {point['first_steps_per_second']:>7} "
            f"{point['signal_phase_steps_per_second']:>7} {point['operator_rss_mb']:>7}"
        )
    return "\n".join(lines)


def plots(results: dict[str, Any], directory: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    latencies = results["_latencies"]
    figure, axes = plt.subplots(1, 3, figsize=(15, 4))
    for axis, (key, title) in zip(
        axes,
        [
            ("step_to_step", "step-to-step latency"),
            ("dispatch", "dispatch latency"),
            ("signal_to_step", "signal to next step"),
        ],
        strict=True,
    ):
        values = [v * 1000 for v in latencies[key]]
        if values:
            axis.hist(values, bins=50)
        axis.set_title(title)
        axis.set_xlabel("ms")
        axis.set_ylabel("count")
    figure.tight_layout()
    latency_png = directory / "latency.png"
    figure.savefig(latency_png)
    plt.close(figure)

    scaling = results["k8s"]["scaling"]
    figure, left = plt.subplots(figsize=(7, 4))
    levels = [p["instances_in_flight"] for p in scaling]
    left.plot(levels, [p["first_steps_per_second"] for p in scaling], marker="o", label="steps/s (start)")
    left.plot(levels, [p["signal_phase_steps_per_second"] for p in scaling], marker="s", label="steps/s (signalled)")
    left.set_xscale("log")
    left.set_xlabel("instances in flight")
    left.set_ylabel("steps per second")
    right = left.twinx()
    right.plot(levels, [p["operator_rss_mb"] for p in scaling], color="tab:red", marker="^", label="operator RSS (MB)")
    right.set_ylabel("operator RSS (MB)")
    figure.legend(loc="upper center", ncol=3, fontsize="small")
    figure.tight_layout()
    scaling_png = directory / "scaling.png"
    figure.savefig(scaling_png)
    plt.close(figure)
    return [latency_png, scaling_png]


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the harness, measures nothing")
    parser.add_argument("--out", type=Path, default=Path("bench-results.json"), help="where the JSON goes")
    parser.add_argument("--plots", type=Path, default=Path("bench-results"), help="directory for the PNG plots")
    args = parser.parse_args()
    started = time.monotonic()
    results: dict[str, Any] = {"machine": machine()}
    print("local runner: plait against sayiir ...")
    results["local"] = local.run(quick=args.quick)
    results.update(k8s.run(quick=args.quick))
    results["plots"] = [str(p) for p in plots(results, args.plots)]
    results["machine"]["bench_seconds"] = round(time.monotonic() - started, 1)
    latencies = results.pop("_latencies")
    args.out.write_text(json.dumps(results, indent=2))
    (args.plots / "latencies.json").write_text(json.dumps(latencies))
    print(table(results))
    print(f"wrote {args.out} and {', '.join(results['plots'])} in {results['machine']['bench_seconds']}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
