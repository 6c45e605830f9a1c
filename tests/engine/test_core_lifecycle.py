"""Retries, timeouts, signals, pause, cancel, lost attempts and versions in the engine core."""

from __future__ import annotations

import pytest

from plait import Flow, RetryPolicy, task
from plait._core.events import (
    Cancel,
    CancelTask,
    Pause,
    SignalReceived,
    TaskFailed,
    TaskLost,
    TaskSucceeded,
    TaskTimedOut,
    TimerFired,
    Unpause,
)
from plait.errors import DefinitionError
from tests.engine.harness import Harness


@task(retries=RetryPolicy(max_retries=3, initial_delay_secs=2, backoff_multiplier=3, max_delay_secs=10))
def flaky(x: int) -> int:
    return x


@task
def step(x: int) -> int:
    return x


@task(timeout="5s", retries=1)
def slow(x: int) -> int:
    return x


def test_retries_back_off_exponentially_up_to_the_cap_then_fail_once() -> None:
    h = Harness(Flow("r").then(flaky))
    h.start(1)
    waits = []
    for attempt in range(1, 5):
        command = h.only()
        assert command.attempt == attempt
        h.feed(TaskFailed(command.path, attempt, f"RuntimeError: boom {attempt}"))
        if attempt == 4:
            break
        assert h.snapshot.status == "in_progress" and not h.running()
        timer = h.timers()[-1]
        waits.append(timer.at - h.now)
        assert not h.feed(TimerFired("0")).accepted  # not due yet
        h.now = timer.at
        h.feed(TimerFired("0"))
    assert waits == [2, 6, 10]  # 2, 2*3, min(2*9, 10)
    assert h.failed() == "RuntimeError: boom 4"
    dispatched = len(h.dispatched())
    h.now += 1000
    assert not h.feed(TimerFired("0")).accepted
    assert len(h.dispatched()) == dispatched == 4  # no hot loop, nothing after the failure


def test_a_task_without_retries_fails_the_workflow_on_the_first_error() -> None:
    h = Harness(Flow("r").then(step).then(step))
    h.start(1)
    h.feed(TaskFailed("0", 1, "ValueError: bad"))
    assert h.failed() == "ValueError: bad"
    assert len(h.dispatched()) == 1


def test_a_timeout_is_a_failed_attempt_that_retries() -> None:
    h = Harness(Flow("t").then(slow))
    h.start(1)
    first = h.only()
    assert first.timeout_secs == 5
    h.feed(TaskTimedOut(first.path, 1))
    h.now = h.timers()[-1].at
    h.feed(TimerFired("0"))
    second = h.only()
    assert second.attempt == 2
    h.feed(TaskTimedOut(second.path, 2))
    assert "timed out after 5.0s" in h.failed()


def test_a_late_result_from_a_superseded_attempt_is_refused() -> None:
    h = Harness(Flow("t").then(slow))
    h.start(1)
    h.feed(TaskTimedOut("0", 1))
    h.now = h.timers()[-1].at
    h.feed(TimerFired("0"))
    stale = h.feed(TaskSucceeded("0", 1, "late"))
    assert not stale.accepted
    h.feed(TaskSucceeded("0", 2, "fresh"))
    assert h.completed() == "fresh"


def test_a_lost_attempt_reruns_without_using_a_retry_until_the_limit() -> None:
    h = Harness(Flow("l").then(step))
    h.start(1)
    for attempt in range(1, 6):
        h.feed(TaskLost("0", attempt, "lease expired"))
        assert h.only().attempt == attempt + 1
    h.feed(TaskLost("0", 6, "lease expired"))
    assert "lost its worker 6 times" in h.failed()


def test_signal_sent_after_the_wait_is_delivered() -> None:
    h = Harness(Flow("s").then(step).wait_for_signal("approve").then(step))
    h.start(1)
    h.succeed(h.only(), 1)
    assert h.snapshot.status == "awaiting_signal"
    h.feed(SignalReceived("approve", {"ok": True}))
    assert h.only().input == {"ok": True}


def test_signals_sent_early_are_buffered_first_in_first_out_per_name() -> None:
    h = Harness(Flow("s").wait_for_signal("a").then(step).wait_for_signal("a").then(step))
    h.start(None)
    assert h.snapshot.status == "awaiting_signal"
    h.feed(SignalReceived("a", "first"))
    h.feed(SignalReceived("other", "x"))
    h.feed(SignalReceived("a", "second"))
    assert h.only().input == "first"
    h.succeed(h.only(), None)
    assert h.only().input == "second"  # consumed from the buffer at once
    assert h.snapshot.signals == {"other": ["x"]}


def test_signal_timeout_fails_by_default_and_continues_when_asked() -> None:
    failing = Harness(Flow("s").wait_for_signal("go", timeout="30s").then(step))
    failing.start(1)
    assert failing.timers()[-1].kind == "signal-timeout"
    failing.now += 30
    failing.feed(TimerFired("0"))
    assert failing.failed() == "SignalTimeout: signal 'go' not received within 30.0s"

    continuing = Harness(Flow("s").wait_for_signal("go", timeout=30, on_timeout="continue").then(step))
    continuing.start(1)
    continuing.now += 30
    continuing.feed(TimerFired("0"))
    assert continuing.only().input is None


def test_a_signal_that_arrives_in_time_cancels_the_timeout() -> None:
    h = Harness(Flow("s").wait_for_signal("go", timeout=30).then(step))
    h.start(1)
    h.feed(SignalReceived("go", 7))
    h.now += 31
    assert not h.feed(TimerFired("0")).accepted
    h.succeed(h.only(), 7)
    assert h.completed() == 7


def test_pause_holds_the_next_dispatch_and_unpause_releases_it() -> None:
    h = Harness(Flow("p").then(step).then(step))
    h.start(1)
    h.feed(Pause("maintenance", "ops"))
    assert h.snapshot.status == "paused"
    h.succeed(h.only(), 2)  # the running task finishes
    assert not h.running() and h.snapshot.ready == ["1"]
    assert h.snapshot.status == "paused"
    assert not h.feed(Pause("again")).accepted
    h.feed(Unpause())
    assert h.only().path == "1" and h.only().input == 2
    h.succeed(h.only(), 3)
    assert h.completed() == 3


def test_cancel_stops_running_attempts_and_ignores_everything_after() -> None:
    h = Harness(Flow("c").fork().branch(step).branch(lambda x: x, name="other").join(step))
    h.start(1)
    assert len(h.running()) == 2
    h.feed(Cancel("no longer needed", "alice"))
    assert h.snapshot.status == "cancelled"
    assert {c.path for c in h.cancels()} == {"0/0/0", "0/1/0"}
    assert all(isinstance(c, CancelTask) for c in h.cancels())
    assert not h.feed(TaskSucceeded("0/0/0", 1, 1)).accepted
    assert not h.feed(SignalReceived("x", 1)).accepted
    assert h.snapshot.cancelled == {"reason": "no longer needed", "by": "alice"}


def test_a_failing_branch_fails_the_fork_and_cancels_its_siblings() -> None:
    h = Harness(Flow("f").fork().branch(step).branch(lambda x: x, name="other").join(step))
    h.start(1)
    h.feed(TaskFailed("0/1/0", 1, "KeyError: 'k'"))
    assert h.failed() == "KeyError: 'k'"
    assert [c.path for c in h.cancels()] == ["0/0/0"]


def test_a_snapshot_only_runs_with_the_definition_it_started_with() -> None:
    h = Harness(Flow("v").then(step))
    h.start(1)
    other = Flow("v").then(step).then(step).build()
    with pytest.raises(DefinitionError, match="resume it with the definition it started with"):
        from plait._core.engine import decide

        decide(other.definition, h.snapshot, TaskSucceeded("0", 1, 1), h.now)


def test_step_summary_counts_attempts_and_runs() -> None:
    h = Harness(Flow("s").then(flaky).then(step))
    h.start(1)
    h.feed(TaskFailed("0", 1, "E: x"))
    h.now = h.timers()[-1].at
    h.feed(TimerFired("0"))
    h.succeed(h.only(), 1)
    assert h.snapshot.steps["flaky"]["attempts"] == 2
    assert h.snapshot.steps["flaky"]["runs"] == 1
    assert h.snapshot.steps["flaky"]["state"] == "succeeded"
    assert h.snapshot.steps["step"]["state"] == "running"
