"""Version retention: a ``WorkflowDefinition`` version that no instance uses and no live worker
serves is deleted once it has been unused for the retention period (``plait operator
--definition-retention``, default 7 days).

The period starts when a sweep first finds the version unused; that moment is kept on the object
(the annotation ``plait.dev/unused-since``), so an operator restart does not start it again, and
it is taken off when the version is used again. The newest version of each workflow is always
kept: an instance that pins no hash starts on it. A worker's Lease counts while it was renewed
within ``STALE_LEASE_SECONDS`` (a crashed worker's Lease is deleted by its peers after that long).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from plait._kube.client import JSON
from plait._kube.models import (
    SERVES_ANNOTATION,
    STALE_LEASE_SECONDS,
    UNUSED_SINCE_ANNOTATION,
    definition_hash_of,
    parse_rfc3339,
)


def versions_in_use(instances: list[JSON], leases: list[JSON], now: float) -> set[str]:
    """The definition hashes that instances run on (or pin) and that live workers serve."""
    used = set()
    for instance in instances:
        hash_ = definition_hash_of(instance)
        if hash_:
            used.add(hash_)
    for lease in leases:
        renewed = (lease.get("spec") or {}).get("renewTime")
        if not renewed or now - parse_rfc3339(renewed) > STALE_LEASE_SECONDS:
            continue
        try:
            serves = json.loads((lease["metadata"].get("annotations") or {}).get(SERVES_ANNOTATION) or "{}")
        except ValueError:
            continue
        used.update(serves.get("definitions") or ())
    return used


@dataclass
class Plan:
    """What one sweep of a namespace does, by WorkflowDefinition name."""

    mark: list[str] = field(default_factory=list)  # unused from now on: the period starts
    unmark: list[str] = field(default_factory=list)  # used again
    delete: list[str] = field(default_factory=list)  # unused for the whole period


def plan(definitions: list[JSON], used: set[str], now: float, retention_seconds: float) -> Plan:
    newest: dict[str, JSON] = {}
    for definition in definitions:
        workflow = definition["spec"]["workflow"]
        key = (definition["metadata"].get("creationTimestamp", ""), definition["metadata"]["name"])
        known = newest.get(workflow)
        if known is None or key > (known["metadata"].get("creationTimestamp", ""), known["metadata"]["name"]):
            newest[workflow] = definition
    kept = {id(definition) for definition in newest.values()}
    result = Plan()
    for definition in definitions:
        meta = definition["metadata"]
        since = _moment((meta.get("annotations") or {}).get(UNUSED_SINCE_ANNOTATION))
        if definition["spec"].get("hash") in used or id(definition) in kept:
            if since is not None:
                result.unmark.append(meta["name"])
        elif since is None:
            result.mark.append(meta["name"])
        elif now - since >= retention_seconds:
            result.delete.append(meta["name"])
    return result


def _moment(value: str | None) -> float | None:
    """The annotation's time; a malformed one (edited by hand) counts as absent: the period starts again."""
    try:
        return parse_rfc3339(value) if value else None
    except ValueError:
        return None
