"""The controller: routes watch events to instance actors and watches over task leases.

kopf calls :meth:`Controller.on_instance`, :meth:`on_signal` and :meth:`on_definition` for every
event of those resources (see :mod:`plait_operator.handlers`); a plain watch calls
:meth:`on_task` for every event of a task.
Those only update caches and wake the right :class:`~plait_operator.instances.InstanceActor`;
all decisions are the actor's. The controller also expires the leases of running tasks whose
worker stopped renewing them, measured on this process's monotonic clock (robust to clock skew
between machines), and keeps the gauges (instances by phase, queue depth) current.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from plait._backoff import Backoff
from plait._core.definition import Definition
from plait._core.events import TaskFailed, TaskLost, TaskSucceeded, TaskTimedOut
from plait._core.snapshot import Snapshot
from plait._kube import idempotency
from plait._kube.client import JSON
from plait._kube.models import (
    DISPATCHED_AT_ANNOTATION,
    FINISHED_PHASES,
    HELD_LABEL,
    TASK_RESULT_PHASES,
    label_value,
    parse_rfc3339,
    revision,
    rfc3339,
)
from plait.errors import ClusterError
from plait_operator import payloads
from plait_operator.definitions import DefinitionCatalog
from plait_operator.flowcontrol import InstanceGate, TaskGate
from plait_operator.instances import InstanceActor
from plait_operator.metrics import OperatorMetrics
from plait_operator.retention import plan, versions_in_use
from plait_operator.settings import OperatorSettings
from plait_operator.store import Store, task_name
from plait_operator.tracing import OperatorTracing
from plait_operator.world import TaskResult

log = logging.getLogger(__name__)


@dataclass
class _Lease:
    namespace: str
    instance: str
    resource_version: str
    holder: str
    duration: float
    queue: str
    observed: float  # monotonic time the current resourceVersion was first seen


class Controller:
    def __init__(
        self,
        store: Store,
        settings: OperatorSettings,
        metrics: OperatorMetrics,
        tracing: OperatorTracing | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.metrics = metrics
        self.tracing = tracing
        self.catalog = DefinitionCatalog()
        self.catalog.on_published(self._definition_published)
        self.actors: dict[tuple[str, str], InstanceActor] = {}
        self._phases: dict[tuple[str, str], tuple[str, str]] = {}
        self._phase_counts: Counter[tuple[str, str]] = Counter()
        self._leases: dict[tuple[str, str], _Lease] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self._ttl_timers: dict[tuple[str, str], asyncio.TimerHandle] = {}
        # Finished instances whose actor retired: the resourceVersion it last saw. Watch events
        # lag under load; an older event must not bring back an actor that would act on a stale
        # checkpoint (re-creating tasks that already ran, each a wasted request).
        self._retired: dict[tuple[str, str], int] = {}
        self._loops: list[asyncio.Task[None]] = []
        # At most this many instances reconcile at once: thousands of them waking together (a
        # restart, a burst of signals) queue here instead of flooding the API server.
        self.reconcile_slots = asyncio.Semaphore(settings.max_concurrent_reconciles)
        # Whether the task watch of a namespace has listed every task (set by plait_operator.main):
        # until then the task gate lets nothing through there.
        self.tasks_synced: Callable[[str], bool] = lambda namespace: False
        self.instance_gate = InstanceGate(
            store.list_instances, lambda namespace, name: self.actor(namespace, name).poke()
        )
        self.task_gate = TaskGate(store.lift_hold, lambda namespace: self.tasks_synced(namespace), metrics, self.spawn)
        metrics.held_tasks.source = self.task_gate.held
        # Idempotency keys this process let an instance run for: (namespace, digest) -> (name, created).
        # Two instances of one key reconciling at once cannot both pass.
        self._keys: dict[tuple[str, str], tuple[str, float]] = {}
        self._key_of: dict[tuple[str, str], tuple[str, str]] = {}  # (namespace, name) -> its entry in _keys

    # -- lifecycle -----------------------------------------------------------------------------------

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._loops = [
            loop.create_task(self._sweep_leases(), name="lease sweeper"),
            loop.create_task(self._audit_flow_control(), name="flow control audit"),
            loop.create_task(self._retain_definitions(), name="definition retention"),
        ]
        if self.settings.payloads is not None:
            sweeping = payloads.sweep_forever(
                self.settings.payloads,
                self.settings.namespaces,
                self.store.list_instances,
                self.settings.payload_orphan_grace_seconds,
            )
            self._loops.append(loop.create_task(sweeping, name="payload sweep"))

    async def stop(self) -> None:
        for background in self._loops:
            background.cancel()
        for actor in list(self.actors.values()):
            await actor.close()
        self.actors.clear()

    def spawn(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        """Run a best-effort side task, keeping a reference and logging its failure."""
        task = asyncio.get_running_loop().create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background_done)

    def _background_done(self, task: asyncio.Task[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("background write failed: %s", task.exception())

    def actor(self, namespace: str, name: str) -> InstanceActor:
        key = (namespace, name)
        actor = self.actors.get(key)
        if actor is None:
            actor = self.actors[key] = InstanceActor(namespace, name, self)
        return actor

    def retire(self, actor: InstanceActor, ttl_due: float | None) -> None:
        """A finished instance needs no actor (its memory is what stays bounded); only its TTL timer.

        Should anything happen to it later (a signal, a late result, an annotation), a new actor
        reads its finished checkpoint and retires again.
        """
        key = (actor.namespace, actor.name)
        self.forget(actor)
        if actor.body is not None:
            self._retired[key] = revision(actor.body)
        previous = self._ttl_timers.pop(key, None)
        if previous is not None:
            previous.cancel()
        if ttl_due is not None and actor.body is not None:
            delay = max(0.0, ttl_due - time.time())
            uid = actor.body["metadata"]["uid"]
            self._ttl_timers[key] = asyncio.get_running_loop().call_later(delay, self._expire, key, uid)

    def _expire(self, key: tuple[str, str], uid: str) -> None:
        self._ttl_timers.pop(key, None)
        self.spawn(self._delete(key, uid))

    async def _delete(self, key: tuple[str, str], uid: str) -> None:
        """Delete an expired instance and its tasks, retrying while the API server fails: nothing
        else would ever delete it."""
        backoff = Backoff(0.5, 30.0)
        while True:
            try:
                await self.store.delete_tasks(key[0], uid)
                await self.store.delete_instance(*key)
                return
            except ClusterError as error:
                delay = backoff.next()
                log.warning("could not delete expired instance=%s/%s yet (%s); retrying in %.1fs", *key, error, delay)
                await backoff.wait(delay)

    def forget(self, actor: InstanceActor) -> None:
        """Drop and close ``actor``, if it is still its instance's: a retired one, or one whose
        instance does not exist (it was made for a stray task or signal)."""
        if self.actors.get((actor.namespace, actor.name)) is actor:
            del self.actors[(actor.namespace, actor.name)]
            self.spawn(actor.close())

    # -- watch events --------------------------------------------------------------------------------

    async def on_instance(self, event_type: str | None, body: JSON) -> None:
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        self.instance_gate.observe(event_type, body)
        if event_type == "DELETED":
            if self.settings.payloads is not None:
                self.spawn(payloads.delete_objects(self.settings.payloads, *key, before=time.time()))
            actor = self.actors.pop(key, None)
            if actor is not None:
                await actor.close()
            timer = self._ttl_timers.pop(key, None)
            if timer is not None:
                timer.cancel()
            self._retired.pop(key, None)
            self._forget_phase(key)
            slot = self._key_of.pop(key, None)
            if slot is not None and self._keys.get(slot, ("",))[0] == key[1]:
                del self._keys[slot]
            return
        retired = self._retired.get(key)
        if retired is not None:
            if revision(body) <= retired:
                return  # a late event from before it finished
            del self._retired[key]  # changed since (an annotation, a deletion): an actor looks at it
            timer = self._ttl_timers.pop(key, None)  # set again when it retires again, unless it was rerun
            if timer is not None:
                timer.cancel()
        self.actor(*key).observe_instance(body)

    def on_task(self, event_type: str, body: JSON) -> None:
        meta, spec = body["metadata"], body.get("spec") or {}
        namespace = meta["namespace"]
        key = (namespace, meta["name"])
        self._track_lease(event_type, key, body)
        self.task_gate.observe(event_type, body)
        instance = (namespace, spec.get("instance", ""))
        actor = self.actors.get(instance)
        if (
            actor is None
            and instance not in self._retired  # a finished instance takes no more results
            and event_type != "DELETED"
            and (body.get("status") or {}).get("phase") in TASK_RESULT_PHASES
        ):
            actor = self.actor(*instance)  # a result for an instance without an actor (after a restart)
        if actor is not None:
            actor.observe_task(event_type, body)

    async def on_signal(self, event_type: str | None, body: JSON) -> None:
        spec = body.get("spec") or {}
        namespace = body["metadata"]["namespace"]
        if event_type == "DELETED":
            actor = self.actors.get((namespace, spec.get("instance", "")))
            if actor is not None:
                actor.observe_signal("DELETED", body)
            return
        if (body.get("status") or {}).get("phase") in (None, "Pending"):
            self.actor(namespace, spec.get("instance", "")).observe_signal(event_type or "ADDED", body)

    async def on_definition(self, event_type: str | None, body: JSON) -> None:
        self.catalog.observe(event_type or "ADDED", body)

    async def first_with_key(self, body: JSON) -> str:
        """The instance that runs for ``body``'s ``spec.idempotencyKey`` (``body`` itself if it is the first)."""
        meta, key = body["metadata"], str(body["spec"]["idempotencyKey"])
        namespace, name = str(meta["namespace"]), str(meta["name"])
        window = self.settings.idempotency_window_seconds
        now = time.time()
        slot = (namespace, idempotency.digest(key))
        claimed = self._keys.get(slot)
        if claimed is not None and now - claimed[1] <= window:
            return claimed[0]
        listed = await self.store.list_instances(namespace, idempotency.selector(key))
        others = [item for item in listed if item["metadata"]["name"] != name]
        first = idempotency.first_with_key(others, key, now, window, decided=True)
        if first is not None:
            return str(first["metadata"]["name"])
        if slot in self._keys and self._keys[slot] != claimed:
            return self._keys[slot][0]  # another instance of the key got here while this one listed
        created = meta.get("creationTimestamp")
        self._keys[slot] = (name, parse_rfc3339(created) if created else now)
        self._key_of[(namespace, name)] = slot
        return name

    async def resolve_definition(self, namespace: str, workflow: str, pinned: str | None) -> Definition | None:
        """The definition a new instance gets. When the watch has not brought one (yet: a watch of
        a namespace just created starts late), ask the API server once before the instance waits."""
        found = self.catalog.resolve(namespace, workflow, pinned)
        if found is None:
            for body in await self.store.list_definitions(namespace, workflow):
                self.catalog.observe("ADDED", body)
            found = self.catalog.resolve(namespace, workflow, pinned)
        return found

    def _definition_published(self, namespace: str, workflow: str) -> None:
        for (actor_namespace, _), actor in self.actors.items():
            body = actor.body
            if (
                actor_namespace == namespace
                and body is not None
                and (body.get("spec") or {}).get("workflow") == workflow
            ):
                actor.poke()

    # -- results and phases, for metrics and Events ----------------------------------------------------

    def record_result(self, actor: InstanceActor, definition: Definition, event: TaskResult) -> None:
        uid = actor.body["metadata"]["uid"] if actor.body else ""
        task = actor.tasks.get(task_name(actor.name, uid, event.path, event.attempt))
        queue = task["spec"]["queue"] if task else definition.queue
        labels = (definition.name, label_value(queue))
        if isinstance(event, TaskSucceeded):
            self.metrics.steps_completed.labels(*labels).inc()
        elif isinstance(event, TaskFailed | TaskTimedOut | TaskLost):
            reason = {TaskFailed: "error", TaskTimedOut: "timeout", TaskLost: "lost"}[type(event)]
            self.metrics.steps_failed.labels(*labels, reason).inc()
        if task is None:
            return
        claim = (task.get("status") or {}).get("claim") or {}
        annotations = task["metadata"].get("annotations") or {}
        created = annotations.get(DISPATCHED_AT_ANNOTATION) or task["metadata"].get("creationTimestamp")
        claimed = claim.get("claimedAt")
        finished = (task.get("status") or {}).get("finishedAt")
        if created and claimed:
            # clocks of two machines: clamp to zero rather than report negatives
            self.metrics.schedule_to_start.labels(*labels).observe(
                max(0.0, parse_rfc3339(claimed) - parse_rfc3339(created))
            )
        if claimed and finished:
            self.metrics.start_to_close.labels(*labels).observe(
                max(0.0, parse_rfc3339(finished) - parse_rfc3339(claimed))
            )

    def instance_phase(self, actor: InstanceActor, workflow: str, phase: str) -> None:
        key = (actor.namespace, actor.name)
        if self._phases.get(key) == (workflow, phase):
            return
        self._forget_phase(key)
        self._phases[key] = (workflow, phase)
        self._phase_counts[(workflow, phase)] += 1
        self.metrics.instances.labels(workflow, phase).set(self._phase_counts[(workflow, phase)])

    def _forget_phase(self, key: tuple[str, str]) -> None:
        previous = self._phases.pop(key, None)
        if previous is not None:
            self._phase_counts[previous] -= 1
            self.metrics.instances.labels(*previous).set(self._phase_counts[previous])

    def instance_finished(self, actor: InstanceActor, workflow: str, phase: str, snapshot: Snapshot) -> None:
        self.metrics.instances_finished.labels(workflow, phase).inc()
        body = actor.body
        if body is None or phase not in FINISHED_PHASES:
            return
        if phase == "Succeeded":
            self.spawn(self.store.post_event(body, "Succeeded", "the workflow finished"))
        elif phase == "Failed":
            handler = snapshot.failure_handler
            also = (
                f"; its failure handler failed too: {handler.get('error')}"
                if handler and handler["state"] == "failed"
                else ""
            )
            self.spawn(
                self.store.post_event(body, "Failed", f"the workflow failed: {snapshot.error}{also}", warning=True)
            )
        else:
            reason = (snapshot.cancelled or {}).get("reason") or "no reason given"
            self.spawn(self.store.post_event(body, "Cancelled", f"cancelled: {reason}"))

    # -- leases ----------------------------------------------------------------------------------------

    def _track_lease(self, event_type: str | None, key: tuple[str, str], body: JSON) -> None:
        status = body.get("status") or {}
        phase = status.get("phase")
        spec = body.get("spec") or {}
        queue = label_value(spec.get("queue", "default"))
        unclaimed = self.metrics.unclaimed
        if (
            event_type == "DELETED"
            or phase not in (None, "Pending")
            or HELD_LABEL in (body["metadata"].get("labels") or {})
        ):
            unclaimed.discard(key)  # held tasks are not for workers yet: they count in plait_tasks_held
        elif key not in unclaimed:
            created = body["metadata"].get("creationTimestamp")
            unclaimed.add(key, queue, parse_rfc3339(created) if created else time.time())
        if event_type == "DELETED" or phase != "Running" or not status.get("claim"):
            self._leases.pop(key, None)
            return
        rv = body["metadata"]["resourceVersion"]
        lease = self._leases.get(key)
        if lease is None or lease.resource_version != rv:
            self._leases[key] = _Lease(
                namespace=key[0],
                instance=spec.get("instance", ""),
                resource_version=rv,
                holder=status["claim"].get("holder", "?"),
                duration=float(status["claim"].get("leaseDurationSeconds", 30)),
                queue=queue,
                observed=time.monotonic(),
            )

    async def _audit_flow_control(self) -> None:
        """While instances are queued or tasks held in a namespace, list it now and then: a watch
        that resumed after a gap does not replay deletions, and a slot of a vanished object that
        nobody frees would stop its queue for good."""
        while True:
            await asyncio.sleep(self.settings.flow_control_audit_seconds)
            for namespace in self.instance_gate.namespaces_waiting():
                listed_at = time.monotonic()
                try:
                    self.instance_gate.audit(namespace, await self.store.list_instances(namespace), listed_at)
                except ClusterError as error:
                    log.warning("flow control audit of instances in %s failed: %s", namespace, error)
            for namespace in self.task_gate.namespaces_waiting():
                listed_at = time.monotonic()
                try:
                    self.task_gate.audit(namespace, await self.store.list_limited_tasks(namespace), listed_at)
                except ClusterError as error:
                    log.warning("flow control audit of tasks in %s failed: %s", namespace, error)

    async def _retain_definitions(self) -> None:
        """Version retention (:mod:`plait_operator.retention`), a sweep of every namespace with
        definitions a tenth of the retention period apart (at most ten minutes)."""
        retention = self.settings.definition_retention_seconds
        while True:
            await asyncio.sleep(max(1.0, min(600.0, retention / 10)))
            for namespace in self.catalog.namespaces():
                try:
                    await self._retain_in(namespace, retention)
                except ClusterError as error:
                    log.warning("definition retention in %s failed: %s", namespace, error)
                except Exception:  # a malformed object: the next sweep tries again, the loop lives on
                    log.exception("definition retention in %s failed", namespace)

    async def _retain_in(self, namespace: str, retention: float) -> None:
        definitions = await self.store.list_definitions(namespace)
        instances = await self.store.list_instances(namespace)
        leases = await self.store.list_worker_leases(namespace)  # last: a worker that just started counts
        now = time.time()
        todo = plan(definitions, versions_in_use(instances, leases, now), now, retention)
        for name in todo.mark:
            await self.store.mark_unused(namespace, name, rfc3339(now))
        for name in todo.unmark:
            await self.store.mark_unused(namespace, name, None)
        for name in todo.delete:
            await self.store.delete_definition(namespace, name)
            log.info("deleted definition=%s/%s: unused and unserved for %.0fs", namespace, name, retention)

    async def _sweep_leases(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            now = time.monotonic()
            for key, lease in list(self._leases.items()):
                if now - lease.observed < lease.duration + self.settings.lease_grace_seconds:
                    continue
                message = f"lease expired: worker {lease.holder} did not renew within {lease.duration:g}s"
                try:
                    expired = await self.store.set_task_phase(key[0], key[1], "Lost", message, lease.resource_version)
                except ClusterError as error:
                    log.warning("could not expire the lease of task=%s/%s yet: %s", key[0], key[1], error)
                    continue
                self._leases.pop(key, None)
                if expired:
                    log.warning("task=%s/%s %s", key[0], key[1], message)
                    self.metrics.lease_expiries.labels(lease.queue).inc()
                    actor = self.actors.get((key[0], lease.instance))
                    if actor is not None and actor.body is not None:
                        self.spawn(
                            self.store.post_event(actor.body, "LeaseExpired", f"task {key[1]}: {message}", warning=True)
                        )
