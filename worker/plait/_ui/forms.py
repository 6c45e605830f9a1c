"""A signal's payload as a form: fields from its JSON Schema, and the payload read back from them.

Only flat objects of simple fields get a form (string, integer, number, boolean, each optionally
an ``enum``); any other schema, or none, gets a JSON text area. Pure functions: the server
renders :func:`form_fields` and calls :func:`payload_from_form` on the posted values, then
validates the result against the schema (``jsonschema``) before it writes anything.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

_SIMPLE = ("string", "integer", "number", "boolean")


@dataclass(frozen=True)
class FormField:
    name: str
    type: str  # string, integer, number, boolean
    required: bool
    title: str
    description: str
    choices: tuple[str, ...] = ()
    default: str = ""


def _resolve(schema: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
    """A property's schema with a local ``$ref`` (pydantic's ``#/$defs/...``) followed."""
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = root
        for part in ref[2:].split("/"):
            target = target.get(part, {}) if isinstance(target, Mapping) else {}
        return target if isinstance(target, Mapping) else {}
    return schema


def form_fields(schema: Mapping[str, Any] | None) -> list[FormField] | None:
    """The fields of a form for ``schema``; ``None`` when it needs the JSON text area."""
    if not schema or schema.get("type") != "object" or not isinstance(schema.get("properties"), Mapping):
        return None
    required = list(schema.get("required") or [])
    # the API server keeps an object's keys sorted, not in the author's order; `required` is a list
    # and keeps its order, so required fields come first, in that order
    ordered = sorted(
        schema["properties"].items(), key=lambda item: required.index(item[0]) if item[0] in required else len(required)
    )
    fields = []
    for name, raw in ordered:
        prop = _resolve(raw, schema)
        kind = prop.get("type")
        choices = tuple(str(c) for c in prop.get("enum") or ())
        if kind not in _SIMPLE or (prop.get("enum") is not None and not choices):
            return None
        default = prop.get("default")
        fields.append(
            FormField(
                name=str(name),
                type=str(kind),
                required=name in required,
                title=str(prop.get("title") or name),
                description=str(prop.get("description") or ""),
                choices=choices,
                default="" if default is None else json.dumps(default) if kind == "boolean" else str(default),
            )
        )
    return fields


class FormError(ValueError):
    pass


def payload_from_form(fields: list[FormField], values: Mapping[str, str]) -> dict[str, Any]:
    """The payload the posted ``field.NAME`` values make (an unticked box is ``false``)."""
    payload: dict[str, Any] = {}
    for f in fields:
        raw = values.get(f"field.{f.name}")
        if f.type == "boolean":
            payload[f.name] = raw in ("on", "true", "1")
            continue
        if raw is None or raw == "":
            if f.required:
                raise FormError(f"{f.title} is required")
            continue
        if f.type == "string":
            payload[f.name] = raw
            continue
        try:
            payload[f.name] = int(raw) if f.type == "integer" else float(raw)
        except ValueError:
            raise FormError(
                f"{f.title} must be {'an integer' if f.type == 'integer' else 'a number'}, got {raw!r}"
            ) from None
    return payload
