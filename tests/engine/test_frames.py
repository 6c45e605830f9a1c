"""Rebuilding in-flight dispatches from a checkpoint alone, for every shape."""

from __future__ import annotations

from plait import Flow, LoopResult, task
from plait._core.frames import in_flight
from plait._core.snapshot import Snapshot
from tests.engine.harness import Harness


@task
def step(x: int) -> int:
    return x


def test_in_flight_matches_what_was_dispatched_in_every_shape() -> None:
    child = Flow("child").then(step).build()
    flow = (
        Flow("all")
        .fork()
        .branch(step, name="a")
        .branch(lambda x: x, name="b")
        .join(lambda parts: 1, name="join")
        .route(lambda x: "k", keys=["k"])
        .branch("k", lambda x: x, name="in_route")
        .done()
        .loop(lambda x: LoopResult.done(x), name="body")
        .then_flow(child)
    )
    h = Harness(flow)
    h.start(0)
    seen = 0
    while h.running():
        checkpoint = Snapshot.from_data(h.snapshot.to_data())
        rebuilt = sorted(in_flight(h.definition, checkpoint), key=lambda d: d.path)
        expected = sorted(h.running().values(), key=lambda d: d.path)
        assert rebuilt == expected
        seen += len(rebuilt)
        command = expected[0]
        output = (
            {"_loop": "done", "value": 1} if command.task == "body" else ("k" if command.path.endswith("/k") else 1)
        )
        h.succeed(command, output)
    assert seen >= 7
    assert h.completed() == 1


def test_definition_round_trips_through_json_with_the_same_hash() -> None:
    import json

    from plait._core.definition import Definition

    workflow = (
        Flow("rt")
        .then(step)
        .delay("d", "1s")
        .wait_for_signal("go", timeout=60.0)
        .fork()
        .branch(step, name="a")
        .join(lambda p: p, name="j")
        .build()
    )
    data = json.loads(json.dumps(workflow.definition.to_data()).replace(".0,", ",").replace(".0}", "}"))
    again = Definition.from_data(data)
    assert again.hash == workflow.definition_hash
    assert again.to_data() == workflow.definition.to_data()
