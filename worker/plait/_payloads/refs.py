"""Payload references, without I/O: which values leave an object, what stands in for them, and
where they go back.

A value whose compact JSON is over the inline limit is written to the payload store and replaced
by a reference, ``{"$plait": "ref", "uri": ..., "size": ..., "sha256": ...}``: plain data that the
engine core passes through like any other value. :func:`externalize` decides what goes: the whole
value, or, for an object or array, its largest members alone when that is enough to bring it under
the limit (so ``{"_loop": "again", "value": <5 MB>}`` keeps its ``_loop`` field inline for the
engine, and a flow-control key field stays readable). Objects are content-addressed (their key
ends in the SHA-256 of their bytes): the same value written twice is one object, and the hash is
what a reader checks.

Used by :mod:`plait._payloads.store`, which does the uploads and downloads.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any, TypedDict, TypeGuard

#: The key that marks a reference; user values must not use it at the top of an object.
MARK = "$plait"
#: A member smaller than this (or than a sixteenth of the limit) is never offloaded on its own.
MIN_PART_BYTES = 1024


class Ref(TypedDict):
    """What stands in an object for an offloaded value (its wire form)."""

    uri: str  # s3://bucket/prefix/namespace/instance/sha256
    size: int  # bytes of the value's compact JSON
    sha256: str  # hex digest of those bytes


def encode(value: Any) -> bytes:
    """A value as it is stored and measured: compact JSON, UTF-8."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def is_ref(value: Any) -> TypeGuard[dict[str, Any]]:
    return isinstance(value, dict) and value.get(MARK) == "ref" and isinstance(value.get("uri"), str)


def make_ref(uri: str, data: bytes) -> dict[str, Any]:
    return {MARK: "ref", "uri": uri, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def externalize(value: Any, limit: int, uri_for: Callable[[str], str]) -> tuple[Any, dict[str, bytes]]:
    """``value`` with what must leave it replaced by references, and the bytes to store by URI.

    A value whose JSON is within ``limit`` bytes stays as it is. Otherwise the largest members of
    an object or array are offloaded one by one until the rest fits; when that is not enough (no
    member big enough), the whole value is offloaded. ``uri_for`` makes a URI from a hex SHA-256.
    """
    blobs: dict[str, bytes] = {}
    data = encode(value)
    if len(data) <= limit:
        return value, blobs

    def offload(part_data: bytes) -> dict[str, Any]:
        digest = hashlib.sha256(part_data).hexdigest()
        uri = uri_for(digest)
        blobs[uri] = part_data
        return make_ref(uri, part_data)

    if isinstance(value, dict | list) and value and not is_ref(value):
        members: list[tuple[Any, Any]] = list(value.items()) if isinstance(value, dict) else list(enumerate(value))
        encoded = {key: encode(member) for key, member in members}
        smallest = max(MIN_PART_BYTES, limit // 16)
        out: Any = dict(value) if isinstance(value, dict) else list(value)
        total = len(data)
        for key, _ in sorted(members, key=lambda item: len(encoded[item[0]]), reverse=True):
            if total <= limit or len(encoded[key]) < smallest:
                break
            ref = offload(encoded[key])
            total -= len(encoded[key]) - len(encode(ref))
            out[key] = ref
        if total <= limit:
            return out, blobs
        blobs.clear()
    return offload(data), blobs


def refs_in(value: Any) -> list[dict[str, Any]]:
    """Every reference in ``value`` (not inside offloaded values), in document order."""
    found: list[dict[str, Any]] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if is_ref(item):
            found.append(item)
        elif isinstance(item, dict):
            stack.extend(reversed(list(item.values())))
        elif isinstance(item, list):
            stack.extend(reversed(item))
    return found


def substitute(value: Any, values: dict[str, Any]) -> Any:
    """``value`` with each reference replaced by ``values[its uri]``."""
    if is_ref(value):
        return values[value["uri"]]
    if isinstance(value, dict):
        return {key: substitute(member, values) for key, member in value.items()}
    if isinstance(value, list):
        return [substitute(member, values) for member in value]
    return value


def check(ref: dict[str, Any], data: bytes) -> str | None:
    """Why ``data`` is not the value ``ref`` stands for, or ``None`` when it is."""
    digest = hashlib.sha256(data).hexdigest()
    if digest != ref.get("sha256"):
        return (
            f"its SHA-256 is {digest}, the reference says {ref.get('sha256')} ({len(data)} of {ref.get('size')} bytes)"
        )
    return None


def json_value(data: bytes) -> Any:
    return json.loads(data)
