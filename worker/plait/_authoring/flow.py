"""``Flow``: the fluent builder that turns task functions into a :class:`Workflow`.

``Flow(name).then(f).fork().branch(g).branch(h).join(j).route(key, keys=[...]).branch(...)
.done().loop(body).delay(...).wait_for_signal(...).then_flow(child).build()`` gives a
:class:`Workflow`: a :class:`~plait._core.definition.Definition` (the graph as data, what the
engine core runs and the controller stores) plus the task registry (what workers call). Node ids
follow sayiir's (``a||b`` for a fork, ``branch_0``, ``loop_0``, ``child_0``, ``lambda_0``).
"""

from __future__ import annotations

import dataclasses
import inspect
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import jsonschema
from pydantic import BaseModel, TypeAdapter

from plait._authoring.loop import LoopResult, OnMax
from plait._authoring.tasks import TaskMetadata, io_types, parse_duration
from plait._core.definition import (
    DEFAULT_QUEUE,
    Branch,
    ChildNode,
    Definition,
    DelayNode,
    ForkNode,
    LoopNode,
    Node,
    RouteNode,
    SignalNode,
    TaskNode,
    parts,
    with_parts,
)
from plait._core.flowcontrol import Concurrency

KEY_FN_SUFFIX = "::key_fn"
#: Result types that :meth:`TaskFunction.convert` returns unchanged: checked first, as most results are.
_PLAIN_RESULTS = frozenset({str, int, float, bool, type(None), dict, list})


class TaskFunction:
    """A registered task: the user's function plus the conversions around it.

    Inputs annotated with a pydantic model are validated into it; a returned model is dumped to
    JSON-ready data; a returned :class:`LoopResult` becomes its wire form.
    """

    __slots__ = ("fn", "input_model", "is_async", "metadata", "task_id")

    def __init__(self, task_id: str, fn: Callable[..., Any]) -> None:
        self.task_id = task_id
        self.fn = fn
        self.metadata: TaskMetadata | None = getattr(fn, "_metadata", None)
        call = fn if inspect.isfunction(fn) or inspect.ismethod(fn) else type(fn).__call__  # callable objects
        self.is_async = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(call)
        input_type = io_types(fn)[0]
        self.input_model = input_type if isinstance(input_type, type) and issubclass(input_type, BaseModel) else None

    def prepare(self, value: Any) -> Any:
        if self.input_model is not None and not isinstance(value, self.input_model):
            return self.input_model.model_validate(value)
        return value

    @staticmethod
    def convert(result: Any) -> Any:
        if isinstance(result, LoopResult):
            return {"_loop": "again" if result.is_again else "done", "value": TaskFunction.convert(result.value)}
        if isinstance(result, BaseModel):
            return result.model_dump(mode="json")
        return result

    def __call__(self, value: Any) -> Any:
        """Run a sync task (conversions included)."""
        result = self.fn(value if self.input_model is None else self.prepare(value))
        return result if type(result) in _PLAIN_RESULTS else self.convert(result)

    async def call_async(self, value: Any) -> Any:
        result = await self.fn(value if self.input_model is None else self.prepare(value))
        return result if type(result) in _PLAIN_RESULTS else self.convert(result)


@dataclass(frozen=True)
class NodeInfo:
    """One node of the workflow graph, as ``Workflow.iter_nodes()`` lists it (sayiir's shape)."""

    id: str
    kind: str
    predecessor_id: str | None
    timeout_secs: float | None = None
    retry_policy: Any = None
    priority: int | None = None


_NODE_KINDS = {
    "task": "task",
    "fork": "fork",
    "route": "branch",
    "loop": "loop",
    "delay": "delay",
    "signal": "await_signal",
    "child": "child_workflow",
}


class Workflow:
    """A built workflow: the definition (graph as data) and the task registry."""

    def __init__(self, definition: Definition, tasks: dict[str, TaskFunction]) -> None:
        self.definition = definition
        self.tasks = tasks

    @property
    def workflow_id(self) -> str:
        return self.definition.name

    @property
    def definition_hash(self) -> str:
        return self.definition.hash

    @property
    def metadata(self) -> dict[str, Any] | None:
        return self.definition.metadata

    @property
    def _task_registry(self) -> dict[str, Callable[..., Any]]:
        """sayiir's name for the tasks: task id (explicit names included) to the user's function."""
        return {task_id: registered.fn for task_id, registered in self.tasks.items()}

    @property
    def _inner(self) -> Workflow:
        """What sayiir passes to its engines (``engine.run(workflow._inner, ...)``): here, the workflow."""
        return self

    def with_registry(self, registry: dict[str, Callable[..., Any]] | None) -> Workflow:
        """This workflow running the functions of ``registry`` (sayiir's engines take one), by task id."""
        if registry is None or registry == self._task_registry:
            return self
        missing = sorted(set(self.tasks) - set(registry))
        if missing:
            raise ValueError(f"the task registry lacks task(s) {', '.join(missing)} of workflow {self.workflow_id!r}")
        tasks = {
            task_id: registered if registry[task_id] is registered.fn else TaskFunction(task_id, registry[task_id])
            for task_id, registered in self.tasks.items()
        }
        return Workflow(self.definition, tasks)

    def iter_nodes(self) -> list[NodeInfo]:
        """Every node in execution order, with the node it follows."""
        infos: list[NodeInfo] = []

        def visit(steps: tuple[Node, ...], parent: str | None) -> None:
            previous = parent
            for node in steps:
                infos.append(_info(node, previous))
                for part in parts(node):
                    if part.role != "key":  # sayiir lists a route's key function as the route itself
                        visit(part.steps, node.id)
                previous = node.join.id if isinstance(node, ForkNode) else node.id

        visit(self.definition.steps, None)
        return infos

    def __repr__(self) -> str:
        return f"Workflow({self.workflow_id!r}, hash={self.definition_hash[:12]})"


def _info(node: Node, predecessor: str | None) -> NodeInfo:
    timeout = None
    if isinstance(node, TaskNode | SignalNode):
        timeout = node.timeout_secs
    elif isinstance(node, DelayNode):
        timeout = node.seconds
    retry = node.retry if isinstance(node, TaskNode) else None
    priority = node.priority if isinstance(node, TaskNode) else None
    return NodeInfo(node.id, _NODE_KINDS[node.kind], predecessor, timeout, retry, priority)


class _Builder:
    """State shared by a flow and the builders it hands out: tasks, ids, counters."""

    def __init__(self) -> None:
        self.tasks: dict[str, TaskFunction] = {}
        self.used_ids: set[str] = set()
        self.lambdas = 0
        self.routes = 0
        self.loops = 0
        self.children = 0

    def unique(self, wanted: str) -> str:
        node_id, n = wanted, 1
        while node_id in self.used_ids:
            n += 1
            node_id = f"{wanted}#{n}"
        self.used_ids.add(node_id)
        return node_id

    def register(self, fn: Callable[..., Any], name: str | None = None) -> TaskFunction:
        if not callable(fn):
            raise TypeError(f"a task must be callable, got {fn!r}")
        task_id = name or getattr(fn, "_task_id", None) or getattr(fn, "__name__", None) or "<lambda>"
        if task_id == "<lambda>":
            task_id = f"lambda_{self.lambdas}"
            self.lambdas += 1
        existing = self.tasks.get(task_id)
        if existing is not None and existing.fn is not fn:
            raise ValueError(
                f"task id {task_id!r} is already used by another function in this flow; "
                "give one of them a distinct name (name=... or @task('...'))"
            )
        registered = existing or TaskFunction(task_id, fn)
        self.tasks[task_id] = registered
        return registered

    def task_node(self, fn: Callable[..., Any], name: str | None = None) -> TaskNode:
        registered = self.register(fn, name)
        meta = registered.metadata
        return TaskNode(
            id=self.unique(registered.task_id),
            task=registered.task_id,
            timeout_secs=meta.timeout_secs if meta else None,
            retry=meta.retries.to_retry() if meta and meta.retries else None,
            priority=meta.priority if meta else None,
            tags=tuple(meta.tags or ()) if meta else (),
            description=meta.description if meta else None,
            queue=meta.queue if meta else None,
            concurrency=meta.concurrency if meta else None,
            rate_limit=meta.rate_limit if meta else None,
        )

    def chain(self, fns: tuple[Callable[..., Any], ...], name: str | None) -> tuple[TaskNode, ...]:
        if not fns:
            raise ValueError("branch() requires at least one task function")
        return tuple(self.task_node(fn, name if i == 0 else None) for i, fn in enumerate(fns))


class ForkBuilder:
    """Parallel branches, closed by :meth:`join`."""

    def __init__(self, flow: Flow) -> None:
        self._flow = flow
        self._branches: list[tuple[TaskNode, ...]] = []

    def branch(self, *task_funcs: Callable[..., Any], name: str | None = None) -> ForkBuilder:
        """Add a branch of one or more chained tasks; its key in the join input is its first task's id."""
        self._branches.append(self._flow._builder.chain(task_funcs, name))
        return self

    def join(self, task_func: Callable[..., Any], *, name: str | None = None) -> Flow:
        """Close the fork with a task receiving ``{branch name: branch result}``."""
        if not self._branches:
            raise ValueError("Fork must have at least one branch")
        builder = self._flow._builder
        firsts = [chain[0].task for chain in self._branches]
        # sayiir's id joins every branch name; a wide fork's would be repeated in each of its edges
        # (500 branches made a 1.5 MB definition), so past a few branches it names the ends only
        joined = "||".join(firsts) if len(firsts) <= _FORK_ID_BRANCHES else f"{firsts[0]}||{len(firsts)}||{firsts[-1]}"
        fork_id = builder.unique(joined)
        branches = tuple(Branch(chain[0].task, chain) for chain in self._branches)
        names = [b.name for b in branches]
        if len(set(names)) != len(names):
            raise ValueError(f"fork branches need distinct first tasks (got {names}); use branch(..., name=...)")
        self._flow._steps.append(ForkNode(fork_id, branches, builder.task_node(task_func, name)))
        return self._flow


_FORK_ID_BRANCHES = 16  # forks with more branches get a short id


class BranchBuilder:
    """Routing on a key: ``.branch(key, ...)`` per declared key, ``.default_branch(...)``, ``.done()``."""

    def __init__(self, flow: Flow, key_fn: Callable[..., Any], keys: list[str]) -> None:
        if not keys:
            raise ValueError("route() needs the list of valid keys: route(key_fn, keys=[...])")
        self._flow = flow
        self._key_fn = key_fn
        self._keys = list(keys)
        self._branches: list[tuple[str, tuple[TaskNode, ...]]] = []
        self._default: tuple[TaskNode, ...] | None = None

    def branch(self, key: str, *task_funcs: Callable[..., Any], name: str | None = None) -> BranchBuilder:
        if not task_funcs:
            raise ValueError("branch() requires at least one task function")
        if key not in self._keys:
            raise ValueError(f"Branch key '{key}' is not in the declared keys: {self._keys}")
        if any(existing == key for existing, _ in self._branches):
            raise ValueError(f"Branch key '{key}' has two branches")
        self._branches.append((key, self._flow._builder.chain(task_funcs, name)))
        return self

    def default_branch(self, *task_funcs: Callable[..., Any], name: str | None = None) -> BranchBuilder:
        if not task_funcs:
            raise ValueError("default_branch() requires at least one task function")
        self._default = self._flow._builder.chain(task_funcs, name)
        return self

    def done(self) -> Flow:
        """Close the route; every declared key needs a branch unless there is a default."""
        branched = {key for key, _ in self._branches}
        if self._default is None:
            missing = set(self._keys) - branched
            if missing:
                raise ValueError(f"Route: missing branches for keys: {', '.join(sorted(missing))}")
        builder = self._flow._builder
        route_id = builder.unique(f"branch_{builder.routes}")
        builder.routes += 1
        key_node = builder.task_node(self._key_fn, f"{route_id}{KEY_FN_SUFFIX}")
        self._flow._steps.append(RouteNode(route_id, key_node, tuple(self._keys), tuple(self._branches), self._default))
        return self._flow


class Flow:
    """Fluent workflow builder. Each flow has its own task registry; no global state."""

    def __init__(
        self,
        name: str = "workflow",
        *,
        metadata: dict[str, Any] | None = None,
        queue: str | None = None,
        concurrency: int | Concurrency | None = None,
        timeout: str | float | timedelta | None = None,
    ):
        """``concurrency`` (plait): at most that many instances run at once, per key of their input
        (a number, or a :class:`Concurrency` with a key and a strategy); see docs/flow-control.md.
        ``timeout`` (plait): an instance's default deadline on a cluster (seconds, ``timedelta`` or
        ``"2h"``), which ``spec.activeDeadlineSeconds`` overrides; see docs/recovery.md."""
        if not name:
            raise ValueError("a flow needs a name")
        self._timeout = _seconds(timeout, "Flow timeout") if timeout is not None else None
        if self._timeout == 0:
            raise ValueError("Flow timeout must be more than zero")
        if isinstance(concurrency, bool) or not isinstance(concurrency, int | Concurrency | None):
            raise TypeError(f"Flow(concurrency=...) takes a whole number or a Concurrency, got {concurrency!r}")
        self._concurrency = Concurrency(concurrency) if isinstance(concurrency, int) else concurrency
        self._name = name
        self._metadata = metadata
        self._queue = queue or DEFAULT_QUEUE
        self._builder = _Builder()
        self._steps: list[Node] = []
        self._on_failure: TaskNode | None = None

    def then(self, task_func: Callable[..., Any], *, name: str | None = None) -> Flow:
        """Run ``task_func`` on the previous step's output."""
        self._steps.append(self._builder.task_node(task_func, name))
        return self

    def fork(self) -> ForkBuilder:
        """Start parallel branches; close them with ``.join(fn)``."""
        return ForkBuilder(self)

    def route(self, key_fn: Callable[..., Any], *, keys: list[str]) -> BranchBuilder:
        """Choose a branch by the string ``key_fn`` returns; close with ``.done()``."""
        return BranchBuilder(self, key_fn, keys)

    def loop(
        self,
        task_func: Callable[..., Any],
        *,
        max_iterations: int = 10,
        on_max: str | OnMax = "fail",
        name: str | None = None,
    ) -> Flow:
        """Repeat ``task_func`` while it returns ``LoopResult.again(v)``."""
        if max_iterations < 1:
            raise ValueError(f"Loop 'loop_{self._builder.loops}': max_iterations must be at least 1")
        policy = OnMax.parse(on_max)
        body = self._builder.task_node(task_func, name)
        loop_id = self._builder.unique(f"loop_{self._builder.loops}")
        self._builder.loops += 1
        self._steps.append(LoopNode(loop_id, (body,), max_iterations, policy.value))
        return self

    def delay(self, name: str, duration: str | float | timedelta) -> Flow:
        """Wait durably (no worker held) for ``duration``: seconds, ``timedelta`` or ``"5m"``."""
        seconds = _seconds(duration, "delay duration")
        self._steps.append(DelayNode(self._builder.unique(name), seconds))
        return self

    def wait_for_signal(
        self,
        signal_name: str,
        *,
        name: str | None = None,
        timeout: str | float | timedelta | None = None,
        on_timeout: str = "fail",
        schema: Mapping[str, Any] | None = None,
    ) -> Flow:
        """Wait for an external signal; its payload becomes the next step's input.

        With ``timeout``, the step fails when no signal came in time, unless ``on_timeout="continue"``
        (plait), which passes ``None`` on instead. ``schema`` (plait) is the payload's JSON Schema:
        ``plait ui`` offers a form for it and checks a payload against it before sending one.
        """
        if on_timeout not in ("fail", "continue"):
            raise ValueError(f"on_timeout must be 'fail' or 'continue', got {on_timeout!r}")
        seconds = _seconds(timeout, "timeout") if timeout is not None else None
        node_id = self._builder.unique(name or signal_name)
        payload_schema = _json_schema(schema, f"signal {signal_name!r}") if schema is not None else None
        self._steps.append(SignalNode(node_id, signal_name, seconds, on_timeout, payload_schema))  # type: ignore[arg-type]
        return self

    def then_flow(self, child_workflow: Workflow) -> Flow:
        """Run another built workflow's steps inline; its output continues here."""
        builder = self._builder
        child_id = builder.unique(f"child_{builder.children}")
        builder.children += 1
        renamed: dict[str, str] = {}
        for task_id, registered in child_workflow.tasks.items():
            existing = builder.tasks.get(task_id)
            if existing is not None and existing.fn is not registered.fn:
                # Same id, different function (say, both flows route and have a `branch_0::key_fn`):
                # keep both under distinct ids rather than run the wrong one.
                renamed[task_id] = f"{child_id}/{task_id}"
                builder.tasks[renamed[task_id]] = TaskFunction(renamed[task_id], registered.fn)
            else:
                builder.tasks.setdefault(task_id, registered)
        steps = _renumber(child_workflow.definition.steps, builder, renamed)
        self._steps.append(ChildNode(child_id, child_workflow.workflow_id, steps))
        return self

    def on_failure(self, task_func: Callable[..., Any], *, name: str | None = None) -> Flow:
        """Run ``task_func`` once when an instance fails (plait), for compensation or notification.

        It gets a :class:`~plait.WorkflowFailure` (the error and the instance's input) and runs like
        a task (``@task`` options apply); the instance ends ``failed`` with the original error once
        it is done. Its own failure is recorded, not handled again. See docs/recovery.md.
        """
        if self._on_failure is not None:
            raise ValueError(f"flow {self._name!r} already has a failure handler ({self._on_failure.task!r})")
        self._on_failure = self._builder.task_node(task_func, name)
        return self

    def build(self) -> Workflow:
        if not self._steps:
            raise ValueError("Workflow must have at least one task")
        steps = tuple(self._steps)
        definition = Definition(
            name=self._name,
            steps=steps,
            input_schema=_schema(self._builder.tasks, steps[0], "input"),
            output_schema=_schema(self._builder.tasks, steps[-1], "output"),
            metadata=self._metadata,
            queue=self._queue,
            concurrency=self._concurrency,
            timeout_secs=self._timeout,
            on_failure=self._on_failure,
        )
        return Workflow(definition, dict(self._builder.tasks))


def _seconds(duration: str | float | timedelta, what: str) -> float:
    """A duration in seconds; a negative, infinite or NaN number gets sayiir's message."""
    if isinstance(duration, int | float) and not isinstance(duration, bool) and not 0 <= duration < float("inf"):
        raise ValueError(f"{what} must be a finite non-negative number")
    return parse_duration(duration)


def _json_schema(schema: Mapping[str, Any], what: str) -> dict[str, Any]:
    """``schema`` as plain JSON data, checked to be a JSON Schema (a mistake shows at build, not in the UI)."""
    if not isinstance(schema, Mapping):
        raise TypeError(f"{what}: schema must be a JSON Schema (a dict), got {type(schema).__name__}")
    try:
        data: dict[str, Any] = json.loads(json.dumps(schema))
    except (TypeError, ValueError) as error:
        raise ValueError(f"{what}: schema is not JSON: {error}") from None
    try:
        jsonschema.validators.validator_for(data).check_schema(data)
    except jsonschema.SchemaError as error:
        raise ValueError(f"{what}: not a valid JSON Schema: {error.message}") from None
    return data


def _renumber(steps: tuple[Node, ...], builder: _Builder, renamed: dict[str, str]) -> tuple[Node, ...]:
    """A child's nodes with ids made unique within the parent, and renamed tasks applied."""

    def node(n: Node) -> Node:
        new_id = builder.unique(n.id)  # before the children's: ids are handed out in definition order
        rebuilt = dataclasses.replace(with_parts(n, [seq(part.steps) for part in parts(n)]), id=new_id)
        if isinstance(rebuilt, TaskNode) and rebuilt.task in renamed:
            return dataclasses.replace(rebuilt, task=renamed[rebuilt.task])
        return rebuilt

    def seq(s: tuple[Node, ...]) -> tuple[Node, ...]:
        return tuple(node(n) for n in s)

    return seq(steps)


def _schema(tasks: dict[str, TaskFunction], node: Node, which: str) -> dict[str, Any] | None:
    """JSON Schema of the workflow's input (first task's parameter) or output (last task's return)."""
    while isinstance(node, ChildNode):
        node = node.steps[0] if which == "input" else node.steps[-1]
    if which == "output" and isinstance(node, ForkNode):
        node = node.join
    if not isinstance(node, TaskNode):
        return None
    annotated = io_types(tasks[node.task].fn)[0 if which == "input" else 1]
    if annotated is None or annotated is inspect.Parameter.empty or annotated is Any:
        return None
    try:
        schema: dict[str, Any] = TypeAdapter(annotated).json_schema(
            mode="validation" if which == "input" else "serialization"
        )
    except Exception:  # a type pydantic cannot describe has no schema; nothing is validated then
        return None
    return schema
