"""A workflow definition drawn as a graph: Graphviz ``dot`` source, rendered to SVG.

:func:`dot_source` is pure: every node of a ``WorkflowDefinition`` spec with the derived edges
(:meth:`Definition.edges`), each node styled by its state (fill, border and line style differ per
state, and the state is also written in the node as a symbol and a word, so colour is never the
only cue) and linked to its step's details. :func:`render_svg` runs ``dot -Tsvg`` (Debian's
``graphviz``, see hack/install-ui-deps.sh) without blocking the event loop, and caches by source.
Where ``dot`` is missing (the operator image the chart's UI runs has none), the browser draws the
same source with Graphviz compiled to WebAssembly (static/graph.js): :func:`where_to_draw`.
"""

from __future__ import annotations

import asyncio
import shutil
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from plait._core.definition import ChildNode, Definition, DelayNode, ForkNode, LoopNode, Node, RouteNode, SignalNode
from plait.cli.format import compact

# state -> (symbol, fill, border, line style, pen width)
_STATE_STYLE: dict[str, tuple[str, str, str, str, float]] = {
    "succeeded": ("✓", "#dcfce7", "#166534", "solid", 1.5),
    "failed": ("✗", "#fee2e2", "#b91c1c", "solid", 3.0),
    "running": ("●", "#dbeafe", "#1e40af", "solid", 2.5),
    "retrying": ("↻", "#fef3c7", "#92400e", "dashed", 2.5),
    "waiting": ("◷", "#ede9fe", "#5b21b6", "solid", 2.0),
    "pending": ("·", "#f8fafc", "#64748b", "dashed", 1.0),
    "skipped": ("-", "#ffffff", "#94a3b8", "dotted", 1.0),
    "not run": ("-", "#ffffff", "#94a3b8", "dotted", 1.0),
    "cancelled": ("⊘", "#fef3c7", "#92400e", "solid", 2.0),
    # a diff between two versions
    "added": ("+", "#dcfce7", "#166534", "solid", 2.5),
    "changed": ("~", "#fef3c7", "#92400e", "solid", 2.5),
    "unchanged": ("", "#f8fafc", "#64748b", "solid", 1.0),
}
_SHAPES = {
    "task": "box",
    "fork": "trapezium",
    "route": "diamond",
    "loop": "ellipse",
    "delay": "hexagon",
    "signal": "parallelogram",
    "child": "box3d",
}


def _label(node: Node) -> str:
    if isinstance(node, ForkNode):
        return f"fork ({len(node.branches)} branches)"
    if isinstance(node, RouteNode | LoopNode):
        return f"{node.kind} {node.id}"
    if isinstance(node, ChildNode):
        return f"flow {node.workflow}"
    if isinstance(node, DelayNode):
        return f"{node.id}\ndelay {compact(node.seconds)}"
    if isinstance(node, SignalNode):
        return f"{node.id}\nsignal {node.signal!r}" if node.signal != node.id else f"{node.id}\n(signal)"
    return node.id


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _attributes(values: Mapping[str, str | float]) -> str:
    return ", ".join(f"{key}={_quote(str(value))}" for key, value in values.items())


@dataclass(frozen=True)
class NodeInfo:
    """What a node shows besides its id: its state and a short line (attempts, policy)."""

    state: str | None = None
    detail: str = ""


def dot_source(
    spec: Mapping[str, Any],
    nodes: Mapping[str, NodeInfo],
    link: Callable[[str], str] | None = None,
) -> str:
    """The ``dot`` graph of a definition spec, one node per definition node."""
    definition = Definition.from_data(spec)
    lines = [
        "digraph workflow {",
        '  graph [rankdir=TB, bgcolor="transparent", nodesep=0.3, ranksep=0.35, fontname="DejaVu Sans"];',
        '  node [fontname="DejaVu Sans", fontsize=11, margin="0.15,0.06"];',
        '  edge [fontname="DejaVu Sans", fontsize=9, color="#475569", fontcolor="#334155"];',
    ]
    for node_id, node in definition.nodes.items():
        info = nodes.get(node_id, NodeInfo())
        label = _label(node)
        attributes: dict[str, str | float] = {"shape": _SHAPES.get(node.kind, "box"), "id": f"step-{node_id}"}
        style = ["filled"] + (["rounded"] if node.kind == "task" else [])
        if info.state is not None:
            symbol, fill, border, line, width = _STATE_STYLE.get(info.state, ("?", "#ffffff", "#000000", "solid", 1.0))
            label += f"\n{symbol} {info.state}".rstrip() if info.state != "unchanged" else ""
            attributes.update(fillcolor=fill, color=border, penwidth=width)
            style.append(line)
        else:
            attributes.update(fillcolor="#f8fafc", color="#475569")
        if info.detail:
            label += f"\n{info.detail}"
        attributes["label"] = label
        attributes["style"] = ",".join(style)
        attributes["tooltip"] = f"{node_id}: {info.state or node.kind}"
        if link is not None:
            attributes.update(URL=link(node_id), target="_top")
        lines.append(f"  {_quote(node_id)} [{_attributes(attributes)}];")
    for edge in definition.edges():
        extra = {"label": edge["label"]} if edge.get("label") else {}
        if edge.get("label") == "again":
            extra["style"] = "dashed"
        suffix = f" [{_attributes(extra)}]" if extra else ""
        lines.append(f"  {_quote(edge['from'])} -> {_quote(edge['to'])}{suffix};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def where_to_draw(choice: str = "auto") -> str:
    """``server`` (``dot`` here) or ``browser``; ``auto`` picks the server when ``dot`` is installed."""
    if choice == "auto":
        return "server" if shutil.which("dot") else "browser"
    return choice


class GraphError(Exception):
    """``dot`` is missing or failed: the page says so and shows the step table alone."""


_CACHE: OrderedDict[str, str] = OrderedDict()
_CACHE_SIZE = 256


async def render_svg(source: str) -> str:
    """The ``<svg>`` element for ``source`` (``dot -Tsvg``), from a small cache when seen before."""
    cached = _CACHE.get(source)
    if cached is not None:
        _CACHE.move_to_end(source)
        return cached
    if shutil.which("dot") is None:
        raise GraphError("Graphviz's `dot` is not installed (apt-get install graphviz, or `make ui-deps`)")
    process = await asyncio.create_subprocess_exec(
        "dot",
        "-Tsvg",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(source.encode()), 20.0)
    except TimeoutError:
        process.kill()
        raise GraphError("dot took longer than 20s to lay the graph out") from None
    if process.returncode != 0:
        raise GraphError(f"dot failed: {err.decode(errors='replace').strip()[:500]}")
    text = out.decode()
    svg = text[text.index("<svg") :]
    _CACHE[source] = svg
    if len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return svg
