"""Every flow shape, driven event by event through the pure engine core."""

from __future__ import annotations

import pytest

from plait import Flow, LoopResult, task
from plait._core.events import DispatchTask, SetTimer, TaskSucceeded, TimerFired
from tests.engine.harness import Harness


@task
def inc(x: int) -> int:
    return x + 1


@task
def double(x: int) -> int:
    return x * 2


@task
def total(parts: dict[str, int]) -> int:
    return sum(parts.values())


FUNCS = {"inc": inc, "double": double, "total": total}


def test_sequence_passes_each_output_to_the_next_step() -> None:
    h = Harness(Flow("seq").then(inc).then(double).then(inc))
    first = h.start(1)
    assert [type(c) for c in first] == [DispatchTask]
    assert (first[0].path, first[0].task, first[0].attempt, first[0].input) == ("0", "inc", 1, 1)
    h.run_inline(FUNCS)
    assert h.completed() == 5
    assert [c.path for c in h.dispatched()] == ["0", "1", "2"]


def test_fork_runs_branches_together_and_joins_a_dict_keyed_by_first_task() -> None:
    h = Harness(Flow("fork").then(inc).fork().branch(double).branch(inc, double, name="plus").join(total))
    h.start(1)
    h.succeed(h.only(), 2)
    branches = h.running()
    assert sorted(branches) == ["1/0/0", "1/1/0"]
    assert {c.input for c in branches.values()} == {2}
    h.succeed(branches["1/1/0"], 3)
    h.succeed(h.running()["1/1/1"], 6)
    assert list(h.running()) == ["1/0/0"]  # the join waits for every branch
    h.succeed(h.running()["1/0/0"], 4)
    join = h.only()
    assert join.path == "1/j" and join.input == {"double": 4, "plus": 6}
    h.succeed(join, 10)
    assert h.completed() == 10


def test_route_runs_the_branch_for_the_key_and_wraps_the_result() -> None:
    flow = Flow("route").route(lambda x: x["kind"], keys=["a", "b"]).branch("a", inc).branch("b", double).done()
    h = Harness(flow)
    h.start({"kind": "b", "n": 1})
    key = h.only()
    assert key.path == "0/k" and key.task == "branch_0::key_fn"
    h.succeed(key, "b")
    branch = h.only()
    assert branch.path == "0/r/0" and branch.task == "double" and branch.input == {"kind": "b", "n": 1}
    h.succeed(branch, "B")
    assert h.completed() == {"branch": "b", "result": "B"}


def test_route_uses_the_default_branch_for_an_undeclared_key() -> None:
    h = Harness(Flow("r").route(lambda x: x, keys=["a"]).branch("a", inc).default_branch(double).done())
    h.start("zzz")
    h.succeed(h.only(), "zzz")
    assert h.only().task == "double"
    h.succeed(h.only(), 1)
    assert h.completed() == {"branch": "zzz", "result": 1}


def test_route_without_a_matching_branch_fails_clearly() -> None:
    h = Harness(Flow("r").route(lambda x: x, keys=["a", "b"]).branch("a", inc).branch("b", inc).done())
    h.start("c")
    h.succeed(h.only(), "c")
    error = h.failed()
    assert "no branch matches key 'c'" in error and "declared keys: a, b" in error


def test_route_key_must_be_a_string() -> None:
    h = Harness(Flow("r").route(lambda x: x, keys=["1"]).branch("1", inc).done())
    h.start(1)
    h.succeed(h.only(), 1)
    assert "expected a string" in h.failed()


def test_loop_repeats_until_done_with_one_path_per_iteration() -> None:
    h = Harness(Flow("l").loop(inc, max_iterations=5))
    h.start(0)
    for i in range(3):
        body = h.only()
        assert body.path == f"0/{i}/0" and body.input == i
        h.succeed(body, LoopResult.again(i + 1).to_dict())
    h.succeed(h.only(), LoopResult.done("finished").to_dict())
    assert h.completed() == "finished"


@pytest.mark.parametrize(("on_max", "expect_output"), [("fail", None), ("exit_with_last", 3)])
def test_loop_at_max_iterations(on_max: str, expect_output: int | None) -> None:
    h = Harness(Flow("l").loop(inc, max_iterations=3, on_max=on_max))
    h.start(0)
    for i in range(3):
        h.succeed(h.only(), {"_loop": "again", "value": i + 1})
    if expect_output is None:
        assert h.failed() == "Loop 'loop_0' exceeded max iterations (3)"
    else:
        assert h.completed() == expect_output
    assert len(h.dispatched()) == 3


def test_loop_body_must_return_a_loop_result() -> None:
    h = Harness(Flow("l").loop(inc))
    h.start(0)
    h.succeed(h.only(), 5)
    assert "expected LoopResult" in h.failed()


def test_child_flow_runs_inline() -> None:
    child = Flow("child").then(double).then(inc).build()
    h = Harness(Flow("parent").then(inc).then_flow(child).then(double))
    h.start(1)
    h.run_inline(FUNCS)
    assert h.completed() == 10
    assert [c.path for c in h.dispatched()] == ["0", "1/0", "1/1", "2"]


def test_delay_sets_a_timer_and_passes_the_value_on_when_it_fires() -> None:
    h = Harness(Flow("d").then(inc).delay("nap", 60).then(double))
    h.start(1)
    h.succeed(h.only(), 2)
    assert h.snapshot.status == "waiting"
    [timer] = h.timers()
    assert timer == SetTimer("1", 1060.0, "delay")
    assert not h.running()
    early = h.feed(TimerFired("1"))
    assert not early.accepted and not h.running()
    h.now = 1060.0
    h.feed(TimerFired("1"))
    assert h.only().input == 2
    h.succeed(h.only(), 4)
    assert h.completed() == 4


def test_a_result_for_a_finished_step_is_ignored() -> None:
    h = Harness(Flow("s").then(inc).then(double))
    h.start(1)
    first = h.only()
    h.succeed(first, 2)
    again = h.feed(TaskSucceeded(first.path, first.attempt, 99))
    assert not again.accepted and again.commands == []
    assert h.only().input == 2


def test_snapshot_does_not_accumulate_outputs() -> None:
    h = Harness(Flow("s").then(inc).then(inc).then(inc).then(inc))
    h.start("x" * 1000)
    sizes = []
    for _ in range(4):
        h.succeed(h.only(), "y" * 1000)
        sizes.append(len(str(h.snapshot.to_data())))
    assert max(sizes) - min(sizes) < 500
