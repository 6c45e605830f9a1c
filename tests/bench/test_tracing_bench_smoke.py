"""The tracing benchmark runs end to end at tiny sizes against a real Jaeger (no figure is judged
here: `make bench-tracing` measures), and the traced side really exported its spans."""

from __future__ import annotations

import pytest

from bench import tracing
from plait._devenv.controlplane import ControlPlane

pytestmark = pytest.mark.cluster


def test_the_tracing_benchmark_compares_off_and_on_and_the_spans_arrive(
    control_plane: ControlPlane, plait_crds: None
) -> None:
    results = tracing.run(quick=True, plane=control_plane, log=lambda *_: None)
    figures = results["tracing"]
    for side in ("off", "on"):
        for key in ("steps_per_second", "operator_cpu_ms_per_step", "worker_cpu_ms_per_step"):
            assert figures[side][key] > 0, (side, key)
    assert set(figures["ratio_on_off"]) == {"steps_per_second", "operator_cpu_ms_per_step", "worker_cpu_ms_per_step"}
    assert figures["spans_of_one_traced_instance"] == 31  # the instance, and a step, attempt and run per step
    assert "ratio on / off" in tracing.table(results)
