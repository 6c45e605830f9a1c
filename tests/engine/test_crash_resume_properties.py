"""Property: crash anywhere, resume, and get the uninterrupted result without rerunning finished steps.

Random flows of every shape (tasks with and without retries, fork/join, route, loop, delay,
signal, child flow) with random inputs run once uninterrupted, then again with a simulated crash
at a random point (inside a task, or while a checkpoint is written), then resumed from the last
checkpoint. The outputs must be equal, and the only step allowed to run again after the crash
is the one that was in flight when it happened.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plait import Flow, InMemoryBackend, LoopResult, RetryPolicy, Workflow, get_task_context, task
from plait._core.snapshot import Snapshot
from plait._local.runner import Runner


class SimulatedCrash(BaseException):
    """Ends the run the way a killed process would: nothing catches it."""


class Crasher:
    def __init__(self, at: int | None) -> None:
        self.at = at
        self.ticks = 0

    def tick(self) -> None:
        self.ticks += 1
        if self.at is not None and self.ticks == self.at:
            raise SimulatedCrash


class CrashingBackend(InMemoryBackend):
    """An in-memory store whose save can be where the crash happens (before the write lands)."""

    def __init__(self, crasher: Crasher) -> None:
        super().__init__()
        self.crasher = crasher

    def save(self, instance_id: str, snapshot: dict[str, Any]) -> None:
        self.crasher.tick()
        super().save(instance_id, snapshot)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


leaf = st.tuples(st.sampled_from(["add", "mul"]), st.integers(1, 3), st.booleans())
steps = st.deferred(
    lambda: st.lists(
        st.one_of(
            leaf.map(lambda t: ("task", t)),
            st.lists(st.lists(leaf, min_size=1, max_size=2), min_size=1, max_size=3).map(lambda b: ("fork", b)),
            st.tuples(st.lists(leaf, min_size=1, max_size=2), st.lists(leaf, min_size=1, max_size=2)).map(
                lambda b: ("route", b)
            ),
            st.just(("loop", None)),
            st.floats(0, 30).map(lambda s: ("delay", s)),
            st.just(("signal", None)),
            steps.map(lambda s: ("child", s)),
        ),
        min_size=1,
        max_size=4,
    )
)


class FlowFactory:
    """Builds a workflow from a generated spec; every task records its executions."""

    def __init__(self, crasher: Crasher, started: list[str], succeeded: list[str]) -> None:
        self.crasher = crasher
        self.started = started
        self.succeeded = succeeded
        self.names = itertools.count()
        self.signals: list[str] = []

    def task(self, spec: tuple[str, int, bool]) -> Any:
        op, k, flaky = spec

        def run(x: int) -> int:
            ctx = get_task_context()
            assert ctx is not None
            if flaky and ctx.attempt == 1:
                raise RuntimeError("first attempts of flaky tasks fail")
            return x + k if op == "add" else (x * k) % 1000

        return self.recorded(run, retries=RetryPolicy(1, 0.5) if flaky else None)

    def build(self, spec: list[Any], name: str = "prop") -> Workflow:
        flow = Flow(name)
        for kind, arg in spec:
            if kind == "task":
                flow.then(self.task(arg))
            elif kind == "fork":
                fork = flow.fork()
                for branch in arg:
                    fork.branch(*[self.task(t) for t in branch])
                flow = fork.join(self.recorded(lambda parts: sum(parts.values()) % 1000))
            elif kind == "route":
                even, odd = arg
                flow = (
                    flow.route(self.recorded(lambda x: "even" if x % 2 == 0 else "odd"), keys=["even", "odd"])
                    .branch("even", *[self.task(t) for t in even])
                    .branch("odd", *[self.task(t) for t in odd])
                    .done()
                    .then(self.recorded(lambda env: env["result"] + len(env["branch"])))
                )
            elif kind == "loop":
                body = self.recorded(lambda v: LoopResult.done(v * 2 % 1000) if v % 3 == 0 else LoopResult.again(v + 1))
                flow.loop(body, max_iterations=3)
            elif kind == "delay":
                flow.delay(f"d{next(self.names)}", arg)
            elif kind == "signal":
                signal = f"s{next(self.names)}"
                self.signals.append(signal)
                flow.wait_for_signal(signal).then(self.recorded(lambda payload: payload + 1))
            elif kind == "child":
                flow.then_flow(self.build(arg, name=f"child{next(self.names)}"))
        return flow.build()

    def recorded(self, fn: Any, retries: RetryPolicy | None = None) -> Any:
        """``fn`` as a task that notes when it starts and when it succeeds, and may be where the crash is."""
        crasher, started, succeeded = self.crasher, self.started, self.succeeded

        def run(x: Any) -> Any:
            ctx = get_task_context()
            assert ctx is not None
            started.append(ctx.path)
            crasher.tick()
            result = fn(x)
            succeeded.append(ctx.path)
            return result

        return task(run, name=f"f{next(self.names)}", retries=retries)


@dataclass
class Outcome:
    output: Any
    ticks: int
    started_before_crash: list[str] = field(default_factory=list)
    succeeded_before_crash: list[str] = field(default_factory=list)
    started_after_crash: list[str] = field(default_factory=list)


@dataclass
class Harness:
    """One random flow as instance ``prop-1``: the steps it started and finished (in order), the
    crash to come, and the clock and backend its runs share."""

    crasher: Crasher
    workflow: Workflow
    clock: FakeClock
    backend: CrashingBackend
    started: list[str]
    succeeded: list[str]

    @classmethod
    def of(cls, spec: list[Any], crash_at: int | None) -> Harness:
        crasher = Crasher(crash_at)
        started: list[str] = []
        succeeded: list[str] = []
        factory = FlowFactory(crasher, started, succeeded)
        workflow = factory.build(spec)
        backend = CrashingBackend(crasher)
        for signal in factory.signals:
            backend.append_inbox("prop-1", {"type": "signal", "name": signal, "payload": 41})
        return cls(crasher, workflow, FakeClock(), backend, started, succeeded)

    def runner(self) -> Runner:
        return Runner(
            self.workflow, "prop-1", self.backend, sleep_through_waits=True, clock=self.clock, sleep=self.clock.sleep
        )


def run(spec: list[Any], value: int, crash_at: int | None) -> Outcome:
    """Run ``spec``; with ``crash_at``, crash at that tick and resume from the last checkpoint."""
    harness = Harness.of(spec, crash_at)
    started, succeeded = harness.started, harness.succeeded
    crashed_after = (0, 0)
    try:
        status = harness.runner().start(value)
    except SimulatedCrash:
        crashed_after = (len(started), len(succeeded))
        harness.crasher.at = None
        stored = harness.backend.load("prop-1")
        runner = harness.runner()
        # With no checkpoint yet (it crashed before the first), start over.
        status = runner.start(value) if stored is None else runner.resume(Snapshot.from_data(stored))
    assert status.is_completed(), (status.status, status.error)
    if crash_at is None:
        return Outcome(status.output, harness.crasher.ticks)
    return Outcome(
        status.output,
        harness.crasher.ticks,
        started[: crashed_after[0]],
        succeeded[: crashed_after[1]],
        started[crashed_after[0] :],
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=steps, value=st.integers(0, 100), crash_fraction=st.floats(0, 1))
def test_a_crash_anywhere_then_resume_gives_the_uninterrupted_result(
    spec: list[Any], value: int, crash_fraction: float
) -> None:
    uninterrupted = run(spec, value, None)
    crash_at = 1 + int(crash_fraction * (uninterrupted.ticks - 1))
    resumed = run(spec, value, crash_at)
    assert resumed.output == uninterrupted.output

    rerun = set(resumed.succeeded_before_crash) & set(resumed.started_after_crash)
    # Only the step in flight at the crash (the last one started) may run again.
    in_flight = set(resumed.started_before_crash[-1:])
    assert rerun <= in_flight
