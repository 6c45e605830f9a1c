"""Rerunning a stopped instance, forking a checkpoint, deadlines and failure handlers, in the engine core."""

from __future__ import annotations

import pytest

from plait import Flow, task
from plait._core.definition import Definition
from plait._core.events import Abort, Cancel, CancelTask, DispatchTask, SetTimer, TaskFailed, TaskSucceeded, TimerFired
from plait._core.rerun import fork, locate, rerun, unfinished
from plait.errors import RerunRefused
from tests.engine.harness import Harness


@task
def a(x: int) -> int:
    return x + 1


@task
def b(x: int) -> int:
    return x * 2


@task
def c(x: int) -> int:
    return x + 100


@task
def total(parts: dict[str, int]) -> int:
    return sum(parts.values())


def failed_at_c() -> Harness:
    """a -> b -> c, with c failed after a and b succeeded."""
    h = Harness(Flow("abc").then(a).then(b).then(c))
    h.start(1)
    h.succeed(h.only(), 2)
    h.succeed(h.only(), 4)
    h.feed(TaskFailed("2", 1, "RuntimeError: dependency down"))
    assert h.failed() == "RuntimeError: dependency down"
    return h


def rerun_into(h: Harness, step: str | None = None, value: object = None) -> list[DispatchTask]:
    decision = rerun(h.definition, h.snapshot, step, value, h.now)
    h.snapshot = decision.snapshot
    h.log.extend(decision.commands)
    return [command for command in decision.commands if isinstance(command, DispatchTask)]


def test_a_rerun_runs_the_failed_step_again_with_the_input_it_had() -> None:
    h = failed_at_c()
    [again] = rerun_into(h)
    assert (again.path, again.task, again.attempt, again.input) == ("2", "c", 2, 4)
    assert h.snapshot.status == "in_progress" and h.snapshot.error is None
    h.succeed(again, 104)
    assert h.completed() == 104
    assert [d.task for d in h.dispatched()] == ["a", "b", "c", "c"]  # a and b never ran again
    assert h.snapshot.steps["c"]["attempts"] == 2 and h.snapshot.steps["a"]["runs"] == 1


def test_a_rerun_gets_its_retries_back() -> None:
    h = failed_at_c()
    [again] = rerun_into(h)
    assert h.snapshot.root is not None
    state = h.snapshot.root["cur"]
    assert state is not None and state["failures"] == 0 and "error" not in state  # type: ignore[typeddict-item]
    h.feed(TaskFailed(again.path, again.attempt, "RuntimeError: still down"))
    assert h.failed() == "RuntimeError: still down"
    [third] = rerun_into(h)
    assert third.attempt == 3


def test_a_rerun_from_an_earlier_step_runs_it_and_what_follows_with_new_attempt_numbers() -> None:
    h = failed_at_c()
    assert locate(h.definition, h.snapshot, "b") == "1"
    [again] = rerun_into(h, "b", 2)  # the input b had (from its task record)
    assert (again.path, again.task, again.attempt, again.input) == ("1", "b", 2, 2)
    h.succeed(again, 4)
    after = h.only()
    assert (after.task, after.attempt) == ("c", 2)  # not attempt 1: that name was taken by the first run
    h.succeed(after, 104)
    assert h.completed() == 104
    assert [d.task for d in h.dispatched()] == ["a", "b", "c", "b", "c"]


def test_a_rerun_of_a_fork_restarts_the_failed_branch_and_the_ones_the_failure_stopped() -> None:
    h = Harness(Flow("f").fork().branch(a).branch(b).branch(c).join(total))
    h.start(1)
    h.succeed(h.running()["0/0/0"], 2)
    h.feed(TaskFailed("0/1/0", 1, "RuntimeError: boom"))  # c's branch was running: it is cancelled
    h.failed()
    assert unfinished(h.definition, h.snapshot) == ["0/1/0", "0/2/0"]
    dispatched = rerun_into(h)
    assert sorted((d.path, d.attempt) for d in dispatched) == [("0/1/0", 2), ("0/2/0", 2)]
    h.succeed(h.running()["0/1/0"], 2)
    h.succeed(h.running()["0/2/0"], 101)
    join = h.only()
    assert join.input == {"a": 2, "b": 2, "c": 101}  # a's result was kept
    h.succeed(join, 105)
    assert h.completed() == 105


def test_a_cancelled_instance_reruns_a_delay_in_full() -> None:
    h = Harness(Flow("d").then(a).delay("wait", 60).then(b))
    h.start(1)
    h.succeed(h.only(), 2)
    h.now += 30
    h.feed(Cancel("oops"))
    assert h.snapshot.status == "cancelled"
    decision = rerun(h.definition, h.snapshot, None, None, h.now)
    [timer] = [cmd for cmd in decision.commands if isinstance(cmd, SetTimer)]
    assert timer.at == h.now + 60 and decision.snapshot.status == "waiting"
    assert decision.snapshot.cancelled is None
    h.now += 60
    h.feed(TimerFired("1"))
    assert h.only().input == 2


def test_a_rerun_is_refused_with_a_reason() -> None:
    h = failed_at_c()
    with pytest.raises(RerunRefused, match=r"has no step 'nope'.*a, b, c"):
        rerun(h.definition, h.snapshot, "nope", None, h.now)
    running = Harness(Flow("abc").then(a).then(b).then(c))
    running.start(1)
    with pytest.raises(RerunRefused, match="is in_progress: only a failed or cancelled"):
        rerun(running.definition, running.snapshot, None, None, running.now)
    looped = Harness(Flow("d").then(a).delay("wait", 5).then(b))
    looped.start(1)
    looped.feed(Cancel())
    with pytest.raises(RerunRefused, match="step 'wait' is a delay"):
        rerun(looped.definition, looped.snapshot, "wait", None, looped.now)
    with pytest.raises(RerunRefused, match=r"step 'b' is not on the way.*one of: a$"):
        rerun(looped.definition, looped.snapshot, "b", None, looped.now)


def test_a_step_in_a_finished_branch_cannot_be_rerun_from() -> None:
    h = Harness(Flow("f").then(a).fork().branch(b).branch(c).join(total))
    h.start(1)
    h.succeed(h.only(), 2)
    h.succeed(h.running()["1/0/0"], 4)
    h.feed(TaskFailed("1/1/0", 1, "RuntimeError: boom"))
    with pytest.raises(RerunRefused, match="one of: a, c"):
        rerun(h.definition, h.snapshot, "b", 2, h.now)


def test_a_fork_goes_on_from_a_copy_and_leaves_the_source_alone() -> None:
    h = failed_at_c()
    before = h.snapshot.to_data()
    decision = fork(h.definition, h.snapshot, "copy", None, None, h.now)
    assert h.snapshot.to_data() == before
    copy = decision.snapshot
    assert copy.instance_id == "copy" and copy.status == "in_progress"
    [again] = [cmd for cmd in decision.commands if isinstance(cmd, DispatchTask)]
    assert (again.path, again.task, again.input) == ("2", "c", 4)


def test_a_fork_of_a_running_instance_runs_its_attempts_in_flight_again() -> None:
    h = Harness(Flow("abc").then(a).then(b).then(c))
    h.start(1)
    h.succeed(h.only(), 2)
    decision = fork(h.definition, h.snapshot, "copy", None, None, h.now)
    [again] = [cmd for cmd in decision.commands if isinstance(cmd, DispatchTask)]
    assert (again.task, again.input) == ("b", 2) and decision.snapshot.running == {"1": again.attempt}
    assert h.snapshot.running == {"1": 1}


def test_a_fork_of_a_finished_instance_needs_a_step() -> None:
    h = Harness(Flow("abc").then(a).then(b).then(c))
    h.start(1)
    h.run_inline({"a": lambda x: x + 1, "b": lambda x: x * 2, "c": lambda x: x + 100})
    assert h.completed() == 104
    with pytest.raises(RerunRefused, match=r"left no step unfinished.*one of: a, b, c"):
        fork(h.definition, h.snapshot, "copy", None, None, h.now)
    decision = fork(h.definition, h.snapshot, "copy", "b", 2, h.now)
    h.snapshot = decision.snapshot
    h.log.extend(decision.commands)
    h.succeed(h.only(), 4)
    h.feed(TaskSucceeded("2", h.only().attempt, 104))
    assert h.completed() == 104


def test_an_abort_fails_the_instance_and_stops_every_attempt_in_flight() -> None:
    h = Harness(Flow("f").fork().branch(a).branch(b).join(total))
    h.start(1)
    decision = h.feed(Abort("DeadlineExceeded: the instance ran for more than 2s"))
    assert h.failed() == "DeadlineExceeded: the instance ran for more than 2s"
    assert sorted(c.path for c in decision.commands if isinstance(c, CancelTask)) == ["0/0/0", "0/1/0"]
    assert not h.feed(Abort("again")).accepted
    [again, _] = rerun_into(h)  # a deadline's failure reruns like any other
    assert again.attempt == 2


def test_the_flow_timeout_is_part_of_the_definition() -> None:
    bounded = Flow("t", timeout="2h").then(a).build().definition
    assert bounded.timeout_secs == 7200 and bounded.to_data()["timeoutSeconds"] == 7200
    assert Definition.from_data(bounded.to_data()).timeout_secs == 7200
    assert bounded.hash != Flow("t").then(a).build().definition_hash
    with pytest.raises(ValueError, match="must be more than zero"):
        Flow("t", timeout=0)
