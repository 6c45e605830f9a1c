"""List, then watch, for as long as it runs: how the workers and the operator follow ``WorkflowTask``s.

A watch ends now and then (its timeout, a restarting API server, a dropped connection). The loop
resumes from the last resourceVersion it saw (bookmarks included), so a quiet end costs one
request; only when that version is too old (410 Gone) does it list everything again. Errors back
off from half a second to ten.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from plait._backoff import Backoff
from plait._kube.client import JSON, AsyncKube, Resource
from plait.errors import ClusterError

log = logging.getLogger(__name__)


async def list_and_watch(
    kube: AsyncKube,
    resource: Resource,
    namespace: str | None,
    on_event: Callable[[str, JSON], None],
    *,
    label_selector: str | None = None,
    on_synced: Callable[[], None] | None = None,
    on_listed: Callable[[list[JSON]], None] | None = None,
    on_error: Callable[[Exception], None] | None = None,
) -> None:
    """Call ``on_event(type, object)`` for every object listed (as ``ADDED``) and every change
    after; ``on_synced`` once each listing has been delivered. Runs until cancelled.

    With ``on_listed``, each listing is handed over whole instead (a cache replaces what it held,
    so objects deleted while the watch was down go too); ``on_error`` hears every failure before
    the back-off (a cache can show it, e.g. a 403)."""
    where = f"{resource.plural} in {namespace or 'every namespace'}"
    version: str | None = None
    backoff = Backoff(0.5, 10.0)
    while True:
        try:
            if version is None:
                listing = await kube.list(resource, namespace, label_selector=label_selector)
                if on_listed is not None:
                    on_listed(listing["items"])
                else:
                    for item in listing["items"]:
                        on_event("ADDED", item)
                version = listing["metadata"]["resourceVersion"]
                if on_synced is not None:
                    on_synced()
            heard = False
            async for event in kube.watch(resource, namespace, resource_version=version, label_selector=label_selector):
                heard = True
                version = event.object.get("metadata", {}).get("resourceVersion") or version
                if event.type != "BOOKMARK":
                    on_event(event.type, event.object)
            if heard:
                backoff.reset()
            else:  # ended without a word (not even a bookmark): do not reconnect in a tight loop
                await backoff.wait()
        except asyncio.CancelledError:
            raise
        except ClusterError as error:
            if error.status == 410:  # too old to resume from: list again
                version = None
                continue
            if on_error is not None:
                on_error(error)
            delay = backoff.next()
            log.warning("watch of %s failed (%s); again in %.1fs", where, error, delay)
            await backoff.wait(delay)
        except Exception as error:  # a connection reset, an API server restarting, ...
            if on_error is not None:
                on_error(error)
            delay = backoff.next()
            log.warning("watch of %s interrupted (%s: %s); again in %.1fs", where, type(error).__name__, error, delay)
            await backoff.wait(delay)
