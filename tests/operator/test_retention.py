"""Version retention's rule, without a cluster: which versions are in use, and what a sweep marks,
unmarks and deletes."""

from __future__ import annotations

import json

from plait._kube.models import SERVES_ANNOTATION, STALE_LEASE_SECONDS, UNUSED_SINCE_ANNOTATION, rfc3339
from plait_operator.retention import plan, versions_in_use

NOW = 1_800_000_000.0
DAY = 86400.0


def definition(name: str, hash_: str, created: float, unused_since: float | str | None = None) -> dict:
    meta: dict = {"name": name, "creationTimestamp": rfc3339(created)}
    if unused_since is not None:
        since = unused_since if isinstance(unused_since, str) else rfc3339(unused_since)
        meta["annotations"] = {UNUSED_SINCE_ANNOTATION: since}
    return {"metadata": meta, "spec": {"workflow": "orders", "hash": hash_}}


def lease(renewed: float, *hashes: str) -> dict:
    serves = json.dumps({"definitions": list(hashes), "queues": ["default"]})
    return {"metadata": {"annotations": {SERVES_ANNOTATION: serves}}, "spec": {"renewTime": rfc3339(renewed)}}


def test_instances_and_live_workers_keep_their_versions_in_use() -> None:
    instances = [
        {"metadata": {}, "spec": {"workflow": "orders"}, "status": {"definitionHash": "a"}},
        {"metadata": {}, "spec": {"workflow": "orders", "definitionHash": "b"}},  # pinned, not started yet
        {"metadata": {}, "spec": {"workflow": "orders"}},  # not started, unpinned: the newest version
    ]
    leases = [lease(NOW - 5, "c"), lease(NOW - STALE_LEASE_SECONDS - 1, "d"), {"metadata": {}, "spec": {}}]
    assert versions_in_use(instances, leases, NOW) == {"a", "b", "c"}


def test_an_unused_version_is_marked_then_deleted_after_the_period_and_the_newest_is_kept() -> None:
    definitions = [
        definition("orders-old", "old", NOW - 30 * DAY),  # unused, not marked yet
        definition("orders-stale", "stale", NOW - 20 * DAY, unused_since=NOW - 8 * DAY),
        definition("orders-recent", "recent", NOW - 10 * DAY, unused_since=NOW - DAY),
        definition("orders-back", "back", NOW - 9 * DAY, unused_since=NOW - 9 * DAY),  # used again
        definition("orders-new", "new", NOW - DAY, unused_since=NOW - 9 * DAY),  # newest: kept
    ]
    todo = plan(definitions, {"back"}, NOW, 7 * DAY)
    assert todo.mark == ["orders-old"]
    assert todo.delete == ["orders-stale"]
    assert sorted(todo.unmark) == ["orders-back", "orders-new"]


def test_a_malformed_mark_starts_the_period_again() -> None:
    definitions = [definition("orders-a", "a", NOW - DAY, unused_since="yesterday"), definition("orders-b", "b", NOW)]
    todo = plan(definitions, set(), NOW, 1.0)
    assert (todo.mark, todo.delete) == (["orders-a"], [])
