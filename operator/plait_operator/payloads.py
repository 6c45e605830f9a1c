"""What the operator does with the payload store: keep its checkpoints small, read an input it
must validate, delete the objects of deleted instances and sweep up orphans.

Before each checkpoint write the actor calls :func:`offload_snapshot`: every value the snapshot
holds (:func:`plait._core.snapshot.map_values`) that is over the inline limit goes to the store,
and when the checkpoint would still be over :data:`CHECKPOINT_BUDGET` (a fork of hundreds of
branches, each holding a copy of its input), every value over :data:`SMALL_VALUE_BYTES` goes too
(content-addressed: the copies are one object). References into another instance's objects (a
fork's, copied from its source) are written again under this instance, so that deleting the
source does not take them away. The task created for a dispatch is built from the same
snapshot, so its ``spec.input`` holds the same references.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from plait._core.snapshot import Snapshot, map_values
from plait._kube.client import JSON
from plait._payloads import PayloadStore, refs
from plait.errors import PayloadError

log = logging.getLogger(__name__)

#: Over this many bytes of JSON, a checkpoint's values over SMALL_VALUE_BYTES are offloaded too.
CHECKPOINT_BUDGET = 128 * 1024
SMALL_VALUE_BYTES = 1024


async def offload_snapshot(store: PayloadStore, snapshot: Snapshot, namespace: str, instance: str) -> None:
    """Swap the snapshot's large values (and references to other instances' objects) for
    references to objects of this instance, in place; stored before this returns."""
    encoded = refs.encode(snapshot.to_data())
    own = store.uri_for(namespace, instance)("")
    foreign = refs.MARK.encode() in encoded and any(
        not ref["uri"].startswith(own) for ref in refs.refs_in(snapshot.to_data())
    )
    if len(encoded) <= store.inline_bytes and not foreign:
        return  # nothing in it can be over the limit: the hot path of small values pays one encoding
    rehomed: dict[str, Any] = {}
    if foreign:
        for ref in refs.refs_in(snapshot.to_data()):
            if not ref["uri"].startswith(own) and ref["uri"] not in rehomed:
                value = await store.resolve(ref, namespace)
                rehomed[ref["uri"]] = await store.offload(value, namespace, instance)
    blobs: dict[str, bytes] = {}
    uri_for = store.uri_for(namespace, instance)

    def shrink(limit: int) -> Callable[[Any], Any]:
        def one(value: Any) -> Any:
            if rehomed and refs.refs_in(value):
                value = refs.substitute(value, {**{r["uri"]: r for r in refs.refs_in(value)}, **rehomed})
            out, stored = refs.externalize(value, limit, uri_for)
            blobs.update(stored)
            return out

        return one

    map_values(snapshot, shrink(store.inline_bytes))
    if len(refs.encode(snapshot.to_data())) > CHECKPOINT_BUDGET:
        map_values(snapshot, shrink(SMALL_VALUE_BYTES))
    await store.store_blobs(blobs, namespace)


async def input_to_check(store: PayloadStore | None, value: Any, namespace: str) -> Any:
    """An instance's ``spec.input`` as its schema sees it (references read from the store)."""
    if store is None or not refs.refs_in(value):
        if refs.refs_in(value):
            raise PayloadError(
                "PayloadStoreNotConfigured",
                "spec.input holds a payload reference, and the operator has no --payload-store to read it from",
            )
        return value
    return await store.resolve(value, namespace)


async def delete_objects(store: PayloadStore, namespace: str, instance: str, before: float) -> None:
    """Delete a deleted instance's objects (those written before ``before``; the instance's name may
    already belong to a new one whose client stored its input since)."""
    try:
        deleted = await store.delete_instance(namespace, instance, before=before)
    except PayloadError as error:
        log.warning("could not delete the payloads of instance=%s/%s (%s); the sweep will", namespace, instance, error)
        return
    if deleted:
        log.info("deleted %d payload object(s) of instance=%s/%s", deleted, namespace, instance)


async def sweep(
    store: PayloadStore,
    namespaces: tuple[str, ...],
    list_instances: Callable[[str], Awaitable[list[JSON]]],
    grace: float,
    now: float | None = None,
) -> int:
    """Delete the objects of instances that do not exist, written more than ``grace`` seconds ago
    (a crash between an upload and the write of its reference, a deletion the operator missed).
    Only in the namespaces this operator watches (globs allowed; empty: all). Returns how many
    instances' objects went."""
    now = time.time() if now is None else now
    owners = await store.instances()  # before the instances are listed: a new one is seen as existing
    by_namespace: dict[str, list[tuple[str, float]]] = {}
    for (namespace, instance), newest in owners.items():
        if not namespaces or any(fnmatch.fnmatchcase(namespace, glob) for glob in namespaces):
            by_namespace.setdefault(namespace, []).append((instance, newest))
    swept = 0
    for namespace, found in by_namespace.items():
        existing = {item["metadata"]["name"] for item in await list_instances(namespace)}
        for instance, newest in found:
            if instance in existing or now - newest < grace:
                continue
            deleted = await store.delete_instance(namespace, instance, before=now - grace)
            if deleted:
                swept += 1
                log.info("swept %d orphaned payload object(s) of instance=%s/%s", deleted, namespace, instance)
    return swept


async def sweep_forever(
    store: PayloadStore,
    namespaces: tuple[str, ...],
    list_instances: Callable[[str], Awaitable[list[JSON]]],
    grace: float,
) -> None:
    """:func:`sweep` a quarter of the grace period apart (at least a second, at most ten minutes)."""
    while True:
        await asyncio.sleep(max(1.0, min(600.0, grace / 4)))
        try:
            await sweep(store, namespaces, list_instances, grace)
        except Exception as error:  # the store or the API server is down: the next sweep tries again
            log.warning("payload sweep failed: %s", error)
