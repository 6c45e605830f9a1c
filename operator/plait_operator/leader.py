"""One active operator: leader election on a ``coordination.k8s.io`` Lease.

A standby replica waits until the holder stops renewing. Expiry is judged the way client-go does
it: by how long this process has seen the Lease unchanged on its own monotonic clock, never by
comparing timestamps written by another machine.
"""

from __future__ import annotations

import asyncio
import logging
import time

from plait._kube.client import JSON, LEASES, AsyncKube
from plait._kube.models import now_rfc3339, owned_by_this_pod
from plait.errors import ClusterError, Conflict, NotFound

log = logging.getLogger(__name__)


class LeaderElection:
    def __init__(self, kube: AsyncKube, namespace: str, name: str, identity: str, duration: float) -> None:
        self.kube = kube
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.duration = duration
        self._observed: tuple[str, float] | None = None  # (resourceVersion, first seen at)

    def _spec(self, transitions: int, acquired: bool) -> JSON:
        now = now_rfc3339()
        spec: JSON = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, int(self.duration)),
            "renewTime": now,
            "leaseTransitions": transitions,
        }
        if acquired:
            spec["acquireTime"] = now
        return spec

    async def _try_acquire(self) -> bool:
        try:
            lease = await self.kube.get(LEASES, self.name, self.namespace)
        except NotFound:
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "ownerReferences": owned_by_this_pod(self.namespace)},
                "spec": self._spec(0, acquired=True),
            }
            try:
                await self.kube.create(LEASES, body, self.namespace)
            except Conflict:
                return False
            return True
        spec = lease.get("spec") or {}
        rv = lease["metadata"]["resourceVersion"]
        holder = spec.get("holderIdentity")
        if holder and holder != self.identity:
            if self._observed is None or self._observed[0] != rv:
                self._observed = (rv, time.monotonic())
                return False
            if time.monotonic() - self._observed[1] < float(spec.get("leaseDurationSeconds") or self.duration):
                return False
            log.info("leader lease %s/%s held by %s expired; taking over", self.namespace, self.name, holder)
        transitions = int(spec.get("leaseTransitions") or 0) + (0 if holder == self.identity else 1)
        metadata = {"resourceVersion": rv, "ownerReferences": owned_by_this_pod(self.namespace)}
        patch = {"metadata": metadata, "spec": self._spec(transitions, acquired=holder != self.identity)}
        try:
            await self.kube.patch(LEASES, self.name, patch, self.namespace)
        except Conflict:
            return False
        return True

    async def acquire(self) -> None:
        """Wait until this process leads."""
        while True:
            try:
                if await self._try_acquire():
                    log.info("leading as %s (lease %s/%s)", self.identity, self.namespace, self.name)
                    return
            except ClusterError as error:
                log.warning("leader election: %s", error)
            await asyncio.sleep(self.duration / 3)

    async def hold(self) -> None:
        """Renew the lease; returns when leadership is lost (the caller then stops)."""
        last_renewal = time.monotonic()
        while True:
            await asyncio.sleep(self.duration / 3)
            try:
                lease = await self.kube.get(LEASES, self.name, self.namespace)
                if (lease.get("spec") or {}).get("holderIdentity") != self.identity:
                    log.error("leadership lost to %s", (lease.get("spec") or {}).get("holderIdentity"))
                    return
                patch = {
                    "metadata": {"resourceVersion": lease["metadata"]["resourceVersion"]},
                    "spec": {"renewTime": now_rfc3339()},
                }
                await self.kube.patch(LEASES, self.name, patch, self.namespace)
                last_renewal = time.monotonic()
            except ClusterError as error:
                log.warning("could not renew the leader lease: %s", error)
                if time.monotonic() - last_renewal > self.duration:
                    log.error("leader lease not renewed for %.0fs; stepping down", self.duration)
                    return
