"""One shared watch per kind and namespace, fanned out to every open page: the UI's only reads.

Pages and their live streams read the :class:`Hub`'s caches, never the API server. The first
page that needs a kind in a namespace starts a list-then-watch (:func:`list_and_watch`) as a
:class:`Feed`; later pages, streams and browser tabs share it, and it stops once it has had no
reader for ``idle_seconds``. A change wakes every stream subscribed to the feed (an
:class:`asyncio.Event` each), which then renders its page again. A feed that cannot list (a 403,
say) keeps its error, which the page shows, and keeps retrying with back-off.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from plait._kube.client import JSON, AsyncKube, Resource
from plait._kube.informer import list_and_watch
from plait._kube.models import without_managed_fields
from plait.errors import Forbidden

log = logging.getLogger(__name__)

#: How long the first reader of a new feed waits for its listing before the page renders anyway.
SYNC_WAIT_SECONDS = 10.0


@dataclass(eq=False)
class Feed:
    """The objects of one kind in one namespace (``None``: every namespace), kept current."""

    resource: Resource
    namespace: str | None
    objects: dict[tuple[str, str], JSON] = field(default_factory=dict)
    synced: asyncio.Event = field(default_factory=asyncio.Event)
    error: str | None = None
    forbidden: bool = False
    revision: int = 0  # bumped on every change: streams compare it to skip needless renders
    subscribers: set[asyncio.Event] = field(default_factory=set)
    last_used: float = field(default_factory=time.monotonic)
    task: asyncio.Task[None] | None = None

    def items(self, namespace: str | None = None) -> list[JSON]:
        """The objects, oldest first; only those of ``namespace`` when given."""
        chosen = [o for (ns, _), o in self.objects.items() if namespace is None or ns == namespace]
        return sorted(chosen, key=lambda o: (o["metadata"].get("creationTimestamp") or "", o["metadata"]["name"]))

    def get(self, namespace: str, name: str) -> JSON | None:
        return self.objects.get((namespace, name))

    def _changed(self) -> None:
        self.revision += 1
        for subscriber in self.subscribers:
            subscriber.set()

    def on_event(self, kind: str, body: JSON) -> None:
        meta = body.get("metadata") or {}
        key = (meta.get("namespace") or "", meta.get("name") or "")
        if kind == "DELETED":
            self.objects.pop(key, None)
        else:
            self.objects[key] = without_managed_fields(body)
        self.error, self.forbidden = None, False  # it works again
        self._changed()

    def on_listed(self, items: list[JSON]) -> None:
        self.objects = {
            (i["metadata"].get("namespace") or "", i["metadata"]["name"]): without_managed_fields(i) for i in items
        }
        self.error, self.forbidden = None, False
        self.synced.set()
        self._changed()

    def on_error(self, error: Exception) -> None:
        self.error, self.forbidden = str(error), isinstance(error, Forbidden)
        self.synced.set()  # a reader waiting for the listing gets the error instead
        self._changed()


class Hub:
    """Every :class:`Feed` of one UI process, started on demand and stopped when unused."""

    def __init__(self, kube: AsyncKube, *, idle_seconds: float = 300.0) -> None:
        self.kube = kube
        self.idle_seconds = idle_seconds
        self._feeds: dict[tuple[Resource, str | None], Feed] = {}
        self._janitor: asyncio.Task[None] | None = None

    async def feed(self, resource: Resource, namespace: str | None) -> Feed:
        """The feed of ``resource`` in ``namespace``, listed (or failed) before it returns.

        A namespace's reads are served by the every-namespace feed when that one runs and works.
        """
        if namespace is not None:
            wide = self._feeds.get((resource, None))
            if wide is not None and wide.synced.is_set() and wide.error is None:
                wide.last_used = time.monotonic()
                return wide
        feed = self._feeds.get((resource, namespace))
        if feed is None:
            feed = self._start(resource, namespace)
        feed.last_used = time.monotonic()
        if not feed.synced.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(feed.synced.wait(), SYNC_WAIT_SECONDS)
        return feed

    def _start(self, resource: Resource, namespace: str | None) -> Feed:
        feed = Feed(resource, namespace)
        feed.task = asyncio.ensure_future(
            list_and_watch(
                self.kube, resource, namespace, feed.on_event, on_listed=feed.on_listed, on_error=feed.on_error
            )
        )
        self._feeds[(resource, namespace)] = feed
        if self._janitor is None:
            self._janitor = asyncio.ensure_future(self._sweep())
        log.info("watching %s in %s", resource.plural, namespace or "every namespace")
        return feed

    def subscribe(self, feeds: Iterable[Feed], wake: asyncio.Event) -> None:
        for feed in feeds:
            feed.subscribers.add(wake)

    def unsubscribe(self, feeds: Iterable[Feed], wake: asyncio.Event) -> None:
        for feed in feeds:
            feed.subscribers.discard(wake)
            feed.last_used = time.monotonic()

    def feeds(self) -> list[Feed]:
        return list(self._feeds.values())

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(min(30.0, self.idle_seconds))
            now = time.monotonic()
            for key, feed in list(self._feeds.items()):
                if not feed.subscribers and now - feed.last_used > self.idle_seconds:
                    del self._feeds[key]
                    if feed.task is not None:
                        feed.task.cancel()
                    log.info("stopped watching %s in %s (unused)", key[0].plural, key[1] or "every namespace")

    async def close(self) -> None:
        tasks = [f.task for f in self._feeds.values() if f.task is not None]
        if self._janitor is not None:
            tasks.append(self._janitor)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._feeds.clear()
