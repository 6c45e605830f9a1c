"""The operator's flow control gates as pure logic: admission order, strategies, rebuilding from
listed objects, and rate spacing on an injected clock (the cluster tests cover them end to end)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from plait._core.flowcontrol import Concurrency
from plait._kube.models import ADMITTED_AT_ANNOTATION, HELD_LABEL, rfc3339
from plait_operator.flowcontrol import Admitted, InstanceGate, Queued, Refused, TaskGate
from plait_operator.metrics import OperatorMetrics

NS = "ns"


def instance(name: str, *, created: str = "2026-01-01T00:00:00Z", rv: int = 1, **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"namespace": NS, "name": name, "creationTimestamp": created, "resourceVersion": str(rv)},
        "spec": {"workflow": "w"},
        **({"status": status} if status else {}),
    }


class Instances:
    def __init__(self, listed: list[dict[str, Any]] | None = None) -> None:
        self.listed = listed or []
        self.woken: list[str] = []
        self.gate = InstanceGate(self.list, lambda namespace, name: self.woken.append(name))

    async def list(self, namespace: str) -> list[dict[str, Any]]:
        return self.listed

    def admit(self, name: str, limit: Concurrency, key: str | None = None, **meta: Any) -> Any:
        decision, victims = self.gate.admit(instance(name, **meta), "w", limit, key)
        return decision, victims


async def test_slots_then_first_in_first_out_and_a_finish_wakes_the_next() -> None:
    world = Instances()
    await world.gate.ready(NS)
    limit = Concurrency(2)
    assert isinstance(world.admit("a", limit)[0], Admitted)
    assert isinstance(world.admit("b", limit)[0], Admitted)
    queued = world.admit("c", limit)[0]
    assert isinstance(queued, Queued) and queued.position == 1
    assert world.admit("d", limit)[0].position == 2
    world.gate.observe("MODIFIED", instance("a", phase="Succeeded"))
    assert world.woken == ["c"]  # the head, not d
    assert isinstance(world.admit("d", limit)[0], Queued)  # d does not overtake c
    assert isinstance(world.admit("c", limit)[0], Admitted)


async def test_keys_have_separate_slots() -> None:
    world = Instances()
    await world.gate.ready(NS)
    limit = Concurrency(1, key="customer")
    assert isinstance(world.admit("a1", limit, "a")[0], Admitted)
    assert isinstance(world.admit("a2", limit, "a")[0], Queued)
    assert isinstance(world.admit("b1", limit, "b")[0], Admitted)


async def test_cancel_newest_refuses_and_cancel_in_progress_names_the_oldest() -> None:
    world = Instances()
    await world.gate.ready(NS)
    newest = Concurrency(1, strategy="cancel_newest")
    assert isinstance(world.admit("a", newest)[0], Admitted)
    refused = world.admit("b", newest)[0]
    assert isinstance(refused, Refused) and "strategy cancel_newest" in refused.message
    world = Instances()
    await world.gate.ready(NS)
    latest = Concurrency(1, strategy="cancel_in_progress")
    assert isinstance(world.admit("a", latest)[0], Admitted)
    decision, victims = world.admit("b", latest)
    assert isinstance(decision, Queued) and victims == ["a"]  # b runs once a is gone
    decision, victims = world.admit("c", latest)
    assert victims == ["b"]  # the newest wins: b never runs
    world.gate.observe("MODIFIED", instance("a", phase="Cancelled"))
    assert world.woken == ["c"]


async def test_rebuilt_from_the_listed_instances_without_over_admitting() -> None:
    running = {"concurrency": {"maxRuns": 2}, "phase": "Running"}
    listed = [
        instance("r1", **running),
        instance("r2", **running),
        instance("q1", phase="Queued", concurrency={"maxRuns": 2, "position": 1, "queuedAt": "2026-01-01T00:00:01Z"}),
        instance("done", phase="Succeeded", concurrency={"maxRuns": 2}),
    ]
    world = Instances(listed)
    await world.gate.ready(NS)
    limit = Concurrency(2)
    assert isinstance(world.admit("new", limit, created="2026-01-01T00:00:05Z")[0], Queued)
    assert world.admit("q1", limit)[0].position == 1


async def test_an_event_seen_while_listing_is_not_undone_by_the_older_list() -> None:
    world = Instances()
    world.listed = [instance("r1", rv=5, phase="Running", concurrency={"maxRuns": 1})]
    original = world.list

    async def list_after_a_finish(namespace: str) -> list[dict[str, Any]]:
        world.gate.observe("MODIFIED", instance("r1", rv=9, phase="Succeeded", concurrency={"maxRuns": 1}))
        return await original(namespace)

    world.gate._list = list_after_a_finish
    await world.gate.ready(NS)
    assert isinstance(world.admit("next", Concurrency(1))[0], Admitted)


async def test_a_new_instance_the_watch_showed_first_keeps_its_place() -> None:
    world = Instances()
    await world.gate.ready(NS)
    world.gate.observe("ADDED", instance("early", created="2026-01-01T00:00:00Z"))
    world.gate.observe("ADDED", instance("late", created="2026-01-01T00:00:00Z"))
    limit = Concurrency(1)
    assert isinstance(world.admit("late", limit)[0], Queued)  # early has not asked yet
    assert isinstance(world.admit("early", limit)[0], Admitted)


async def test_an_admitted_instance_is_no_newcomer_again_before_its_status() -> None:
    world = Instances()
    await world.gate.ready(NS)
    world.gate.observe("ADDED", instance("early"))
    world.gate.observe("ADDED", instance("late"))
    limit = Concurrency(2)
    assert isinstance(world.admit("early", limit)[0], Admitted)
    world.gate.observe("MODIFIED", instance("early", rv=2))  # its finalizer, written before its status
    assert isinstance(world.admit("late", limit)[0], Admitted)


def task(
    name: str, *, held: str | None = None, phase: str | None = None, admitted: float | None = None, **control: Any
) -> dict[str, Any]:
    labels = {HELD_LABEL: held} if held else {}
    annotations = {ADMITTED_AT_ANNOTATION: rfc3339(admitted)} if admitted is not None else {}
    return {
        "metadata": {
            "namespace": NS,
            "name": name,
            "labels": labels,
            "annotations": annotations,
            "creationTimestamp": "2026-01-01T00:00:00Z",
        },
        "spec": {"task": "call", "workflow": "w", "flowControl": control},
        **({"status": {"phase": phase}} if phase else {}),
    }


class Tasks:
    def __init__(self, synced: bool = True) -> None:
        self.now = 1000.0
        self.synced = synced
        self.lifted: list[str] = []
        self.writes: set[asyncio.Future[Any]] = set()
        self.gate = TaskGate(self.lift, lambda namespace: self.synced, OperatorMetrics(), self.spawn, lambda: self.now)

    async def lift(self, namespace: str, name: str) -> bool:
        self.lifted.append(name)
        return True

    def spawn(self, coroutine: Any) -> None:
        self.writes.add(asyncio.ensure_future(coroutine))


async def test_task_concurrency_lets_one_through_per_finished_one() -> None:
    world = Tasks()
    spec = task("t1", concurrency=1)["spec"]
    assert world.gate.at_dispatch(NS, "t1", spec)[0]
    runs, reason, message = world.gate.at_dispatch(NS, "t2", task("t2", concurrency=1)["spec"])
    assert (runs, reason, message) == (False, "Concurrency", "waiting for one of 1 slot(s) of task 'call'")
    world.gate.observe("ADDED", task("t2", held="Concurrency", concurrency=1))
    assert world.lifted == []
    world.gate.observe("MODIFIED", task("t1", phase="Succeeded", concurrency=1))
    await asyncio.sleep(0)
    assert world.lifted == ["t2"]


async def test_nothing_is_let_through_before_every_task_is_known() -> None:
    world = Tasks(synced=False)
    runs, reason, _ = world.gate.at_dispatch(NS, "t1", task("t1", concurrency=5)["spec"])
    assert (runs, reason) == (False, "Concurrency")


async def test_rate_limits_space_starts_and_are_rebuilt_from_admitted_at() -> None:
    world = Tasks()
    control = {"rateLimit": "10/s"}
    assert world.gate.at_dispatch(NS, "t1", task("t1", **control)["spec"])[0]
    assert world.gate.at_dispatch(NS, "t2", task("t2", **control)["spec"])[1] == "RateLimit"
    world.now += 0.1
    assert world.gate.at_dispatch(NS, "t3", task("t3", **control)["spec"])[0] is False  # t2 is first in line
    await asyncio.sleep(0.1)  # the pump lets t2 through, not t3
    assert world.lifted == ["t2"]
    restarted = Tasks()
    restarted.now = world.now
    restarted.gate.observe("ADDED", task("t1", admitted=world.now - 0.02, **control))
    assert restarted.gate.at_dispatch(NS, "t4", task("t4", **control)["spec"])[1] == "RateLimit"
    restarted.now += 0.1
    await asyncio.sleep(0.1)
    assert restarted.lifted == ["t4"]


async def test_an_audit_frees_the_slot_of_an_instance_deleted_unseen() -> None:
    world = Instances()
    await world.gate.ready(NS)
    limit = Concurrency(1)
    assert isinstance(world.admit("gone", limit)[0], Admitted)
    assert isinstance(world.admit("waiting", limit, created="2026-01-01T00:00:01Z")[0], Queued)
    listed_at = time.monotonic()
    assert isinstance(world.admit("newer", limit, created="2026-01-01T00:00:02Z")[0], Queued)  # after the list
    world.gate.audit(NS, [instance("waiting")], listed_at)  # "gone" was deleted while the watch was away
    assert world.woken == ["waiting"]
    assert world.gate.namespaces_waiting() == {NS}
    assert isinstance(world.admit("waiting", limit, created="2026-01-01T00:00:01Z")[0], Admitted)


async def test_an_audit_frees_the_slot_of_a_task_deleted_unseen() -> None:
    world = Tasks()
    assert world.gate.at_dispatch(NS, "gone", task("gone", concurrency=1)["spec"])[0]
    assert not world.gate.at_dispatch(NS, "next", task("next", concurrency=1)["spec"])[0]
    world.gate.audit(NS, [task("next", held="Concurrency", concurrency=1)], time.monotonic())
    await asyncio.sleep(0)
    assert world.lifted == ["next"]
