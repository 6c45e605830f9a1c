"""The payload store against a real S3-compatible server (versitygw): values in and out, hashes
checked, namespaces kept apart, objects of an instance deleted, a store that does not answer."""

from __future__ import annotations

import asyncio
import time

import pytest

from plait._devenv.s3server import S3Server
from plait._payloads import PayloadStore, refs, resolve
from plait.errors import PayloadError
from tests.payloads.conftest import STORE


@pytest.fixture
def store(s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> PayloadStore:
    for key, value in s3.env.items():
        monkeypatch.setenv(key, value)
    return PayloadStore(STORE, endpoint=s3.endpoint, retry_seconds=2)


def test_a_value_goes_in_and_comes_back(store: PayloadStore, s3: S3Server) -> None:
    value = {"keep": 1, "big": "b" * 300_000}
    held = asyncio.run(store.offload(value, "unit", "roundtrip"))
    assert held["keep"] == 1 and refs.is_ref(held["big"])
    assert list(s3.objects("payloads/unit/roundtrip/")) == [f"payloads/unit/roundtrip/{held['big']['sha256']}"]
    assert asyncio.run(store.resolve(held, "unit")) == value


def test_references_inside_stored_values_are_followed(store: PayloadStore) -> None:
    inner = asyncio.run(store.offload(["i" * 100_000], "unit", "nested"))
    outer = asyncio.run(store.offload({"parts": [inner] * 400}, "unit", "nested", limit=1024))
    assert refs.is_ref(outer["parts"]) or refs.is_ref(outer)
    assert asyncio.run(store.resolve(outer, "unit")) == {"parts": [["i" * 100_000]] * 400}


def test_a_corrupted_object_is_refused(store: PayloadStore, s3: S3Server) -> None:
    held = asyncio.run(store.offload("c" * 100_000, "unit", "corrupt"))
    (path,) = s3.objects("payloads/unit/corrupt/").values()
    path.write_bytes(b'"' + b"d" * 100_000 + b'"')
    with pytest.raises(PayloadError) as raised:
        asyncio.run(store.resolve(held, "unit"))
    assert raised.value.reason == "PayloadCorrupted" and held["uri"] in str(raised.value)


def test_a_reference_into_another_namespace_is_refused(store: PayloadStore) -> None:
    held = asyncio.run(store.offload("n" * 100_000, "team-a", "secret"))
    with pytest.raises(PayloadError) as raised:
        asyncio.run(store.resolve(held, "team-b"))
    assert raised.value.reason == "PayloadRefForbidden"
    forged = {**held, "uri": held["uri"].replace("/team-a/", "/team-b/../team-a/")}
    with pytest.raises(PayloadError, match="PayloadRefForbidden"):
        asyncio.run(store.resolve(forged, "team-b"))


def test_a_reference_without_a_store_says_what_is_missing(store: PayloadStore) -> None:
    held = asyncio.run(store.offload("m" * 100_000, "unit", "nostore"))
    with pytest.raises(PayloadError) as raised:
        asyncio.run(resolve(None, held, "unit"))
    assert raised.value.reason == "PayloadStoreNotConfigured" and "--payload-store" in str(raised.value)


def test_an_instances_objects_are_deleted_and_only_those(store: PayloadStore, s3: S3Server) -> None:
    for instance in ("del-a", "del-ab"):
        asyncio.run(store.offload({"x": "1" * 100_000, "y": "2" * 100_000}, "unit", instance))
    assert asyncio.run(store.delete_instance("unit", "del-a", before=time.time() + 5)) == 2
    assert not s3.objects("payloads/unit/del-a/") and len(s3.objects("payloads/unit/del-ab/")) == 2
    # objects written after `before` stay (a new instance of the same name stored its input since)
    assert asyncio.run(store.delete_instance("unit", "del-ab", before=time.time() - 3600)) == 0
    missing = asyncio.run(store.offload("gone" * 30_000, "unit", "del-a"))  # stored again: not remembered
    assert asyncio.run(store.resolve(missing, "unit")) == "gone" * 30_000


def test_a_store_that_does_not_answer_is_retried_then_reported(
    store: PayloadStore, caplog: pytest.LogCaptureFixture
) -> None:
    down = PayloadStore(STORE, endpoint="http://127.0.0.1:9", retry_seconds=1.5)  # the discard port: refused
    started = time.monotonic()
    with caplog.at_level("WARNING", logger="plait._payloads.store"), pytest.raises(PayloadError) as raised:
        asyncio.run(down.offload("u" * 100_000, "unit", "down"))
    assert raised.value.reason == "PayloadStoreUnavailable"
    assert sum("retrying in" in r.getMessage() for r in caplog.records) >= 2, "tried again before giving up"
    assert time.monotonic() - started < 10, "gave up once its retry window was over"


def test_without_credentials_the_store_refuses_at_once(monkeypatch: pytest.MonkeyPatch, s3: S3Server) -> None:
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    bare = PayloadStore(STORE, endpoint=s3.endpoint, retry_seconds=30)
    started = time.monotonic()
    with pytest.raises(PayloadError) as raised:
        asyncio.run(bare.offload("k" * 100_000, "unit", "nocreds"))
    assert raised.value.reason == "PayloadStoreRefused" and "credentials" in str(raised.value)
    assert time.monotonic() - started < 10  # not retried: waiting would not help
