"""What changed between two versions of a workflow: steps added, removed and changed.

Pure, over two ``WorkflowDefinition`` specs (the data form of :mod:`plait._core.definition`):
nodes are matched by id; a node is changed when any of its fields differs (retry, timeout,
queue, the task it runs, the steps it holds, ...), each difference listed as a field with its
old and new value. Edges and the workflow's own options (queue, schemas, concurrency, deadline,
failure handler) are compared too. The definitions page shows the result.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

_WORKFLOW_FIELDS = ("queue", "steps", "inputSchema", "outputSchema", "concurrency", "timeoutSeconds", "onFailure")


@dataclass(frozen=True)
class FieldChange:
    field: str
    old: str
    new: str


@dataclass(frozen=True)
class NodeChange:
    id: str
    kind: str
    changes: tuple[FieldChange, ...]


@dataclass
class DefinitionDiff:
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[NodeChange] = field(default_factory=list)
    edges_added: list[str] = field(default_factory=list)
    edges_removed: list[str] = field(default_factory=list)
    workflow: list[FieldChange] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (
            self.added or self.removed or self.changed or self.edges_added or self.edges_removed or self.workflow
        )

    def states(self) -> dict[str, str]:
        """Node id -> ``added``, ``changed`` or ``unchanged``, for drawing the newer version."""
        marks = {node_id: "added" for node_id in self.added}
        marks.update({change.id: "changed" for change in self.changed})
        return marks


def _shown(value: Any) -> str:
    if value is None:
        return "-"
    return json.dumps(value, sort_keys=True, separators=(", ", ": ")) if not isinstance(value, str) else value


def _field_changes(
    old: Mapping[str, Any], new: Mapping[str, Any], keys: tuple[str, ...] | None = None
) -> list[FieldChange]:
    names = keys if keys is not None else tuple(sorted((set(old) | set(new)) - {"id"}))
    return [FieldChange(k, _shown(old.get(k)), _shown(new.get(k))) for k in names if old.get(k) != new.get(k)]


def _edge(edge: Mapping[str, Any]) -> str:
    label = f" ({edge['label']})" if edge.get("label") else ""
    return f"{edge['from']} -> {edge['to']}{label}"


def diff_definitions(old: Mapping[str, Any], new: Mapping[str, Any]) -> DefinitionDiff:
    """What turns ``old`` into ``new`` (both WorkflowDefinition specs)."""
    old_nodes = {n["id"]: n for n in old.get("nodes") or []}
    new_nodes = {n["id"]: n for n in new.get("nodes") or []}
    result = DefinitionDiff(
        added=[i for i in new_nodes if i not in old_nodes],
        removed=[i for i in old_nodes if i not in new_nodes],
    )
    for node_id, node in new_nodes.items():
        if node_id in old_nodes and old_nodes[node_id] != node:
            changes = tuple(_field_changes(old_nodes[node_id], node))
            result.changed.append(NodeChange(node_id, str(node.get("kind", "")), changes))
    old_edges = [_edge(e) for e in old.get("edges") or []]
    new_edges = [_edge(e) for e in new.get("edges") or []]
    result.edges_added = [e for e in new_edges if e not in old_edges]
    result.edges_removed = [e for e in old_edges if e not in new_edges]
    result.workflow = _field_changes(old, new, _WORKFLOW_FIELDS)
    return result
