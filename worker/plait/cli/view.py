"""What ``plait get`` shows for one instance: a header (phase, progress bar, timing), the step
tree, and the result, error or the next thing to do. Pure functions over the instance, its
definition and its tasks; :mod:`plait.cli.follow` redraws them live.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from plait._kube.models import definition_hash_of
from plait.cli.common import program
from plait.cli.format import age, duration, paint, span
from plait.cli.steptree import StepRow, render_rows, step_rows

PHASE_COLOURS = {
    "Succeeded": "green",
    "Failed": "red",
    "Cancelled": "yellow",
    "Paused": "yellow",
    "AwaitingSignal": "blue",
    "Waiting": "blue",
    "Running": "cyan",
    "Pending": "dim",
    "Queued": "dim",
}


@dataclass(frozen=True)
class Style:
    colour: bool = False
    fancy: bool = True  # unicode symbols and box drawing


def phase_of(instance: Mapping[str, Any]) -> str:
    return str((instance.get("status") or {}).get("phase") or "Pending")


def progress_bar(progress: str | None, width: int = 20, fancy: bool = True) -> str:
    """``[██████░░░░]`` for ``"3/5"``; empty when the progress is unknown."""
    try:
        done, total = (int(part) for part in (progress or "").split("/"))
    except ValueError:
        return ""
    filled = round(width * done / total) if total else 0
    full, empty = ("█", "░") if fancy else ("#", "-")
    return f"[{full * filled}{empty * (width - filled)}]"


def compact_json(value: Any, limit: int = 160) -> str:
    text = json.dumps(value, ensure_ascii=False, separators=(", ", ": "))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def waiting_signals(definition: Mapping[str, Any] | None, rows: Sequence[StepRow]) -> list[str]:
    """Names of the signals the instance waits for right now."""
    nodes = {n["id"]: n for n in (definition or {}).get("nodes") or []}
    return [str(nodes.get(r.id, {}).get("signal") or r.id) for r in rows if r.kind == "signal" and r.state == "waiting"]


def header_lines(instance: Mapping[str, Any], now: float, style: Style) -> list[str]:
    meta, spec, status = instance["metadata"], instance.get("spec") or {}, instance.get("status") or {}
    phase = phase_of(instance)
    version = (definition_hash_of(instance) or "")[:12]
    first = f"{paint(meta['name'], 'bold', style.colour)}   workflow {spec.get('workflow')}"
    first += f"   namespace {meta.get('namespace')}" + (f"   version {version}" if version else "")
    phase_text = paint(phase, PHASE_COLOURS.get(phase), style.colour)
    message = status.get("message") or ""
    second = phase_text + (f"   {message}" if message and message.lower() != phase.lower() else "")
    progress = status.get("progress")
    timing = []
    if status.get("startedAt"):
        timing.append(f"started {age(status['startedAt'], now)} ago")
        elapsed = duration(span(status["startedAt"], status.get("finishedAt"), now))
        timing.append(f"took {elapsed}" if status.get("finishedAt") else f"running for {elapsed}")
    else:
        timing.append(f"created {age(meta.get('creationTimestamp'), now)} ago")
    third = "   ".join(
        part
        for part in (progress_bar(progress, fancy=style.fancy), f"{progress} steps" if progress else "", *timing)
        if part
    )
    return [first, second, third]


def footer_lines(
    instance: Mapping[str, Any], definition: Mapping[str, Any] | None, rows: Sequence[StepRow], style: Style
) -> list[str]:
    name = instance["metadata"]["name"]
    status = instance.get("status") or {}
    phase = phase_of(instance)
    me = program()
    if phase == "Succeeded":
        return [f"result: {compact_json(status.get('output'))}   (all of it: {me} result {name})"]
    if phase == "Failed":
        return [paint(f"error: {status.get('error') or status.get('message') or 'unknown'}", "red", style.colour)]
    if phase == "Cancelled":
        return [paint(status.get("message") or "cancelled", "yellow", style.colour)]
    if phase == "Paused":
        return [f"resume it: {me} resume {name}"]
    if not definition and phase == "Pending":
        workflow = (instance.get("spec") or {}).get("workflow")
        return [f"no worker has published workflow {workflow!r} in this namespace yet; start one: plait worker MODULE"]
    lines = []
    for signal in waiting_signals(definition, rows):
        lines.append(f"send it: {me} signal {name} {signal} '{{...}}'")
    return lines


def instance_lines(
    instance: Mapping[str, Any],
    definition: Mapping[str, Any] | None,
    tasks: Iterable[Mapping[str, Any]],
    now: float,
    style: Style = Style(),
) -> list[str]:
    """The whole view of ``plait get``: header, step tree, footer."""
    spec = (definition or {}).get("spec")
    rows = step_rows(spec, instance.get("status") or {}, tasks)
    lines = header_lines(instance, now, style)
    lines.append("")
    lines += render_rows(rows, now, colour=style.colour, fancy=style.fancy)
    footer = footer_lines(instance, spec, rows, style)
    if footer:
        lines += ["", *footer]
    return lines
