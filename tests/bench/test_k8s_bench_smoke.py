"""The Kubernetes benchmark harness runs end to end at tiny sizes (no figure is judged here).

Performance is measured by `make bench`, never asserted in the test suite: this only checks that
the harness still works and reports every figure the results file promises.
"""

from __future__ import annotations

from bench import k8s
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


def test_the_kubernetes_benchmark_runs_and_reports_every_figure(control_plane: ControlPlane, plait_crds: None) -> None:
    results = k8s.run(quick=True, plane=control_plane, log=lambda *_: None)
    figures = results["k8s"]
    for key in REQUIRED:
        assert figures[key] is not None and figures[key] > 0, key
    assert [p["instances_in_flight"] for p in figures["scaling"]] == list(k8s.Sizes.quick().scaling_levels)
    assert results["_latencies"]["step_to_step"] and results["_latencies"]["dispatch"]
