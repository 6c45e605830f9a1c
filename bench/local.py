"""Per-step overhead of the local runner, plait against sayiir, measured in the same run.

A step's overhead is what the runner adds around a trivial task (``lambda x: x + 1``): the time of
a 10-step linear flow minus that of a 1-step flow, divided by the 9 extra steps, so the per-run
cost (building the runner, starting, finishing) cancels out. Two modes: in-process
(``run_workflow(wf, 0)``) and durable with the default in-memory backend
(``run_durable_workflow(wf, instance_id, 0)``). Each figure is the median of several repetitions
of many runs; plait and sayiir take turns inside every repetition, so both see the same noise
from whatever else runs on the machine.

``run()`` returns the numbers (microseconds per step, ratios plait/sayiir); ``python -m
bench.local [--quick]`` prints them as a table. Without sayiir installed its figures are ``None``.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import itertools
import statistics
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

LONG_FLOW = 10
MODES = ("in_process", "durable")


def _library(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def _linear_flow(library: ModuleType, steps: int) -> Any:
    flow = library.Flow(f"bench_{steps}")
    for _ in range(steps):
        flow = flow.then(lambda x: x + 1)
    return flow.build()


def _runner(library: ModuleType, mode: str, steps: int) -> Callable[[], Any]:
    """One run of a ``steps``-long flow in ``mode``; checks the result so a broken run cannot look fast."""
    workflow = _linear_flow(library, steps)
    if mode == "in_process":

        def run_in_process() -> None:
            if library.run_workflow(workflow, 0) != steps:
                raise AssertionError(f"{library.__name__}: wrong result")

        return run_in_process
    ids = itertools.count()

    def run_durable() -> None:
        status = library.run_durable_workflow(workflow, f"bench-{steps}-{next(ids)}", 0)
        if not status.is_completed() or status.output != steps:
            raise AssertionError(f"{library.__name__}: durable run did not complete: {status!r}")

    return run_durable


def _seconds(run: Callable[[], Any], runs: int) -> float:
    gc.collect()
    start = time.perf_counter()
    for _ in range(runs):
        run()
    return time.perf_counter() - start


def _per_step_us(short: Callable[[], Any], long: Callable[[], Any], runs: int) -> float:
    """Microseconds each step past the first adds, from one repetition of ``runs`` runs of each flow."""
    extra = _seconds(long, runs) - _seconds(short, runs)
    return extra / runs / (LONG_FLOW - 1) * 1e6


def _measure(libraries: dict[str, ModuleType], repetitions: int, runs: dict[str, int]) -> dict[tuple[str, str], float]:
    """Median per-step overhead by (library, mode).

    In each repetition the libraries are measured back to back for one mode, then the other, and
    they swap places every repetition, so both see the same load and neither always goes first.
    """
    pairs = {
        (name, mode): (_runner(library, mode, 1), _runner(library, mode, LONG_FLOW))
        for mode in MODES
        for name, library in libraries.items()
    }
    for (_, mode), (short, long) in pairs.items():  # warm-up: imports, caches, lazy initialisation
        _per_step_us(short, long, runs[mode])
    samples: dict[tuple[str, str], list[float]] = {key: [] for key in pairs}
    for repetition in range(repetitions):
        for mode in MODES:
            names = list(libraries) if repetition % 2 == 0 else list(reversed(libraries))
            for name in names:
                short, long = pairs[name, mode]
                samples[name, mode].append(_per_step_us(short, long, runs[mode]))
    return {key: statistics.median(values) for key, values in samples.items()}


def _ratio(ours: float | None, theirs: float | None) -> float | None:
    if ours is None or theirs is None or theirs <= 0:
        return None
    return ours / theirs


def run(quick: bool = False) -> dict[str, float | None]:
    """Measure both libraries in both modes; microseconds per step and plait/sayiir ratios."""
    libraries = {name: library for name in ("plait", "sayiir") if (library := _library(name)) is not None}
    repetitions = 5 if quick else 9
    runs = {"in_process": 600, "durable": 300} if quick else {"in_process": 1500, "durable": 700}
    medians = _measure(libraries, repetitions, runs)

    def figure(name: str, mode: str) -> float | None:
        return medians.get((name, mode))

    return {
        "plait_us_per_step": figure("plait", "in_process"),
        "sayiir_us_per_step": figure("sayiir", "in_process"),
        "ratio_vs_sayiir": _ratio(figure("plait", "in_process"), figure("sayiir", "in_process")),
        "plait_durable_us_per_step": figure("plait", "durable"),
        "sayiir_durable_us_per_step": figure("sayiir", "durable"),
        "durable_ratio_vs_sayiir": _ratio(figure("plait", "durable"), figure("sayiir", "durable")),
    }


def _cell(value: float | None, unit: str) -> str:
    return "n/a" if value is None else f"{value:.2f}{unit}"


def format_table(result: dict[str, float | None]) -> str:
    rows = [
        ("in-process", "plait_us_per_step", "sayiir_us_per_step", "ratio_vs_sayiir"),
        ("durable (in-memory)", "plait_durable_us_per_step", "sayiir_durable_us_per_step", "durable_ratio_vs_sayiir"),
    ]
    lines = [f"{'mode':<20} {'plait µs/step':>14} {'sayiir µs/step':>15} {'plait/sayiir':>13}"]
    for label, ours, theirs, ratio in rows:
        lines.append(
            f"{label:<20} {_cell(result[ours], ''):>14} {_cell(result[theirs], ''):>15} {_cell(result[ratio], 'x'):>13}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="few runs: checks the harness, not the numbers")
    args = parser.parse_args()
    print(format_table(run(quick=args.quick)))


if __name__ == "__main__":
    main()
