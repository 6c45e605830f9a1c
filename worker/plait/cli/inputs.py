"""Reading what users type or point at: JSON arguments and WorkflowInstance manifests.

Errors say where the text is wrong (line, column, a caret under the spot) and how to fix it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

from plait._kube.models import API_VERSION
from plait.cli.common import CommandError


def read_source(text: str) -> tuple[str, str]:
    """``-`` is stdin, ``@path`` a file, anything else the text itself; returns (text, where it came from)."""
    if text == "-":
        return sys.stdin.read(), "stdin"
    if text.startswith("@"):
        path = Path(text[1:]).expanduser()
        try:
            return path.read_text(), str(path)
        except OSError as error:
            raise CommandError(f"cannot read {path}: {error.strerror or error}") from None
    return text, ""


def parse_json(text: str, what: str) -> Any:
    """``text`` (or ``-``/``@file``) as JSON; a clear error pointing at the first mistake."""
    source, origin = read_source(text)
    try:
        return json.loads(source)
    except json.JSONDecodeError as error:
        lines = source.splitlines() or [""]
        line = lines[min(error.lineno, len(lines)) - 1]
        where = f" in {origin}" if origin else ""
        hint = ""
        if not origin and not source.lstrip().startswith(("{", "[", '"')):
            hint = (
                "\nJSON strings need double quotes, and the shell needs the whole value in single quotes, "
                "e.g. '\"text\"' or '{\"approved\": true}'"
            )
        raise CommandError(
            f"{what} is not valid JSON{where}: {error.msg} at line {error.lineno}, column {error.colno}\n"
            f"  {line}\n  {' ' * (error.colno - 1)}^{hint}"
        ) from None


def load_manifest(path: str) -> dict[str, Any]:
    """A ``WorkflowInstance`` from a YAML or JSON file (``-`` for stdin)."""
    if path == "-":
        text, origin = sys.stdin.read(), "stdin"
    else:
        try:
            text, origin = Path(path).expanduser().read_text(), path
        except OSError as error:
            raise CommandError(f"cannot read {path}: {error.strerror or error}") from None
    try:
        documents = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error)
        raise CommandError(f"{origin} is not valid YAML{where}: {problem}") from None
    instances = [d for d in documents if isinstance(d, dict) and d.get("kind") == "WorkflowInstance"]
    if len(instances) != 1:
        kinds = (
            ", ".join(str(d.get("kind")) if isinstance(d, dict) else type(d).__name__ for d in documents) or "nothing"
        )
        raise CommandError(
            f"{origin} should hold exactly one WorkflowInstance (it has: {kinds}); "
            "for anything else use `kubectl apply -f`"
        )
    manifest = instances[0]
    if manifest.get("apiVersion") != API_VERSION:
        raise CommandError(f"{origin}: apiVersion is {manifest.get('apiVersion')!r}, expected {API_VERSION!r}")
    if not isinstance(manifest.get("spec"), dict) or not manifest["spec"].get("workflow"):
        raise CommandError(f"{origin}: spec.workflow is missing: name the workflow to run")
    return manifest
