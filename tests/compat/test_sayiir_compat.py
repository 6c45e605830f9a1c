"""Programs written against sayiir's public API give the same results on plait.

Each scenario takes the library module (``sayiir`` or ``plait``) and uses only what the two share:
changing the import is the whole migration. The expected values were recorded from sayiir 1.0.0;
when sayiir is installed (it is in the test extras) each scenario also runs on it, in the same
test, so a difference shows up as a failure. Scenarios where sayiir 1.0 is defective (timeouts not
enforced, signal timeouts feeding garbage to the next step) are tested in tests/local instead.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest
from pydantic import BaseModel

import plait

try:
    sayiir: ModuleType | None = importlib.import_module("sayiir")
except ImportError:  # pragma: no cover - sayiir ships wheels for common platforms only
    sayiir = None


class Item(BaseModel):
    name: str
    qty: int


class Line(BaseModel):
    name: str
    total: int


def sequence(m: ModuleType) -> Any:
    @m.task
    def inc(x: int) -> int:
        return x + 1

    @m.task("dbl")
    def double(x: int) -> int:
        return x * 2

    wf = m.Flow("seq").then(inc).then(double).then(lambda x: x - 1, name="dec").build()
    return m.run_workflow(wf, 4), wf.workflow_id, [(n.id, n.kind, n.predecessor_id) for n in wf.iter_nodes()]


def fork_join(m: ModuleType) -> Any:
    @m.task
    def a(x: int) -> int:
        return x + 1

    @m.task
    def b(x: int) -> int:
        return x * 10

    @m.task
    def c(x: int) -> int:
        return x - 3

    @m.task
    def join(parts: dict[str, int]) -> dict[str, int]:
        return parts

    wf = m.Flow("fork").fork().branch(a).branch(b, c).join(join).build()
    return m.run_workflow(wf, 2)


def route(m: ModuleType) -> Any:
    @m.task
    def billing(t: dict[str, str]) -> str:
        return "billing:" + t["text"]

    @m.task
    def tech(t: dict[str, str]) -> str:
        return "tech:" + t["text"]

    @m.task
    def other(t: dict[str, str]) -> str:
        return "other:" + t["text"]

    @m.task
    def finalize(envelope: dict[str, str]) -> list[str]:
        return [envelope["branch"], envelope["result"]]

    wf = (
        m.Flow("route")
        .route(lambda t: t["intent"], keys=["billing", "tech"])
        .branch("billing", billing)
        .branch("tech", tech)
        .default_branch(other)
        .done()
        .then(finalize)
        .build()
    )
    results = [m.run_workflow(wf, {"intent": i, "text": "hi"}) for i in ("billing", "tech", "sales")]
    strict = m.Flow("strict").route(lambda t: t, keys=["x"]).branch("x", billing).done().build()
    try:
        m.run_workflow(strict, "y")
    except m.TaskError as error:
        results.append(type(error).__name__)
    return results


def loops(m: ModuleType) -> Any:
    @m.task
    def body(x: int) -> Any:
        return m.LoopResult.again(x + 1) if x < 5 else m.LoopResult.done(x * 100)

    out = [m.run_workflow(m.Flow("l").loop(body, max_iterations=10).build(), 0)]
    out.append(m.run_workflow(m.Flow("l2").loop(body, max_iterations=3, on_max="exit_with_last").build(), 0))
    out.append(m.run_workflow(m.Flow("l3").loop(body, max_iterations=3, on_max=m.OnMax.EXIT_WITH_LAST).build(), 1))
    try:
        m.run_workflow(m.Flow("l4").loop(body, max_iterations=2).build(), 0)
    except m.WorkflowError as error:
        out.append(type(error).__name__)
    return out


def child_flow(m: ModuleType) -> Any:
    @m.task
    def inc(x: int) -> int:
        return x + 1

    @m.task
    def dbl(x: int) -> int:
        return x * 2

    child = m.Flow("child").then(inc).then(dbl).build()
    return m.run_workflow(m.Flow("parent").then(inc).then_flow(child).then(inc).build(), 1)


def durable_lifecycle(m: ModuleType) -> Any:
    @m.task
    def inc(x: int) -> int:
        return x + 1

    @m.task
    def dbl(x: int) -> int:
        return x * 2

    wf = m.Flow("life").then(inc).delay("nap", 0.05).then(dbl).build()
    backend = m.InMemoryBackend()
    seen = []
    status = m.run_durable_workflow(wf, "i-1", 1, backend=backend)
    seen.append((status.status, status.is_waiting(), status.output))
    m.pause_workflow("i-1", backend, reason="hold", paused_by="ops")
    time.sleep(0.06)
    status = m.resume_workflow(wf, "i-1", backend)
    seen.append((status.status, status.is_paused(), status.reason, status.paused_by))
    m.unpause_workflow("i-1", backend)
    status = m.resume_workflow(wf, "i-1", backend)
    seen.append((status.status, status.is_completed(), status.output))
    try:
        m.pause_workflow("i-1", backend)
    except m.BackendError as error:
        seen.append(str(error))
    status = m.run_durable_workflow(wf, "i-2", 1, backend=backend)
    m.cancel_workflow("i-2", backend, reason="stop", cancelled_by="bob")
    status = m.resume_workflow(wf, "i-2", backend)
    seen.append((status.status, status.is_cancelled(), status.reason, status.cancelled_by))
    return seen


def signals(m: ModuleType) -> Any:
    @m.task
    def prepare(x: Any) -> Any:
        return x

    @m.task
    def approved(payload: Any) -> Any:
        return payload

    wf = m.Flow("sig").then(prepare).wait_for_signal("approve", name="gate").then(approved).build()
    backend = m.InMemoryBackend()
    status = m.run_durable_workflow(wf, "s-1", "start", backend=backend)
    seen = [(status.status, status.is_awaiting_signal(), status.signal_name)]
    m.send_signal("s-1", "approve", {"n": 1}, backend)
    m.send_signal("s-1", "approve", {"n": 2}, backend)
    status = m.resume_workflow(wf, "s-1", backend)
    seen.append((status.status, status.output))
    return seen


def conflicts_and_client(m: ModuleType) -> Any:
    @m.task
    def inc(x: int) -> int:
        return x + 1

    @m.task
    def dbl(x: int) -> int:
        return x * 2

    wf = m.Flow("c").then(inc).then(dbl).build()
    backend = m.InMemoryBackend()
    out = [m.run_durable_workflow(wf, "r", 1, backend=backend).output]
    try:
        m.run_durable_workflow(wf, "r", 1, backend=backend)
    except m.InstanceAlreadyExistsError as error:
        out.append(str(error))
    out.append(m.run_durable_workflow(wf, "r", 5, backend=backend, conflict_policy="use_existing").output)
    out.append(m.run_durable_workflow(wf, "r", 5, backend=backend, conflict_policy="terminate_existing").output)
    client = m.WorkflowClient(backend)
    out.append(client.status("r").status)
    out.append(
        [client.get_task_result("r", "inc"), client.get_task_result("r", "dbl"), client.get_task_result("r", "x")]
    )
    out.append(client.submit(wf, "new", 1).status)
    try:
        client.status("missing")
    except m.BackendError as error:
        out.append(str(error))
    out.append(m.run_workflow(wf, 2, instance_id="w", backend=backend))
    return out


def retries_and_failures(m: ModuleType) -> Any:
    calls = {"n": 0}

    @m.task(retries=m.RetryPolicy(max_retries=2, initial_delay_secs=0.01, backoff_multiplier=2.0))
    def flaky(x: int) -> int:
        calls["n"] += 1
        if calls["n"] < 3:
            raise RuntimeError(f"try {calls['n']}")
        return x

    @m.task(retries=1)
    def hopeless(x: int) -> int:
        raise ValueError("bad thing")

    out: list[Any] = [m.run_workflow(m.Flow("r").then(flaky).build(), 5), calls["n"]]
    status = m.run_durable_workflow(m.Flow("h").then(lambda x: x, name="ok").then(hopeless).build(), "h-1", 1)
    out.append((status.status, status.is_failed(), status.error))
    try:
        m.run_workflow(m.Flow("h2").then(hopeless).build(), 1)
    except m.TaskError as error:
        out.append((type(error).__name__, str(error).splitlines()[0], isinstance(error, RuntimeError)))
    return out


def pydantic_models(m: ModuleType) -> Any:
    @m.task
    def price(item: Item) -> Line:
        return Line(name=item.name, total=item.qty * 3)

    return m.run_workflow(m.Flow("p").then(price).build(), {"name": "pen", "qty": 4})


def task_context(m: ModuleType) -> Any:
    @m.task
    def look(x: int) -> list[Any]:
        ctx = m.get_task_context()
        return [ctx.workflow_id, ctx.instance_id, ctx.task_id, ctx.workflow_metadata]

    wf = m.Flow("ctx", metadata={"team": "payments"}).then(look).build()
    return [m.run_durable_workflow(wf, "ctx-1", 1).output, m.get_task_context(), wf.metadata]


def metadata_and_durations(m: ModuleType) -> Any:
    @m.task(name="charge", timeout="2m", retries=3, tags=["money"], description="charge the card", priority=2)
    def charge_card(order: dict[str, Any]) -> dict[str, Any]:
        return {**order, "charged": True}

    wf = m.Flow("meta").then(charge_card).build()
    nodes = [(n.id, n.kind, n.timeout_secs, n.priority) for n in wf.iter_nodes()]
    return [m.run_workflow(wf, {"id": 1}), nodes, m.parse_duration("1.5s"), m.parse_duration("100ms")]


def engine_calls(m: ModuleType) -> Any:
    """The engines called as sayiir's own tests and executor call them: the compiled workflow and its registry."""

    @m.task
    def inc(x: int) -> int:
        return x + 1

    @m.task("dbl")
    def double(x: int) -> int:
        return x * 2

    wf = m.Flow("seq").then(inc).then(double).then(lambda x: x - 1, name="dec").build()
    swapped = {**wf._task_registry, "inc": lambda x: x + 100}
    engine = m.DurableEngine(m.InMemoryBackend())
    return [
        sorted(wf._task_registry),
        wf._task_registry["inc"] is inc,
        m.WorkflowEngine().run(wf._inner, 4, wf._task_registry),
        m.WorkflowEngine().run(wf._inner, 4, swapped),
        engine.run(wf._inner, "e-1", 4, wf._task_registry).output,
        engine.resume(wf._inner, "e-1", wf._task_registry).status,
    ]


def _error(call: Callable[[], Any]) -> str:
    try:
        call()
    except Exception as error:
        return f"{type(error).__name__}: {error}"
    return "no error"


def builder_errors(m: ModuleType) -> Any:
    @m.task
    def inc(x: int) -> int:
        return x + 1

    return [
        _error(lambda: m.Flow("x").loop(inc, max_iterations=0)),
        _error(lambda: m.Flow("x").fork().join(inc)),
        _error(lambda: m.Flow("x").fork().branch()),
        _error(lambda: m.Flow("x").build()),
        _error(lambda: m.Flow("x").loop(inc, on_max="sometimes")),
        _error(lambda: m.Flow("x").delay("d", "soon")),
        _error(lambda: m.Flow("x").delay("d", -1)),
        _error(lambda: m.Flow("x").wait_for_signal("s", timeout=-1)),
        _error(lambda: m.task(priority=9)(inc)),
        _error(lambda: m.Flow("x").route(lambda v: v, keys=["a"]).branch("b", inc)),
        _error(lambda: m.Flow("x").route(lambda v: v, keys=["a", "b"]).branch("a", inc).done()),
        _error(lambda: m.Flow("x").route(lambda v: v, keys=["a"]).default_branch()),
        _error(lambda: m.DurableEngine(m.InMemoryBackend(), "sometimes")),
        _error(lambda: m.WorkflowClient(m.InMemoryBackend(), conflict_policy="sometimes")),
        _error(lambda: m.run_durable_workflow(m.Flow("x").then(inc).build(), "", 1)),
        _error(lambda: m.run_durable_workflow(m.Flow("x").then(inc).build(), "é" * 129, 1)),
    ]


def task_error_text(m: ModuleType) -> Any:
    def explode(x: int) -> int:
        raise ValueError(f"bad value {x}")

    wf = m.Flow("boom").then(explode).build()
    out = []
    for run in (lambda: m.run_workflow(wf, 3), lambda: m.WorkflowEngine().run(wf._inner, 3, wf._task_registry)):
        try:
            run()
        except m.TaskError as error:
            text = str(error)
            out.append([text.splitlines()[0], "Traceback (most recent call last)" in text, "in explode" in text])
    status = m.run_durable_workflow(wf, "b-1", 3)
    out.append(status.error)  # the status keeps the error line only
    return out


def definition_mismatch(m: ModuleType) -> Any:
    @m.task
    def inc(x: int) -> int:
        return x + 1

    backend = m.InMemoryBackend()
    m.run_durable_workflow(m.Flow("v").then(inc).wait_for_signal("go").build(), "v-1", 1, backend=backend)
    other = m.Flow("v").then(inc).then(inc).build()
    try:
        m.resume_workflow(other, "v-1", backend)
    except m.WorkflowError as error:
        return [type(error).__name__, str(error).startswith("Workflow definition mismatch: expected hash '")]
    return "no error"


def lifecycle_edges(m: ModuleType) -> Any:
    """Lifecycle calls on missing, finished and cancelled instances, and signals that come early."""

    @m.task
    def inc(x: int) -> int:
        return x + 1

    @m.task
    def approved(payload: Any) -> Any:
        return payload

    wf = m.Flow("edges").then(inc).wait_for_signal("go").then(approved).build()
    backend = m.InMemoryBackend()
    out: list[Any] = [
        _error(lambda: m.cancel_workflow("nope", backend)),
        _error(lambda: m.pause_workflow("nope", backend)),
        _error(lambda: m.unpause_workflow("nope", backend)),
        _error(lambda: m.WorkflowClient(backend).get_task_result("nope", "inc")),
        _error(lambda: m.send_signal("early", "go", {"n": 1}, backend)),  # kept for when it starts
    ]
    out.append(m.run_durable_workflow(wf, "early", 1, backend=backend).output)
    m.run_durable_workflow(wf, "w", 1, backend=backend)
    out.append(_error(lambda: m.unpause_workflow("w", backend)))  # not paused
    m.cancel_workflow("w", backend, reason="first")
    m.cancel_workflow("w", backend, reason="second")
    status = m.resume_workflow(wf, "w", backend)
    out.append((status.status, status.reason))
    out.append(_error(lambda: m.cancel_workflow("w", backend)))  # already cancelled: nothing to do
    out.append(_error(lambda: m.pause_workflow("w", backend)))
    out.append(_error(lambda: m.unpause_workflow("w", backend)))
    out.append(_error(lambda: m.send_signal("w", "go", 1, backend)))
    out.append(_error(lambda: m.cancel_workflow("early", backend)))
    out.append(_error(lambda: m.unpause_workflow("early", backend)))
    m.run_durable_workflow(wf, "t", 1, backend=backend)
    m.send_signal("t", "go", {"n": 2}, backend)  # buffered for "t"; terminate_existing hands it on
    client = m.WorkflowClient(backend, conflict_policy="terminate_existing")
    client.submit(wf, "t", 5)
    out.append(m.resume_workflow(wf, "t", backend).output)
    return out


SCENARIOS: dict[str, tuple[Callable[[ModuleType], Any], Any]] = {
    "sequence": (
        sequence,
        (9, "seq", [("inc", "task", None), ("dbl", "task", "inc"), ("dec", "task", "dbl")]),
    ),
    "fork_join": (fork_join, {"a": 3, "b": 17}),
    "route": (
        route,
        [["billing", "billing:hi"], ["tech", "tech:hi"], ["sales", "other:hi"], "TaskError"],
    ),
    "loops": (loops, [500, 3, 4, "TaskError"]),
    "child_flow": (child_flow, 7),
    "durable_lifecycle": (
        durable_lifecycle,
        [
            ("waiting", True, None),
            ("paused", True, "hold", "ops"),
            ("completed", True, 4),
            "Cannot pause workflow in state: Completed",
            ("cancelled", True, "stop", "bob"),
        ],
    ),
    "signals": (signals, [("awaiting_signal", True, "approve"), ("completed", {"n": 1})]),
    "conflicts_and_client": (
        conflicts_and_client,
        [
            4,
            "Workflow instance already exists: r",
            4,
            12,
            "completed",
            [6, 12, None],
            "in_progress",
            "Snapshot not found: missing",
            6,
        ],
    ),
    "retries_and_failures": (
        retries_and_failures,
        [5, 3, ("failed", True, "ValueError: bad thing"), ("TaskError", "ValueError: bad thing", True)],
    ),
    "pydantic_models": (pydantic_models, {"name": "pen", "total": 12}),
    "engine_calls": (engine_calls, [["dbl", "dec", "inc"], True, 9, 207, 9, "completed"]),
    "builder_errors": (
        builder_errors,
        [
            "ValueError: Loop 'loop_0': max_iterations must be at least 1",
            "ValueError: Fork must have at least one branch",
            "ValueError: branch() requires at least one task function",
            "ValueError: Workflow must have at least one task",
            "ValueError: Invalid on_max policy: 'sometimes'. Use 'fail' or 'exit_with_last'.",
            'ValueError: Invalid duration: "soon". Expected a number (seconds) or a string like "30s", "5m", "1h", "100ms".',
            "ValueError: delay duration must be a finite non-negative number",
            "ValueError: timeout must be a finite non-negative number",
            "ValueError: priority must be between 1 and 5, got 9",
            "ValueError: Branch key 'b' is not in the declared keys: ['a']",
            "ValueError: Route: missing branches for keys: b",
            "ValueError: default_branch() requires at least one task function",
            'ValueError: invalid conflict_policy: "sometimes" (expected "fail", "use_existing", or "terminate_existing")',
            'ValueError: invalid conflict_policy: "sometimes" (expected "fail", "use_existing", or "terminate_existing")',
            "WorkflowError: instance_id must not be empty",
            "WorkflowError: instance_id length 258 exceeds maximum 256 bytes",
        ],
    ),
    "task_error_text": (
        task_error_text,
        [["ValueError: bad value 3", True, True], ["ValueError: bad value 3", True, True], "ValueError: bad value 3"],
    ),
    "definition_mismatch": (definition_mismatch, ["WorkflowError", True]),
    "lifecycle_edges": (
        lifecycle_edges,
        [
            "BackendError: Snapshot not found: nope",
            "BackendError: Snapshot not found: nope",
            "BackendError: Snapshot not found: nope",
            "BackendError: Snapshot not found: nope",
            "no error",
            {"n": 1},
            'BackendError: Cannot pause workflow in state: Workflow is not paused (current state: "InProgress")',
            ("cancelled", "second"),
            "no error",
            "BackendError: Cannot pause workflow in state: Cancelled",
            'BackendError: Cannot pause workflow in state: Workflow is not paused (current state: "Cancelled")',
            "no error",
            "BackendError: Cannot cancel workflow in state: Completed",
            'BackendError: Cannot pause workflow in state: Workflow is not paused (current state: "Completed")',
            {"n": 2},
        ],
    ),
    "task_context": (task_context, [["ctx", "ctx-1", "look", {"team": "payments"}], None, {"team": "payments"}]),
    "metadata_and_durations": (
        metadata_and_durations,
        [{"id": 1, "charged": True}, [("charge", "task", 120.0, 2)], 1.5, 0.1],
    ),
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_scenario_gives_sayiirs_result_on_plait(name: str) -> None:
    scenario, recorded = SCENARIOS[name]
    assert scenario(plait) == recorded
    if sayiir is not None:
        assert scenario(sayiir) == recorded, "sayiir itself no longer gives the recorded result"


def test_every_name_sayiir_code_imports_for_authoring_and_local_runs_exists() -> None:
    shared = {
        "BackendError", "BranchBuilder", "DurableEngine", "Flow", "ForkBuilder", "InMemoryBackend",
        "InstanceAlreadyExistsError", "LoopResult", "NodeInfo", "OnMax", "RetryPolicy", "TaskError",
        "TaskExecutionContext", "TaskMetadata", "Workflow", "WorkflowClient", "WorkflowEngine", "WorkflowError",
        "WorkflowStatus", "cancel_workflow", "get_task_context", "parse_duration", "pause_workflow",
        "resume_workflow", "run_durable_workflow", "run_workflow", "send_signal", "task", "unpause_workflow",
    }  # fmt: skip
    assert shared <= set(plait.__all__)
    if sayiir is not None:
        assert shared <= set(sayiir.__all__)
