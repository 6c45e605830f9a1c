"""What tracing costs per step: the same saturated 10-step run with tracing off and on, in one run.

One local control plane and one real Jaeger (``plait._devenv.jaeger``); for each side a fresh
operator and workers (tracing is set up from the environment at start), taking turns for a few
rounds, each side keeping its best round: a passing disturbance of the machine lands on one round,
not on one side. Reported per side: steps per second, the operator's and the workers' CPU time per
step; and the ratios on / off. The spans of one traced instance are read back from Jaeger, so a
side that exported nothing cannot pass for a cheap one.

    python -m bench.tracing [--quick]     (make bench-tracing; also part of python -m bench)
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.k8s import Scenario, Sizes, cluster, run_flow
from plait._devenv.controlplane import ControlPlane
from plait._devenv.jaeger import Jaeger
from plait._kube.models import INSTANCES
from plait_operator.tracing import OperatorTracing


def _side(plane: ControlPlane, sizes: Sizes, env: dict[str, str], name: str, instances: int) -> dict[str, Any]:
    with cluster(sizes, plane, extra_env=env) as under_test:
        run_flow(under_test, f"warm-{name}", "bench-linear10", max(4, instances // 10), 10, 300)
        workers_before = under_test.workers_cpu()
        scenario: Scenario = run_flow(under_test, name, "bench-linear10", instances, 10, 900)
        workers_cpu = under_test.workers_cpu() - workers_before
        sample = under_test.kube.get(INSTANCES, f"{name}-0", under_test.namespace)
    summary = scenario.summary()
    return {
        "steps_per_second": summary["steps_per_second"],
        "operator_cpu_ms_per_step": summary["operator_cpu_ms_per_step"],
        "worker_cpu_ms_per_step": round(workers_cpu * 1000 / scenario.steps, 2),
        "api_writes_per_step": summary["api_writes_per_step"],
        "_sample": sample,
    }


def run(quick: bool = False, plane: ControlPlane | None = None, log: Any = print) -> dict[str, Any]:
    sizes = Sizes.quick() if quick else Sizes()
    instances = sizes.linear_instances
    rounds = 1 if quick else 2
    scratch = Path(tempfile.mkdtemp(prefix="plait-bench-tracing-"))
    own = plane is None
    plane = plane or ControlPlane(scratch / "plane")
    if own:
        plane.start()
    jaeger = Jaeger(scratch / "jaeger").start()
    traced = {"OTEL_EXPORTER_OTLP_ENDPOINT": jaeger.otlp_endpoint}
    try:
        best: dict[str, dict[str, Any]] = {}
        for n in range(rounds):
            for side, env in (("off", {}), ("on", traced)):
                log(f"tracing {side} (round {n + 1}): {instances} instances of a 10-step flow ...")
                figures = _side(plane, sizes, env, f"tracing-{side}{n}", instances)
                log(f"  { {k: v for k, v in figures.items() if not k.startswith('_')} }")
                if side not in best or figures["steps_per_second"] > best[side]["steps_per_second"]:
                    best[side] = figures
        sample = best["on"].pop("_sample")
        best["off"].pop("_sample")
        trace_id = f"{OperatorTracing().trace(sample).trace_id:032x}"
        deadline = time.monotonic() + 30
        spans: list[dict[str, Any]] = []
        while time.monotonic() < deadline and len(spans) < 31:
            found = jaeger.trace(trace_id)
            spans = found["spans"] if found else []
            time.sleep(0.5)
    finally:
        jaeger.stop()
        if own:
            plane.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    off, on = best["off"], best["on"]
    return {
        "tracing": {
            "off": off,
            "on": on,
            "ratio_on_off": {
                key: round(on[key] / off[key], 2) if off[key] else None
                for key in ("steps_per_second", "operator_cpu_ms_per_step", "worker_cpu_ms_per_step")
            },
            "spans_of_one_traced_instance": len(spans),  # instance + 10 x (step, attempt, run) = 31
            "instances_per_round": instances,
            "rounds": rounds,
        }
    }


def table(results: dict[str, Any]) -> str:
    t = results["tracing"]
    lines = ["tracing (saturated 10-step flows)   steps/s   operator CPU ms/step   worker CPU ms/step"]
    for side in ("off", "on"):
        f = t[side]
        lines.append(
            f"  {side:<33} {f['steps_per_second']:>7}   {f['operator_cpu_ms_per_step']:>20}   "
            f"{f['worker_cpu_ms_per_step']:>18}"
        )
    r = t["ratio_on_off"]
    lines.append(
        f"  {'ratio on / off':<33} {r['steps_per_second']!s:>7}   {r['operator_cpu_ms_per_step']!s:>20}   "
        f"{r['worker_cpu_ms_per_step']!s:>18}"
    )
    lines.append(f"  spans of one traced instance in Jaeger: {t['spans_of_one_traced_instance']}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.tracing", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the harness, measures nothing")
    parser.add_argument("--out", type=Path, default=Path("bench-tracing.json"), help="where the JSON goes")
    args = parser.parse_args()
    results = run(quick=args.quick)
    args.out.write_text(json.dumps(results, indent=2))
    print(table(results))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
