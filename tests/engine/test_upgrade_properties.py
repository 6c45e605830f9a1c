"""Property: an accepted upgrade never loses a recorded result and never re-dispatches a recorded step.

Random graphs of every shape run on the engine core to a random checkpoint (sometimes paused);
the graph is then changed at random (steps inserted, deleted, moved, swapped, of another kind,
fork branches added or dropped) and the checkpoint planned onto the new graph. When the plan is
accepted, the instance runs on to the end on the new graph: every value the checkpoint held is
still held, every attempt in flight is still waited for, the instance completes, and no step that
had finished or was under way starts again (loop bodies excepted: they run again by design).
With the no-step-runs-twice rule switched off, Hypothesis finds a counterexample.
"""

from __future__ import annotations

import copy
import json
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, event, find, given, settings
from hypothesis import strategies as st

from plait._core.definition import (
    Branch,
    ChildNode,
    Definition,
    DelayNode,
    ForkNode,
    LoopNode,
    Node,
    RouteNode,
    SignalNode,
    TaskNode,
    walk,
)
from plait._core.engine import decide, new_snapshot
from plait._core.events import (
    DispatchTask,
    Event,
    Pause,
    SetTimer,
    SignalReceived,
    Started,
    TaskSucceeded,
    TimerFired,
    Unpause,
)
from plait._core.frames import in_flight
from plait._core.snapshot import Snapshot
from plait._core.upgrade import Upgrade, UpgradeRefused, plan_upgrade

Spec = list[dict[str, Any]]  # a sequence of node specs; ids are filled in by ``numbered``


@st.composite
def sequences(draw: st.DrawFn, depth: int = 2) -> Spec:
    return [draw(nodes(depth)) for _ in range(draw(st.integers(1, 3)))]


@st.composite
def nodes(draw: st.DrawFn, depth: int) -> dict[str, Any]:
    kinds = ["task", "task", "delay", "signal"] + (["fork", "route", "loop", "child"] if depth > 0 else [])
    kind = draw(st.sampled_from(kinds))
    if kind in ("fork", "route"):
        return {
            "kind": kind,
            "branches": [{"steps": draw(sequences(depth - 1))} for _ in range(draw(st.integers(1, 3)))],
        }
    if kind == "loop":
        return {"kind": kind, "steps": [*draw(sequences(depth - 1)), {"kind": "task"}]}  # the body ends in a verdict
    if kind == "child":
        return {"kind": kind, "steps": draw(sequences(depth - 1))}
    return {"kind": kind}


def numbered(spec: Spec) -> Spec:
    counter = iter(range(10_000))

    def number(steps: Spec) -> None:
        for node in steps:
            node["id"] = f"s{next(counter)}"
            for index, branch in enumerate(node.get("branches", [])):
                branch["name"] = f"b{index}"
                number(branch["steps"])
            if node["kind"] in ("fork", "route"):
                node["part"] = f"s{next(counter)}"  # the join or the key task
            number(node.get("steps", []))

    number(spec)
    return spec


def built(spec: Spec) -> Definition:
    def node(n: dict[str, Any]) -> Node:
        kind, node_id = n["kind"], n["id"]
        if kind == "task":
            return TaskNode(node_id, node_id)
        if kind == "delay":
            return DelayNode(node_id, 5.0)
        if kind == "signal":
            return SignalNode(node_id, f"sig-{node_id}")
        if kind == "fork":
            branches = tuple(Branch(b["name"], sequence(b["steps"])) for b in n["branches"])
            return ForkNode(node_id, branches, TaskNode(n["part"], n["part"]))
        if kind == "route":
            routes = tuple((b["name"], sequence(b["steps"])) for b in n["branches"])
            return RouteNode(node_id, TaskNode(n["part"], n["part"]), tuple(name for name, _ in routes), routes)
        if kind == "loop":
            return LoopNode(node_id, sequence(n["steps"]), max_iterations=3, on_max="exit_with_last")
        return ChildNode(node_id, f"child-{node_id}", sequence(n["steps"]))

    def sequence(steps: Spec) -> tuple[Node, ...]:
        return tuple(node(n) for n in steps)

    return Definition("prop", sequence(spec))


def all_sequences(spec: Spec) -> list[Spec]:
    """Every list of steps in ``spec`` (root, branches, loop bodies, child flows), outermost first."""
    found = [spec]
    for node in spec:
        for branch in node.get("branches", []):
            found += all_sequences(branch["steps"])
        if "steps" in node:
            found += all_sequences(node["steps"])
    return found


MUTATIONS = ["insert", "insert", "delete", "move", "swap", "rekind", "add_branch", "drop_branch"]


@st.composite
def mutated(draw: st.DrawFn, spec: Spec) -> Spec:
    """``spec`` (not changed) with one to three random changes, ids kept; new steps get new ids."""
    spec = copy.deepcopy(spec)
    fresh = iter(f"n{i}" for i in range(100))
    for _ in range(draw(st.integers(1, 3))):
        seqs = all_sequences(spec)
        what = draw(st.sampled_from(MUTATIONS))
        seq = draw(st.sampled_from(seqs))
        if what == "insert":
            seq.insert(
                draw(st.integers(0, len(seq))), {"kind": draw(st.sampled_from(["task", "delay"])), "id": next(fresh)}
            )
        elif what == "delete" and len(seq) > 1:
            seq.pop(draw(st.integers(0, len(seq) - 1)))
        elif what == "move" and len(seq) > 1:
            node = seq.pop(draw(st.integers(0, len(seq) - 1)))
            into = draw(st.sampled_from(all_sequences(spec)))  # the moved node's own sequences are out of the tree
            into.insert(draw(st.integers(0, len(into))), node)
        elif what == "swap" and len(seq) > 1:
            i = draw(st.integers(0, len(seq) - 2))
            seq[i], seq[i + 1] = seq[i + 1], seq[i]
        elif what == "rekind":
            leaves = [n for n in seq if n["kind"] in ("task", "delay", "signal")]
            if leaves:
                draw(st.sampled_from(leaves))["kind"] = draw(st.sampled_from(["task", "delay", "signal"]))
        elif what in ("add_branch", "drop_branch"):
            forks = [n for s in seqs for n in s if n["kind"] == "fork"]
            if forks:
                fork = draw(st.sampled_from(forks))
                if what == "add_branch":
                    fork["branches"].append({"name": next(fresh), "steps": [{"kind": "task", "id": next(fresh)}]})
                elif len(fork["branches"]) > 1:
                    fork["branches"].pop(draw(st.integers(0, len(fork["branches"]) - 1)))
    for seq in all_sequences(spec):  # a loop body must still end in a verdict task
        for node in seq:
            if node["kind"] == "loop" and node["steps"][-1]["kind"] != "task":
                node["steps"].append({"kind": "task", "id": next(fresh)})
    return spec


def provenance(value: Any) -> set[str]:
    if isinstance(value, list):
        return set(value)
    if isinstance(value, dict):
        if "branch" in value and "result" in value:
            return provenance(value["result"])
        return set().union(*(provenance(v) for v in value.values())) if value else set()
    return set()


class Driver:
    """Runs an instance on the engine core: tasks answer at once (the route key and loop verdicts
    from their input), timers fire, waited signals arrive. Notes what started and finished."""

    def __init__(self, definition: Definition) -> None:
        self.now = 1000.0
        self.snapshot: Snapshot = new_snapshot(definition, "up-1")
        self.verdicts: Counter[str] = Counter()
        self.started: list[str] = []
        self.finished: list[str] = []
        self.use(definition)

    def use(self, definition: Definition) -> None:
        self.definition = definition
        self.keys = {n.key.id: n for n in walk(definition.steps) if isinstance(n, RouteNode)}
        self.last_in_body = {n.body[-1].id for n in walk(definition.steps) if isinstance(n, LoopNode)}

    def feed(self, ev: Event) -> None:
        waiting = set(self.snapshot.waiting_signals)
        decision = decide(self.definition, self.snapshot, ev, self.now)
        assert decision.accepted, ev
        for command in decision.commands:
            if isinstance(command, DispatchTask):
                self.started.append(command.node_id)
            elif isinstance(command, SetTimer) and command.kind == "delay":
                self.started.append(self.snapshot.timers[command.path].node_id)
        self.started += [w.node_id for p, w in self.snapshot.waiting_signals.items() if p not in waiting]

    def output(self, dispatch: DispatchTask) -> Any:
        if dispatch.node_id in self.keys:
            keys = self.keys[dispatch.node_id].keys
            return keys[len(provenance(dispatch.input)) % len(keys)]
        value = sorted(provenance(dispatch.input) | {dispatch.node_id})
        if dispatch.node_id in self.last_in_body:
            self.verdicts[dispatch.node_id] += 1
            return {"_loop": "done" if self.verdicts[dispatch.node_id] % 2 == 0 else "again", "value": value}
        return value

    def tick(self) -> bool:
        """One thing happens; False when nothing can (finished, or paused with nothing running)."""
        running = sorted(in_flight(self.definition, self.snapshot), key=lambda d: d.path)
        if running:
            self.feed(TaskSucceeded(running[0].path, running[0].attempt, self.output(running[0])))
            self.finished.append(running[0].node_id)
            return True
        if self.snapshot.timers:
            path, timer = min(self.snapshot.timers.items(), key=lambda item: (item[1].at, item[0]))
            self.now = max(self.now, timer.at)
            self.feed(TimerFired(path))
            self.finished.append(timer.node_id)
            return True
        if self.snapshot.waiting_signals:
            _, wait = min(self.snapshot.waiting_signals.items())
            self.feed(SignalReceived(wait.signal, [f"sig-{wait.node_id}"]))
            self.finished.append(wait.node_id)
            return True
        return False


def held(snapshot: Snapshot) -> Counter[str]:
    """The values a checkpoint holds for steps to come: inputs of unfinished steps, finished fork
    branches' results, delays' values, a route's input."""
    values: Counter[str] = Counter()

    def visit(data: Any) -> None:
        if isinstance(data, dict):
            for key, item in data.items():
                if key in ("input", "value") and item is not None:
                    values[json.dumps(item, sort_keys=True)] += 1
                elif key == "results":
                    values.update(json.dumps(v, sort_keys=True) for v in item.values())
                else:
                    visit(item)
        elif isinstance(data, list):
            for item in data:
                visit(item)

    visit(snapshot.root)
    return values


def loop_bodies(*definitions: Definition) -> set[str]:
    return {m.id for d in definitions for n in walk(d.steps) if isinstance(n, LoopNode) for m in walk(n.body)}


Case = tuple[Spec, Spec, float, bool]


@st.composite
def cases(draw: st.DrawFn) -> Case:
    spec = numbered(draw(sequences()))
    return spec, draw(mutated(spec)), draw(st.floats(0, 1)), draw(st.booleans())


def checkpoint(spec: Spec, fraction: float, pause: bool) -> Driver:
    """``spec`` started and run on for ``fraction`` of the steps of its whole run; with ``pause``,
    paused there and drained."""
    whole = Driver(built(spec))
    whole.feed(Started(["input"]))
    ticks = 0
    while not whole.snapshot.finished and whole.tick():
        ticks += 1
    driver = Driver(built(spec))
    driver.feed(Started(["input"]))
    for _ in range(int(fraction * ticks)):
        driver.tick()
    if pause and not driver.snapshot.finished:
        driver.feed(Pause("maintenance"))
        while in_flight(driver.definition, driver.snapshot):
            driver.tick()
    return driver


def violation(case: Case) -> str | None:
    """What an accepted upgrade of ``case`` did wrong, or None (also when it was refused)."""
    old_spec, new_spec, fraction, pause = case
    driver = checkpoint(old_spec, fraction, pause)
    old, new = driver.definition, built(new_spec)
    if driver.snapshot.finished or driver.snapshot.root is None:
        return None
    plan = plan_upgrade(old, new, driver.snapshot)
    if isinstance(plan, UpgradeRefused):
        return None
    if held(driver.snapshot) - held(plan.snapshot):
        return f"values lost: {held(driver.snapshot) - held(plan.snapshot)}"
    recorded = set(driver.finished) | {d.node_id for d in in_flight(old, driver.snapshot)}
    recorded |= {timer.node_id for timer in driver.snapshot.timers.values()}
    recorded |= {wait.node_id for wait in driver.snapshot.waiting_signals.values()}
    before = len(driver.started)
    driver.snapshot = plan.snapshot
    driver.use(new)
    if pause:
        driver.feed(Unpause())
    for _ in range(500):
        if driver.snapshot.finished or not driver.tick():
            break
    if driver.snapshot.status != "completed":
        return f"the upgraded instance ended {driver.snapshot.status}: {driver.snapshot.error}"
    again = (set(driver.started[before:]) & recorded) - loop_bodies(old, new)
    return f"steps started again: {sorted(again)}" if again else None


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=cases())
def test_an_accepted_upgrade_loses_no_result_and_runs_no_recorded_step_again(case: Case) -> None:
    old_spec, new_spec, fraction, pause = case
    driver = checkpoint(old_spec, fraction, pause)
    assume(not driver.snapshot.finished)
    plan = plan_upgrade(driver.definition, built(new_spec), driver.snapshot)
    event("accepted" if isinstance(plan, Upgrade) else "refused")
    if isinstance(plan, Upgrade) and plan.moved:
        event("accepted, with steps at new paths")
    if isinstance(plan, Upgrade) and plan.skipped:
        event("accepted, with steps skipped")
    assert violation(case) is None


@settings(max_examples=200, deadline=None)
@given(spec=sequences().filter(lambda s: len(s) > 1), fraction=st.floats(0, 1), data=st.data())
def test_a_step_that_ran_moved_to_the_end_does_not_map(spec: Spec, fraction: float, data: st.DataObject) -> None:
    spec = numbered(spec)
    driver = checkpoint(spec, fraction, False)
    root = driver.snapshot.root
    assume(not driver.snapshot.finished and root is not None and root["pos"] > 0)
    assert root is not None
    index = data.draw(st.integers(0, root["pos"] - 1))
    moved = copy.deepcopy(spec)
    moved.append(moved.pop(index))
    plan = plan_upgrade(driver.definition, built(moved), driver.snapshot)
    assert isinstance(plan, UpgradeRefused) and plan.step == spec[index]["id"], plan
    assert "already ran" in plan.reason


def test_the_property_fails_without_the_no_step_runs_twice_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("plait._core.upgrade._Mapper.check_no_step_runs_twice", lambda self: None)
    found = find(
        cases(),
        lambda case: (violation(case) or "").startswith("steps started again"),
        settings=settings(max_examples=5000, deadline=None, database=None),
    )
    assert violation(found) is not None
