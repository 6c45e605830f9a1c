"""CustomResourceDefinitions generated from the resource models in :mod:`plait._kube.models`.

pydantic's JSON Schema is turned into a Kubernetes *structural* schema (references inlined,
optional fields ``nullable``, free-form JSON as ``x-kubernetes-preserve-unknown-fields``,
OpenAPI v3.0 bounds), and each CRD gets its printer columns, short names, the ``plait``
category, selectable fields and CEL rules (specs are immutable). ``python -m plait._kube.crds
DIR`` writes them as YAML; ``crds/`` and the chart's ``crds/`` are that output, and a test fails
when they drift from the models.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from plait._kube.models import (
    GROUP,
    VERSION,
    KubeObject,
    WorkflowDefinition,
    WorkflowInstance,
    WorkflowSchedule,
    WorkflowSignal,
    WorkflowTask,
)

JSON = dict[str, Any]
_KEPT = ("description", "enum", "pattern", "minLength", "maxLength", "minimum", "maximum", "format", "minItems")

_AGE_COLUMN: JSON = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
# Each kind's columns for `kubectl get`, before the Age column every kind ends with.
_PRINTER_COLUMNS: dict[str, list[JSON]] = {
    "WorkflowInstance": [
        {"name": "Workflow", "type": "string", "jsonPath": ".spec.workflow"},
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
        {"name": "Step", "type": "string", "jsonPath": ".status.currentStep"},
        {"name": "Progress", "type": "string", "jsonPath": ".status.progress"},
    ],
    "WorkflowTask": [
        {"name": "Instance", "type": "string", "jsonPath": ".spec.instance"},
        {"name": "Step", "type": "string", "jsonPath": ".spec.step"},
        {"name": "Attempt", "type": "integer", "jsonPath": ".spec.attempt"},
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
        {"name": "Holder", "type": "string", "jsonPath": ".status.claim.holder"},
        {"name": "Held", "type": "string", "jsonPath": ".metadata.labels.plait\\.dev/held"},
    ],
    "WorkflowDefinition": [
        {"name": "Workflow", "type": "string", "jsonPath": ".spec.workflow"},
        {"name": "Queue", "type": "string", "jsonPath": ".spec.queue"},
        {"name": "Hash", "type": "string", "jsonPath": ".spec.hash", "priority": 1},
    ],
    "WorkflowSignal": [
        {"name": "Instance", "type": "string", "jsonPath": ".spec.instance"},
        {"name": "Signal", "type": "string", "jsonPath": ".spec.name"},
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    ],
    "WorkflowSchedule": [
        {"name": "Schedule", "type": "string", "jsonPath": ".spec.schedule"},
        {"name": "TimeZone", "type": "string", "jsonPath": ".spec.timeZone"},
        {"name": "Suspend", "type": "boolean", "jsonPath": ".spec.suspend"},
        {"name": "Next", "type": "string", "jsonPath": ".status.nextScheduleTime"},
        {"name": "Last", "type": "date", "jsonPath": ".status.lastScheduleTime"},
        {"name": "Active", "type": "string", "jsonPath": ".status.active[*].name"},
    ],
}

_SELECTABLE_FIELDS: dict[str, list[str]] = {
    "WorkflowTask": [".spec.instance", ".spec.queue"],
    "WorkflowSignal": [".spec.instance", ".spec.name"],
    "WorkflowDefinition": [".spec.workflow"],
}

_IMMUTABLE_SPEC_MESSAGE = {
    "WorkflowInstance": "spec is immutable: an instance runs the workflow and input it was created with",
    "WorkflowTask": "spec is immutable",
    "WorkflowDefinition": "spec is immutable: a definition version is identified by its hash",
    "WorkflowSignal": "spec is immutable: send a new signal instead",
}  # kinds not named here (WorkflowSchedule) may change their spec
# Kinds whose spec defaults the API server fills in (as for CronJob), so that `kubectl get` shows them.
_DEFAULTED_SPECS = frozenset({"WorkflowSchedule"})


def structural(schema: JSON, defs: JSON) -> JSON:
    """A pydantic JSON Schema node as a Kubernetes structural schema node."""
    if "$ref" in schema:
        resolved = dict(defs[schema["$ref"].rsplit("/", 1)[-1]])
        resolved.update({k: v for k, v in schema.items() if k != "$ref"})
        return structural(resolved, defs)
    if "anyOf" in schema:
        options = [s for s in schema["anyOf"] if s.get("type") != "null"]
        if len(options) == 1:
            single = structural({**options[0], **{k: v for k, v in schema.items() if k in _KEPT}}, defs)
            if len(options) < len(schema["anyOf"]):
                single["nullable"] = True
            return single
        return _free_form(schema)
    kind = schema.get("type")
    if kind is None:
        if "const" in schema:
            return {"type": "string", "enum": [schema["const"]]}
        return _free_form(schema)
    out: JSON = {"type": kind}
    for key in _KEPT:
        if key in schema:
            out[key] = schema[key]
    if "const" in schema:
        out["enum"] = [schema["const"]]
    if "exclusiveMinimum" in schema:
        out["minimum"], out["exclusiveMinimum"] = schema["exclusiveMinimum"], True
    if "exclusiveMaximum" in schema:
        out["maximum"], out["exclusiveMaximum"] = schema["exclusiveMaximum"], True
    if kind == "object":
        properties = schema.get("properties")
        extra = schema.get("additionalProperties")
        if properties:
            out["properties"] = {name: structural(value, defs) for name, value in properties.items()}
            if schema.get("required"):
                out["required"] = list(schema["required"])
        elif isinstance(extra, dict) and extra:
            out["additionalProperties"] = structural(extra, defs)
        else:
            out["x-kubernetes-preserve-unknown-fields"] = True
    elif kind == "array":
        out["items"] = structural(schema.get("items", {}), defs)
    return out


def _free_form(schema: JSON) -> JSON:
    out: JSON = {"x-kubernetes-preserve-unknown-fields": True}
    if "description" in schema:
        out["description"] = schema["description"]
    return out


def _schema(model: type[KubeObject]) -> JSON:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.get("$defs", {})
    properties: JSON = {}
    for name in ("spec", "status"):
        if name in raw["properties"]:
            node = structural(raw["properties"][name], defs)
            node.pop("nullable", None)
            properties[name] = node
    if model.RESOURCE.kind in _DEFAULTED_SPECS:
        spec_model = model.model_fields["spec"].annotation
        assert isinstance(spec_model, type) and issubclass(spec_model, BaseModel)
        for name, field in spec_model.model_fields.items():
            if field.default is not None and field.default is not PydanticUndefined:
                properties["spec"]["properties"][name]["default"] = field.default
    if model.RESOURCE.kind in _IMMUTABLE_SPEC_MESSAGE:
        properties["spec"]["x-kubernetes-validations"] = [
            {"rule": "self == oldSelf", "message": _IMMUTABLE_SPEC_MESSAGE[model.RESOURCE.kind]}
        ]
    return {
        "type": "object",
        "description": model.DESCRIPTION,
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            **properties,
        },
    }


def crd(model: type[KubeObject]) -> JSON:
    resource = model.RESOURCE
    kind = resource.kind
    version: JSON = {
        "name": VERSION,
        "served": True,
        "storage": True,
        "schema": {"openAPIV3Schema": _schema(model)},
        "additionalPrinterColumns": [*_PRINTER_COLUMNS[kind], _AGE_COLUMN],
    }
    if "status" in model.model_fields:
        version["subresources"] = {"status": {}}
    if kind in _SELECTABLE_FIELDS:
        version["selectableFields"] = [{"jsonPath": path} for path in _SELECTABLE_FIELDS[kind]]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{resource.plural}.{GROUP}", "labels": {"app.kubernetes.io/part-of": "plait"}},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "plural": resource.plural,
                "singular": kind.lower(),
                "kind": kind,
                "listKind": f"{kind}List",
                "shortNames": list(model.SHORT_NAMES),
                "categories": ["plait"],
            },
            "versions": [version],
        },
    }


MODELS: tuple[type[KubeObject], ...] = (
    WorkflowDefinition,
    WorkflowInstance,
    WorkflowSchedule,
    WorkflowSignal,
    WorkflowTask,
)


def all_crds() -> list[JSON]:
    return [crd(model) for model in MODELS]


def render(document: JSON) -> str:
    header = "# Generated from plait's resource models (python -m plait._kube.crds). Do not edit.\n"
    return header + yaml.safe_dump(document, sort_keys=False, width=120)


def file_name(document: JSON) -> str:
    return f"{document['metadata']['name']}.yaml"


def write(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for document in all_crds():
        path = directory / file_name(document)
        path.write_text(render(document))
        written.append(path)
    return written


if __name__ == "__main__":
    for target in sys.argv[1:] or ["crds"]:
        for path in write(Path(target)):
            print(path)
