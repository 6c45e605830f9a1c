"""A workflow definition as data: the graph the engine core runs and the controller stores.

A definition is a root sequence of steps; a step is one node. Nodes are immutable and hold their
children directly (a fork its branches, a loop its body), which is what the engine walks. The
data form (:meth:`Definition.to_data`) is flat: every node once, by id, with sequences as lists
of ids, plus the derived edges, the input/output JSON Schema and the hash. It is the ``spec`` of
a ``WorkflowDefinition`` resource, round-trips through :meth:`Definition.from_data`, and its
canonical JSON is what :attr:`Definition.hash` digests.

Pure data: imports nothing from Kubernetes, the authoring API or the clock.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, TypeAlias, assert_never

from plait._core.flowcontrol import Concurrency, RateLimit
from plait.errors import DefinitionError

DEFAULT_QUEUE = "default"
OnMax = Literal["fail", "exit_with_last"]
OnTimeout = Literal["fail", "continue"]


@dataclass(frozen=True, slots=True)
class Retry:
    """Retry policy: ``max_retries`` more attempts after the first, with exponential backoff."""

    max_retries: int
    initial_delay_secs: float = 1.0
    backoff_multiplier: float = 2.0
    max_delay_secs: float | None = None

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {self.max_retries}")
        if self.initial_delay_secs < 0:
            raise ValueError(f"initial_delay_secs must be >= 0, got {self.initial_delay_secs}")
        if self.backoff_multiplier <= 0:
            raise ValueError(f"backoff_multiplier must be > 0, got {self.backoff_multiplier}")
        if self.max_delay_secs is not None and self.max_delay_secs < 0:
            raise ValueError(f"max_delay_secs must be >= 0, got {self.max_delay_secs}")

    def delay(self, failures: int) -> float:
        """Seconds to wait before the next attempt after ``failures`` failed attempts (>= 1)."""
        delay = self.initial_delay_secs * self.backoff_multiplier ** (failures - 1)
        return min(delay, self.max_delay_secs) if self.max_delay_secs is not None else delay

    def to_data(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "maxRetries": self.max_retries,
            "initialDelaySeconds": self.initial_delay_secs,
            "backoffMultiplier": self.backoff_multiplier,
        }
        if self.max_delay_secs is not None:
            data["maxDelaySeconds"] = self.max_delay_secs
        return data

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> Retry:
        return cls(
            max_retries=int(data["maxRetries"]),
            initial_delay_secs=float(data.get("initialDelaySeconds", 1.0)),
            backoff_multiplier=float(data.get("backoffMultiplier", 2.0)),
            max_delay_secs=float(data["maxDelaySeconds"]) if data.get("maxDelaySeconds") is not None else None,
        )


@dataclass(frozen=True, slots=True)
class TaskNode:
    """Run the registered function ``task`` on the incoming value."""

    id: str
    task: str
    timeout_secs: float | None = None
    retry: Retry | None = None
    priority: int | None = None
    tags: tuple[str, ...] = ()
    description: str | None = None
    queue: str | None = None
    concurrency: Concurrency | None = None  # attempts of this task at once, per namespace
    rate_limit: RateLimit | None = None  # attempts of this task started per period, per namespace
    kind: Literal["task"] = "task"

    @property
    def limited(self) -> bool:
        return self.concurrency is not None or self.rate_limit is not None


@dataclass(frozen=True, slots=True)
class Branch:
    """One parallel branch of a fork; its result appears in the join input under ``name``."""

    name: str
    steps: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class ForkNode:
    """Run every branch on the incoming value, then ``join`` on ``{branch name: branch result}``."""

    id: str
    branches: tuple[Branch, ...]
    join: TaskNode
    kind: Literal["fork"] = "fork"


@dataclass(frozen=True, slots=True)
class RouteNode:
    """Run ``key`` on the value, then the branch for that key (or ``default``) on the same value.

    The result is the envelope ``{"branch": key, "result": branch result}``.
    """

    id: str
    key: TaskNode
    keys: tuple[str, ...]
    branches: tuple[tuple[str, tuple[Node, ...]], ...]
    default: tuple[Node, ...] | None = None
    kind: Literal["route"] = "route"

    def branch_for(self, key: str) -> tuple[Node, ...] | None:
        for candidate, steps in self.branches:
            if candidate == key:
                return steps
        return self.default


@dataclass(frozen=True, slots=True)
class LoopNode:
    """Run ``body`` until it returns ``{"_loop": "done", "value": v}``; at most ``max_iterations`` times."""

    id: str
    body: tuple[Node, ...]
    max_iterations: int = 10
    on_max: OnMax = "fail"
    kind: Literal["loop"] = "loop"


@dataclass(frozen=True, slots=True)
class DelayNode:
    """Wait ``seconds`` without holding a worker, then pass the value on unchanged."""

    id: str
    seconds: float
    kind: Literal["delay"] = "delay"


@dataclass(frozen=True, slots=True)
class SignalNode:
    """Wait for the next ``signal`` payload, which becomes the value; optionally with a timeout and
    the payload's JSON Schema (``plait ui`` builds its form from it)."""

    id: str
    signal: str
    timeout_secs: float | None = None
    on_timeout: OnTimeout = "fail"
    payload_schema: dict[str, Any] | None = field(default=None, hash=False)
    kind: Literal["signal"] = "signal"


@dataclass(frozen=True, slots=True)
class ChildNode:
    """Run another workflow's steps inline."""

    id: str
    workflow: str
    steps: tuple[Node, ...]
    kind: Literal["child"] = "child"


Node: TypeAlias = TaskNode | ForkNode | RouteNode | LoopNode | DelayNode | SignalNode | ChildNode


PartRole = Literal["branch", "join", "key", "route", "default", "body"]


@dataclass(frozen=True, slots=True)
class Part:
    """A sequence inside a composite node, with its role there and a label (branch name, route key)."""

    role: PartRole
    label: str
    steps: tuple[Node, ...]


def parts(node: Node) -> tuple[Part, ...]:
    """The sequences a node holds, in definition order; none for a leaf (task, delay, signal).

    The one place that knows which children each kind of node has: :func:`walk`, the edges, the
    authoring API's node listing and the CLI's step tree all go through it.
    """
    if isinstance(node, TaskNode | DelayNode | SignalNode):
        return ()
    if isinstance(node, ForkNode):
        branches = tuple(Part("branch", branch.name, branch.steps) for branch in node.branches)
        return (*branches, Part("join", node.join.id, (node.join,)))
    if isinstance(node, RouteNode):
        routes = tuple(Part("route", key, steps) for key, steps in node.branches)
        default = (Part("default", "default", node.default),) if node.default is not None else ()
        return (Part("key", node.key.id, (node.key,)), *routes, *default)
    if isinstance(node, LoopNode):
        return (Part("body", "body", node.body),)
    if isinstance(node, ChildNode):
        return (Part("body", node.workflow, node.steps),)
    assert_never(node)


def with_parts(node: Node, sequences: list[tuple[Node, ...]]) -> Node:
    """``node`` holding ``sequences`` in place of its parts (in the order :func:`parts` gives)."""
    if isinstance(node, TaskNode | DelayNode | SignalNode):
        return node
    if isinstance(node, ForkNode):
        *branches, (join,) = sequences
        assert isinstance(join, TaskNode)
        named = tuple(Branch(b.name, steps) for b, steps in zip(node.branches, branches, strict=True))
        return replace(node, branches=named, join=join)
    if isinstance(node, RouteNode):
        (key,), *routes = sequences
        assert isinstance(key, TaskNode)
        keys = [k for k, _ in node.branches]
        default = routes.pop() if node.default is not None else None
        return replace(node, key=key, branches=tuple(zip(keys, routes, strict=True)), default=default)
    if isinstance(node, LoopNode):
        return replace(node, body=sequences[0])
    if isinstance(node, ChildNode):
        return replace(node, steps=sequences[0])
    assert_never(node)


def walk(steps: tuple[Node, ...]) -> Iterator[Node]:
    """Every node under ``steps``, depth first, in definition order."""
    for node in steps:
        yield node
        for part in parts(node):
            yield from walk(part.steps)


@dataclass(frozen=True)
class Definition:
    """A whole workflow: its name, root steps, schemas and metadata."""

    name: str
    steps: tuple[Node, ...]
    input_schema: dict[str, Any] | None = None
    output_schema: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    queue: str = DEFAULT_QUEUE
    concurrency: Concurrency | None = None  # instances running at once
    timeout_secs: float | None = None  # an instance's default deadline (spec.activeDeadlineSeconds)
    on_failure: TaskNode | None = None  # run once when an instance fails; in ``nodes``, not in ``steps``
    nodes: dict[str, Node] = field(init=False, repr=False, compare=False)
    hash: str = field(init=False, compare=False)

    def __post_init__(self) -> None:
        if not self.steps:
            raise DefinitionError(f"workflow {self.name!r} has no steps")
        nodes: dict[str, Node] = {}
        for node in [*walk(self.steps), *([self.on_failure] if self.on_failure is not None else [])]:
            if node.id in nodes:
                raise DefinitionError(f"workflow {self.name!r} has two nodes with id {node.id!r}")
            nodes[node.id] = node
        object.__setattr__(self, "nodes", nodes)
        body = _normalized(self._data_without_hash())
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        object.__setattr__(self, "hash", hashlib.sha256(canonical.encode()).hexdigest())

    def tasks(self) -> list[TaskNode]:
        return [node for node in self.nodes.values() if isinstance(node, TaskNode)]

    def queue_of(self, task: TaskNode) -> str:
        return task.queue or self.queue

    def queues(self) -> set[str]:
        return {self.queue_of(task) for task in self.tasks()}

    # -- data form ---------------------------------------------------------------------------

    def to_data(self) -> dict[str, Any]:
        data = self._data_without_hash()
        data["edges"] = self.edges()
        data["hash"] = self.hash
        return data

    def _data_without_hash(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "workflow": self.name,
            "queue": self.queue,
            "steps": [node.id for node in self.steps],
            "nodes": [_node_to_data(node) for node in self.nodes.values()],
        }
        if self.input_schema is not None:
            data["inputSchema"] = self.input_schema
        if self.output_schema is not None:
            data["outputSchema"] = self.output_schema
        if self.metadata is not None:
            data["metadata"] = self.metadata
        if self.concurrency is not None:
            data["concurrency"] = self.concurrency.to_data()
        if self.timeout_secs is not None:
            data["timeoutSeconds"] = self.timeout_secs
        if self.on_failure is not None:
            data["onFailure"] = self.on_failure.id
        return data

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> Definition:
        raw = {node["id"]: node for node in data["nodes"]}
        built: dict[str, Node] = {}

        def node(node_id: str) -> Node:
            if node_id not in built:
                if node_id not in raw:
                    raise DefinitionError(f"definition {data.get('workflow')!r} refers to unknown node {node_id!r}")
                built[node_id] = _node_from_data(raw[node_id], sequence)
            return built[node_id]

        def sequence(ids: list[str]) -> tuple[Node, ...]:
            return tuple(node(node_id) for node_id in ids)

        handler = node(data["onFailure"]) if data.get("onFailure") else None
        if handler is not None and not isinstance(handler, TaskNode):
            raise DefinitionError(f"definition {data.get('workflow')!r}: onFailure {data['onFailure']!r} is not a task")
        definition = cls(
            name=data["workflow"],
            steps=sequence(data["steps"]),
            input_schema=data.get("inputSchema"),
            output_schema=data.get("outputSchema"),
            metadata=data.get("metadata"),
            queue=data.get("queue", DEFAULT_QUEUE),
            concurrency=Concurrency.from_data(data["concurrency"]) if data.get("concurrency") else None,
            timeout_secs=float(data["timeoutSeconds"]) if data.get("timeoutSeconds") is not None else None,
            on_failure=handler,
        )
        if data.get("hash") and data["hash"] != definition.hash:
            raise DefinitionError(
                f"definition {definition.name!r} says hash {data['hash']} but its content hashes to {definition.hash}"
            )
        return definition

    def edges(self) -> list[dict[str, str]]:
        """Derived control-flow edges ``{from, to, label?}`` for display; not part of the hash."""
        edges: list[dict[str, str]] = []

        def chain(steps: tuple[Node, ...], entry: str | None, label: str | None) -> str | None:
            previous = entry
            for index, step in enumerate(steps):
                if previous is not None:
                    edge = {"from": previous, "to": step.id}
                    if index == 0 and label:
                        edge["label"] = label
                    edges.append(edge)
                previous = exit_of(step)
            return previous

        def exit_of(step: Node) -> str:
            inner = parts(step)
            if isinstance(step, ForkNode):
                for part in inner[:-1]:
                    edges.append({"from": chain(part.steps, step.id, part.label) or step.id, "to": step.join.id})
                return step.join.id
            if isinstance(step, RouteNode):
                edges.append({"from": step.id, "to": step.key.id, "label": "key"})
                for part in inner[1:]:
                    chain(part.steps, step.key.id, part.label)
                return step.id
            if isinstance(step, LoopNode):
                last = chain(step.body, step.id, "body")
                edges.append({"from": last or step.id, "to": step.id, "label": "again"})
                return step.id
            if isinstance(step, ChildNode):
                return chain(step.steps, step.id, step.workflow) or step.id
            if isinstance(step, TaskNode | DelayNode | SignalNode):
                return step.id
            assert_never(step)

        chain(self.steps, None, None)
        return edges


def _normalized(value: Any) -> Any:
    """``value`` with integral floats as ints: JSON round trips (the API server's) turn 60.0 into 60."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: _normalized(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_normalized(item) for item in value]
    return value


def _node_to_data(node: Node) -> dict[str, Any]:
    data: dict[str, Any] = {"id": node.id, "kind": node.kind}
    if isinstance(node, TaskNode):
        data["task"] = node.task
        if node.timeout_secs is not None:
            data["timeoutSeconds"] = node.timeout_secs
        if node.retry is not None:
            data["retry"] = node.retry.to_data()
        if node.priority is not None:
            data["priority"] = node.priority
        if node.tags:
            data["tags"] = list(node.tags)
        if node.description:
            data["description"] = node.description
        if node.queue:
            data["queue"] = node.queue
        if node.concurrency is not None:
            data["concurrency"] = node.concurrency.to_data()
        if node.rate_limit is not None:
            data["rateLimit"] = node.rate_limit.to_data()
    elif isinstance(node, ForkNode):
        data["branches"] = [{"name": b.name, "steps": [s.id for s in b.steps]} for b in node.branches]
        data["join"] = node.join.id
    elif isinstance(node, RouteNode):
        data["key"] = node.key.id
        data["keys"] = list(node.keys)
        data["routes"] = [{"key": key, "steps": [s.id for s in steps]} for key, steps in node.branches]
        if node.default is not None:
            data["default"] = [s.id for s in node.default]
    elif isinstance(node, LoopNode):
        data["body"] = [s.id for s in node.body]
        data["maxIterations"] = node.max_iterations
        data["onMax"] = node.on_max
    elif isinstance(node, DelayNode):
        data["seconds"] = node.seconds
    elif isinstance(node, SignalNode):
        data["signal"] = node.signal
        if node.timeout_secs is not None:
            data["timeoutSeconds"] = node.timeout_secs
        data["onTimeout"] = node.on_timeout
        if node.payload_schema is not None:  # absent otherwise: the hashes of earlier versions stay
            data["payloadSchema"] = node.payload_schema
    elif isinstance(node, ChildNode):
        data["workflow"] = node.workflow
        data["steps"] = [s.id for s in node.steps]
    else:
        assert_never(node)
    return data


def _node_from_data(data: Mapping[str, Any], sequence: Any) -> Node:
    kind = data["kind"]
    node_id = data["id"]
    if kind == "task":
        return TaskNode(
            id=node_id,
            task=data["task"],
            timeout_secs=data.get("timeoutSeconds"),
            retry=Retry.from_data(data["retry"]) if data.get("retry") else None,
            priority=data.get("priority"),
            tags=tuple(data.get("tags", ())),
            description=data.get("description"),
            queue=data.get("queue"),
            concurrency=Concurrency.from_data(data["concurrency"]) if data.get("concurrency") else None,
            rate_limit=RateLimit.from_data(data["rateLimit"]) if data.get("rateLimit") else None,
        )
    if kind == "fork":
        join = sequence([data["join"]])[0]
        if not isinstance(join, TaskNode):
            raise DefinitionError(f"fork {node_id!r}: join {data['join']!r} is not a task")
        return ForkNode(
            id=node_id,
            branches=tuple(Branch(b["name"], sequence(b["steps"])) for b in data["branches"]),
            join=join,
        )
    if kind == "route":
        key = sequence([data["key"]])[0]
        if not isinstance(key, TaskNode):
            raise DefinitionError(f"route {node_id!r}: key {data['key']!r} is not a task")
        return RouteNode(
            id=node_id,
            key=key,
            keys=tuple(data["keys"]),
            branches=tuple((r["key"], sequence(r["steps"])) for r in data["routes"]),
            default=sequence(data["default"]) if data.get("default") is not None else None,
        )
    if kind == "loop":
        return LoopNode(
            id=node_id, body=sequence(data["body"]), max_iterations=int(data["maxIterations"]), on_max=data["onMax"]
        )
    if kind == "delay":
        return DelayNode(id=node_id, seconds=float(data["seconds"]))
    if kind == "signal":
        return SignalNode(
            id=node_id,
            signal=data["signal"],
            timeout_secs=data.get("timeoutSeconds"),
            on_timeout=data.get("onTimeout", "fail"),
            payload_schema=data.get("payloadSchema"),
        )
    if kind == "child":
        return ChildNode(id=node_id, workflow=data["workflow"], steps=sequence(data["steps"]))
    raise DefinitionError(f"node {node_id!r} has unknown kind {kind!r}")
