"""What leaves an object and what stands in for it (pure): plait._payloads.refs, the checkpoint
codec and the snapshot's value slots."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from plait._core.snapshot import Snapshot, map_values
from plait._kube import checkpoints
from plait._payloads import refs

LIMIT = 64 * 1024


def uri_for(digest: str) -> str:
    return f"s3://b/p/ns/i/{digest}"


def test_a_value_within_the_limit_stays_as_it_is() -> None:
    value = {"a": "x" * 1000}
    assert refs.externalize(value, LIMIT, uri_for) == (value, {})


def test_a_large_member_leaves_alone_and_the_small_ones_stay() -> None:
    value = {"_loop": "again", "value": "v" * 200_000, "key": "tenant-a"}
    out, blobs = refs.externalize(value, LIMIT, uri_for)
    assert out["_loop"] == "again" and out["key"] == "tenant-a"
    assert refs.is_ref(out["value"])
    data = blobs[out["value"]["uri"]]
    assert json.loads(data) == "v" * 200_000
    assert out["value"]["size"] == len(data) and out["value"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert out["value"]["uri"] == uri_for(out["value"]["sha256"])


def test_many_small_members_leave_together() -> None:
    value = [f"item-{i}-" + "s" * 200 for i in range(1000)]  # 210 kB, no member worth a reference
    out, blobs = refs.externalize(value, LIMIT, uri_for)
    assert refs.is_ref(out)
    assert list(blobs) == [out["uri"]] and json.loads(blobs[out["uri"]]) == value


def test_a_large_string_leaves_whole() -> None:
    out, blobs = refs.externalize("z" * 100_000, LIMIT, uri_for)
    assert refs.is_ref(out) and len(blobs) == 1


def test_the_same_value_is_one_object() -> None:
    part = "same" * 30_000
    out, blobs = refs.externalize({"a": part, "b": part}, LIMIT, uri_for)
    assert out["a"] == out["b"] and len(blobs) == 1


def test_references_are_found_and_substituted_everywhere() -> None:
    one = refs.make_ref("s3://b/p/ns/i/1", b'"one"')
    two = refs.make_ref("s3://b/p/ns/i/2", b"[2]")
    value = {"x": [one, {"y": two}], "z": 3}
    assert refs.refs_in(value) == [one, two]
    assert refs.substitute(value, {one["uri"]: "one", two["uri"]: [2]}) == {"x": ["one", {"y": [2]}], "z": 3}
    assert refs.refs_in({"$plait": "something else"}) == []


def test_a_changed_object_does_not_check() -> None:
    ref = refs.make_ref("s3://b/p/ns/i/x", b'"original"')
    assert refs.check(ref, b'"original"') is None
    why = refs.check(ref, b'"tampered"')
    assert why is not None and "SHA-256" in why and ref["sha256"] in why


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=3000),
    lambda children: st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=5), children, max_size=6),
    max_leaves=40,
)


@given(json_values, st.sampled_from([64, 1024, 4096]))
def test_externalized_values_fit_and_come_back(value: Any, limit: int) -> None:
    out, blobs = refs.externalize(value, limit, uri_for)
    stored = {uri: json.loads(data) for uri, data in blobs.items()}
    assert refs.substitute(out, stored) == json.loads(json.dumps(value))
    largest_ref = {**refs.make_ref(uri_for("0" * 64), b""), "size": 10**9}
    assert len(refs.encode(out)) <= max(limit, len(refs.encode(largest_ref)))
    for uri, data in blobs.items():
        assert uri.endswith(hashlib.sha256(data).hexdigest())


def test_small_checkpoints_stay_json_and_large_ones_are_compressed() -> None:
    small = {"instanceId": "a", "root": {"pos": 0}}
    assert checkpoints.dump(small) == json.dumps(small, separators=(",", ":"))
    large = {"root": {"branches": [{"pos": 0, "cur": {"attempt": 1, "state": "running"}}] * 2000}}
    text = checkpoints.dump(large)
    assert text.startswith("zlib:") and len(text) < len(json.dumps(large)) / 10
    assert checkpoints.load(text) == large and checkpoints.load(checkpoints.dump(small)) == small


def test_map_values_reaches_every_value_a_snapshot_holds_and_nothing_else() -> None:
    snapshot = Snapshot("i", "w", "h", output="out", input="in")
    snapshot.signals = {"go": ["sig"]}
    snapshot.root = {
        "pos": 0,
        "cur": {
            "branches": [
                {"pos": 0, "cur": {"attempt": 1, "failures": 0, "lost": 0, "state": "running", "input": "task-in"}},
                None,
            ],
            "results": {"b": "result"},
            "join": None,
        },
    }  # type: ignore[typeddict-item]
    snapshot.failure_handler = {"attempt": 1, "failures": 0, "lost": 0, "state": "ready", "input": "handler-in"}
    seen: list[Any] = []

    def note(value: Any) -> Any:
        seen.append(value)
        return f"<{value}>"

    map_values(snapshot, note)
    assert sorted(seen) == sorted(["out", "in", "sig", "task-in", "result", "handler-in"])
    fork = snapshot.root["cur"]  # type: ignore[index]
    assert fork["branches"][0]["cur"]["input"] == "<task-in>" and fork["results"] == {"b": "<result>"}
    assert fork["branches"][0]["cur"]["state"] == "running" and snapshot.signals == {"go": ["<sig>"]}
