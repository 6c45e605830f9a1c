"""The schedule controller: one actor per ``WorkflowSchedule`` starts its runs on time.

kopf calls :meth:`ScheduleController.on_schedule` for every event of a schedule and
:meth:`ScheduleController.on_instance` for every event of an instance carrying the
``plait.dev/schedule`` label (see :mod:`plait_operator.handlers`). An actor reconciles when its
schedule changes, when one of its runs starts or finishes, and at its next tick: it lists the
schedule's runs (a consistent read, not a cache that may lag after a restart), asks
:func:`plait._scheduling.planning.plan` what to do at this moment, creates the run (its name is
derived from the tick, so a retry after a crash finds it), cancels replaced runs, deletes runs
beyond the history limits, and writes the status (fenced by ``resourceVersion``). The writes
about schedules live here, beside the decisions, not in :mod:`plait_operator.store`.

Deleting a schedule stops its ticks; a finalizer first lets go of its runs (removes their
ownerReference), so running ones finish and finished ones stay until their own TTL.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

from plait._backoff import Backoff
from plait._kube.client import JSON, AsyncKube
from plait._kube.models import (
    CANCEL_ANNOTATION,
    FINISHED_PHASES,
    INSTANCES,
    SCHEDULE_FINALIZER,
    SCHEDULES,
    SkippedTicks,
    parse_rfc3339,
    rfc3339,
)
from plait._kube.schedules import owned_by, run_body, runs_selector, tick_of
from plait._scheduling.cron import Cron, InvalidSchedule
from plait._scheduling.planning import Plan, Policy, Skip, decided_until, plan, recent
from plait.errors import ClusterError, Conflict, NotFound
from plait_operator.actor import Actor
from plait_operator.metrics import ScheduleMetrics
from plait_operator.status import with_conditions
from plait_operator.store import Store
from plait_operator.world import newer

_PERMANENT = (400, 403, 422)  # a run the API server refuses: retrying the same request cannot help


class ScheduleController:
    def __init__(self, store: Store, metrics: ScheduleMetrics, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.kube: AsyncKube = store.kube
        self.metrics = metrics
        self.clock = clock
        self.actors: dict[tuple[str, str], ScheduleActor] = {}

    async def stop(self) -> None:
        for actor in list(self.actors.values()):
            await actor.close()
        self.actors.clear()

    async def on_schedule(self, event_type: str | None, body: JSON) -> None:
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        if event_type == "DELETED":
            actor = self.actors.pop(key, None)
            if actor is not None:
                await actor.close()
            return
        actor = self.actors.get(key)
        if actor is None:
            actor = self.actors[key] = ScheduleActor(self, *key)
        actor.observe(body)

    async def on_instance(self, event_type: str | None, body: JSON) -> None:
        """A run started, finished or went away: its schedule looks again (active runs, Forbid's
        waiting tick, history limits)."""
        meta = body["metadata"]
        owner = next((ref for ref in meta.get("ownerReferences") or [] if ref.get("kind") == "WorkflowSchedule"), None)
        actor = self.actors.get((meta["namespace"], owner["name"])) if owner else None
        if actor is None:
            return
        finished = event_type == "DELETED" or (body.get("status") or {}).get("phase") in FINISHED_PHASES
        if finished == (meta["name"] in actor.active):
            actor.poke()


class ScheduleActor(Actor):
    def __init__(self, controller: ScheduleController, namespace: str, name: str) -> None:
        super().__init__("schedule", namespace, name, Backoff(0.2, 10.0))
        self.controller = controller
        self.body: JSON | None = None
        self.active: set[str] = set()

    def observe(self, body: JSON) -> None:
        if newer(body, self.body):
            self.body = body
            self.poke()

    async def _attempt(self) -> None:
        try:
            await self._reconcile()
        except Conflict:
            self.body = await self._fresh()  # changed under a write: decide again on what it is now
            if self.body is not None:
                self.poke()

    async def _fresh(self) -> JSON | None:
        try:
            return await self.controller.kube.get(SCHEDULES, self.name, self.namespace)
        except NotFound:
            return None

    # -- one reconcile ---------------------------------------------------------------------------------

    async def _reconcile(self) -> None:
        body = self.body
        if body is None:
            return
        meta = body["metadata"]
        if "deletionTimestamp" in meta:
            await self._release(body)
            return
        if SCHEDULE_FINALIZER not in (meta.get("finalizers") or []):
            body = self.body = await self._set_finalizers(body, [*(meta.get("finalizers") or []), SCHEDULE_FINALIZER])
        spec, status = body.get("spec") or {}, body.get("status") or {}
        try:
            cron = Cron.parse(spec.get("schedule", ""), spec.get("timeZone"))
        except InvalidSchedule as invalid:
            # the Event first: once the condition says so, the Event is there to read
            if (_ready_condition(status) or {}).get("reason") != invalid.reason:
                await self.controller.store.post_event(body, invalid.reason, invalid.message, warning=True)
            await self._write_status(body, {"nextScheduleTime": None}, ready=("False", invalid.reason, invalid.message))
            return
        runs = await self._runs(body)
        active = [r for r in runs if _phase(r) not in FINISHED_PHASES]
        self.active = {r["metadata"]["name"] for r in active}
        previous_skips = [_skip_of(s) for s in status.get("skipped") or []]
        last_started = parse_rfc3339(status["lastScheduleTime"]) if status.get("lastScheduleTime") else None
        policy = Policy(
            spec.get("concurrencyPolicy") or "Allow", spec.get("startingDeadlineSeconds"), bool(spec.get("suspend"))
        )
        now = self.controller.clock()
        decision = plan(
            cron,
            policy,
            now=now,
            decided=decided_until(parse_rfc3339(meta["creationTimestamp"]), last_started, previous_skips),
            active=self.active,
            existing={tick for r in runs if (tick := tick_of(r)) is not None},
        )
        skips = list(decision.skips)
        ready = (
            "True",
            "Scheduled",
            f"next run at {rfc3339(decision.next_tick)}" if decision.next_tick else "no next run",
        )
        created: JSON | None = None
        failure: str | None = None
        if decision.start is not None:
            await self._replace(body, decision)
            created, failure = await self._start(body, decision.start, now)
            if failure is not None:
                skips.append(Skip("FailedToStart", decision.start, decision.start, 1))
                ready = ("False", "FailedCreate", failure)
        if decision.waiting is not None:
            ready = ("True", "WaitingForActiveRun", f"the tick of {rfc3339(decision.waiting)} waits for "
                     f"{', '.join(sorted(self.active))} to finish (concurrencyPolicy Forbid)")  # fmt: skip
        if policy.suspended:
            ready = ("True", "Suspended", "spec.suspend is true: no runs start; missed ticks count on resume")
        for skip in decision.skips:
            await self._skipped(body, spec, skip)
        if created is not None:
            active.append(created)
            self.active.add(created["metadata"]["name"])
        started = decision.started if failure is None else None
        update: JSON = {
            "nextScheduleTime": rfc3339(decision.next_tick) if decision.next_tick else None,
            "active": [_active_run(r) for r in sorted(active, key=_created)] or None,
            "lastSuccessfulTime": _last_success(runs, status.get("lastSuccessfulTime")),
        }
        if started is not None and (last_started is None or started > last_started):
            update["lastScheduleTime"] = rfc3339(started)
        if skips:
            update["skipped"] = [_skip_record(s) for s in recent(previous_skips, skips)]
        await self._write_status(body, update, ready=ready)
        await self._trim_history(spec, runs)
        # the loop's timer may fire a hair early: land just after the tick, not before it
        self._wake_at(decision.wake_at, self.controller.clock(), margin=0.005)

    async def _runs(self, body: JSON) -> list[JSON]:
        listed = await self.controller.kube.list(INSTANCES, self.namespace, label_selector=runs_selector(self.name))
        uid = body["metadata"]["uid"]
        return [r for r in listed.get("items") or [] if owned_by(r, uid)]

    async def _start(self, body: JSON, tick: float, now: float) -> tuple[JSON | None, str | None]:
        """Create the run of ``tick``: (the instance, None), or (None, why the API server refused it)."""
        ctrl = self.controller
        workflow = (body.get("spec") or {}).get("workflow", "")
        instance = run_body(body, tick)
        name = instance["metadata"]["name"]
        try:
            created = await ctrl.kube.create(INSTANCES, instance, self.namespace)
        except Conflict:
            try:  # made before a crash, or by a backfill: that is this tick's run
                return await ctrl.kube.get(INSTANCES, name, self.namespace), None
            except NotFound:
                return None, None  # deleted since: the tick had its run all the same
        except ClusterError as error:
            if error.status not in _PERMANENT:
                raise  # the API server is unreachable or busy: the next reconcile tries again
            message = f"could not start the run for {rfc3339(tick)}: {error}"
            ctrl.metrics.ticks.labels(workflow, "failed").inc()
            await ctrl.store.post_event(body, "FailedCreate", message, warning=True)
            return None, message
        ctrl.metrics.ticks.labels(workflow, "started").inc()
        ctrl.metrics.start_delay.labels(workflow).observe(max(0.0, now - tick))
        await ctrl.store.post_event(body, "RunStarted", f"started {name} for the tick of {rfc3339(tick)}")
        return created, None

    async def _replace(self, body: JSON, decision: Plan) -> None:
        assert decision.start is not None
        reason = f"replaced by the run for {rfc3339(decision.start)} (concurrencyPolicy Replace)"
        for name in decision.replace:
            with contextlib.suppress(NotFound):
                await self.controller.kube.patch(
                    INSTANCES, name, {"metadata": {"annotations": {CANCEL_ANNOTATION: reason}}}, self.namespace
                )
            await self.controller.store.post_event(body, "RunReplaced", f"cancelled {name}: {reason}")

    async def _skipped(self, body: JSON, spec: JSON, skip: Skip) -> None:
        self.controller.metrics.ticks.labels(spec.get("workflow", ""), "skipped").inc(skip.count)
        when = rfc3339(skip.first) if skip.first == skip.last else f"{rfc3339(skip.first)} to {rfc3339(skip.last)}"
        await self.controller.store.post_event(
            body, "TickSkipped", f"{skip.reason}: {when}: {skip.message}", warning=True
        )

    async def _trim_history(self, spec: JSON, runs: list[JSON]) -> None:
        """Delete the oldest finished runs beyond ``successfulRunsHistoryLimit`` and
        ``failedRunsHistoryLimit`` (failed and cancelled runs count as failed)."""
        succeeded = sorted((r for r in runs if _phase(r) == "Succeeded"), key=_finished)
        failed = sorted((r for r in runs if _phase(r) in FINISHED_PHASES - {"Succeeded"}), key=_finished)
        for finished, limit in (
            (succeeded, spec.get("successfulRunsHistoryLimit", 3)),
            (failed, spec.get("failedRunsHistoryLimit", 1)),
        ):
            for run in finished[: max(0, len(finished) - limit)]:
                with contextlib.suppress(NotFound):
                    await self.controller.kube.delete(
                        INSTANCES, run["metadata"]["name"], self.namespace, propagation="Background"
                    )

    # -- writes --------------------------------------------------------------------------------------

    async def _write_status(self, body: JSON, update: JSON, *, ready: tuple[str, str, str]) -> None:
        status = body.get("status") or {}
        generation = body["metadata"].get("generation")
        status_value, reason, message = ready
        previous = _ready_condition(status)
        conditions = with_conditions(status.get("conditions"), generation, ("Ready", status_value, reason, message))
        unchanged = (
            previous is not None
            and (previous.get("status"), previous.get("reason"), previous.get("message")) == ready
            and status.get("observedGeneration") == generation
            and all(status.get(key) == value for key, value in update.items())
        )
        if unchanged:
            return
        patch = {**update, "conditions": conditions, "observedGeneration": generation}
        self.body = await self.controller.kube.patch(
            SCHEDULES,
            self.name,
            {"metadata": {"resourceVersion": body["metadata"]["resourceVersion"]}, "status": patch},
            self.namespace,
            subresource="status",
        )

    async def _set_finalizers(self, body: JSON, finalizers: list[str]) -> JSON:
        meta = body["metadata"]
        patch = {"metadata": {"finalizers": finalizers, "resourceVersion": meta["resourceVersion"]}}
        return await self.controller.kube.patch(SCHEDULES, self.name, patch, self.namespace)

    async def _release(self, body: JSON) -> None:
        """The schedule is being deleted: its runs stay (running ones finish, finished ones keep
        their TTL), no longer owned by it; then its finalizer goes."""
        meta = body["metadata"]
        if SCHEDULE_FINALIZER not in (meta.get("finalizers") or []):
            return
        for run in await self._runs(body):
            run_meta = run["metadata"]
            others = [ref for ref in run_meta.get("ownerReferences") or [] if ref.get("uid") != meta["uid"]]
            patch = {"metadata": {"ownerReferences": others or None, "resourceVersion": run_meta["resourceVersion"]}}
            with contextlib.suppress(NotFound):
                await self.controller.kube.patch(INSTANCES, run_meta["name"], patch, self.namespace)
            if _phase(run) not in FINISHED_PHASES:
                await self.controller.store.post_event(
                    run, "ScheduleDeleted", f"schedule {self.name} was deleted; this run goes on to its end"
                )
        with contextlib.suppress(NotFound):
            await self._set_finalizers(body, [f for f in meta.get("finalizers") or [] if f != SCHEDULE_FINALIZER])


def _ready_condition(status: JSON) -> JSON | None:
    return next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)


def _phase(instance: JSON) -> str:
    return str((instance.get("status") or {}).get("phase") or "Pending")


def _created(instance: JSON) -> str:
    return str(instance["metadata"].get("creationTimestamp") or "")


def _finished(instance: JSON) -> str:
    return str((instance.get("status") or {}).get("finishedAt") or _created(instance))


def _active_run(instance: JSON) -> JSON:
    tick = tick_of(instance)
    run: JSON = {"name": instance["metadata"]["name"], "uid": instance["metadata"].get("uid")}
    if tick is not None:
        run["scheduleTime"] = rfc3339(tick)
    return run


def _last_success(runs: list[JSON], previous: str | None) -> str | None:
    times = [str(r["status"]["finishedAt"]) for r in runs if _phase(r) == "Succeeded" and r["status"].get("finishedAt")]
    if previous:
        times.append(previous)
    return max(times, key=parse_rfc3339) if times else None


def _skip_of(record: dict[str, Any]) -> Skip:
    parsed = SkippedTicks.model_validate(record)
    return Skip(parsed.reason, parse_rfc3339(parsed.firstTime), parse_rfc3339(parsed.lastTime), parsed.count)


def _skip_record(skip: Skip) -> JSON:
    return SkippedTicks(
        reason=skip.reason,  # type: ignore[arg-type]
        firstTime=rfc3339(skip.first),
        lastTime=rfc3339(skip.last),
        count=skip.count,
        message=skip.message,
    ).dump()
