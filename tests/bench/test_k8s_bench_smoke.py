"""The Kubernetes benchmark harness runs end to end at tiny sizes (no figure is judged here).

Performance is measured by `make bench`, never asserted in the test suite: this only checks that
the harness still works and reports every figure the results file promises.
"""

from __future__ import annotations

from pathlib import Path

from bench import k8s, local, report
from plait._devenv.controlplane import ControlPlane

REQUIRED = (
    "steps_per_second",
    "step_latency_p50_ms",
    "step_latency_p99_ms",
    "dispatch_latency_p50_ms",
    "dispatch_latency_p99_ms",
    "api_writes_per_step",
    "raw_ceiling_writes_per_second",
    "operator_rss_mb",
    "instances_in_flight_max",
)


def test_the_kubernetes_benchmark_runs_and_reports_every_figure(
    control_plane: ControlPlane, plait_crds: None, tmp_path: Path
) -> None:
    results = k8s.run(quick=True, plane=control_plane, log=lambda *_: None)
    figures = results["k8s"]
    for key in REQUIRED:
        assert figures[key] is not None and figures[key] > 0, key
    assert [p["instances_in_flight"] for p in figures["scaling"]] == list(k8s.Sizes.quick().scaling_levels)
    curve = [p["instances_in_flight"] for p in figures["linear10_load_curve"]]
    assert curve == list(k8s.Sizes.quick().latency_in_flight)
    assert figures["latency_measured_at"]["instances_in_flight"] in curve
    by_kind = figures["api_writes_per_step_by_kind"]
    assert by_kind["workflowtasks POST"] > 0 and by_kind["workflowtasks/status PATCH"] > 0
    assert abs(sum(by_kind.values()) - figures["api_writes_per_step"]) < 0.05 * len(by_kind)
    assert results["_latencies"]["step_to_step"] and results["_latencies"]["dispatch"]

    results["local"] = local.run(quick=True)
    drawn = report.plots(results, tmp_path)
    assert [p.name for p in drawn] == ["latency.png", "scaling.png"]
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in drawn)
    printed = report.table(results)
    assert "API writes per step" in printed and "workflowtasks POST" in printed
