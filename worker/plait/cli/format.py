"""Text helpers of the CLI: durations, ages, colours, aligned tables, JSON and YAML documents.

Pure functions (the clock is passed in), used by every command module and by tests.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

import yaml

from plait._kube.models import parse_rfc3339

_COLOURS = {"green": "32", "red": "31", "yellow": "33", "blue": "34", "cyan": "36", "dim": "2", "bold": "1"}
ESCAPE = re.compile("\x1b[^m]*m?")  # an ANSI colour code (or what is left of one at the end)


def duration(seconds: float | None) -> str:
    """``53ms``, ``1.2s``, ``2m03s``, ``1h02m``, ``3d04h``; ``-`` when unknown."""
    if seconds is None:
        return "-"
    seconds = max(0.0, seconds)
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 10:
        return f"{seconds:.1f}s"
    if seconds < 60:
        return f"{seconds:.0f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def compact(seconds: float | None) -> str:
    """A configured length of time in its roundest unit: ``24h``, ``90m``, ``10s``, ``500ms``, ``2.5s``."""
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size * (2 if unit == "d" else 1) and float(seconds) % size == 0:
            return f"{int(seconds // size)}{unit}"
    if seconds < 1:
        return f"{seconds * 1000:g}ms"
    return f"{seconds:g}s"


def age(timestamp: str | None, now: float) -> str:
    """How long ago an RFC 3339 timestamp was, like kubectl's AGE column (``5s``, ``3m``, ``2h``)."""
    if not timestamp:
        return "-"
    seconds = max(0, int(now - parse_rfc3339(timestamp)))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 3600 * 2:
        return f"{seconds // 60}m"
    if seconds < 86400 * 2:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def span(start: str | None, end: str | None, now: float) -> float | None:
    """Seconds from ``start`` to ``end`` (or to ``now`` while it runs); ``None`` before it started."""
    if not start:
        return None
    return (parse_rfc3339(end) if end else now) - parse_rfc3339(start)


def clock(timestamp: str | None, *, millis: bool = True) -> str:
    """``HH:MM:SS.mmm`` in local time, for log-like lines (``HH:MM:SS`` without ``millis``)."""
    if not timestamp:
        return "--:--:--.---" if millis else "--:--:--"
    moment = datetime.fromtimestamp(parse_rfc3339(timestamp), UTC).astimezone()
    return moment.strftime("%H:%M:%S") + (f".{moment.microsecond // 1000:03d}" if millis else "")


def use_colour(stream: TextIO) -> bool:
    """Colour on a terminal unless ``NO_COLOR`` is set (https://no-color.org)."""
    return stream.isatty() and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"


def unicode_ok(stream: TextIO) -> bool:
    return "utf" in (getattr(stream, "encoding", None) or "").lower()


def paint(text: str, colour: str | None, enabled: bool) -> str:
    if not enabled or not colour or not text:
        return text
    codes = ";".join(_COLOURS[c] for c in colour.split("+"))
    return f"\x1b[{codes}m{text}\x1b[0m"


def visible_len(text: str) -> int:
    """Length without ANSI colour codes."""
    return len(ESCAPE.sub("", text))


def table(
    header: Sequence[str], rows: Sequence[Sequence[str]], *, gap: int = 3, min_widths: Sequence[int] = ()
) -> list[str]:
    """Left-aligned columns like kubectl's; cells may hold colour codes."""
    widths = [max(visible_len(h), min_widths[i] if i < len(min_widths) else 0) for i, h in enumerate(header)]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], visible_len(cell))
    lines = []
    for row in [list(header), *rows]:
        cells = [cell + " " * (widths[i] - visible_len(cell)) for i, cell in enumerate(row)]
        lines.append((" " * gap).join(cells).rstrip())
    return lines


def document(value: Any, output: str) -> str:
    """``value`` as ``json`` (indented) or ``yaml``."""
    if output == "yaml":
        return yaml.safe_dump(value, sort_keys=False, allow_unicode=True).rstrip("\n")
    return json.dumps(value, indent=2, ensure_ascii=False)


def clean(body: dict[str, Any]) -> dict[str, Any]:
    """An object as users want to read it: no ``managedFields``, no internal checkpoint."""
    body = json.loads(json.dumps(body))
    body.get("metadata", {}).pop("managedFields", None)
    (body.get("status") or {}).pop("checkpoint", None)
    return body


def emit(text: str, stream: TextIO | None = None) -> None:
    print(text, file=stream or sys.stdout, flush=True)
