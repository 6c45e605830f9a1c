"""The plait resources (``plait.dev/v1alpha1``), one pydantic model each.

These models are the single source of truth: the controller, the worker, the CLI and the CRD
generator (:mod:`plait._kube.crds`, which writes ``crds/`` and the chart's CRDs) all use them.
Field names are the API's (camelCase); unknown fields are kept so that objects written by newer
versions survive a round trip.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal, TypedDict

from pydantic import BaseModel, ConfigDict, Field

from plait._kube.client import Resource, encode

GROUP = "plait.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

# Annotations users set on a WorkflowInstance, and the operator's finalizer.
PAUSE_ANNOTATION = "plait.dev/pause"
CANCEL_ANNOTATION = "plait.dev/cancel"
# Rerun a Failed or Cancelled instance (value: empty for its unfinished steps, or a step id).
RETRY_ANNOTATION = "plait.dev/retry"
# Move a running, paused or waiting instance to another version at its next step boundary (value: a
# definition hash, a unique prefix of one, or `latest`); see docs/recovery.md.
UPGRADE_ANNOTATION = "plait.dev/upgrade"
# Who asked for the pause or the cancellation (sayiir's paused_by / cancelled_by); set by the client.
PAUSED_BY_ANNOTATION = "plait.dev/paused-by"
CANCELLED_BY_ANNOTATION = "plait.dev/cancelled-by"
FINALIZER = "plait.dev/cancel-on-delete"
# W3C trace context: on an instance, the submitter's span (its trace becomes the instance's); on a
# task, the attempt's span, the parent of the worker's span around the run.
TRACEPARENT_ANNOTATION = "plait.dev/traceparent"
# When the operator created a task, to the microsecond (creationTimestamp has whole seconds).
DISPATCHED_AT_ANNOTATION = "plait.dev/dispatched-at"
# Flow control on tasks: a task the operator holds back has the label (value: the reason,
# Concurrency or RateLimit) and a message; workers do not see it until the label goes. When it
# was let through (rate limits are rebuilt from these after a restart).
HELD_LABEL = "plait.dev/held"
LIMITED_LABEL = "plait.dev/limited"  # on every task of a limited step, held or not: found with one list
HELD_MESSAGE_ANNOTATION = "plait.dev/held-message"
ADMITTED_AT_ANNOTATION = "plait.dev/admitted-at"
# Each worker process keeps a Lease with this label, annotated with the definitions and queues it serves
# (plait._worker.membership); a Lease not renewed for STALE_LEASE_SECONDS belongs to a crashed worker.
WORKER_LABEL = "plait.dev/worker"
SERVES_ANNOTATION = "plait.dev/serves"
STALE_LEASE_SECONDS = 600.0
# On a WorkflowDefinition: since when no instance uses it and no live worker serves it (version retention).
UNUSED_SINCE_ANNOTATION = "plait.dev/unused-since"
# On instances with spec.idempotencyKey: a digest of the key, so that duplicates are found by selector.
IDEMPOTENCY_LABEL = "plait.dev/idempotency-key"

# Labels the operator puts on tasks, and workers select on.
INSTANCE_UID_LABEL = "plait.dev/instance-uid"
QUEUE_LABEL = "plait.dev/queue"
DEFINITION_LABEL = "plait.dev/definition"
WORKFLOW_LABEL = "plait.dev/workflow"

#: Inline limit of one input, output or signal payload (etcd refuses objects over 1.5 MiB).
DEFAULT_MAX_PAYLOAD_BYTES = 256 * 1024


def payload_size(value: Any) -> int:
    """What ``value`` costs in an object: the bytes of its compact JSON."""
    return len(encode(value))


InstancePhase = Literal[
    "Pending", "Queued", "Running", "Waiting", "AwaitingSignal", "Paused", "Succeeded", "Failed", "Cancelled"
]
TaskPhase = Literal["Pending", "Running", "Succeeded", "Failed", "TimedOut", "Lost", "Released", "Cancelled"]
SignalPhase = Literal["Pending", "Delivered", "Buffered", "Rejected"]
FINISHED_PHASES = frozenset({"Succeeded", "Failed", "Cancelled"})
TASK_RESULT_PHASES = frozenset({"Succeeded", "Failed", "TimedOut", "Lost", "Released"})


_LABEL_VALUE = re.compile(r"[^A-Za-z0-9._-]+")
_NAME = re.compile(r"[^a-z0-9-]+")


def owned_by_this_pod(namespace: str) -> list[dict[str, Any]]:
    """Owner references that make the garbage collector delete an object with the pod that made it.

    For the Leases of a pod's own process (a worker's membership, the operator's leadership), so that
    `helm uninstall` leaves none behind even when the pod's RBAC is gone before it shuts down. Empty
    outside a pod, and when the object lives in another namespace (owners must share the namespace).
    """
    name, uid = os.environ.get("POD_NAME"), os.environ.get("POD_UID")
    if not (name and uid) or os.environ.get("POD_NAMESPACE") != namespace:
        return []
    return [{"apiVersion": "v1", "kind": "Pod", "name": name, "uid": uid}]


def controlled_by(kind: str, owner: dict[str, Any]) -> list[dict[str, Any]]:
    """``ownerReferences`` naming a plait object (``owner`` is its metadata) the controller: deleting it deletes them."""
    ref = {"apiVersion": API_VERSION, "kind": kind, "name": owner["name"], "uid": owner["uid"]}
    return [{**ref, "controller": True, "blockOwnerDeletion": True}]


def label_value(text: str) -> str:
    """``text`` squeezed into a valid label value (63 characters, alphanumeric at both ends)."""
    return _LABEL_VALUE.sub("-", text)[:63].strip("-._") or "none"


def object_name(text: str, limit: int = 200) -> str:
    """``text`` as the start of a DNS-1123 object name (lowercase letters, digits, dashes)."""
    return _NAME.sub("-", text.lower())[:limit].strip("-") or "x"


def definition_hash_of(instance: Mapping[str, Any]) -> str | None:
    """The version an instance runs (``status.definitionHash``) or, before it starts, pins."""
    return (instance.get("status") or {}).get("definitionHash") or (instance.get("spec") or {}).get("definitionHash")


def without_managed_fields(body: dict[str, Any]) -> dict[str, Any]:
    """A shallow copy of an object without ``metadata.managedFields``: what a cache keeps of it
    (the field bookkeeping is often the larger part of a small object)."""
    return {**body, "metadata": {key: value for key, value in body["metadata"].items() if key != "managedFields"}}


def revision(body: dict[str, Any]) -> int:
    """An object's resourceVersion as a number (they are etcd revisions: later writes, larger numbers)."""
    try:
        return int(body["metadata"].get("resourceVersion") or 0)
    except (KeyError, ValueError):
        return 0


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def rfc3339(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_rfc3339(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    def dump(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class OwnerReference(_Model):
    apiVersion: str
    kind: str
    name: str
    uid: str
    controller: bool | None = None
    blockOwnerDeletion: bool | None = None


class ObjectMeta(_Model):
    name: str | None = None
    generateName: str | None = None
    namespace: str | None = None
    uid: str | None = None
    resourceVersion: str | None = None
    generation: int | None = None
    creationTimestamp: str | None = None
    deletionTimestamp: str | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    ownerReferences: list[OwnerReference] | None = None
    finalizers: list[str] | None = None


class Condition(_Model):
    """A Kubernetes condition; ``lastTransitionTime`` changes only when ``status`` flips."""

    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str = Field(pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")
    message: str = ""
    observedGeneration: int | None = None
    lastTransitionTime: str


class KubeObject(_Model):
    """Common envelope; subclasses set ``RESOURCE`` and the typed ``spec``/``status``."""

    RESOURCE: ClassVar[Resource]
    SHORT_NAMES: ClassVar[tuple[str, ...]]
    DESCRIPTION: ClassVar[str]

    apiVersion: str = API_VERSION
    kind: str = ""
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)

    @property
    def name(self) -> str:
        assert self.metadata.name is not None
        return self.metadata.name

    @property
    def namespace(self) -> str:
        assert self.metadata.namespace is not None
        return self.metadata.namespace


# -- WorkflowInstance ------------------------------------------------------------------------------


class ForkSource(_Model):
    """The checkpoint a new instance starts from (``plait fork``)."""

    instance: str = Field(min_length=1, max_length=253, description="The instance to copy, in this namespace.")
    step: str | None = Field(
        default=None,
        description="Rerun from this task step (it and what follows run again); default: the steps the source "
        "left unfinished.",
    )


class WorkflowInstanceSpec(_Model):
    """Desired state: run the workflow once on the input. Immutable once created."""

    workflow: str = Field(min_length=1, max_length=253, description="Name of the workflow definition to run.")
    input: Any = Field(default=None, description="Input of the first step: any JSON value.")
    definitionHash: str | None = Field(
        default=None,
        pattern=r"^[0-9a-f]{64}$",
        description="Pin a definition version; default: the latest published when the instance starts.",
    )
    ttlSecondsAfterFinished: int | None = Field(
        default=None, ge=0, description="Delete the instance (and its tasks) this long after it finished."
    )
    idempotencyKey: str | None = Field(
        default=None,
        min_length=1,
        max_length=256,
        description="Submits with the same key in this namespace within the operator's window run once: a later "
        "instance does not run and points at the first (status.duplicateOf).",
    )
    activeDeadlineSeconds: int | None = Field(
        default=None,
        ge=1,
        description="Fail the instance (reason DeadlineExceeded, running tasks asked to stop) once it has run this "
        "long since it started or was last rerun, paused time included; default: the flow's Flow(timeout=...).",
    )
    forkFrom: ForkSource | None = Field(
        default=None,
        description="Start from a copy of another instance's checkpoint instead of from the first step; it runs "
        "the source's definition version.",
    )


class InstanceConcurrency(_Model):
    """Which concurrency group an instance of a limited workflow is in, and while Queued, where it waits."""

    key: str | None = Field(default=None, description="The value of the flow's concurrency key (none: unkeyed).")
    maxRuns: int = Field(ge=1, description="Instances of this workflow (and key) that may run at once.")
    position: int | None = Field(default=None, ge=1, description="While Queued: 1 starts next.")
    queuedAt: str | None = None


class StepSummary(_Model):
    """One node of the definition: how far it got (loops and retries fold into one entry)."""

    id: str
    state: str
    attempts: int = 0
    runs: int = 0
    startedAt: str | None = None
    finishedAt: str | None = None


class WorkflowInstanceStatus(_Model):
    phase: InstancePhase | None = None
    message: str | None = None
    definitionHash: str | None = None
    output: Any = None
    error: str | None = None
    startedAt: str | None = None
    finishedAt: str | None = None
    currentStep: str | None = Field(default=None, description="Steps running or waiting now.")
    progress: str | None = Field(default=None, description="Finished nodes / nodes, e.g. 3/7.")
    steps: list[StepSummary] | None = None
    conditions: list[Condition] | None = None
    observedGeneration: int | None = None
    concurrency: InstanceConcurrency | None = None
    duplicateOf: str | None = Field(
        default=None, description="The instance with the same idempotency key that runs instead of this one."
    )
    checkpoint: str | None = Field(
        default=None, description="The engine's checkpoint (JSON), written after every step. Internal."
    )


class WorkflowInstance(KubeObject):
    RESOURCE = Resource(GROUP, VERSION, "workflowinstances", "WorkflowInstance")
    SHORT_NAMES = ("wfi",)
    DESCRIPTION = "One run of a workflow. The name is the instance id."

    kind: str = "WorkflowInstance"
    spec: WorkflowInstanceSpec
    status: WorkflowInstanceStatus | None = None


# -- WorkflowTask ----------------------------------------------------------------------------------


class TaskFlowControl(_Model):
    """The limits of a task's step, with their keys resolved from this attempt's input."""

    concurrency: int | None = Field(default=None, ge=1, description="Attempts of this task at once.")
    concurrencyKey: str | None = None
    rateLimit: str | None = Field(default=None, description='Starts per period, e.g. "10/s".')
    rateLimitKey: str | None = None


class WorkflowTaskSpec(_Model):
    """One attempt of one step, for a worker to claim. Written once by the operator."""

    instance: str
    instanceUID: str
    workflow: str
    definitionHash: str = Field(pattern=r"^[0-9a-f]{64}$")
    step: str = Field(description="Node id in the definition.")
    path: str = Field(description="Which execution of the node (loop iteration, branch).")
    task: str = Field(description="Registered task function id.")
    attempt: int = Field(ge=1)
    queue: str
    input: Any = None
    timeoutSeconds: float | None = Field(default=None, gt=0)
    priority: int | None = Field(default=None, ge=1, le=5)
    flowControl: TaskFlowControl | None = None


class Claim(_Model):
    holder: str
    claimedAt: str
    renewedAt: str
    leaseDurationSeconds: float = Field(gt=0)


class ClaimFields(TypedDict, total=False):
    """:class:`Claim` as the worker writes it and the operator reads it (no validation on the hot path)."""

    holder: str
    claimedAt: str
    renewedAt: str
    leaseDurationSeconds: float


class TaskStatusFields(TypedDict, total=False):
    """:class:`WorkflowTaskStatus` as written and read on the hot path; a patch sets some of them."""

    phase: TaskPhase
    claim: ClaimFields
    deadline: str
    output: Any
    error: str | None
    traceback: str | None
    finishedAt: str


class WorkflowTaskStatus(_Model):
    phase: TaskPhase | None = None
    claim: Claim | None = None
    deadline: str | None = Field(default=None, description="When a running attempt times out.")
    output: Any = None
    error: str | None = None
    traceback: str | None = None
    finishedAt: str | None = None


class WorkflowTask(KubeObject):
    RESOURCE = Resource(GROUP, VERSION, "workflowtasks", "WorkflowTask")
    SHORT_NAMES = ("wft",)
    DESCRIPTION = "A claimable attempt of one workflow step."

    kind: str = "WorkflowTask"
    spec: WorkflowTaskSpec
    status: WorkflowTaskStatus | None = None

    @property
    def phase(self) -> str:
        return (self.status.phase if self.status else None) or "Pending"


# -- WorkflowDefinition ----------------------------------------------------------------------------


class RetrySpec(_Model):
    maxRetries: int = Field(ge=0)
    initialDelaySeconds: float = Field(ge=0)
    backoffMultiplier: float = Field(gt=0)
    maxDelaySeconds: float | None = Field(default=None, ge=0)


class BranchSpec(_Model):
    name: str
    steps: list[str]


class RouteSpec(_Model):
    key: str
    steps: list[str]


class ConcurrencySpec(_Model):
    maxRuns: int = Field(ge=1)
    key: str | None = None
    strategy: Literal["queue", "cancel_newest", "cancel_in_progress"] = "queue"


class RateLimitSpec(_Model):
    limit: str
    key: str | None = None


class NodeSpec(_Model):
    """A node of the graph; which fields are set depends on ``kind``."""

    id: str
    kind: Literal["task", "fork", "route", "loop", "delay", "signal", "child"]
    task: str | None = None
    timeoutSeconds: float | None = None
    retry: RetrySpec | None = None
    priority: int | None = None
    tags: list[str] | None = None
    description: str | None = None
    queue: str | None = None
    branches: list[BranchSpec] | None = None
    join: str | None = None
    key: str | None = None
    keys: list[str] | None = None
    routes: list[RouteSpec] | None = None
    default: list[str] | None = None
    body: list[str] | None = None
    maxIterations: int | None = None
    onMax: Literal["fail", "exit_with_last"] | None = None
    seconds: float | None = None
    signal: str | None = None
    onTimeout: Literal["fail", "continue"] | None = None
    payloadSchema: dict[str, Any] | None = None
    workflow: str | None = None
    steps: list[str] | None = None
    concurrency: ConcurrencySpec | None = None
    rateLimit: RateLimitSpec | None = None


class EdgeSpec(_Model):
    from_: str = Field(alias="from")
    to: str
    label: str | None = None


class WorkflowDefinitionSpec(_Model):
    """The graph of a flow as data (see :class:`plait._core.definition.Definition`)."""

    workflow: str
    queue: str
    steps: list[str]
    nodes: list[NodeSpec]
    edges: list[EdgeSpec] = Field(default_factory=list)
    inputSchema: dict[str, Any] | None = None
    outputSchema: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    concurrency: ConcurrencySpec | None = None
    timeoutSeconds: float | None = Field(
        default=None, description="Default deadline of an instance, in seconds (Flow(timeout=...))."
    )
    onFailure: str | None = Field(
        default=None, description="The task node run once when an instance fails (Flow(...).on_failure(fn))."
    )
    hash: str = Field(pattern=r"^[0-9a-f]{64}$")


class WorkflowDefinition(KubeObject):
    RESOURCE = Resource(GROUP, VERSION, "workflowdefinitions", "WorkflowDefinition")
    SHORT_NAMES = ("wfd",)
    DESCRIPTION = "A published version of a workflow's graph; the controller runs instances from it."

    kind: str = "WorkflowDefinition"
    spec: WorkflowDefinitionSpec


# -- WorkflowSignal --------------------------------------------------------------------------------


class WorkflowSignalSpec(_Model):
    instance: str = Field(min_length=1, max_length=253, description="Name of the WorkflowInstance.")
    name: str = Field(min_length=1, max_length=253, description="Signal name the workflow waits for.")
    payload: Any = Field(default=None, description="Becomes the input of the step after the wait.")


class WorkflowSignalStatus(_Model):
    phase: SignalPhase | None = None
    message: str | None = None
    acceptedAt: str | None = None


class WorkflowSignal(KubeObject):
    RESOURCE = Resource(GROUP, VERSION, "workflowsignals", "WorkflowSignal")
    SHORT_NAMES = ("wfsig",)
    DESCRIPTION = "An external event for a workflow instance; buffered first-in first-out per name."

    kind: str = "WorkflowSignal"
    spec: WorkflowSignalSpec
    status: WorkflowSignalStatus | None = None


# -- WorkflowSchedule ------------------------------------------------------------------------------

# On instances a schedule starts: the schedule's name, and the tick (RFC 3339, UTC) it ran for.
SCHEDULE_LABEL = "plait.dev/schedule"
SCHEDULED_TIME_ANNOTATION = "plait.dev/scheduled-time"
# The operator's finalizer on a schedule: before it goes, its instances are let go of (see docs/schedules.md).
SCHEDULE_FINALIZER = "plait.dev/release-runs"
ConcurrencyPolicy = Literal["Allow", "Forbid", "Replace"]
SkipReason = Literal["Missed", "DeadlineExceeded", "ConcurrencyForbidden", "FailedToStart"]


class InstanceTemplate(_Model):
    """What every instance a schedule starts gets, besides the schedule's label and owner."""

    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    ttlSecondsAfterFinished: int | None = Field(
        default=None, ge=0, description="Delete each finished instance (and its tasks) this long after it finished."
    )


class WorkflowScheduleSpec(_Model):
    """Desired state: start an instance of the workflow at every tick of the schedule, in its time zone."""

    schedule: str = Field(
        min_length=1,
        max_length=200,
        description="Cron expression: 5 fields (minute hour day-of-month month day-of-week), 6 with seconds "
        "first, or a macro (@yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly).",
    )
    timeZone: str | None = Field(
        default=None, max_length=64, description="IANA time zone the schedule is read in (default: UTC)."
    )
    workflow: str = Field(min_length=1, max_length=253, description="Name of the workflow definition to run.")
    input: Any = Field(default=None, description="Input of every run: any JSON value.")
    definitionHash: str | None = Field(
        default=None,
        pattern=r"^[0-9a-f]{64}$",
        description="Pin a definition version; default: the latest published when each run starts.",
    )
    concurrencyPolicy: ConcurrencyPolicy = Field(
        default="Allow",
        description="When a tick comes while a run is active: Allow another, Forbid it (the tick waits for the "
        "active run, within startingDeadlineSeconds), or Replace the active run (cancel it).",
    )
    startingDeadlineSeconds: int | None = Field(
        default=None, ge=0, description="A tick that cannot start within this many seconds of its time is skipped."
    )
    suspend: bool = Field(default=False, description="Start no runs while true; missed ticks count on resume.")
    successfulRunsHistoryLimit: int = Field(default=3, ge=0, description="Succeeded runs to keep.")
    failedRunsHistoryLimit: int = Field(default=1, ge=0, description="Failed or cancelled runs to keep.")
    instanceTemplate: InstanceTemplate | None = None


class ActiveRun(_Model):
    name: str
    uid: str | None = None
    scheduleTime: str | None = Field(default=None, description="The tick it runs for (none: started by hand).")


class SkippedTicks(_Model):
    """Consecutive ticks that started no run, for one reason."""

    reason: SkipReason
    firstTime: str
    lastTime: str
    count: int = Field(ge=1)
    message: str = ""


class WorkflowScheduleStatus(_Model):
    lastScheduleTime: str | None = Field(default=None, description="The latest tick a run was started for.")
    nextScheduleTime: str | None = Field(default=None, description="The next tick (none while suspended).")
    lastSuccessfulTime: str | None = Field(default=None, description="When a run last finished successfully.")
    active: list[ActiveRun] | None = None
    skipped: list[SkippedTicks] | None = Field(
        default=None, description="The latest ticks that ran nothing, newest last."
    )
    conditions: list[Condition] | None = None
    observedGeneration: int | None = None


class WorkflowSchedule(KubeObject):
    RESOURCE = Resource(GROUP, VERSION, "workflowschedules", "WorkflowSchedule")
    SHORT_NAMES = ("wfsched",)
    DESCRIPTION = "Starts a workflow instance at every tick of a cron schedule in a time zone."

    kind: str = "WorkflowSchedule"
    spec: WorkflowScheduleSpec
    status: WorkflowScheduleStatus | None = None


INSTANCES = WorkflowInstance.RESOURCE
TASKS = WorkflowTask.RESOURCE
DEFINITIONS = WorkflowDefinition.RESOURCE
SIGNALS = WorkflowSignal.RESOURCE
SCHEDULES = WorkflowSchedule.RESOURCE
