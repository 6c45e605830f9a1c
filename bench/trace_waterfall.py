"""Draw a trace as a waterfall PNG from Jaeger's query API data (the Go-built Jaeger has no UI).

    python -m bench.trace_waterfall TRACE.json OUT.png                 a saved /api/traces/{id} answer
    python -m bench.trace_waterfall --jaeger URL TRACE_ID OUT.png [--save TRACE.json]

One row per span, in tree order (children under their parent, by start time), a bar from its
start to its end coloured by service, its name, its duration and its outcome. docs/tracing.md's
picture is drawn by this from a real trace.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import httpx

_COLOURS = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860"]


def _tags(span: dict[str, Any]) -> dict[str, Any]:
    return {tag["key"]: tag["value"] for tag in span.get("tags") or []}


def _parent(span: dict[str, Any]) -> str | None:
    return next((r["spanID"] for r in span.get("references") or [] if r["refType"] == "CHILD_OF"), None)


def rows(trace: dict[str, Any]) -> list[tuple[int, dict[str, Any]]]:
    """(depth, span) in tree order: each span's children after it, earliest first."""
    spans = {span["spanID"]: span for span in trace["spans"]}
    children: dict[str | None, list[dict[str, Any]]] = {}
    for span in spans.values():
        parent = _parent(span)
        children.setdefault(parent if parent in spans else None, []).append(span)
    ordered: list[tuple[int, dict[str, Any]]] = []

    def visit(parent: str | None, depth: int) -> None:
        for span in sorted(children.get(parent, []), key=lambda s: (s["startTime"], s["operationName"])):
            ordered.append((depth, span))
            visit(span["spanID"], depth + 1)

    visit(None, 0)
    return ordered


def draw(trace: dict[str, Any], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ordered = rows(trace)
    services = {pid: process["serviceName"] for pid, process in trace["processes"].items()}
    names = sorted(set(services.values()))
    colour = {name: _COLOURS[i % len(_COLOURS)] for i, name in enumerate(names)}
    start = min(span["startTime"] for _, span in ordered)
    end = max(span["startTime"] + span["duration"] for _, span in ordered)
    total_ms = max((end - start) / 1000, 1.0)
    height = 0.28 * len(ordered) + 1.2
    figure, axis = plt.subplots(figsize=(14, height))
    rows_at = axis.get_yaxis_transform()  # x in axes fractions, y in rows
    for row, (depth, span) in enumerate(ordered):
        left = (span["startTime"] - start) / 1000
        width = max(span["duration"] / 1000, total_ms / 800)
        tags = _tags(span)
        failed = tags.get("error") is True
        service = services[span["processID"]]
        axis.barh(row, width, left=left, height=0.7, color=colour[service], edgecolor="#b00" if failed else "none")
        label = "  " * depth + span["operationName"]
        axis.text(-0.32, row, label, ha="left", va="center", fontsize=8, family="monospace", transform=rows_at)
        outcome = tags.get("plait.outcome")
        worker = tags.get("plait.worker") if span["operationName"].startswith("run ") else None
        ms = span["duration"] / 1000
        note = (
            (f"{ms:.1f} ms" if ms >= 1 else f"{ms:.2f} ms")
            + (f"  {outcome}" if outcome else "")
            + (f"  @{worker}" if worker else "")
        )
        axis.text(
            left + width + total_ms * 0.005, row, note, va="center", fontsize=7, color="#b00" if failed else "#333"
        )
    axis.set_ylim(len(ordered) - 0.4, -0.6)
    axis.set_xlim(0, total_ms * 1.3)
    axis.set_yticks([])
    axis.set_xlabel("ms since the trace started")
    for side in ("top", "right", "left"):
        axis.spines[side].set_visible(False)
    handles = [plt.Rectangle((0, 0), 1, 1, color=colour[name]) for name in names]
    axis.legend(
        handles, names, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=len(names), fontsize=8, frameon=False
    )
    figure.suptitle(f"trace {trace['traceID']} ({len(ordered)} spans, read from Jaeger's query API)", fontsize=9)
    figure.subplots_adjust(left=0.25, right=0.98, top=1 - 0.75 / height, bottom=0.8 / height)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=110)
    plt.close(figure)
    return out


def fetch(jaeger: str, trace_id: str) -> dict[str, Any]:
    response = httpx.get(f"{jaeger.rstrip('/')}/api/traces/{trace_id}", timeout=10)
    response.raise_for_status()
    trace: dict[str, Any] = response.json()["data"][0]
    return trace


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.trace_waterfall", description=__doc__.splitlines()[0])
    parser.add_argument("--jaeger", metavar="URL", help="read the trace from this query API (then give TRACE_ID)")
    parser.add_argument("--save", type=Path, metavar="FILE", help="with --jaeger: also write the trace's JSON here")
    parser.add_argument("source", help="TRACE.json, or the trace id with --jaeger")
    parser.add_argument("out", type=Path, help="the PNG to write")
    args = parser.parse_args()
    if args.jaeger:
        trace = fetch(args.jaeger, args.source)
        if args.save:
            args.save.write_text(json.dumps(trace, indent=1, sort_keys=True))
    else:
        data = json.loads(Path(args.source).read_text())
        trace = data["data"][0] if "data" in data else data
    print(draw(trace, args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
