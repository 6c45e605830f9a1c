"""The operator's tunables, set from ``plait operator`` options."""

from __future__ import annotations

from dataclasses import dataclass

from plait._kube.idempotency import DEFAULT_WINDOW_SECONDS
from plait._kube.models import DEFAULT_MAX_PAYLOAD_BYTES
from plait._payloads import PayloadStore


@dataclass(frozen=True)
class OperatorSettings:
    namespaces: tuple[str, ...] = ()  # empty: every namespace
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
    default_ttl_seconds: int | None = None  # for instances without spec.ttlSecondsAfterFinished
    lease_grace_seconds: float = 2.0  # beyond a task's lease before it counts as lost
    orphan_grace_seconds: float = 5.0  # a signal for a missing instance waits this long for it
    max_concurrent_reconciles: int = 64
    flow_control_audit_seconds: float = 30.0  # while something waits, re-list to free slots of the vanished
    definition_retention_seconds: float = 7 * 24 * 3600.0  # an unused, unserved version is deleted after this
    idempotency_window_seconds: float = DEFAULT_WINDOW_SECONDS  # a spec.idempotencyKey dedups for this long
    leader_election: bool = True
    leader_namespace: str = "default"
    leader_lease_name: str = "plait-operator"
    leader_lease_seconds: float = 15.0
    metrics_port: int | None = 8080
    identity: str = "plait-operator"
    payloads: PayloadStore | None = None  # large values offloaded there; None: inline up to max_payload_bytes
    payload_orphan_grace_seconds: float = 3600.0  # objects of no instance, older than this, are swept
