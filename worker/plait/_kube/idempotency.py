"""Idempotency keys of instances (``spec.idempotencyKey``): how the client, the CLI and the operator
find the instance a key was first submitted with.

Instances with a key carry the label ``plait.dev/idempotency-key`` (a digest of the key: label
values are short and plain), so the earlier ones are one list request away. Of the instances with
the same key created within the window, the first is the one that is not itself a duplicate
(``status.duplicateOf``), oldest first. Pure: callers list and pass the objects in.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from plait._kube.client import JSON
from plait._kube.models import IDEMPOTENCY_LABEL, parse_rfc3339

#: How long a key keeps a second submit from running (the operator's ``--idempotency-window``).
DEFAULT_WINDOW_SECONDS = 24 * 3600.0


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:40]


def selector(key: str) -> str:
    return f"{IDEMPOTENCY_LABEL}={digest(key)}"


def first_with_key(
    instances: Iterable[JSON], key: str, now: float, window: float = DEFAULT_WINDOW_SECONDS, *, decided: bool = False
) -> JSON | None:
    """The oldest instance with ``key`` created within ``window`` of ``now`` that is no duplicate.
    With ``decided``, only ones the operator already let run (they have a status)."""
    found = []
    for body in instances:
        meta, status = body["metadata"], body.get("status") or {}
        created = meta.get("creationTimestamp")
        if (body.get("spec") or {}).get("idempotencyKey") != key or status.get("duplicateOf") or not created:
            continue
        if now - parse_rfc3339(created) > window or (decided and not status.get("phase")):
            continue
        found.append(body)
    return min(found, key=lambda b: (b["metadata"]["creationTimestamp"], b["metadata"]["name"]), default=None)
