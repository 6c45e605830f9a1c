"""Instance ids: which ones are valid (sayiir's rule), and the Kubernetes object name each gets.

sayiir accepts any non-empty id of at most 256 bytes (UTF-8); Kubernetes object names are DNS-1123
subdomains (lowercase letters, digits, ``-`` and ``.``, at most 253 characters, alphanumeric at
both ends). An id that is a valid name is its own name; any other id gets a name derived from it
deterministically: the id lowercased with every run of other characters turned into ``-``, cut
to fit, plus ``-`` and ten hex digits of the id's SHA-256, so ``Order_42`` becomes
``order-42-<hash>``. The original id is kept in the :data:`INSTANCE_ID_ANNOTATION` of the object,
and every lookup by id (client, CLI, operator) goes through :func:`instance_name`.

Used by the local API (validation), the client, the CLI and the operator.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from plait.errors import WorkflowError

MAX_ID_BYTES = 256
INSTANCE_ID_ANNOTATION = "plait.dev/instance-id"
_MAX_NAME = 253
_HASH_DIGITS = 10
# Room left for what the operator derives from an instance name (task names add 11 characters).
_MAX_DERIVED = 200
_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
_OTHER = re.compile(r"[^a-z0-9]+")


def check_instance_id(instance_id: str) -> None:
    """Raise sayiir's ``WorkflowError`` for an id sayiir refuses: empty, or over 256 bytes."""
    if not instance_id:
        raise WorkflowError("instance_id must not be empty")
    size = len(instance_id.encode())
    if size > MAX_ID_BYTES:
        raise WorkflowError(f"instance_id length {size} exceeds maximum {MAX_ID_BYTES} bytes")


def is_object_name(text: str) -> bool:
    """Whether ``text`` is a valid DNS-1123 subdomain, usable as an object name as it is."""
    return 0 < len(text) <= _MAX_NAME and all(_LABEL.match(label) for label in text.split("."))


def instance_name(instance_id: str) -> str:
    """The ``WorkflowInstance`` name of ``instance_id``: itself when valid, else readable plus a hash."""
    if is_object_name(instance_id):
        return instance_id
    digest = hashlib.sha256(instance_id.encode()).hexdigest()[:_HASH_DIGITS]
    readable = _OTHER.sub("-", instance_id.lower())[:_MAX_DERIVED].strip("-")
    return f"{readable}-{digest}" if readable else digest


def instance_id_of(body: dict[str, Any]) -> str:
    """The id an instance object stands for: its annotation, or its name when it has none."""
    meta = body.get("metadata") or {}
    return str((meta.get("annotations") or {}).get(INSTANCE_ID_ANNOTATION) or meta.get("name") or "")
