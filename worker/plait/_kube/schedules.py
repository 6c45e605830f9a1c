"""The instances a ``WorkflowSchedule`` starts: their names, labels, annotations and owner.

Shared by the operator (a run per tick) and ``plait schedule trigger|backfill``. A tick's run is
named after the schedule and the tick's time, so whoever creates it a second time (the operator
after a crash, a repeated backfill) gets a harmless 409 instead of a second run.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from plait._kube.client import JSON
from plait._kube.models import (
    API_VERSION,
    SCHEDULE_LABEL,
    SCHEDULED_TIME_ANNOTATION,
    controlled_by,
    label_value,
    parse_rfc3339,
    rfc3339,
)

_STAMP = "%Y%m%d-%H%M%S"
MAX_NAME = 253


def run_name(schedule: str, tick: float) -> str:
    """``nightly-etl-20261202-010000``: the run of ``schedule`` for the tick at ``tick`` (UTC)."""
    stamp = datetime.fromtimestamp(tick, UTC).strftime(_STAMP)
    return f"{schedule[: MAX_NAME - len(stamp) - 1]}-{stamp}"


def run_body(schedule: JSON, tick: float | None, *, generate_name: str | None = None) -> JSON:
    """The WorkflowInstance a schedule starts for ``tick`` (``None``: by hand, named by the API
    server from ``generate_name``)."""
    meta, spec = schedule["metadata"], schedule.get("spec") or {}
    template: dict[str, Any] = spec.get("instanceTemplate") or {}
    metadata: JSON = {
        "labels": {**(template.get("labels") or {}), SCHEDULE_LABEL: label_value(meta["name"])},
        "annotations": dict(template.get("annotations") or {}),
        "ownerReferences": controlled_by("WorkflowSchedule", meta),
    }
    if tick is not None:
        metadata["name"] = run_name(meta["name"], tick)
        metadata["annotations"][SCHEDULED_TIME_ANNOTATION] = rfc3339(tick)
    else:
        metadata["generateName"] = generate_name or f"{meta['name'][:200]}-manual-"
    instance_spec: JSON = {"workflow": spec["workflow"], "input": spec.get("input")}
    if spec.get("definitionHash"):
        instance_spec["definitionHash"] = spec["definitionHash"]
    if template.get("ttlSecondsAfterFinished") is not None:
        instance_spec["ttlSecondsAfterFinished"] = template["ttlSecondsAfterFinished"]
    return {"apiVersion": API_VERSION, "kind": "WorkflowInstance", "metadata": metadata, "spec": instance_spec}


def owned_by(instance: JSON, schedule_uid: str) -> bool:
    return any(ref.get("uid") == schedule_uid for ref in instance["metadata"].get("ownerReferences") or [])


def runs_selector(schedule: str) -> str:
    return f"{SCHEDULE_LABEL}={label_value(schedule)}"


def tick_of(instance: JSON) -> float | None:
    """The tick an instance ran for; ``None`` for one started by hand."""
    value = (instance["metadata"].get("annotations") or {}).get(SCHEDULED_TIME_ANNOTATION)
    return parse_rfc3339(value) if value else None
