"""How a benchmark run is shown: the table printed at the end and the PNG plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def table(results: dict[str, Any]) -> str:
    k = results["k8s"]
    lo = results["local"]
    at = k["latency_measured_at"]
    limited = k["limited10_saturated"]
    rows = [
        ("Kubernetes: steps/s (10-step flows, saturated)", k["steps_per_second"], ">= 100"),
        (
            f"  at {at['instances_in_flight']} in flight ({at['steps_per_second']} steps/s): step p50 / p99 (ms)",
            f"{k['step_latency_p50_ms']} / {k['step_latency_p99_ms']}",
            "<= 25 / 150",
        ),
        (
            "  ... dispatch p50 / p99 (ms)",
            f"{k['dispatch_latency_p50_ms']} / {k['dispatch_latency_p99_ms']}",
            "p50 <= 10",
        ),
        ("  API writes per step", k["api_writes_per_step"], "<= 4"),
        *[(f"    {kind}", per_step, "") for kind, per_step in k["api_writes_per_step_by_kind"].items()],
        ("  raw ceiling: CR writes/s (same API server)", k["raw_ceiling_writes_per_second"], ""),
        (
            "  steps/s as a share of the ceiling's writes/s",
            round(k["steps_per_second"] / k["raw_ceiling_writes_per_second"], 3),
            "",
        ),
        ("  operator CPU per step (ms)", k["linear10_saturated"]["operator_cpu_ms_per_step"], ""),
        (
            "  with flow control limits that never bind: steps/s, CPU ratio",
            f"{limited['steps_per_second']}, "
            f"{round(limited['operator_cpu_ms_per_step'] / k['linear10_saturated']['operator_cpu_ms_per_step'], 2)}",
            "",
        ),
        ("  fan-out 50: steps/s", k["fanout50"]["steps_per_second"], ""),
        ("  signal -> next step p50 (ms)", k["signal"]["step_latency_p50_ms"], ""),
        ("  operator RSS (MB)", k["operator_rss_mb"], ""),
        ("  instances in flight, max", k["instances_in_flight_max"], ""),
        ("Local: plait us/step in-process", _rounded(lo["plait_us_per_step"]), ""),
        ("  sayiir us/step in-process", _rounded(lo["sayiir_us_per_step"]), ""),
        ("  ratio plait / sayiir", _rounded(lo["ratio_vs_sayiir"]), "<= 1"),
        (
            "  durable in-memory: plait / sayiir us/step",
            f"{_rounded(lo['plait_durable_us_per_step'])} / {_rounded(lo['sayiir_durable_us_per_step'])}",
            "",
        ),
    ]
    width = max(len(r[0]) for r in rows)
    lines = [f"{'metric'.ljust(width)}  {'value':>18}  target"]
    lines += [f"{name.ljust(width)}  {value!s:>18}  {target}" for name, value, target in rows]
    lines.append("load (instances in flight -> steps/s, step p50 / p99 ms, dispatch p50 / p99 ms):")
    for point in k["linear10_load_curve"] + [{"instances_in_flight": "all", **k["linear10_saturated"]}]:
        lines.append(
            f"  {point['instances_in_flight']:>6} -> {point['steps_per_second']:>7} "
            f"{point['step_latency_p50_ms']} / {point['step_latency_p99_ms']}  "
            f"{point['dispatch_latency_p50_ms']} / {point['dispatch_latency_p99_ms']}"
        )
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
    in_flight = results["k8s"]["latency_measured_at"]["instances_in_flight"]
    figure, axes = plt.subplots(1, 3, figsize=(15, 4))
    for axis, (key, title) in zip(
        axes,
        [
            ("step_to_step", f"step-to-step latency, {in_flight} in flight"),
            ("dispatch", f"dispatch latency, {in_flight} in flight"),
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


def _rounded(value: float | None) -> float | None:
    """Local figures are measured to many digits; two say enough (None: sayiir is not installed)."""
    return None if value is None else round(value, 2)
