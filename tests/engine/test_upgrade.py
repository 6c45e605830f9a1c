"""Upgrade in place in the engine core: which checkpoints map onto another version, and how."""

from __future__ import annotations

from typing import Any

import pytest

from plait import Flow, LoopResult, Workflow, task
from plait._core.definition import Definition, LoopNode, TaskNode
from plait._core.engine import decide
from plait._core.events import DispatchTask, Pause, SignalReceived, TaskSucceeded, TimerFired, Unpause
from plait._core.frames import in_flight
from plait._core.snapshot import Snapshot
from plait._core.upgrade import Upgrade, UpgradeRefused, diff_steps, moves, plan_upgrade, snapshot_at
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
def d(x: int) -> int:
    return x - 1


@task
def total(parts: dict[str, int]) -> int:
    return sum(parts.values())


@task
def pick(x: int) -> str:
    return "big" if x >= 10 else "small"


@task
def again(x: int) -> LoopResult[int]:
    return LoopResult.again(x + 1) if x < 3 else LoopResult.done(x)


def version(flow: Flow) -> Definition:
    return flow.build().definition


def accepted(plan: Upgrade | UpgradeRefused) -> Upgrade:
    assert isinstance(plan, Upgrade), plan
    return plan


def refused(plan: Upgrade | UpgradeRefused) -> UpgradeRefused:
    assert isinstance(plan, UpgradeRefused), plan
    return plan


class Moved:
    """An instance on the version it was moved to: deliver results, see what is dispatched."""

    def __init__(self, definition: Definition, snapshot: Snapshot) -> None:
        self.definition = definition
        self.snapshot = snapshot
        self.dispatched: list[DispatchTask] = []

    def running(self) -> list[DispatchTask]:
        return sorted(in_flight(self.definition, self.snapshot), key=lambda dispatch: dispatch.path)

    def feed(self, event: Any) -> None:
        decision = decide(self.definition, self.snapshot, event, 2000.0)
        assert decision.accepted, event
        self.dispatched += [c for c in decision.commands if isinstance(c, DispatchTask)]

    def succeed(self, node_id: str, output: Any) -> None:
        dispatch = next(d for d in self.running() if d.node_id == node_id)
        self.feed(TaskSucceeded(dispatch.path, dispatch.attempt, output))


def at_b() -> Harness:
    """a -> b -> c, with a finished and b running."""
    h = Harness(Flow("v").then(a).then(b).then(c))
    h.start(1)
    h.succeed(h.only(), 2)
    assert h.only().node_id == "b"
    return h


def test_a_step_added_after_the_current_one_runs_and_nothing_runs_twice() -> None:
    h = at_b()
    target = version(Flow("v").then(a).then(b).then(d).then(c))
    upgrade = accepted(plan_upgrade(h.definition, target, h.snapshot))
    assert upgrade.moved == {} and upgrade.skipped == []
    assert upgrade.snapshot.definition_hash == target.hash
    assert h.snapshot.definition_hash == h.definition.hash  # the old checkpoint is not changed

    moved = Moved(target, upgrade.snapshot)
    moved.succeed("b", 4)  # the attempt in flight at the upgrade is still waited for
    moved.succeed("d", 3)
    moved.succeed("c", 103)
    assert moved.snapshot.status == "completed" and moved.snapshot.output == 103
    assert [dispatch.node_id for dispatch in moved.dispatched] == ["d", "c"]


def test_the_current_step_removed_is_refused_naming_it() -> None:
    h = at_b()
    plan = refused(plan_upgrade(h.definition, version(Flow("v").then(a).then(c)), h.snapshot))
    assert plan.step == "b"
    assert "'b', where the instance is, is not in the target" in plan.reason


def test_a_step_that_ran_moved_after_the_current_one_is_refused() -> None:
    h = at_b()
    plan = refused(plan_upgrade(h.definition, version(Flow("v").then(b).then(c).then(a)), h.snapshot))
    assert plan.step == "a"
    assert "already ran" in plan.reason


def test_a_step_added_before_the_current_one_is_skipped_and_the_running_step_moves() -> None:
    h = at_b()
    target = version(Flow("v").then(a).then(d).then(b).then(c))
    upgrade = accepted(plan_upgrade(h.definition, target, h.snapshot))
    assert upgrade.skipped == ["d"]
    assert upgrade.moved == {"1": "2"}
    assert upgrade.snapshot.running == {"2": 1}
    moved = Moved(target, upgrade.snapshot)
    moved.feed(TaskSucceeded("2", 1, 4))
    moved.succeed("c", 104)
    assert moved.snapshot.output == 104
    assert [dispatch.node_id for dispatch in moved.dispatched] == ["c"]


def test_a_step_of_another_kind_is_refused() -> None:
    h = at_b()
    target = version(Flow("v").then(a).wait_for_signal("go", name="b").then(c))
    assert "is a task here and a signal in the target" in refused(plan_upgrade(h.definition, target, h.snapshot)).reason


def test_a_finished_or_unstarted_instance_is_refused_and_the_same_version_changes_nothing() -> None:
    h = Harness(Flow("v").then(a))
    target = version(Flow("v").then(a).then(b))
    assert "has not started" in refused(plan_upgrade(h.definition, target, h.snapshot)).reason
    h.start(1)
    same = accepted(plan_upgrade(h.definition, h.definition, h.snapshot))
    assert same.snapshot.to_data() == h.snapshot.to_data()
    h.succeed(h.only(), 2)
    assert "is completed" in refused(plan_upgrade(h.definition, target, h.snapshot)).reason


def test_a_waiting_signal_moves_with_its_new_name_and_a_delay_keeps_its_value() -> None:
    h = Harness(Flow("v").then(a).delay("nap", 5).wait_for_signal("go").then(b))
    h.start(1)
    h.succeed(h.only(), 2)
    target = version(Flow("v").then(a).delay("nap", 60).then(c).wait_for_signal("go-now", name="go").then(b))
    upgrade = accepted(plan_upgrade(h.definition, target, h.snapshot))  # at the delay: its timer stays
    assert upgrade.snapshot.timers == h.snapshot.timers
    moved = Moved(target, upgrade.snapshot)
    moved.feed(TimerFired("1"))
    assert [dispatch.input for dispatch in moved.dispatched] == [2]  # the delay's value went on
    moved.succeed("c", 102)
    assert moved.snapshot.status == "awaiting_signal"

    h.now += 10
    h.feed(TimerFired("1"))
    assert h.snapshot.status == "awaiting_signal"
    upgrade = accepted(plan_upgrade(h.definition, target, h.snapshot))
    assert upgrade.skipped == ["c"]
    assert list(upgrade.snapshot.waiting_signals.values()) == [("go-now", "go")]
    moved = Moved(target, upgrade.snapshot)
    moved.feed(SignalReceived("go-now", 7))
    moved.succeed("b", 14)
    assert moved.snapshot.output == 14


def test_a_paused_instance_upgraded_then_resumed_runs_the_new_step() -> None:
    h = at_b()
    h.feed(Pause("maintenance"))
    h.succeed(h.only(), 4)  # b finishes while paused: c is held back
    assert h.snapshot.ready == ["2"] and h.snapshot.status == "paused"
    target = version(Flow("v").then(a).then(b).then(d).then(c))
    upgrade = accepted(plan_upgrade(h.definition, target, h.snapshot))
    assert upgrade.snapshot.ready == ["3"]
    moved = Moved(target, upgrade.snapshot)
    moved.feed(Unpause())
    assert [dispatch.node_id for dispatch in moved.dispatched] == ["c"]  # d was before where it was


def forked(v: Flow) -> Harness:
    h = Harness(v)
    h.start(1)
    return h


def test_a_fork_maps_branch_by_name_keeping_finished_results() -> None:
    h = forked(Flow("v").fork().branch(a, b).branch(c).join(total))
    h.succeed(next(cmd for cmd in h.running().values() if cmd.node_id == "c"), 101)  # branch c finished
    h.succeed(next(cmd for cmd in h.running().values() if cmd.node_id == "a"), 2)  # branch a at b
    target = version(Flow("v").fork().branch(c).branch(a, b, d).join(total))
    upgrade = accepted(plan_upgrade(h.definition, target, h.snapshot))
    assert upgrade.moved == {"0/0/1": "0/1/1"}
    fork: Any = upgrade.snapshot.root["cur"]  # type: ignore[index]
    assert fork["results"] == {"c": 101} and fork["branches"][0] is None
    moved = Moved(target, upgrade.snapshot)
    moved.succeed("b", 4)
    moved.succeed("d", 3)
    moved.succeed("total", 104)
    assert [dispatch.node_id for dispatch in moved.dispatched] == ["d", "total"]
    assert moved.dispatched[-1].input == {"c": 101, "a": 3}


def test_a_fork_refuses_a_lost_branch_result_a_new_branch_and_a_removed_running_branch() -> None:
    h = forked(Flow("v").fork().branch(a).branch(c).join(total))
    h.succeed(next(cmd for cmd in h.running().values() if cmd.node_id == "c"), 101)
    lost = refused(plan_upgrade(h.definition, version(Flow("v").fork().branch(a).join(total)), h.snapshot))
    assert lost.step == "c" and "its result for the join has no branch" in lost.reason
    grown = refused(
        plan_upgrade(h.definition, version(Flow("v").fork().branch(a).branch(c).branch(d).join(total)), h.snapshot)
    )
    assert grown.step == "a||c" and "adds branch 'd'" in grown.reason
    gone = refused(plan_upgrade(h.definition, version(Flow("v").fork().branch(c).join(total)), h.snapshot))
    assert gone.step == "a" and "branch 'a'" in gone.reason


def test_a_fork_whose_join_runs_takes_new_branches_as_skipped() -> None:
    h = forked(Flow("v").fork().branch(a).branch(c).join(total))
    for node in ("a", "c"):
        h.succeed(next(cmd for cmd in h.running().values() if cmd.node_id == node), 1)
    target = version(Flow("v").fork().branch(a).branch(c).branch(d).join(total).then(b))
    upgrade = accepted(plan_upgrade(h.definition, target, h.snapshot))
    assert upgrade.skipped == ["d"] and upgrade.moved == {}


def test_a_route_keeps_its_taken_branch_and_refuses_when_the_target_drops_it() -> None:
    v1 = Flow("v").route(pick, keys=["big", "small"]).branch("big", a, b).branch("small", c).done()
    h = Harness(v1)
    h.start(20)
    keyed = accepted(  # while the key runs, the branches may change
        plan_upgrade(
            h.definition,
            version(Flow("v").route(pick, keys=["big", "small"]).branch("big", d).branch("small", c).done()),
            h.snapshot,
        )
    )
    assert keyed.moved == {}
    h.succeed(h.only(), "big")
    target = version(Flow("v").route(pick, keys=["big", "small"]).branch("big", a, d, b).branch("small", c).done())
    upgrade = accepted(plan_upgrade(h.definition, target, h.snapshot))
    moved = Moved(target, upgrade.snapshot)
    moved.succeed("a", 21)
    moved.succeed("d", 20)
    moved.succeed("b", 40)
    assert moved.snapshot.output == {"branch": "big", "result": 40}
    dropped = version(Flow("v").route(pick, keys=["big", "small"]).branch("small", c).default_branch(d).done())
    assert refused(plan_upgrade(h.definition, dropped, h.snapshot)).step == "a"  # the default branch runs d, not a
    gone = version(Flow("v").route(pick, keys=["small"]).branch("small", c).done())
    assert (
        "took key 'big', for which the target has no branch"
        in refused(plan_upgrade(h.definition, gone, h.snapshot)).reason
    )


def test_a_loop_body_reruns_by_design_but_a_step_it_ran_this_iteration_does_not() -> None:
    h = Harness(Flow("v").loop(again, max_iterations=5).then(b))
    h.start(0)
    h.succeed(h.only(), {"_loop": "again", "value": 1})  # iteration 1 runs `again`
    target = version(Flow("v").then(a).loop(again, max_iterations=5).then(b))
    upgrade = accepted(plan_upgrade(h.definition, target, h.snapshot))
    assert upgrade.skipped == ["a"] and upgrade.moved == {"0/1/0": "1/1/0"}

    # the authoring API's loops have one step; the core's may have more
    v1 = Definition("v", (TaskNode("a", "a"), LoopNode("loop", (TaskNode("again", "again"),))))
    v2 = Definition("v", (LoopNode("loop", (TaskNode("a", "a"), TaskNode("again", "again"))),))
    h = Harness(Workflow(v1, {}))
    h.start(0)
    h.succeed(h.only(), 1)
    assert refused(plan_upgrade(v1, v2, h.snapshot)).step == "a"  # a would run in the next iteration


def test_definitions_diff_lists_changes_and_which_steps_could_move() -> None:
    v1 = version(Flow("v").then(a).then(b).then(c))
    v2 = version(Flow("v").then(a).then(c).then(d))
    assert diff_steps(v1, v2) == (["d"], ["b"], [])
    answers = {step: isinstance(plan, Upgrade) for step, plan in moves(v1, v2)}
    assert answers == {"a": True, "b": False, "c": True}
    with pytest.raises(KeyError):
        snapshot_at(v1, "nope")


def test_an_instance_at_each_step_of_every_shape_maps_onto_a_version_that_adds_a_last_step() -> None:
    def shapes(flow: Flow) -> Flow:
        return (
            flow.fork()
            .branch(a)
            .branch(b)
            .join(total)
            .route(pick, keys=["big", "small"])
            .branch("big", c)
            .default_branch(d)
            .done()
            .loop(again)
            .delay("nap", 1)
            .wait_for_signal("go")
            .then_flow(Flow("inner").then(d).build())
        )

    v1 = version(shapes(Flow("v")))
    v2 = version(shapes(Flow("v")).then(c))
    answers = dict(moves(v1, v2))
    assert list(answers) == ["a", "b", "total", "branch_0::key_fn", "c", "d", "again", "nap", "go", "d#2"]
    assert all(isinstance(plan, Upgrade) for plan in answers.values()), answers
    unrelated = version(Flow("v").then(a))
    assert not any(isinstance(plan, Upgrade) for _, plan in moves(v1, unrelated))
