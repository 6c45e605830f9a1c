"""The payload store: an S3-compatible bucket that holds the values too large for an object.

Configured the same way on the operator, the workers and the client (``--payload-store
s3://bucket/prefix``, ``PLAIT_PAYLOAD_STORE``; ``--payload-store-endpoint`` or boto3's own
``AWS_ENDPOINT_URL`` for a server that is not AWS). Credentials are boto3's standard chain:
environment, shared config and credentials files, web identity (IRSA), instance metadata; plait
never reads, logs or writes them.

Layout: ``<prefix><namespace>/<instance name>/<sha256>``. Everything one instance's values need is
under its own prefix, deleted with the instance; a reader accepts only references under its own
namespace's part of the store. Whoever produces a value writes it: a worker its task's output, the
client or the CLI an input or a signal payload (before the instance may exist: hence the name, not
the uid; the operator's finalizer keeps a name from being reused before its objects are gone), the
operator a value it assembled (a join's input) or one its checkpoint cannot hold.

boto3 is synchronous: each request runs in a thread (``asyncio.to_thread``), the retry loop and
its backoff on the event loop, so a store that is down delays the step that needs it without
blocking anything else; after :attr:`PayloadStore.retry_seconds` the caller gets
``PayloadError("PayloadStoreUnavailable")``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlparse

from plait._backoff import Backoff
from plait._payloads import refs
from plait.errors import PayloadError

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Values whose JSON is over this many bytes go to the store (``--inline-payload-bytes``).
DEFAULT_INLINE_BYTES = 64 * 1024
#: How long a producer or reader keeps trying a store that does not answer.
DEFAULT_RETRY_SECONDS = 120.0
_MAX_DEPTH = 8  # references inside offloaded values (a join's input of references) nest this deep at most
_MEMORY = 4096  # URIs known to be stored already: not uploaded again
_UNAVAILABLE_CODES = {"SlowDown", "RequestTimeout", "ServiceUnavailable", "InternalError", "RequestTimeTooSkewed"}


@dataclass(frozen=True)
class StoreSettings:
    """Where the store is, as the options and environment say (``url`` None: no store)."""

    url: str | None = None
    endpoint: str | None = None
    inline_bytes: int = DEFAULT_INLINE_BYTES

    @classmethod
    def from_env(
        cls, url: str | None = None, endpoint: str | None = None, inline_bytes: int | None = None
    ) -> StoreSettings:
        """Explicit values first, then ``PLAIT_PAYLOAD_STORE``, ``PLAIT_PAYLOAD_STORE_ENDPOINT`` and
        ``PLAIT_INLINE_PAYLOAD_BYTES``."""
        size = inline_bytes if inline_bytes is not None else os.environ.get("PLAIT_INLINE_PAYLOAD_BYTES")
        return cls(
            url=url or os.environ.get("PLAIT_PAYLOAD_STORE") or None,
            endpoint=endpoint or os.environ.get("PLAIT_PAYLOAD_STORE_ENDPOINT") or None,
            inline_bytes=int(size) if size not in (None, "") else DEFAULT_INLINE_BYTES,
        )

    def open(self) -> PayloadStore | None:
        return PayloadStore(self.url, endpoint=self.endpoint, inline_bytes=self.inline_bytes) if self.url else None


def parse_url(url: str) -> tuple[str, str]:
    """``s3://bucket/prefix`` as (bucket, key prefix ending in ``/`` or empty)."""
    parsed = urlparse(url)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"payload store {url!r}: expected s3://BUCKET or s3://BUCKET/PREFIX")
    prefix = parsed.path.strip("/")
    return parsed.netloc, f"{prefix}/" if prefix else ""


class PayloadStore:
    """One bucket and prefix; values in and out, objects of an instance deleted, orphans found."""

    def __init__(
        self,
        url: str,
        *,
        endpoint: str | None = None,
        inline_bytes: int = DEFAULT_INLINE_BYTES,
        retry_seconds: float = DEFAULT_RETRY_SECONDS,
    ) -> None:
        self.bucket, self.prefix = parse_url(url)
        self.url = url
        self.endpoint = endpoint
        self.inline_bytes = inline_bytes
        self.retry_seconds = retry_seconds
        self._client: Any = None
        self._stored: OrderedDict[str, None] = OrderedDict()

    def __repr__(self) -> str:
        return f"PayloadStore({self.url!r}, inline_bytes={self.inline_bytes})"

    @property
    def client(self) -> Any:
        """The boto3 S3 client, made on first use (importing boto3 takes a while)."""
        if self._client is None:
            import boto3
            from botocore.config import Config

            config = Config(
                connect_timeout=5,
                read_timeout=30,
                retries={"mode": "standard", "max_attempts": 2},  # plait's own loop retries for longer
                max_pool_connections=32,
                # S3-compatible servers vary in the checksums they know: only the required ones
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
                s3={"addressing_style": "path"} if self.endpoint or os.environ.get("AWS_ENDPOINT_URL") else {},
            )
            region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
            self._client = boto3.session.Session().client(
                "s3", endpoint_url=self.endpoint, region_name=region, config=config
            )
        return self._client

    # -- where things go ---------------------------------------------------------------------------

    def instance_prefix(self, namespace: str, instance: str) -> str:
        return f"{self.prefix}{namespace}/{instance}/"

    def uri_for(self, namespace: str, instance: str) -> Callable[[str], str]:
        base = f"s3://{self.bucket}/{self.instance_prefix(namespace, instance)}"
        return lambda digest: base + digest

    def key_of(self, uri: str, namespace: str) -> str:
        """The object key of a reference's URI; refused unless it is in ``namespace``'s part of the store."""
        mine = f"s3://{self.bucket}/{self.prefix}{namespace}/"
        if not uri.startswith(mine) or ".." in uri[len(mine) :].split("/"):
            raise PayloadError(
                "PayloadRefForbidden", f"{uri} is outside this namespace's payloads ({mine}); refusing to read it"
            )
        return uri[len(f"s3://{self.bucket}/") :]

    # -- values in and out -------------------------------------------------------------------------

    async def offload(
        self, value: Any, namespace: str, instance: str, *, limit: int | None = None, again: bool = False
    ) -> Any:
        """``value`` with what is over ``limit`` (default: the inline limit) stored and referenced.
        An object this process stored before is not stored again, unless ``again``."""
        out, blobs = refs.externalize(
            value, self.inline_bytes if limit is None else limit, self.uri_for(namespace, instance)
        )
        await self.store_blobs(blobs, namespace, again=again)
        return out

    async def store_blobs(self, blobs: dict[str, bytes], namespace: str, *, again: bool = False) -> None:
        """Store the objects of :func:`refs.externalize` (by URI) that this process has not stored yet."""
        todo = [(uri, data) for uri, data in blobs.items() if again or uri not in self._stored]
        if todo:
            await asyncio.gather(*(self._put(uri, data, namespace) for uri, data in todo))

    async def resolve(self, value: Any, namespace: str) -> Any:
        """``value`` with every reference replaced by the value it stands for (hashes checked)."""
        return await self._resolve(value, namespace, 0)

    async def _resolve(self, value: Any, namespace: str, depth: int) -> Any:
        found = {ref["uri"]: ref for ref in refs.refs_in(value)}
        if not found:
            return value
        if depth >= _MAX_DEPTH:
            raise PayloadError("PayloadCorrupted", f"references nest deeper than {_MAX_DEPTH} levels")
        values = await asyncio.gather(*(self._get(ref, namespace, depth) for ref in found.values()))
        return refs.substitute(value, dict(zip(found, values, strict=True)))

    async def _put(self, uri: str, data: bytes, namespace: str) -> None:
        key = self.key_of(uri, namespace)
        await self._retrying(
            lambda: asyncio.to_thread(
                self.client.put_object, Bucket=self.bucket, Key=key, Body=data, ContentType="application/json"
            ),
            f"store {uri}",
        )
        self._remember(uri)

    async def _get(self, ref: dict[str, Any], namespace: str, depth: int) -> Any:
        key = self.key_of(ref["uri"], namespace)
        data = await self._retrying(lambda: asyncio.to_thread(self._read, key), f"read {ref['uri']}")
        wrong = refs.check(ref, data)
        if wrong is not None:
            raise PayloadError("PayloadCorrupted", f"{ref['uri']} is not the value its reference stands for: {wrong}")
        self._remember(ref["uri"])
        value = refs.json_value(data)
        return await self._resolve(value, namespace, depth + 1) if refs.MARK.encode() in data else value

    def _read(self, key: str) -> bytes:
        body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
        try:
            data: bytes = body.read()
        finally:
            body.close()
        return data

    def _remember(self, uri: str) -> None:
        self._stored[uri] = None
        self._stored.move_to_end(uri)
        while len(self._stored) > _MEMORY:
            self._stored.popitem(last=False)

    async def _retrying(self, call: Callable[[], Awaitable[T]], what: str) -> T:
        """``call()`` until it succeeds, fails for good, or the store has not answered for ``retry_seconds``."""
        deadline = time.monotonic() + self.retry_seconds
        backoff = Backoff(0.2, 5.0)
        while True:
            try:
                return await call()
            except Exception as error:
                failure = classify(error, what)
                if failure.reason != "PayloadStoreUnavailable":
                    raise failure from error
                delay = backoff.next()
                if time.monotonic() + delay > deadline:
                    raise failure from error
                log.warning("payload store: could not %s (%s); retrying in %.1fs", what, failure.message, delay)
                await asyncio.sleep(delay)

    # -- deletion ----------------------------------------------------------------------------------

    async def delete_instance(self, namespace: str, instance: str, before: float | None = None) -> int:
        """Delete the objects of an instance (written before ``before``, seconds since the epoch, if
        given); how many went."""
        prefix = self.instance_prefix(namespace, instance)
        base = f"s3://{self.bucket}/{prefix}"
        for uri in [uri for uri in self._stored if uri.startswith(base)]:
            del self._stored[uri]

        def run() -> int:
            keys = [key for key, modified in self._list(prefix) if before is None or modified < before]
            self._delete(keys)
            return len(keys)

        return await self._retrying(lambda: asyncio.to_thread(run), f"delete the payloads of {namespace}/{instance}")

    async def instances(self, namespace: str | None = None) -> dict[tuple[str, str], float]:
        """Every (namespace, instance) that has objects, with the time its newest was written."""
        prefix = self.prefix + (f"{namespace}/" if namespace else "")

        def run() -> dict[tuple[str, str], float]:
            newest: dict[tuple[str, str], float] = {}
            for key, modified in self._list(prefix):
                parts = key[len(self.prefix) :].split("/")
                if len(parts) == 3:
                    owner = (parts[0], parts[1])
                    newest[owner] = max(newest.get(owner, 0.0), modified)
            return newest

        return await self._retrying(lambda: asyncio.to_thread(run), "list the payloads")

    def _list(self, prefix: str) -> Iterator[tuple[str, float]]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        for page in pages:
            for item in page.get("Contents") or []:
                yield item["Key"], item["LastModified"].timestamp()

    def _delete(self, keys: list[str]) -> None:
        for start in range(0, len(keys), 1000):  # DeleteObjects takes at most 1000 keys
            batch = [{"Key": key} for key in keys[start : start + 1000]]
            answer = self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
            errors = answer.get("Errors") or []
            if errors:
                first = errors[0]
                raise PayloadError(
                    "PayloadStoreUnavailable",
                    f"{len(errors)} object(s) not deleted, first {first.get('Key')}: {first.get('Message')}",
                )


def classify(error: BaseException, what: str) -> PayloadError:
    """A boto3 failure as a :class:`PayloadError` whose reason says whether trying again can help."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, PartialCredentialsError

    if isinstance(error, PayloadError):
        return error
    if isinstance(error, ClientError):
        info = error.response.get("Error") or {}
        code = str(info.get("Code") or "")
        status = int((error.response.get("ResponseMetadata") or {}).get("HTTPStatusCode") or 0)
        message = f"could not {what}: {code or status} {info.get('Message') or ''}".strip()
        if code in ("NoSuchKey", "404", "NotFound"):
            return PayloadError("PayloadMissing", f"could not {what}: no such object")
        if status >= 500 or code in _UNAVAILABLE_CODES:
            return PayloadError("PayloadStoreUnavailable", message)
        return PayloadError("PayloadStoreRefused", message)
    if isinstance(error, NoCredentialsError | PartialCredentialsError):
        return PayloadError("PayloadStoreRefused", f"could not {what}: {error} (see docs/payloads.md, credentials)")
    if isinstance(error, BotoCoreError | OSError):
        return PayloadError("PayloadStoreUnavailable", f"could not {what}: {error}")
    return PayloadError("PayloadStoreUnavailable", f"could not {what}: {type(error).__name__}: {error}")
