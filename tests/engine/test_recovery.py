"""Rerunning a stopped instance, forking a checkpoint, deadlines and failure handlers, in the engine core."""

from __future__ import annotations

import pytest

from plait import Flow, WorkflowFailure, task
from plait._core.definition import Definition
from plait._core.events import (
    Abort,
    Cancel,
    CancelTask,
    DispatchTask,
    Fail,
    SetTimer,
    TaskFailed,
    TaskSucceeded,
    TimerFired,
)
from plait._core.frames import in_flight
from plait._core.rerun import fork, locate, rerun, unfinished
from plait._core.snapshot import Snapshot
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


@task
def notify(failure: WorkflowFailure) -> str:
    return f"told about {failure.error}"


@task(retries=1)
def flaky_notify(failure: WorkflowFailure) -> str:
    return "told"


def failing_with_handler(handler: object = notify) -> Harness:
    h = Harness(Flow("h").fork().branch(a).branch(b).join(total).on_failure(handler))  # type: ignore[arg-type]
    h.start(7)
    h.feed(TaskFailed("0/0/0", 1, "RuntimeError: boom"))
    return h


def test_the_failure_handler_runs_once_on_the_error_and_the_input_then_the_instance_fails() -> None:
    h = failing_with_handler()
    assert [(c.path, c.attempt) for c in h.log if isinstance(c, CancelTask)] == [("0/1/0", 1)]
    handler = h.only()
    assert (handler.path, handler.task) == ("on_failure", "notify")
    assert handler.input == {"error": "RuntimeError: boom", "input": 7, "instance_id": "i-1", "workflow": "h"}
    assert h.snapshot.status == "in_progress" and not any(isinstance(c, Fail) for c in h.log)
    h.succeed(handler, "told")
    assert h.failed() == "RuntimeError: boom"
    assert h.snapshot.steps["notify"]["state"] == "succeeded"
    assert not h.feed(TaskSucceeded("on_failure", 1, "again")).accepted
    assert [d.task for d in h.dispatched()].count("notify") == 1


def test_a_failing_handler_is_recorded_and_not_run_again() -> None:
    h = failing_with_handler()
    h.feed(TaskFailed("on_failure", 1, "ConnectionError: mail server down"))
    assert h.failed() == "RuntimeError: boom"
    assert h.snapshot.failure_handler is not None
    assert h.snapshot.failure_handler["state"] == "failed"
    assert h.snapshot.failure_handler.get("error") == "ConnectionError: mail server down"
    assert h.snapshot.steps["notify"]["state"] == "failed"
    assert [d.task for d in h.dispatched()].count("notify") == 1


def test_the_handler_has_its_own_retries_and_survives_a_crash() -> None:
    h = failing_with_handler(flaky_notify)
    h.feed(TaskFailed("on_failure", 1, "ConnectionError: try later"))
    h.now = h.timers()[-1].at
    h.feed(TimerFired("on_failure"))
    assert h.only().attempt == 2
    [dispatch] = in_flight(h.definition, Snapshot.from_data(h.snapshot.to_data()))  # a restarted operator
    assert (dispatch.path, dispatch.attempt, dispatch.input["error"]) == ("on_failure", 2, "RuntimeError: boom")
    h.succeed(h.only(), "told")
    assert h.failed() == "RuntimeError: boom"


def test_a_deadline_runs_the_handler_but_a_cancel_or_a_success_does_not() -> None:
    h = Harness(Flow("h").then(a).on_failure(notify))
    h.start(1)
    h.feed(Abort("DeadlineExceeded: too long"))
    assert h.only().input["error"] == "DeadlineExceeded: too long"
    assert not h.feed(Abort("DeadlineExceeded: too long")).accepted  # the handler is not cut short
    cancelled = Harness(Flow("h").then(a).on_failure(notify))
    cancelled.start(1)
    cancelled.feed(Cancel())
    assert [d.task for d in cancelled.dispatched()] == ["a"]
    succeeded = Harness(Flow("h").then(a).on_failure(notify))
    succeeded.start(1)
    succeeded.succeed(succeeded.only(), 2)
    assert succeeded.completed() == 2 and [d.task for d in succeeded.dispatched()] == ["a"]


def test_a_rerun_after_the_handler_gives_the_next_failure_its_own_handler_run() -> None:
    h = failing_with_handler()
    h.succeed(h.only(), "told")
    h.failed()
    again = rerun_into(h)
    assert [d.task for d in again] == ["a", "b"] and h.snapshot.failure_handler is None
    h.feed(TaskFailed("0/0/0", again[0].attempt, "RuntimeError: boom again"))
    assert h.only().input["error"] == "RuntimeError: boom again"


def test_the_handler_is_part_of_the_definition_not_of_its_steps() -> None:
    definition = Flow("h").then(a).on_failure(notify).build().definition
    assert definition.on_failure is not None and definition.to_data()["onFailure"] == "notify"
    assert [node.id for node in definition.steps] == ["a"] and "notify" in definition.nodes
    assert Definition.from_data(definition.to_data()).on_failure == definition.on_failure
    assert definition.hash != Flow("h").then(a).build().definition_hash
    with pytest.raises(ValueError, match="already has a failure handler"):
        Flow("h").then(a).on_failure(notify).on_failure(notify)
