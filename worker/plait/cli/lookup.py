"""Reading plait objects for the CLI: an instance, its definition, tasks, signals and Events.

Each function is one or a few API calls through the sync :class:`~plait._kube.client.Kube`; a
missing instance becomes a :class:`~plait.cli.common.CommandError` that says how to list them.
"""

from __future__ import annotations

from typing import Any

from plait._kube.client import CORE_EVENTS, JSON, Kube, list_items
from plait._kube.models import (
    DEFINITIONS,
    INSTANCE_UID_LABEL,
    INSTANCES,
    SIGNALS,
    TASKS,
    definition_hash_of,
    revision,
)
from plait.cli.common import CommandError, program
from plait.errors import NotFound


def missing_instance(name: str, namespace: str) -> CommandError:
    return CommandError(
        f"no WorkflowInstance {name!r} in namespace {namespace!r}; list them with `{program()} list` "
        f"(or `{program()} list -A` for every namespace)"
    )


def get_instance(kube: Kube, namespace: str, name: str) -> JSON:
    try:
        return kube.get(INSTANCES, name, namespace)
    except NotFound:
        raise missing_instance(name, namespace) from None


def annotate(kube: Kube, namespace: str, name: str, key: str, value: str | None) -> JSON:
    """Set (or, with None, remove) one annotation of a WorkflowInstance, as ``kubectl annotate`` does."""
    try:
        return kube.patch(INSTANCES, name, {"metadata": {"annotations": {key: value}}}, namespace)
    except NotFound:
        raise missing_instance(name, namespace) from None


def definitions(kube: Kube, namespace: str | None, workflow: str | None = None) -> list[JSON]:
    """Published definitions, oldest first (the last one of a workflow is what new instances get)."""
    selector = f"spec.workflow={workflow}" if workflow else None
    items: list[JSON] = kube.list(DEFINITIONS, namespace, field_selector=selector).get("items") or []
    return sorted(items, key=lambda d: (d["metadata"].get("creationTimestamp", ""), d["metadata"]["name"]))


def definition_for(kube: Kube, namespace: str, instance: JSON) -> JSON | None:
    """The definition an instance runs (or, before it starts, the one it would get)."""
    spec = instance.get("spec") or {}
    pinned = definition_hash_of(instance)
    versions = definitions(kube, namespace, spec.get("workflow"))
    if pinned:
        return next((d for d in versions if (d.get("spec") or {}).get("hash") == pinned), None)
    return versions[-1] if versions else None


def tasks_of(kube: Kube, namespace: str, instance: JSON) -> list[JSON]:
    uid = instance["metadata"].get("uid")
    if not uid:
        return []
    return list_items(kube.list(TASKS, namespace, label_selector=f"{INSTANCE_UID_LABEL}={uid}"))


def signals_of(kube: Kube, namespace: str, name: str) -> list[JSON]:
    items: list[JSON] = kube.list(SIGNALS, namespace, field_selector=f"spec.instance={name}").get("items") or []
    return sorted(items, key=lambda s: (s["metadata"].get("creationTimestamp", ""), s["metadata"]["name"]))


def event_time(event: JSON) -> str:
    return str(
        event.get("eventTime")
        or event.get("lastTimestamp")
        or event.get("firstTimestamp")
        or event["metadata"].get("creationTimestamp")
        or ""
    )


def events_of(kube: Kube, namespace: str, instance: JSON) -> list[JSON]:
    """Kubernetes Events about the instance, its tasks and its signals, oldest first."""
    uid = instance["metadata"].get("uid")
    found: list[JSON] = kube.list(CORE_EVENTS, namespace, field_selector=f"involvedObject.uid={uid}").get("items") or []
    related: dict[str, Any] = {t["metadata"]["uid"]: t for t in tasks_of(kube, namespace, instance)}
    related.update({s["metadata"]["uid"]: s for s in signals_of(kube, namespace, instance["metadata"]["name"])})
    for kind in ("WorkflowTask", "WorkflowSignal"):
        others = kube.list(CORE_EVENTS, namespace, field_selector=f"involvedObject.kind={kind}").get("items") or []
        found += [e for e in others if (e.get("involvedObject") or {}).get("uid") in related]
    # Event times have one-second resolution here: the etcd revision orders Events within a second
    return sorted(found, key=lambda e: (event_time(e)[:19], revision(e)))
