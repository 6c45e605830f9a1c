"""Published ``WorkflowDefinition``s, as the operator knows them from its watch.

Per namespace and workflow name there may be several versions (one object per hash); an
instance that does not pin a hash gets the most recently published one when it starts and
keeps it to the end.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from plait._core.definition import Definition
from plait.errors import DefinitionError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Published:
    definition: Definition
    created: str  # creationTimestamp: the publication order
    name: str


class DefinitionCatalog:
    def __init__(self) -> None:
        self._versions: dict[tuple[str, str], dict[str, Published]] = {}
        self._listeners: list[Callable[[str, str], None]] = []

    def on_published(self, listener: Callable[[str, str], None]) -> None:
        """Call ``listener(namespace, workflow)`` whenever a version appears."""
        self._listeners.append(listener)

    def observe(self, event_type: str, body: dict[str, Any]) -> None:
        meta = body["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        spec = body.get("spec") or {}
        key = (namespace, spec.get("workflow", ""))
        if event_type == "DELETED":
            versions = self._versions.get(key, {})
            versions.pop(spec.get("hash", ""), None)
            return
        try:
            definition = Definition.from_data(spec)
        except (DefinitionError, KeyError, TypeError, ValueError) as error:
            log.warning("ignoring malformed WorkflowDefinition %s/%s: %s", namespace, name, error)
            return
        versions = self._versions.setdefault(key, {})
        is_new = definition.hash not in versions
        versions[definition.hash] = Published(definition, meta.get("creationTimestamp", ""), name)
        if is_new:
            for listener in self._listeners:
                listener(namespace, definition.name)

    def resolve(self, namespace: str, workflow: str, pinned: str | None) -> Definition | None:
        versions = self._versions.get((namespace, workflow), {})
        if pinned is not None:
            found = versions.get(pinned)
            return found.definition if found else None
        if not versions:
            return None
        return max(versions.values(), key=lambda p: (p.created, p.name)).definition

    def matching(self, namespace: str, workflow: str, version: str) -> Definition:
        """The version ``version`` names: ``latest``, a hash, or a prefix of exactly one published hash.

        Raises :class:`~plait.errors.DefinitionError` saying which versions there are when none or
        several match.
        """
        versions = self._versions.get((namespace, workflow), {})
        if version == "latest":
            found = self.resolve(namespace, workflow, None)
            if found is None:
                raise DefinitionError(f"workflow {workflow!r} has no published version in namespace {namespace}")
            return found
        matches = [p.definition for h, p in versions.items() if h.startswith(version)] if version else []
        if len(matches) == 1:
            return matches[0]
        published = ", ".join(h[:12] for h in sorted(versions)) or "none"
        if matches:
            raise DefinitionError(
                f"{version!r} is the start of {len(matches)} versions of workflow {workflow!r}: give more of the hash"
            )
        raise DefinitionError(
            f"workflow {workflow!r} has no published version {version!r} (published: {published}; or `latest`)"
        )

    def get(self, namespace: str, workflow: str, definition_hash: str) -> Definition | None:
        found = self._versions.get((namespace, workflow), {}).get(definition_hash)
        return found.definition if found else None

    def namespaces(self) -> set[str]:
        """The namespaces where any version was published."""
        return {namespace for (namespace, _), versions in self._versions.items() if versions}

    def known_hashes(self, namespace: str, workflow: str) -> list[str]:
        return sorted(self._versions.get((namespace, workflow), {}))
