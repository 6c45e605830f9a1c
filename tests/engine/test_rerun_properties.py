"""Property: stop an instance anywhere, rerun it, and get the uninterrupted result without
rerunning a step whose result was recorded.

The random flows of the crash-and-resume property (every shape) run until a simulated crash at
a random point; the checkpoint that survived is then cancelled (what an operator does to an
instance in trouble: every attempt in flight is dropped, timers and signal waits too) and rerun
from its unfinished steps, then driven to the end by the local runner.
"""

from __future__ import annotations

import contextlib
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from plait._core.engine import decide
from plait._core.events import Cancel
from plait._core.rerun import rerun
from plait._core.snapshot import Snapshot
from tests.engine.test_crash_resume_properties import Harness, SimulatedCrash, run, steps


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=steps, value=st.integers(0, 100), stop_fraction=st.floats(0, 1))
def test_a_rerun_of_an_instance_stopped_anywhere_gives_the_uninterrupted_result(
    spec: list[Any], value: int, stop_fraction: float
) -> None:
    expected = run(spec, value, None)
    harness = Harness.of(spec, 1 + int(stop_fraction * (expected.ticks - 1)))
    workflow, clock, backend = harness.workflow, harness.clock, harness.backend
    started, succeeded = harness.started, harness.succeeded
    with contextlib.suppress(SimulatedCrash):
        harness.runner().start(value)
    stored = backend.load("prop-1")
    assume(
        stored is not None and stored["status"] not in ("completed", "failed", "cancelled")
    )  # it had started, not ended
    assert stored is not None
    harness.crasher.at = None
    before = (list(started), list(succeeded))

    stopped = decide(workflow.definition, Snapshot.from_data(stored), Cancel("stopped"), clock.now, track_steps=False)
    assert stopped.snapshot.status == "cancelled"
    again = rerun(workflow.definition, stopped.snapshot, None, None, clock.now)
    assert again.snapshot.status != "cancelled"
    backend.save_snapshot("prop-1", again.snapshot)
    status = harness.runner().resume(Snapshot.from_data(backend.load("prop-1") or {}))

    assert status.is_completed(), (status.status, status.error)
    assert status.output == expected.output
    ran_again = set(before[1]) & set(started[len(before[0]) :])
    assert ran_again <= set(before[0][-1:])  # only the step in flight when it stopped
