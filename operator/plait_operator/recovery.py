"""Reruns, forks and deadlines on the cluster: the I/O around :mod:`plait._core.rerun`.

An actor (:mod:`plait_operator.instances`) calls :func:`take_retry` when an instance carries
``plait.dev/retry`` and :func:`start_fork` when a new instance has ``spec.forkFrom``. Both read
what the checkpoint no longer holds, the input a step to rerun from had, from that step's latest
task record (task records stay until their instance is deleted), and return the engine's
decision for the actor to write and carry out like any other. :func:`deadline_of` says when an
instance's ``spec.activeDeadlineSeconds`` (or its flow's timeout) runs out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from plait._core.definition import Definition
from plait._core.engine import Decision
from plait._core.events import DispatchTask, SetTimer
from plait._core.rerun import fork, locate, rerun
from plait._core.snapshot import Snapshot
from plait._kube.client import JSON
from plait._kube.models import CANCEL_ANNOTATION, CANCELLED_BY_ANNOTATION, RETRY_ANNOTATION, parse_rfc3339
from plait.errors import RerunRefused
from plait_operator.status import snapshot_of
from plait_operator.store import Store
from plait_operator.validation import InvalidInstance

#: What a taken retry removes: the request, and a cancel request that would stop the rerun at once.
TAKEN_ANNOTATIONS = [RETRY_ANNOTATION, CANCEL_ANNOTATION, CANCELLED_BY_ANNOTATION]


class Definitions(Protocol):
    async def resolve_definition(self, namespace: str, workflow: str, pinned: str | None) -> Definition | None: ...


@dataclass(slots=True)
class RetryOutcome:
    """A taken retry (``decision``) or a refused one (None); ``reason`` and ``message`` for the
    ``Retried`` condition and the Event."""

    decision: Decision | None
    reason: str
    message: str


def deadline_of(body: JSON, definition: Definition, started_at: float | None) -> tuple[float, str] | None:
    """When the instance must have finished, and the error it fails with then; None without a deadline.

    The clock starts when the instance starts or is rerun (``status.startedAt``, or ``started_at``
    when that happens now) and runs on while it is paused: wall time, as for a Job.
    """
    seconds = (body.get("spec") or {}).get("activeDeadlineSeconds")
    where = "spec.activeDeadlineSeconds"
    if seconds is None:
        seconds, where = definition.timeout_secs, "the flow's timeout"
    if seconds is None:
        return None
    if started_at is None:
        started = (body.get("status") or {}).get("startedAt")
        if started is None:
            return None
        started_at = parse_rfc3339(started)
    error = f"DeadlineExceeded: the instance ran for more than {seconds:g}s ({where})"
    return started_at + seconds, error


async def take_retry(store: Store, body: JSON, definition: Definition, snapshot: Snapshot, now: float) -> RetryOutcome:
    """The instance's ``plait.dev/retry`` request, applied to ``snapshot`` (changed in place) or refused."""
    meta = body["metadata"]
    value = (meta.get("annotations") or {}).get(RETRY_ANNOTATION, "")
    step = value.strip() or None
    try:
        if "deletionTimestamp" in meta:
            raise RerunRefused(f"instance {meta['name']!r} is being deleted")
        step_input = await _input_of(store, meta, definition, snapshot, step) if step is not None else None
        decision = rerun(definition, snapshot, step, step_input, now)
    except RerunRefused as refused:
        return RetryOutcome(None, "RetryRefused", f"{RETRY_ANNOTATION}={value!r} was not taken: {refused}")
    if step is not None:
        return RetryOutcome(decision, "Retried", f"rerunning from step {step}")
    return RetryOutcome(
        decision, "Retried", f"rerunning the step(s) left unfinished: {', '.join(_restarted(decision))}"
    )


async def start_fork(host: Definitions, store: Store, body: JSON, now: float) -> tuple[Definition, Decision]:
    """The first checkpoint of an instance with ``spec.forkFrom``: a copy of its source's, going on."""
    meta, spec = body["metadata"], body.get("spec") or {}
    source_ref = spec.get("forkFrom") or {}
    name, step = source_ref.get("instance", ""), source_ref.get("step") or None
    source = await store.get_instance(meta["namespace"], name)
    if source is None:
        raise InvalidInstance("InvalidFork", f"spec.forkFrom.instance: no WorkflowInstance {name!r} in this namespace")
    snapshot = snapshot_of(source.get("status") or {})
    if snapshot is None:
        raise InvalidInstance("InvalidFork", f"{name!r} has not started: there is no checkpoint to fork")
    if spec.get("workflow") != snapshot.workflow:
        raise InvalidInstance(
            "InvalidFork", f"spec.workflow is {spec.get('workflow')!r} but {name!r} runs {snapshot.workflow!r}"
        )
    definition = await host.resolve_definition(meta["namespace"], snapshot.workflow, snapshot.definition_hash)
    if definition is None:
        raise InvalidInstance(
            "InvalidFork",
            f"version {snapshot.definition_hash[:12]} of {snapshot.workflow!r}, which {name!r} runs, is not published",
        )
    try:
        step_input = await _input_of(store, source["metadata"], definition, snapshot, step) if step else None
        return definition, fork(definition, snapshot, meta["name"], step, step_input, now)
    except RerunRefused as refused:
        raise InvalidInstance("InvalidFork", f"cannot fork {name!r}: {refused}") from None


async def _input_of(store: Store, meta: JSON, definition: Definition, snapshot: Snapshot, step: str) -> Any:
    """The input ``step`` had where a rerun from it starts: from its latest task record there."""
    path = locate(definition, snapshot, step)
    records = [
        task
        for task in await store.list_tasks(meta["namespace"], meta["uid"])
        if task["spec"].get("path") == path and task["spec"].get("step") == step
    ]
    if not records:
        raise RerunRefused(f"step {step!r} has no task record left to read the input it had from")
    return max(records, key=lambda task: int(task["spec"]["attempt"]))["spec"].get("input")


def _restarted(decision: Decision) -> list[str]:
    snapshot = decision.snapshot
    restarted = [c.node_id for c in decision.commands if isinstance(c, DispatchTask)]
    restarted += [snapshot.timers[c.path].node_id for c in decision.commands if isinstance(c, SetTimer)]
    restarted += [wait.node_id for wait in snapshot.waiting_signals.values()]
    return sorted(set(restarted))
