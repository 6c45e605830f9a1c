"""Install CustomResourceDefinitions and wait until the API server serves them.

Used by ``plait dev up``, the operator's ``--install-crds`` and the test fixtures.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from plait._kube.client import CRDS, JSON, Kube, Resource
from plait.errors import ClusterError

FIELD_MANAGER = "plait"


def established(crd: JSON) -> bool:
    conditions = (crd.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions)


def apply_crds(kube: Kube, crds: Iterable[JSON], *, timeout: float = 30.0) -> None:
    """Server-side apply each CRD, then wait until every one is ``Established``."""
    names = []
    for crd in crds:
        name = crd["metadata"]["name"]
        kube.patch(CRDS, name, crd, patch_type="apply", field_manager=FIELD_MANAGER, force=True)
        names.append(name)
    deadline = time.monotonic() + timeout
    pending = set(names)
    while pending:
        for name in sorted(pending):
            crd = kube.get(CRDS, name)
            if established(crd) and _served(kube, crd):
                pending.discard(name)
        if not pending:
            return
        if time.monotonic() > deadline:
            raise ClusterError(f"CRDs not Established after {timeout:.0f}s: {', '.join(sorted(pending))}")
        time.sleep(0.05)


def _served(kube: Kube, crd: JSON) -> bool:
    """Established is not enough: the resource must be in discovery (kopf finds resources there)
    and its storage ready (it answers 429 while initializing)."""
    spec = crd["spec"]
    resource = Resource(spec["group"], spec["versions"][0]["name"], spec["names"]["plural"], spec["names"]["kind"])
    discovery = kube.raw("GET", f"/apis/{resource.group}/{resource.version}")
    if discovery.status_code != 200 or resource.plural not in {
        r["name"] for r in discovery.json().get("resources", [])
    }:
        return False
    try:
        kube.list(resource, limit=1)
    except ClusterError:
        return False
    return True
