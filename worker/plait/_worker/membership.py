"""Who else runs these workflows: one ``coordination.k8s.io`` Lease per worker process.

Each worker keeps a Lease of its own, renewed every third of its duration and annotated with the
definitions and queues it serves, and watches everybody's. A peer counts as alive while this
process sees its Lease change within the Lease's duration (on its own monotonic clock, as client-go
judges leases, never comparing another machine's timestamps); a worker that stops deletes its
Lease at once, and one left by a crashed worker is deleted by a peer after ten minutes unchanged.

The worker ranks each task among the live workers that serve it, and runs a task before claiming
it only while this worker is :attr:`Membership.settled`: its own Lease is fresh and has been
visible long enough for every peer to count it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from plait._kube.client import JSON, LEASES, AsyncKube
from plait._kube.informer import list_and_watch
from plait._kube.models import (
    SERVES_ANNOTATION,
    STALE_LEASE_SECONDS,
    WORKER_LABEL,
    now_rfc3339,
    object_name,
    owned_by_this_pod,
)
from plait.errors import ClusterError, NotFound

log = logging.getLogger(__name__)

# Longer than a watch event takes to reach every peer: until then a peer may not count this worker.
JOIN_GRACE_SECONDS = 2.0


@dataclass
class _Peer:
    lease: str
    definitions: frozenset[str]
    queues: frozenset[str]
    duration: float
    resource_version: str
    changed: float  # monotonic time this process saw the Lease change last


class Membership:
    def __init__(
        self,
        kube: AsyncKube,
        namespace: str,
        identity: str,
        definitions: Iterable[str],
        queues: Iterable[str],
        lease_seconds: float,
    ) -> None:
        self.kube = kube
        self.namespace = namespace
        self.identity = identity
        self.name = object_name(f"plait-worker-{identity}", 253)
        self.duration = lease_seconds
        self.serves = {"definitions": sorted(definitions), "queues": sorted(queues)}
        self.peers: dict[str, _Peer] = {}
        self.listed = asyncio.Event()  # every Lease has been seen once
        self._joined: float | None = None  # monotonic time of the renewal that (re)started the lease
        self._renewed = float("-inf")  # monotonic time the last successful renewal was sent
        self._background: set[asyncio.Task[Any]] = set()

    def serving(self, definition: str, queue: str) -> list[str]:
        """The other live workers that run tasks of this definition and queue."""
        now = time.monotonic()
        return [
            identity
            for identity, peer in self.peers.items()
            if now - peer.changed < peer.duration and definition in peer.definitions and queue in peer.queues
        ]

    @property
    def settled(self) -> bool:
        """Every live peer counts this worker: its Lease is fresh and was seen long enough ago."""
        now = time.monotonic()
        return (
            self.listed.is_set()
            and self._joined is not None
            and now - self._joined >= JOIN_GRACE_SECONDS
            and now - self._renewed < self.duration
        )

    async def run(self) -> None:
        """Keep this worker's Lease and follow everybody's; runs until cancelled."""
        watcher = asyncio.ensure_future(
            list_and_watch(
                self.kube, LEASES, self.namespace, self._observe, label_selector=WORKER_LABEL, on_synced=self.listed.set
            )
        )
        try:
            while True:
                await self._renew()
                self._forget_stale()
                await asyncio.sleep(self.duration / 3)
        finally:
            watcher.cancel()

    async def leave(self) -> None:
        """Delete this worker's Lease so that peers stop counting it at once (at shutdown)."""
        self._joined = None
        try:
            await self.kube.delete(LEASES, self.name, self.namespace)
        except NotFound:
            pass
        except ClusterError as error:
            log.warning("could not delete lease %s (%s); peers will count it until it expires", self.name, error)

    def _observe(self, event_type: str, body: JSON) -> None:
        spec = body.get("spec") or {}
        identity = spec.get("holderIdentity")
        if not identity or identity == self.identity:
            return
        if event_type == "DELETED":
            self.peers.pop(identity, None)
            return
        try:
            serves = json.loads((body["metadata"].get("annotations") or {}).get(SERVES_ANNOTATION) or "{}")
        except ValueError:
            serves = {}
        version = body["metadata"]["resourceVersion"]
        known = self.peers.get(identity)
        self.peers[identity] = _Peer(
            lease=body["metadata"]["name"],
            definitions=frozenset(serves.get("definitions") or ()),
            queues=frozenset(serves.get("queues") or ()),
            duration=float(spec.get("leaseDurationSeconds") or self.duration),
            resource_version=version,
            changed=known.changed if known is not None and known.resource_version == version else time.monotonic(),
        )

    def _body(self) -> JSON:
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": self.name,
                "labels": {WORKER_LABEL: "true"},
                "ownerReferences": owned_by_this_pod(self.namespace),
                "annotations": {SERVES_ANNOTATION: json.dumps(self.serves, separators=(",", ":"))},
            },
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": max(1, round(self.duration)),
                "renewTime": now_rfc3339(),
            },
        }

    async def _renew(self) -> None:
        sent = time.monotonic()
        created = False
        try:
            try:
                await self.kube.patch(LEASES, self.name, {"spec": {"renewTime": now_rfc3339()}}, self.namespace)
            except NotFound:
                await self.kube.create(LEASES, self._body(), self.namespace)
                created = True
        except ClusterError as error:
            log.warning("could not renew lease %s: %s", self.name, error)
            return
        if created or self._joined is None or sent - self._renewed >= self.duration:
            self._joined = sent  # new, or peers may have stopped counting this worker: join again
        self._renewed = sent

    def _forget_stale(self) -> None:
        now = time.monotonic()
        for identity, peer in list(self.peers.items()):
            if now - peer.changed > STALE_LEASE_SECONDS:
                del self.peers[identity]
                task = asyncio.ensure_future(self._delete_stale(identity, peer.lease))
                self._background.add(task)
                task.add_done_callback(self._background.discard)

    async def _delete_stale(self, identity: str, lease: str) -> None:
        try:
            await self.kube.delete(LEASES, lease, self.namespace)
            log.info("deleted lease %s of worker %s, unrenewed for %.0fs", lease, identity, STALE_LEASE_SECONDS)
        except ClusterError:
            pass
