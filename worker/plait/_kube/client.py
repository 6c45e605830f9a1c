"""A small Kubernetes REST client: sync (:class:`Kube`, httpx) and async (:class:`AsyncKube`, aiohttp).

plait talks to a handful of resources with a handful of verbs, on a hot path that must stay
cheap: get, list, create, merge/JSON/apply patches (with ``resourceVersion`` preconditions for
compare-and-swap), delete and watch. Both clients share how requests are built and how errors
map onto :mod:`plait.errors`; they differ only in how they send.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncGenerator, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

import aiohttp
import httpx

from plait._kube.connection import Connection
from plait.errors import ClusterError, Conflict, Forbidden, Invalid, NotFound

JSON = dict[str, Any]
PatchType = Literal["merge", "json", "apply", "strategic"]
_PATCH_CONTENT_TYPES = {
    "merge": "application/merge-patch+json",
    "json": "application/json-patch+json",
    "apply": "application/apply-patch+yaml",
    "strategic": "application/strategic-merge-patch+json",
}


@dataclass(frozen=True)
class Resource:
    """Where a kind lives in the API: ``group``/``version``/``plural``."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True

    def path(self, namespace: str | None = None, name: str | None = None, subresource: str | None = None) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        if name:
            base += f"/{name}"
            if subresource:
                base += f"/{subresource}"
        return base


NAMESPACES = Resource("", "v1", "namespaces", "Namespace", namespaced=False)
CORE_EVENTS = Resource("", "v1", "events", "Event")
LEASES = Resource("coordination.k8s.io", "v1", "leases", "Lease")
CRDS = Resource("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", namespaced=False)


@dataclass(frozen=True)
class WatchEvent:
    type: str  # ADDED, MODIFIED, DELETED, BOOKMARK
    object: JSON


def _error_of(method: str, path: str, code: int, phrase: str, payload: bytes) -> ClusterError:
    try:
        status: JSON = json.loads(payload)
    except ValueError:
        status = {}
    message = status.get("message") or payload[:500].decode(errors="replace") or phrase
    cls = {404: NotFound, 409: Conflict, 403: Forbidden, 422: Invalid}.get(code, ClusterError)
    return cls(f"{method} {path}: {message}", status=code, reason=status.get("reason"))


def _error(response: httpx.Response) -> ClusterError:
    return _error_of(
        response.request.method,
        response.request.url.path,
        response.status_code,
        response.reason_phrase,
        response.content,
    )


def list_items(listed: JSON) -> list[JSON]:
    """The objects of a list response."""
    items: list[JSON] = listed.get("items") or []
    return items


def encode(body: Any) -> bytes:
    """A request body as sent: compact JSON (also what a payload costs in an object)."""
    return json.dumps(body, separators=(",", ":")).encode()


_ATTEMPTS = 6  # a 429 (too many requests, or storage initializing) is retried, as client-go does


def _retry_after(header: str | None) -> float:
    try:
        return min(max(float(header or 1), 0.1), 5.0)
    except ValueError:
        return 1.0


def _unreachable(connection: Connection, error: Exception) -> ClusterError:
    return ClusterError(
        f"cannot reach the Kubernetes API server at {connection.server}: {str(error).rstrip('.') or type(error).__name__}. "
        "Is the cluster up? (for the local one: `plait dev status`)"
    )


def _params(**values: Any) -> dict[str, str]:
    return {k: str(v) for k, v in values.items() if v is not None}


@dataclass(frozen=True)
class _Call:
    """One request, built the same way for both clients."""

    method: str
    path: str
    params: dict[str, str] | None = None
    body: bytes | None = None
    content_type: str | None = None


def _delete(path: str, propagation: str | None, params: dict[str, str] | None = None) -> _Call:
    options: JSON = {"kind": "DeleteOptions", "apiVersion": "v1"}
    if propagation:
        options["propagationPolicy"] = propagation
    return _Call("DELETE", path, params, encode(options), "application/json")


def _decode_watch_line(line: str) -> WatchEvent | None:
    if not line.strip():
        return None
    raw = json.loads(line)
    if raw.get("type") == "ERROR":
        status = raw.get("object", {})
        code = int(status.get("code", 500))
        cls = {410: ClusterError, 404: NotFound, 403: Forbidden}.get(code, ClusterError)
        raise cls(f"watch failed: {status.get('message')}", status=code, reason=status.get("reason"))
    return WatchEvent(type=raw["type"], object=raw["object"])


R = TypeVar("R")
W = TypeVar("W")


class _Verbs(Generic[R, W]):
    """The API verbs, once for both clients: each builds its request and hands it to ``_call``,
    which returns the object (:class:`Kube`) or a coroutine of it (:class:`AsyncKube`), or to
    ``_watch``, which returns an iterator or an async iterator of the watch's events."""

    connection: Connection

    def _call(self, call: _Call) -> R:
        raise NotImplementedError

    def _watch(self, call: _Call, timeout_seconds: int) -> W:
        raise NotImplementedError

    def _headers(self, content_type: str | None = None) -> list[tuple[str, str]]:
        headers = list(self.connection.headers().items()) + self.connection.impersonation_headers()
        if content_type:
            headers.append(("Content-Type", content_type))
        return headers

    def get(self, resource: Resource, name: str, namespace: str | None = None) -> R:
        return self._call(_Call("GET", resource.path(namespace, name)))

    def list(
        self,
        resource: Resource,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        limit: int | None = None,
    ) -> R:
        params = _params(labelSelector=label_selector, fieldSelector=field_selector, limit=limit)
        return self._call(_Call("GET", resource.path(namespace), params))

    def create(self, resource: Resource, body: JSON, namespace: str | None = None, *, dry_run: bool = False) -> R:
        params = _params(dryRun="All" if dry_run else None)
        return self._call(_Call("POST", resource.path(namespace), params, encode(body), "application/json"))

    def patch(
        self,
        resource: Resource,
        name: str,
        patch: Any,
        namespace: str | None = None,
        *,
        subresource: str | None = None,
        patch_type: PatchType = "merge",
        field_manager: str | None = None,
        force: bool | None = None,
    ) -> R:
        params = _params(fieldManager=field_manager, force="true" if force else None)
        path = resource.path(namespace, name, subresource)
        return self._call(_Call("PATCH", path, params, encode(patch), _PATCH_CONTENT_TYPES[patch_type]))

    def delete(
        self, resource: Resource, name: str, namespace: str | None = None, *, propagation: str | None = None
    ) -> R:
        return self._call(_delete(resource.path(namespace, name), propagation))

    def delete_collection(self, resource: Resource, namespace: str, *, label_selector: str) -> R:
        """Every object ``label_selector`` picks (deletecollection)."""
        return self._call(_delete(resource.path(namespace), "Background", _params(labelSelector=label_selector)))

    def watch(
        self,
        resource: Resource,
        namespace: str | None = None,
        *,
        resource_version: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        timeout_seconds: int = 300,
    ) -> W:
        params = _params(
            watch="true",
            allowWatchBookmarks="true",
            resourceVersion=resource_version,
            labelSelector=label_selector,
            fieldSelector=field_selector,
            timeoutSeconds=timeout_seconds,
        )
        return self._watch(_Call("GET", resource.path(namespace), params), timeout_seconds)


class AsyncKube(_Verbs[Coroutine[Any, Any, JSON], AsyncGenerator[WatchEvent, None]]):
    """Async client on aiohttp, for the operator's and the workers' hot paths.

    (httpx's connection pool scans every connection on every request; under load that cost the
    operator three quarters of its CPU, so the long-running processes use aiohttp, which kopf
    already brings.) One connection pool per instance; close it with :meth:`aclose`.
    """

    def __init__(self, connection: Connection, *, timeout: float = 30.0, max_connections: int = 100) -> None:
        self.connection = connection
        self._ssl = connection.ssl_context()
        # Bounds on the connect and on silence from the server, none on the whole request: waiting
        # for a free pooled connection is back-pressure, not an error.
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=10.0, sock_read=timeout)
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    @property
    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:  # created lazily: a session must be made inside a running loop
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._ssl, limit=self._max_connections),
                timeout=self._timeout,
            )
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> AsyncKube:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _call(self, call: _Call) -> JSON:
        for attempt in range(_ATTEMPTS):
            try:
                async with self._http.request(
                    call.method,
                    self.connection.server + call.path,
                    params=call.params,
                    data=call.body,
                    headers=self._headers(call.content_type),
                ) as response:
                    payload = await response.read()
                    if response.status == 429 and attempt < _ATTEMPTS - 1:
                        await asyncio.sleep(_retry_after(response.headers.get("Retry-After")))
                        continue
                    if response.status >= 400:
                        raise _error_of(call.method, call.path, response.status, response.reason or "", payload)
                    break
            except aiohttp.ServerDisconnectedError as error:
                if call.method != "GET" or attempt:  # a reused connection the server had closed: reads retry once
                    raise _unreachable(self.connection, error) from error
            except (aiohttp.ClientError, TimeoutError) as error:
                raise _unreachable(self.connection, error) from error
        result: JSON = json.loads(payload)
        return result

    async def _watch(self, call: _Call, timeout_seconds: int) -> AsyncGenerator[WatchEvent, None]:
        try:
            async with self._http.get(
                self.connection.server + call.path,
                params=call.params,
                headers=self._headers(),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=10.0, sock_read=timeout_seconds + 30),
            ) as response:
                if response.status >= 400:
                    raise _error_of("GET", call.path, response.status, response.reason or "", await response.read())
                pending = b""
                async for chunk in response.content.iter_any():  # lines can exceed aiohttp's line limit
                    pending += chunk
                    *lines, pending = pending.split(b"\n")
                    for line in lines:
                        event = _decode_watch_line(line.decode())
                        if event is not None:
                            yield event
        except (aiohttp.ClientError, TimeoutError) as error:
            raise _unreachable(self.connection, error) from error

    async def raw(self, method: str, path: str) -> tuple[int, str]:
        """An arbitrary request, e.g. the API server's ``/metrics``: (status, body text)."""
        async with self._http.request(method, self.connection.server + path, headers=self._headers()) as response:
            return response.status, await response.text()


class Kube(_Verbs[JSON, Iterator[WatchEvent]]):
    """Sync client with the same verbs as :class:`AsyncKube`, for the CLI and tests."""

    def __init__(self, connection: Connection, *, timeout: float = 30.0) -> None:
        self.connection = connection
        self._http = httpx.Client(
            base_url=connection.server, verify=connection.ssl_context(), timeout=httpx.Timeout(timeout, connect=5.0)
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Kube:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, call: _Call) -> JSON:
        for attempt in range(_ATTEMPTS):
            try:
                response = self._http.request(
                    call.method,
                    call.path,
                    params=call.params,
                    content=call.body,
                    headers=self._headers(call.content_type),
                )
                if response.status_code == 429 and attempt < _ATTEMPTS - 1:
                    time.sleep(_retry_after(response.headers.get("Retry-After")))
                    continue
                break
            except httpx.RemoteProtocolError as error:
                if call.method != "GET" or attempt:  # a reused connection the server had closed: reads retry once
                    raise _unreachable(self.connection, error) from error
            except httpx.TransportError as error:
                raise _unreachable(self.connection, error) from error
        if response.status_code >= 400:
            raise _error(response)
        result: JSON = response.json()
        return result

    def _watch(self, call: _Call, timeout_seconds: int) -> Iterator[WatchEvent]:
        with self._http.stream(
            "GET",
            call.path,
            params=call.params,
            headers=self._headers(),
            timeout=httpx.Timeout(timeout_seconds + 30, connect=5.0),
        ) as response:
            if response.status_code >= 400:
                response.read()
                raise _error(response)
            for line in response.iter_lines():
                event = _decode_watch_line(line)
                if event is not None:
                    yield event

    def raw(self, method: str, path: str) -> httpx.Response:
        return self._http.request(method, path, headers=self._headers())
