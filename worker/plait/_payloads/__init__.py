"""Payloads too large for a Kubernetes object, kept in an S3-compatible store.

:mod:`~plait._payloads.refs` decides what is offloaded and what stands in for it (pure);
:mod:`~plait._payloads.store` talks to the store. The worker, the operator, the client and the
CLI use :func:`resolve` to read values and :meth:`PayloadStore.offload` to write them.
"""

from __future__ import annotations

from typing import Any

from plait._payloads import refs
from plait._payloads.store import DEFAULT_INLINE_BYTES, PayloadStore, StoreSettings
from plait.errors import PayloadError

__all__ = ["DEFAULT_INLINE_BYTES", "NOT_CONFIGURED_HINT", "PayloadStore", "StoreSettings", "resolve"]

#: What to do when a value is too large and no store is configured (said by every PayloadTooLarge).
NOT_CONFIGURED_HINT = (
    "configure a payload store (--payload-store s3://BUCKET/PREFIX or PLAIT_PAYLOAD_STORE, on the operator, "
    "the workers and the client; chart value payloads.store) so that large values are offloaded, "
    "or pass a reference to the data instead; see docs/payloads.md"
)


async def resolve(store: PayloadStore | None, value: Any, namespace: str) -> Any:
    """``value`` as its readers see it: references replaced by what they stand for."""
    if store is None:
        if refs.refs_in(value):
            raise PayloadError(
                "PayloadStoreNotConfigured",
                f"the value holds a reference to {refs.refs_in(value)[0]['uri']}, and no payload store is "
                "configured here (--payload-store or PLAIT_PAYLOAD_STORE)",
            )
        return value
    return await store.resolve(value, namespace)
