"""docs/tracing.md's picture is drawn from the real trace saved beside it: the drawing keeps the
tree (every span after its parent, one root) and writes a PNG."""

from __future__ import annotations

import json
from pathlib import Path

from bench.trace_waterfall import _parent, draw, rows

TRACE = Path(__file__).resolve().parents[2] / "docs" / "tracing-order-trace.json"


def test_the_saved_trace_draws_as_a_tree_with_one_root(tmp_path: Path) -> None:
    trace = json.loads(TRACE.read_text())
    ordered = rows(trace)
    assert len(ordered) == len(trace["spans"])
    assert [depth for depth, _ in ordered].count(0) == 1
    assert ordered[0][1]["operationName"] == "instance order-processing"
    seen: set[str] = set()
    for depth, span in ordered:
        assert depth == 0 or _parent(span) in seen, span["operationName"]
        seen.add(span["spanID"])
    assert draw(trace, tmp_path / "trace.png").read_bytes().startswith(b"\x89PNG")
