"""One actor per ``WorkflowInstance``: everything that happens to an instance, one step at a time.

Watch events for the instance, its tasks and its signals only update the actor's cache and wake
it. The actor then reconciles, level-based: it reads its checkpoint, turns what the world looks
like now into engine events (annotations into pause/unpause/cancel, finished tasks into results,
new signals, due timers), applies them with the engine core, writes one checkpoint (fenced by
``resourceVersion``), and only then carries out the commands (create tasks, cancel tasks, post
Events, acknowledge signals). A crash anywhere in between is harmless: the next reconcile sees
the same world and reaches the same decisions, and task names are deterministic.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import deque
from collections.abc import Awaitable, Coroutine
from typing import Any, Protocol, TypeVar

from plait._backoff import Backoff
from plait._core.definition import Definition, TaskNode
from plait._core.engine import Decision, decide, new_snapshot
from plait._core.events import (
    Abort,
    CancelTask,
    Command,
    DispatchTask,
    Event,
    SetTimer,
    SignalReceived,
    Started,
    TimerFired,
)
from plait._core.flowcontrol import key_value
from plait._core.frames import in_flight
from plait._core.snapshot import Snapshot
from plait._kube import idempotency
from plait._kube.client import JSON
from plait._kube.models import (
    ADMITTED_AT_ANNOTATION,
    CANCEL_ANNOTATION,
    FINALIZER,
    HELD_LABEL,
    HELD_MESSAGE_ANNOTATION,
    IDEMPOTENCY_LABEL,
    LIMITED_LABEL,
    PAUSE_ANNOTATION,
    PAUSED_BY_ANNOTATION,
    RETRY_ANNOTATION,
    TASK_RESULT_PHASES,
    TRACEPARENT_ANNOTATION,
    UPGRADE_ANNOTATION,
    label_value,
    now_rfc3339,
    parse_rfc3339,
    rfc3339,
    without_managed_fields,
)
from plait._logging import log_context
from plait._payloads import refs
from plait.errors import Conflict, DefinitionError, PayloadError
from plait_operator.actor import Actor
from plait_operator.definitions import DefinitionCatalog
from plait_operator.flowcontrol import Admitted, InstanceGate, Queued, Refused, TaskGate, describe
from plait_operator.metrics import OperatorMetrics
from plait_operator.payloads import input_to_check, offload_snapshot
from plait_operator.recovery import TAKEN_ANNOTATIONS, RetryOutcome, deadline_of, start_fork, take_retry
from plait_operator.settings import OperatorSettings
from plait_operator.status import changes, phase_of, render, snapshot_of, with_conditions
from plait_operator.store import Store, task_body, task_flow_control, task_name
from plait_operator.tracing import OperatorTracing
from plait_operator.upgrades import UpgradeOutcome, pending, plan, requested
from plait_operator.validation import InvalidInstance, check_input
from plait_operator.world import TaskResult, control_events, newer, requester, result_events, signal_events

log = logging.getLogger(__name__)
_MAX_CONFLICT_RETRIES = 8
T = TypeVar("T")


class Host(Protocol):
    """What an actor needs of the process running it (the :class:`~plait_operator.controller.Controller`)."""

    store: Store
    settings: OperatorSettings
    metrics: OperatorMetrics
    catalog: DefinitionCatalog
    reconcile_slots: asyncio.Semaphore  # how many instances may reconcile at once
    instance_gate: InstanceGate
    task_gate: TaskGate
    tracing: OperatorTracing | None  # None: tracing is off

    def spawn(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        """Run a best-effort write in the background."""

    async def resolve_definition(self, namespace: str, workflow: str, pinned: str | None) -> Definition | None:
        """The definition a new instance gets (asking the API server when the watch has not brought it)."""

    async def first_with_key(self, body: JSON) -> str:
        """The instance that runs for ``body``'s ``spec.idempotencyKey`` (its own name if it is the first)."""

    def retire(self, actor: InstanceActor, ttl_due: float | None) -> None:
        """The instance finished: drop the actor, delete the instance at ``ttl_due``."""

    def forget(self, actor: InstanceActor) -> None:
        """The instance does not exist: drop the actor."""

    def record_result(self, actor: InstanceActor, definition: Definition, event: TaskResult) -> None:
        """Count a step's result in the metrics."""

    def instance_phase(self, actor: InstanceActor, workflow: str, phase: str) -> None:
        """The instance is in ``phase`` now (for the gauges)."""

    def instance_finished(self, actor: InstanceActor, workflow: str, phase: str, snapshot: Snapshot) -> None:
        """The instance just finished (metrics and its Event)."""


class InstanceActor(Actor):
    def __init__(self, namespace: str, name: str, host: Host) -> None:
        super().__init__("instance", namespace, name, Backoff(0.2, 5.0))
        self.host = host
        self.body: JSON | None = None
        self.tasks: dict[str, JSON] = {}
        self.signals: dict[str, JSON] = {}
        self.created: set[str] = set()  # tasks this process created (or found existing)
        self.orphan_since: float | None = None  # monotonic time a signal arrived for a missing instance

    # -- what the watches tell us -------------------------------------------------------------------

    def observe_instance(self, body: JSON) -> None:
        if newer(body, self.body):
            self.body = _slim(body)
            self.poke()

    def observe_task(self, event_type: str, body: JSON) -> None:
        name = body["metadata"]["name"]
        self.created.discard(name)  # the cache knows it now
        if event_type == "DELETED":
            self.tasks.pop(name, None)
            return
        previous = self.tasks.get(name)
        if previous is None or newer(body, previous):
            self.tasks[name] = _slim(body, keep_input=False)
            if ((body.get("status") or {}).get("phase")) in TASK_RESULT_PHASES:
                self.poke()

    def observe_signal(self, event_type: str, body: JSON) -> None:
        name = body["metadata"]["name"]
        phase = (body.get("status") or {}).get("phase")
        if event_type == "DELETED" or phase not in (None, "Pending"):
            self.signals.pop(name, None)
            return
        self.signals[name] = body
        self.poke()

    # -- one reconcile -------------------------------------------------------------------------------

    async def _attempt(self) -> None:
        started = time.perf_counter()
        fields: dict[str, str] = {"instance": f"{self.namespace}/{self.name}"}
        if self.host.tracing is not None and self.body is not None:
            fields["trace_id"] = f"{self.host.tracing.trace(self.body).trace_id:032x}"
        try:
            async with self.host.reconcile_slots:
                with log_context(**fields):
                    await self._reconcile()
        except Exception as error:
            self.host.metrics.reconcile_errors.labels(type(error).__name__).inc()
            raise
        self.host.metrics.reconcile_duration.observe(time.perf_counter() - started)

    async def _reconcile(self) -> None:
        store = self.host.store
        if self.body is None:
            # A signal (or a stray task) for an instance we have not seen. It may be about to be
            # created (one `kubectl apply` of both): give it a grace period before rejecting.
            fresh = await store.get_instance(self.namespace, self.name)
            if fresh is not None:
                self.observe_instance(fresh)
                return
            now = time.monotonic()
            if self.orphan_since is None:
                self.orphan_since = now
            grace = self.host.settings.orphan_grace_seconds
            if now - self.orphan_since < grace:
                self._wake_at(self.orphan_since + grace, now)
                return
            await self._reject_signals("no WorkflowInstance of that name exists in this namespace")
            self.host.forget(self)
            return
        for _ in range(_MAX_CONFLICT_RETRIES):
            try:
                await self._reconcile_once(self.body)
                return
            except Conflict as conflict:
                log.debug("instance=%s/%s changed under a write (%s); re-reading", self.namespace, self.name, conflict)
                fresh = await store.get_instance(self.namespace, self.name)
                if fresh is None:
                    return
                self.body = _slim(fresh)
        raise RuntimeError(f"instance {self.namespace}/{self.name} kept changing under the operator")

    async def _reconcile_once(self, body: JSON) -> None:
        host = self.host
        status = body.get("status") or {}
        meta = body["metadata"]
        spec = body.get("spec") or {}
        events: list[Event] = []
        starting = False
        prelude: Decision | None = None  # a rerun or a fork, decided before this reconcile's events
        retried: RetryOutcome | None = None
        restored = snapshot_of(status)
        if restored is not None:
            snapshot = restored
            definition = host.catalog.get(self.namespace, snapshot.workflow, snapshot.definition_hash)
            if definition is None:
                await self._write_status_once(
                    body,
                    "DefinitionMissing",
                    f"definition version {snapshot.definition_hash[:12]} of {snapshot.workflow!r} is not published "
                    "(any more); it runs again once a worker publishes it",
                )
                return
            if RETRY_ANNOTATION in (meta.get("annotations") or {}):
                outcome = await take_retry(host.store, body, definition, snapshot, time.time())
                body, retried = await self._take_retry(body, outcome)
                prelude = retried.decision
        else:
            if status.get("phase") in ("Failed", "Cancelled") or "deletionTimestamp" in meta:
                if RETRY_ANNOTATION in (meta.get("annotations") or {}):
                    why = f"instance {self.name!r} never started: there is nothing to rerun (submit it again)"
                    message = f"{RETRY_ANNOTATION}={meta['annotations'][RETRY_ANNOTATION]!r} was not taken: {why}"
                    body, _ = await self._take_retry(body, RetryOutcome(None, "RetryRefused", message))
                await self._finish_deletion(body, finished=True)
                await self._reject_signals(f"instance {self.name} did not start")
                return
            if spec.get("forkFrom"):
                try:
                    definition, prelude = await start_fork(host, host.store, body, time.time())
                except InvalidInstance as invalid:
                    await self._reject(body, invalid)
                    return
            else:
                found = self._upgrade_target(body, spec) or await host.resolve_definition(
                    self.namespace, spec.get("workflow", ""), spec.get("definitionHash")
                )
                if found is None:
                    await self._wait_for_definition(body, spec)
                    return
                definition = found
                payloads = host.settings.payloads
                try:
                    value = spec.get("input")
                    if definition.input_schema is not None or refs.refs_in(value):
                        value = await input_to_check(payloads, value, self.namespace)
                    check_input(definition, value, None if payloads is not None else host.settings.max_payload_bytes)
                except PayloadError as error:
                    if error.reason == "PayloadStoreUnavailable":
                        raise  # tried again after a backoff: the input is fine, the store is down
                    await self._reject(body, InvalidInstance(error.reason, f"spec.input: {error.message}"))
                    return
                except InvalidInstance as invalid:
                    await self._reject(body, invalid)
                    return
                if spec.get("idempotencyKey") and not await self._first_of_its_key(body):
                    return
            body = self.body or body  # the newest seen: an annotation may have come during the awaits
            if definition.concurrency is not None and not await self._admitted(body, definition):
                return
            if FINALIZER not in (body["metadata"].get("finalizers") or []):
                body = self.body = _slim(await host.store.add_finalizer(body))
            if prelude is not None:
                snapshot = prelude.snapshot
            else:
                snapshot = new_snapshot(definition, self.name)
                annotations = body["metadata"].get("annotations") or {}
                if PAUSE_ANNOTATION in annotations and CANCEL_ANNOTATION not in annotations:  # paused before it started
                    snapshot.paused = requester(annotations, PAUSE_ANNOTATION, PAUSED_BY_ANNOTATION)
                events.append(Started(spec.get("input")))
            starting = True

        was_paused = snapshot.paused is not None
        was_finished = snapshot.finished
        events += control_events(body, snapshot)
        accepted_signals = self._signal_events(definition, snapshot)
        events += [event for event, _ in accepted_signals]
        now = time.time()
        events += [TimerFired(path) for path, timer in snapshot.timers.items() if timer.at <= now]
        restarted = starting or (retried is not None and retried.decision is not None)
        deadline = deadline_of(body, definition, now if restarted else None)
        if snapshot.failure_handler is not None:
            deadline = None  # failed already: its failure handler runs to its own timeout
        expired = deadline is not None and deadline[0] <= now and not snapshot.finished
        if expired and deadline is not None:
            events.append(Abort(deadline[1]))
        delivery: dict[str, str] = {}
        tracing = host.tracing
        before = tracing.before(snapshot) if tracing is not None else None
        commands, results, changed = self._decide(definition, snapshot, events, now, delivery)
        if prelude is not None:
            commands, changed = prelude.commands + commands, True
        upgraded: UpgradeOutcome | None = None
        if requested(body) is not None and "deletionTimestamp" not in body["metadata"]:
            upgraded = await self._plan_upgrade(body, definition, snapshot, starting=starting)
            if upgraded.definition is not None and upgraded.snapshot is not None:
                definition, snapshot, changed = upgraded.definition, upgraded.snapshot, True
                moved = upgraded.moved
                commands = [
                    dataclasses.replace(c, path=moved.get(c.path, c.path)) if isinstance(c, SetTimer) else c
                    for c in commands
                ]

        if changed:
            if host.settings.payloads is not None:
                # stored before the checkpoint that refers to them; a store that is down fails the
                # reconcile, tried again after a backoff with nothing written
                await offload_snapshot(host.settings.payloads, snapshot, self.namespace, self.name)
            # The checkpoint and the tasks it dispatches are written together: task names are
            # derived from the checkpoint's content, so after a failure on either side the next
            # reconcile reaches the same tasks (a repeated create is a harmless 409).
            rendered = render(body, definition, snapshot)
            if restarted:
                rendered["startedAt"] = now_rfc3339()  # a rerun starts the clock again (a deadline's)
            generation = body["metadata"].get("generation")
            if retried is not None:
                rendered["conditions"] = with_conditions(rendered["conditions"], generation, self._retried(retried))
            if upgraded is not None and _new_condition(body, upgraded):
                rendered["conditions"] = with_conditions(rendered["conditions"], generation, upgraded.condition())
            patch = changes(body.get("status") or {}, rendered)
            written, _ = await _both(host.store.write_status(body, patch), self._dispatch(body, definition, snapshot))
            body = self.body = _slim(written)
            if tracing is not None and before is not None:
                tracing.reconciled(body, definition, snapshot, before, results, commands, self.tasks, now)
            if starting:
                message = f"running workflow {definition.name!r} version {definition.hash[:12]}"
                if spec.get("forkFrom"):
                    source = spec["forkFrom"]
                    message += f", forked from {source['instance']} ({source.get('step') or 'its unfinished steps'})"
                host.spawn(host.store.post_event(body, "Started", message))
                if tracing is not None and (unusable := tracing.invalid_traceparent(body)) is not None:
                    host.spawn(host.store.post_event(body, "InvalidTraceparent", unusable, warning=True))
            if retried is not None and retried.decision is not None:
                host.spawn(host.store.post_event(body, retried.reason, retried.message))
            if expired and deadline is not None:
                host.spawn(host.store.post_event(body, "DeadlineExceeded", deadline[1], warning=True))
        else:
            if upgraded is not None and _new_condition(body, upgraded):
                status = body.get("status") or {}
                generation = body["metadata"].get("generation")
                conditions = with_conditions(status.get("conditions"), generation, upgraded.condition())
                body = self.body = _slim(await host.store.write_status(body, {"conditions": conditions}))
            await self._dispatch(body, definition, snapshot)
        if upgraded is not None and upgraded.taken:
            # after the status, so that a repeat (the removal failed) finds the instance up to date
            host.spawn(
                host.store.post_event(
                    body, upgraded.reason, upgraded.message, warning=upgraded.reason == "UpgradeRefused"
                )
            )
            body = self.body = _slim(await host.store.remove_annotations(body, [UPGRADE_ANNOTATION]))
        acknowledgements = [(name, delivery.get(event.id or "", "Buffered")) for event, name in accepted_signals]
        await self._carry_out(body, definition, snapshot, commands, results, acknowledgements)
        if snapshot.finished and not was_finished:
            host.instance_finished(self, definition.name, phase_of(snapshot), snapshot)
        elif snapshot.paused is not None and not was_paused:
            await host.store.post_event(body, "Paused", f"paused: {snapshot.paused.get('reason') or 'no reason given'}")
        elif snapshot.paused is None and was_paused and not snapshot.finished:
            await host.store.post_event(body, "Resumed", "the pause annotation was removed")
        host.instance_phase(self, definition.name, phase_of(snapshot))
        if snapshot.finished:
            await self._finish_deletion(body, finished=True)
            host.retire(self, self._ttl_due(body))
        else:
            ends = deadline[0] if deadline is not None and snapshot.failure_handler is None else None
            self._wake_at(min((t for t in (snapshot.wake_at, ends) if t is not None), default=None), time.time())

    async def _take_retry(self, body: JSON, outcome: RetryOutcome) -> tuple[JSON, RetryOutcome]:
        """Take ``plait.dev/retry`` off: a rerun decided (the caller writes its checkpoint), or a
        refusal, written here as the ``Retried`` condition and an Event.

        The annotation goes first, fenced by the version the decision was made on: should the
        checkpoint write fail after it, the request is lost (the instance stays as it was and no
        ``Retried`` condition says otherwise), never taken twice.
        """
        store = self.host.store
        if outcome.decision is None:
            status = body.get("status") or {}
            generation = body["metadata"].get("generation")
            update = {"conditions": with_conditions(status.get("conditions"), generation, self._retried(outcome))}
            body = self.body = _slim(await store.write_status(body, update))
            self.host.spawn(store.post_event(body, outcome.reason, outcome.message, warning=True))
        removed = TAKEN_ANNOTATIONS if outcome.decision is not None else [RETRY_ANNOTATION]
        body = self.body = _slim(await store.remove_annotations(body, removed))
        return body, outcome

    def _upgrade_target(self, body: JSON, spec: JSON) -> Definition | None:
        """For an instance starting with ``plait.dev/upgrade``: the version it asks for, to start on."""
        value = requested(body)
        if not value:
            return None
        try:
            return self.host.catalog.matching(self.namespace, spec.get("workflow", ""), value)
        except DefinitionError:
            return None  # refused once it started, with the reason

    async def _plan_upgrade(
        self, body: JSON, definition: Definition, snapshot: Snapshot, *, starting: bool
    ) -> UpgradeOutcome:
        """``plait.dev/upgrade`` at this step boundary; postponed while a step whose task exists would move
        (its result comes back at its old path)."""
        outcome = plan(self.host.catalog, body, definition, snapshot, starting=starting)
        running = {path: snapshot.running[path] for path in outcome.moved if path in snapshot.running}
        if not running:
            return outcome
        meta = body["metadata"]
        names = {task_name(meta["name"], meta["uid"], path, attempt): path for path, attempt in running.items()}
        known = {name for name in names if name in self.tasks or name in self.created}
        if len(known) < len(names):  # a task created before a restart may not be in the cache yet
            listed = await self.host.store.list_tasks(self.namespace, meta["uid"])
            known |= {task["metadata"]["name"] for task in listed} & set(names)
        if not known:
            return outcome
        steps = {d.path: d.node_id for d in in_flight(definition, snapshot)}
        return pending(outcome, {names[name]: steps[names[name]] for name in sorted(known)})

    @staticmethod
    def _retried(outcome: RetryOutcome) -> tuple[str, str, str, str]:
        """The ``Retried`` condition (type, status, reason, message) of a taken or refused rerun."""
        return ("Retried", "True" if outcome.decision is not None else "False", outcome.reason, outcome.message)

    # -- turning the world into engine events ------------------------------------------------------

    def _signal_events(self, definition: Definition, snapshot: Snapshot) -> list[tuple[SignalReceived, str]]:
        """Pending signals in arrival order; ones the workflow can never take are rejected right away."""
        accepted, rejected = signal_events(definition, snapshot, self.signals.values())
        for body, why in rejected:
            self.signals.pop(body["metadata"]["name"], None)
            self.host.spawn(self._reject_signal(body, why))
        return accepted

    def _decide(
        self, definition: Definition, snapshot: Snapshot, events: list[Event], now: float, delivery: dict[str, str]
    ) -> tuple[list[Command], list[TaskResult], bool]:
        """Apply events, then any results already waiting for the tasks they dispatch, until quiet.

        ``delivery`` learns, per signal id, whether a step was waiting for it or it was buffered.
        """
        commands: list[Command] = []
        results: list[TaskResult] = []
        changed = False
        pending: deque[Event] = deque(events)
        for _ in range(10_000):
            while pending:
                event = pending.popleft()
                if isinstance(event, SignalReceived) and event.id:
                    waiting = any(wait.signal == event.name for wait in snapshot.waiting_signals.values())
                    delivery[event.id] = "Delivered" if waiting else "Buffered"
                decision = decide(definition, snapshot, event, now)
                if decision.accepted:
                    changed = True
                    commands.extend(decision.commands)
                    if isinstance(event, TaskResult):
                        results.append(event)
            ready = result_events(self.tasks.values(), snapshot)
            if not ready:
                break
            pending.extend(ready)
        return commands, results, changed

    # -- carrying out what was decided -------------------------------------------------------------

    async def _carry_out(
        self,
        body: JSON,
        definition: Definition,
        snapshot: Snapshot,
        commands: list[Command],
        results: list[TaskResult],
        acknowledgements: list[tuple[str, str]],
    ) -> None:
        host = self.host
        meta = body["metadata"]
        for command in commands:
            if isinstance(command, CancelTask):
                name = task_name(meta["name"], meta["uid"], command.path, command.attempt)
                host.spawn(
                    host.store.set_task_phase(self.namespace, name, "Cancelled", "the instance was cancelled", None)
                )
            elif isinstance(command, SetTimer) and command.kind == "retry":
                node = definition.nodes[snapshot.timers[command.path].node_id]
                assert isinstance(node, TaskNode)
                host.metrics.steps_retried.labels(definition.name, label_value(definition.queue_of(node))).inc()
        for result in results:
            host.record_result(self, definition, result)
        for name, phase in acknowledgements:
            if self.signals.pop(name, None) is not None:
                message = (
                    "delivered to the waiting step"
                    if phase == "Delivered"
                    else "buffered until the workflow waits for it"
                )
                host.spawn(host.store.set_signal_status(self.namespace, name, phase, message))

    async def _first_of_its_key(self, body: JSON) -> bool:
        """``spec.idempotencyKey``: run only if no other instance runs (or ran) for this key within the
        window; otherwise end at once, pointing at that one (``status.duplicateOf``)."""
        key = body["spec"]["idempotencyKey"]
        first = await self.host.first_with_key(body)
        if first == self.name:
            if (body["metadata"].get("labels") or {}).get(IDEMPOTENCY_LABEL) != idempotency.digest(key):
                self.body = _slim(await self.host.store.add_label(body, IDEMPOTENCY_LABEL, idempotency.digest(key)))
            return True
        message = f"duplicate of {first}: it was submitted with the same idempotency key {key!r}"
        await self._cancel_unstarted(body, message, "Duplicate", duplicate_of=first)
        return False

    async def _admitted(self, body: JSON, definition: Definition) -> bool:
        """``Flow(concurrency=...)``: may the instance start now? If not, it waits ``Queued`` (or is
        cancelled, by its strategy); with ``cancel_in_progress`` older ones are asked to cancel."""
        host = self.host
        concurrency = definition.concurrency
        assert concurrency is not None
        spec = body.get("spec") or {}
        if CANCEL_ANNOTATION in (body["metadata"].get("annotations") or {}):
            await self._cancel_unstarted(body)
            return False
        try:
            key = key_value(spec.get("input"), concurrency.key)
        except KeyError:
            message = (
                f"spec.input has no field {concurrency.key!r}: workflow {definition.name!r} limits "
                "its instances per the value there (Flow(concurrency=Concurrency(..., key=...)))"
            )
            await self._reject(body, InvalidInstance("InvalidConcurrencyKey", message))
            return False
        await host.instance_gate.ready(self.namespace)
        decision, victims = host.instance_gate.admit(body, definition.name, concurrency, key)
        for victim in victims:
            what = describe("workflow", definition.name, key)
            why = f"superseded by {self.name}: {what} runs at most {concurrency.max_runs} (strategy cancel_in_progress)"
            host.spawn(host.store.request_cancel(self.namespace, victim, why))
        if isinstance(decision, Admitted):
            host.metrics.instance_queued_seconds.labels(definition.name).observe(decision.queued_seconds)
            if host.tracing is not None and (body.get("status") or {}).get("phase") == "Queued":
                host.tracing.queued(body, definition.name, time.time())
            return True
        if isinstance(decision, Refused):
            await self._cancel_unstarted(body, f"cancelled: {decision.message}", "ConcurrencyLimit")
            return False
        assert isinstance(decision, Queued)
        await self._write_queued(body, definition, key, decision)
        return False

    async def _write_queued(self, body: JSON, definition: Definition, key: str | None, queued: Queued) -> None:
        """Phase ``Queued``, with the key and position it waits at; written only when that changes."""
        assert definition.concurrency is not None
        status = body.get("status") or {}
        what = describe("workflow", definition.name, key)
        message = f"queued at position {queued.position} for one of {definition.concurrency.max_runs} slot(s) of {what}"
        concurrency: JSON = {
            "maxRuns": definition.concurrency.max_runs,
            "position": queued.position,
            "queuedAt": (status.get("concurrency") or {}).get("queuedAt") or rfc3339(queued.queued_at),
        }
        if key is not None:
            concurrency["key"] = key
        self.host.instance_phase(self, definition.name, "Queued")
        if status.get("phase") == "Queued" and status.get("concurrency") == concurrency:
            return
        generation = body["metadata"].get("generation")
        update = {
            "phase": "Queued",
            "message": message,
            "observedGeneration": generation,
            "concurrency": concurrency,
            "conditions": with_conditions(
                status.get("conditions"), generation, ("Accepted", "False", "Queued", message)
            ),
        }
        self.body = _slim(await self.host.store.write_status(body, update))
        if status.get("phase") != "Queued":
            self.host.spawn(self.host.store.post_event(body, "Queued", message))

    async def _dispatch(self, body: JSON, definition: Definition, snapshot: Snapshot) -> None:
        """Every attempt the checkpoint says is running must have its task: the ones just dispatched,
        and any whose creation a crash or an API outage interrupted before."""
        host = self.host
        meta = body["metadata"]
        dispatches = [
            d
            for d in in_flight(definition, snapshot)
            if (name := task_name(meta["name"], meta["uid"], d.path, d.attempt)) not in self.tasks
            and name not in self.created
        ]
        if not dispatches:
            return
        bodies = [self._task_body(body, definition, d) for d in dispatches]
        created = await asyncio.gather(
            *(host.store.create_task(self.namespace, b) for b in bodies), return_exceptions=True
        )
        failure: BaseException | None = None
        for dispatch, task, was_created in zip(dispatches, bodies, created, strict=True):
            if isinstance(was_created, BaseException):
                failure = failure or was_created
                if "flowControl" in task["spec"]:
                    host.task_gate.created_failed(self.namespace, task["metadata"]["name"], task["spec"])
                continue
            self.created.add(task["metadata"]["name"])
            if was_created:
                host.metrics.dispatched(definition.name, label_value(dispatch.queue))
        if failure is not None:
            raise failure

    def _task_body(self, instance: JSON, definition: Definition, dispatch: DispatchTask) -> JSON:
        """The task of one attempt; for a limited step with its limits, held back unless the task gate lets it run."""
        task = task_body(instance, definition.name, definition.hash, dispatch)
        if self.host.tracing is not None:
            traceparent = self.host.tracing.task_traceparent(instance, dispatch.path, dispatch.attempt)
            task["metadata"]["annotations"][TRACEPARENT_ANNOTATION] = traceparent
        node = definition.nodes[dispatch.node_id]
        if not isinstance(node, TaskNode) or not node.limited:
            return task
        task["spec"]["flowControl"] = task_flow_control(node, dispatch.input)
        meta = task["metadata"]
        meta["labels"][LIMITED_LABEL] = "true"
        runs, reason, message = self.host.task_gate.at_dispatch(self.namespace, meta["name"], task["spec"])
        if runs:
            meta["annotations"][ADMITTED_AT_ANNOTATION] = now_rfc3339()
        else:
            meta["labels"][HELD_LABEL] = reason
            meta["annotations"][HELD_MESSAGE_ANNOTATION] = message
        return task

    async def _finish_deletion(self, body: JSON, *, finished: bool) -> None:
        meta = body["metadata"]
        if finished and "deletionTimestamp" in meta and FINALIZER in (meta.get("finalizers") or []):
            await self.host.store.remove_finalizer(body)

    def _ttl_due(self, body: JSON) -> float | None:
        """When a finished instance is to be deleted (``spec.ttlSecondsAfterFinished`` or the default)."""
        ttl = (body.get("spec") or {}).get("ttlSecondsAfterFinished")
        if ttl is None:
            ttl = self.host.settings.default_ttl_seconds
        finished_at = (body.get("status") or {}).get("finishedAt")
        if ttl is None or finished_at is None or "deletionTimestamp" in body["metadata"]:
            return None
        return parse_rfc3339(finished_at) + ttl

    # -- instances that cannot start ---------------------------------------------------------------

    async def _wait_for_definition(self, body: JSON, spec: JSON) -> None:
        workflow = spec.get("workflow", "")
        pinned = spec.get("definitionHash")
        known = self.host.catalog.known_hashes(self.namespace, workflow)
        if pinned and known:
            message = f"version {pinned[:12]} of workflow {workflow!r} is not published (published: {', '.join(h[:12] for h in known)})"
        else:
            message = f"waiting for a worker in namespace {self.namespace} to publish workflow {workflow!r}"
        if "deletionTimestamp" in body["metadata"]:
            await self._finish_deletion(body, finished=True)
            return
        if CANCEL_ANNOTATION in (body["metadata"].get("annotations") or {}):
            await self._cancel_unstarted(body)
            return
        self.host.instance_phase(self, workflow, "Pending")  # counted: PlaitInstancesPending
        await self._write_status_once(body, "DefinitionNotFound", message)

    async def _cancel_unstarted(
        self, body: JSON, message: str | None = None, event: str = "Cancelled", duplicate_of: str | None = None
    ) -> None:
        """Cancelled before it started (no worker published its workflow yet, it was queued, or its
        concurrency strategy refused it): it ends without a step."""
        status = body.get("status") or {}
        generation = body["metadata"].get("generation")
        if message is None:
            reason = (body["metadata"].get("annotations") or {}).get(CANCEL_ANNOTATION) or "no reason given"
            message = f"cancelled: {reason}"
        update = {
            "phase": "Cancelled",
            "message": message,
            "observedGeneration": generation,
            "finishedAt": now_rfc3339(),
            "conditions": with_conditions(
                status.get("conditions"), generation, ("Completed", "True", "Cancelled", message)
            ),
        }
        if duplicate_of is not None:
            update["duplicateOf"] = duplicate_of
        self.body = await self.host.store.write_status(body, update)
        workflow = (body.get("spec") or {}).get("workflow", "")
        if self.host.tracing is not None:
            self.host.tracing.unstarted(body, workflow, "Cancelled", message, time.time())
        await self.host.store.post_event(body, event, message, warning=event != "Cancelled")
        self.host.instance_phase(self, workflow, "Cancelled")
        await self._reject_signals(f"instance {self.name} was cancelled before it started")

    async def _write_status_once(self, body: JSON, reason: str, message: str) -> None:
        """Pending with a condition saying why; written (and an Event posted) only when it changes."""
        status = body.get("status") or {}
        current = next((c for c in status.get("conditions") or [] if c.get("type") == "Accepted"), None)
        if current is not None and current.get("reason") == reason and current.get("message") == message:
            return
        generation = body["metadata"].get("generation")
        update = {
            "phase": status.get("phase") or "Pending",
            "message": message,
            "observedGeneration": generation,
            "conditions": with_conditions(status.get("conditions"), generation, ("Accepted", "False", reason, message)),
        }
        self.body = await self.host.store.write_status(body, update)
        await self.host.store.post_event(body, reason, message, warning=True)

    async def _reject(self, body: JSON, invalid: InvalidInstance) -> None:
        status = body.get("status") or {}
        generation = body["metadata"].get("generation")
        update = {
            "phase": "Failed",
            "message": invalid.message,
            "error": f"{invalid.reason}: {invalid.message}",
            "observedGeneration": generation,
            "finishedAt": now_rfc3339(),
            "conditions": with_conditions(
                status.get("conditions"),
                generation,
                ("Accepted", "False", invalid.reason, invalid.message),
                ("Completed", "True", "Failed", invalid.message),
            ),
        }
        # the Event first, so a reader of the Failed status finds it (as the schedule controller does)
        await self.host.store.post_event(body, invalid.reason, invalid.message, warning=True)
        self.body = await self.host.store.write_status(body, update)
        if self.host.tracing is not None:
            workflow = (body.get("spec") or {}).get("workflow", "")
            self.host.tracing.unstarted(body, workflow, "Failed", f"{invalid.reason}: {invalid.message}", time.time())
        self.host.instance_phase(self, (body.get("spec") or {}).get("workflow", ""), "Failed")
        await self._reject_signals(f"instance {self.name} did not start: {invalid.message}")

    async def _reject_signals(self, why: str) -> None:
        for body in list(self.signals.values()):
            await self._reject_signal(body, why)
        self.signals.clear()

    async def _reject_signal(self, body: JSON, why: str) -> None:
        store = self.host.store
        await store.set_signal_status(self.namespace, body["metadata"]["name"], "Rejected", why)
        await store.post_event(body, "SignalRejected", why, warning=True)


def _new_condition(body: JSON, outcome: UpgradeOutcome) -> bool:
    """Whether ``outcome`` says something the ``Upgraded`` condition does not already: not when it is
    the same, nor when an upgrade the instance took is found again as up to date."""
    conditions = (body.get("status") or {}).get("conditions") or []
    current: JSON = next((c for c in conditions if c.get("type") == "Upgraded"), {})
    if outcome.reason == "UpToDate" and current.get("reason") == "Upgraded":
        return False
    return (current.get("reason"), current.get("message")) != (outcome.reason, outcome.message)


async def _both(first: Awaitable[T], second: Awaitable[Any]) -> tuple[T, Any]:
    """Await both; if either failed, raise its error only once both are done."""
    results = await asyncio.gather(first, second, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results[0], results[1]  # type: ignore[return-value]


def _slim(body: JSON, *, keep_input: bool = True) -> JSON:
    """What the actor keeps of an object: no managedFields, and for tasks no input (memory stays
    proportional to the instances in flight, not to the size of their history)."""
    slim = without_managed_fields(body)
    if not keep_input and "input" in (body.get("spec") or {}):
        slim["spec"] = {key: value for key, value in body["spec"].items() if key != "input"}
    return slim
