"""Every write the operator makes to the API server, in one place.

The hot path per step is one checkpoint (a merge patch of the instance status, fenced by
``resourceVersion``) and one task creation; everything else (finalizers, Events, signal
acknowledgements, lease expiry, cancellation) happens once per instance or on the rare path.
Task names are derived from (instance uid, step path, attempt), so creating the same attempt
twice, for instance after a restart, is a harmless 409.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging

from plait._core.definition import TaskNode
from plait._core.events import DispatchTask
from plait._core.flowcontrol import key_value
from plait._kube.client import CORE_EVENTS, JSON, LEASES, AsyncKube, list_items
from plait._kube.models import (
    ADMITTED_AT_ANNOTATION,
    API_VERSION,
    CANCEL_ANNOTATION,
    CANCELLED_BY_ANNOTATION,
    DEFINITION_LABEL,
    DEFINITIONS,
    DISPATCHED_AT_ANNOTATION,
    FINALIZER,
    HELD_LABEL,
    HELD_MESSAGE_ANNOTATION,
    INSTANCE_UID_LABEL,
    INSTANCES,
    LIMITED_LABEL,
    QUEUE_LABEL,
    SIGNALS,
    TASKS,
    UNUSED_SINCE_ANNOTATION,
    WORKER_LABEL,
    WORKFLOW_LABEL,
    controlled_by,
    label_value,
    now_rfc3339,
)
from plait.errors import Conflict, NotFound

log = logging.getLogger(__name__)


def task_name(instance: str, uid: str, path: str, attempt: int) -> str:
    digest = hashlib.sha256(f"{uid}/{path}#{attempt}".encode()).hexdigest()[:10]
    return f"{instance[:240]}-{digest}"


def task_body(instance: JSON, workflow: str, definition_hash: str, dispatch: DispatchTask) -> JSON:
    meta = instance["metadata"]
    return {
        "apiVersion": API_VERSION,
        "kind": "WorkflowTask",
        "metadata": {
            "name": task_name(meta["name"], meta["uid"], dispatch.path, dispatch.attempt),
            "annotations": {DISPATCHED_AT_ANNOTATION: now_rfc3339()},
            "labels": {
                INSTANCE_UID_LABEL: meta["uid"],
                QUEUE_LABEL: label_value(dispatch.queue),
                DEFINITION_LABEL: definition_hash[:32],
                WORKFLOW_LABEL: label_value(workflow),
            },
            "ownerReferences": controlled_by("WorkflowInstance", meta),
        },
        "spec": {
            "instance": meta["name"],
            "instanceUID": meta["uid"],
            "workflow": workflow,
            "definitionHash": definition_hash,
            "step": dispatch.node_id,
            "path": dispatch.path,
            "task": dispatch.task,
            "attempt": dispatch.attempt,
            "queue": dispatch.queue,
            "input": dispatch.input,
            **({"timeoutSeconds": dispatch.timeout_secs} if dispatch.timeout_secs else {}),
            **({"priority": dispatch.priority} if dispatch.priority else {}),
        },
    }


def task_flow_control(node: TaskNode, value: object) -> JSON:
    """``spec.flowControl`` of an attempt of a limited step: its limits, keys read from its input.
    An input without the key's field counts in the group of no key."""
    control: JSON = {}
    if node.concurrency is not None:
        control["concurrency"] = node.concurrency.max_runs
        if (key := _key(value, node.concurrency.key)) is not None:
            control["concurrencyKey"] = key
    if node.rate_limit is not None:
        control["rateLimit"] = node.rate_limit.limit
        if (key := _key(value, node.rate_limit.key)) is not None:
            control["rateLimitKey"] = key
    return control


def _key(value: object, path: str | None) -> str | None:
    try:
        return key_value(value, path)
    except KeyError:
        return None


class Store:
    def __init__(self, kube: AsyncKube, identity: str) -> None:
        self.kube = kube
        self.identity = identity

    async def write_status(self, instance: JSON, status: JSON) -> JSON:
        """Merge ``status`` into the instance, only if nobody changed it since ``instance`` was read."""
        meta = instance["metadata"]
        return await self.kube.patch(
            INSTANCES,
            meta["name"],
            {"metadata": {"resourceVersion": meta["resourceVersion"]}, "status": status},
            meta["namespace"],
            subresource="status",
        )

    async def get_instance(self, namespace: str, name: str) -> JSON | None:
        try:
            return await self.kube.get(INSTANCES, name, namespace)
        except NotFound:
            return None

    async def list_instances(self, namespace: str, label_selector: str | None = None) -> list[JSON]:
        return list_items(await self.kube.list(INSTANCES, namespace, label_selector=label_selector))

    async def list_tasks(self, namespace: str, instance_uid: str) -> list[JSON]:
        """Every task of one instance (the rare path: a rerun reading the input a step had)."""
        listed = await self.kube.list(TASKS, namespace, label_selector=f"{INSTANCE_UID_LABEL}={instance_uid}")
        items: list[JSON] = listed.get("items") or []
        return items

    async def remove_annotations(self, instance: JSON, keys: list[str]) -> JSON:
        """Remove annotations, fenced by the version the instance was read at."""
        meta = instance["metadata"]
        patch = {"metadata": {"annotations": dict.fromkeys(keys), "resourceVersion": meta["resourceVersion"]}}
        return await self.kube.patch(INSTANCES, meta["name"], patch, meta["namespace"])

    async def list_limited_tasks(self, namespace: str) -> list[JSON]:
        return list_items(await self.kube.list(TASKS, namespace, label_selector=LIMITED_LABEL))

    async def add_label(self, instance: JSON, key: str, value: str) -> JSON:
        meta = instance["metadata"]
        patch = {"metadata": {"labels": {key: value}, "resourceVersion": meta["resourceVersion"]}}
        return await self.kube.patch(INSTANCES, meta["name"], patch, meta["namespace"])

    async def request_cancel(self, namespace: str, name: str, reason: str) -> None:
        """Ask an instance to cancel itself, as a user would (its own reconcile carries it out)."""
        annotations = {CANCEL_ANNOTATION: reason, CANCELLED_BY_ANNOTATION: "plait-operator"}
        with contextlib.suppress(NotFound):
            await self.kube.patch(INSTANCES, name, {"metadata": {"annotations": annotations}}, namespace)

    async def lift_hold(self, namespace: str, name: str) -> bool:
        """Let a held task through to the workers; ``False`` when it is gone."""
        metadata = {
            "labels": {HELD_LABEL: None},
            "annotations": {HELD_MESSAGE_ANNOTATION: None, ADMITTED_AT_ANNOTATION: now_rfc3339()},
        }
        try:
            await self.kube.patch(TASKS, name, {"metadata": metadata}, namespace)
        except NotFound:
            return False
        return True

    async def list_definitions(self, namespace: str, workflow: str | None = None) -> list[JSON]:
        selector = f"spec.workflow={workflow}" if workflow is not None else None
        return list_items(await self.kube.list(DEFINITIONS, namespace, field_selector=selector))

    async def list_worker_leases(self, namespace: str) -> list[JSON]:
        return list_items(await self.kube.list(LEASES, namespace, label_selector=WORKER_LABEL))

    async def mark_unused(self, namespace: str, name: str, since: str | None) -> None:
        """Set (or with ``None`` remove) a definition's ``plait.dev/unused-since``."""
        with contextlib.suppress(NotFound):
            patch = {"metadata": {"annotations": {UNUSED_SINCE_ANNOTATION: since}}}
            await self.kube.patch(DEFINITIONS, name, patch, namespace)

    async def delete_definition(self, namespace: str, name: str) -> None:
        with contextlib.suppress(NotFound):
            await self.kube.delete(DEFINITIONS, name, namespace)

    async def add_finalizer(self, instance: JSON) -> JSON:
        return await self._set_finalizers(instance, [*instance["metadata"].get("finalizers", []), FINALIZER])

    async def remove_finalizer(self, instance: JSON) -> None:
        finalizers = [f for f in instance["metadata"].get("finalizers", []) if f != FINALIZER]
        with contextlib.suppress(NotFound):
            await self._set_finalizers(instance, finalizers)

    async def _set_finalizers(self, instance: JSON, finalizers: list[str]) -> JSON:
        """Replace the instance's finalizers, fenced by the version it was read at."""
        meta = instance["metadata"]
        patch = {"metadata": {"finalizers": finalizers, "resourceVersion": meta["resourceVersion"]}}
        return await self.kube.patch(INSTANCES, meta["name"], patch, meta["namespace"])

    async def delete_tasks(self, namespace: str, instance_uid: str) -> None:
        """Delete an instance's tasks in one request (the garbage collector would take one request
        each, at the controller manager's client rate)."""
        await self.kube.delete_collection(TASKS, namespace, label_selector=f"{INSTANCE_UID_LABEL}={instance_uid}")

    async def delete_instance(self, namespace: str, name: str) -> None:
        with contextlib.suppress(NotFound):
            await self.kube.delete(INSTANCES, name, namespace, propagation="Background")

    async def create_task(self, namespace: str, body: JSON) -> bool:
        """Create a task; ``False`` when it already existed (a repeated dispatch)."""
        try:
            await self.kube.create(TASKS, body, namespace)
        except Conflict:
            return False
        return True

    async def set_task_phase(
        self, namespace: str, name: str, phase: str, message: str, resource_version: str | None
    ) -> bool:
        """Move a task to a final ``phase`` the operator decided (Cancelled, Lost); fenced when a version is given."""
        patch: JSON = {"status": {"phase": phase, "error": message, "finishedAt": now_rfc3339()}}
        if resource_version is not None:
            patch["metadata"] = {"resourceVersion": resource_version}
        try:
            await self.kube.patch(TASKS, name, patch, namespace, subresource="status")
        except (Conflict, NotFound):
            return False
        return True

    async def set_signal_status(self, namespace: str, name: str, phase: str, message: str) -> None:
        status = {"phase": phase, "message": message, "acceptedAt": now_rfc3339()}
        with contextlib.suppress(NotFound):
            await self.kube.patch(SIGNALS, name, {"status": status}, namespace, subresource="status")

    async def post_event(self, obj: JSON, reason: str, message: str, *, warning: bool = False) -> None:
        """A Kubernetes Event about ``obj``; best effort (an Event is never worth failing a step)."""
        meta = obj["metadata"]
        now = now_rfc3339()
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name'][:200]}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": obj.get("apiVersion", API_VERSION),
                "kind": obj.get("kind", "WorkflowInstance"),
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid"),
            },
            "reason": reason,
            "message": message[:1024],
            "type": "Warning" if warning else "Normal",
            "source": {"component": "plait-operator"},
            "reportingComponent": "plait.dev/operator",
            "reportingInstance": self.identity[:128],
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            await self.kube.create(CORE_EVENTS, event, meta["namespace"])
        except Exception as error:
            log.warning("could not post Event %s for %s/%s: %s", reason, meta["namespace"], meta["name"], error)
