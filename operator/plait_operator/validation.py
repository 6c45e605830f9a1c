"""Checks a new instance must pass before any task runs: input schema and payload size."""

from __future__ import annotations

from typing import Any

import jsonschema

from plait._core.definition import Definition
from plait._kube.models import payload_size
from plait._payloads import NOT_CONFIGURED_HINT


class InvalidInstance(Exception):
    """The instance cannot run as specified; ``reason`` is the condition and Event reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def check_payload(value: Any, limit: int, what: str) -> None:
    size = payload_size(value)
    if size > limit:
        raise InvalidInstance(
            "PayloadTooLarge",
            f"{what} is {size} bytes, over the inline limit of {limit} bytes; {NOT_CONFIGURED_HINT}",
        )


def check_input(definition: Definition, value: Any, limit: int | None) -> None:
    """``value`` (references read already) against the input schema; without a payload store
    (``limit`` set) its size too."""
    if limit is not None:
        check_payload(value, limit, "spec.input")
    schema = definition.input_schema
    if schema is None:
        return
    try:
        jsonschema.validate(value, schema)
    except jsonschema.ValidationError as error:
        where = "/".join(str(p) for p in error.absolute_path) or "(root)"
        raise InvalidInstance(
            "InvalidInput",
            f"spec.input does not match the input schema of workflow {definition.name!r} at {where}: {error.message}",
        ) from error
    except jsonschema.SchemaError as error:  # a broken published schema is the publisher's bug, not the user's
        raise InvalidInstance(
            "InvalidDefinition", f"the definition's input schema is invalid: {error.message}"
        ) from error
