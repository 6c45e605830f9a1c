"""Both processes' ``/metrics``, scraped over HTTP after real workflows ran: the counters and
histograms moved by exactly what happened, and the gauges came back to rest."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from plait._kube.client import Kube
from tests.k8s.support import PlaitProcess, submit, wait_for, wait_phase

pytestmark = pytest.mark.cluster


@dataclass
class Scrape:
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = field(default_factory=dict)

    def value(self, name: str, **labels: str) -> float:
        """The sum over every series of ``name`` whose labels include ``labels`` (0 if none)."""
        wanted = set(labels.items())
        return sum(v for (n, ls), v in self.samples.items() if n == name and wanted <= ls)

    def names(self) -> set[str]:
        return {name for name, _ in self.samples}


def scrape(process: PlaitProcess) -> Scrape:
    response = httpx.get(f"http://127.0.0.1:{process.metrics_port}/metrics", timeout=5)
    response.raise_for_status()
    result = Scrape()
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            result.samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return result


def ready(process: PlaitProcess) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{process.metrics_port}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


# workflow -> (input, final phase, steps that succeed, attempts that fail as error / timeout, retries)
RUNS = {
    "sequence": (1, "Succeeded", 3, 0, 0, 0),
    "fork-join": (3, "Succeeded", 4, 0, 0, 0),
    "retries": (5, "Succeeded", 2, 2, 0, 2),
    "exhausted": (1, "Failed", 0, 3, 0, 2),
    "timeout": (1, "Failed", 0, 0, 1, 0),
}


def test_operator_and_worker_metrics_count_what_ran(
    kube: Kube,
    plait_crds: None,
    namespace: str,
    start_operator: Callable[..., PlaitProcess],
    start_worker: Callable[..., PlaitProcess],
) -> None:
    operator = start_operator("--namespace", namespace)
    worker = start_worker(namespace)
    wait_for(lambda: ready(operator) and ready(worker), timeout=30, what="/readyz of both processes")
    assert httpx.get(f"http://127.0.0.1:{operator.metrics_port}/healthz").text == "ok"

    for workflow, (value, *_) in RUNS.items():
        submit(kube, namespace, workflow, workflow, value)
    for workflow, (_, phase, *_) in RUNS.items():
        assert wait_phase(kube, namespace, workflow, "Succeeded", "Failed")["status"]["phase"] == phase, workflow

    # an instance shows its final phase a moment before both processes finish their bookkeeping
    # (the operator records the last result after its checkpoint, the worker frees its slot after
    # its report): wait for the books to balance, then check every figure
    def settled() -> bool:
        ops, work = scrape(operator), scrape(worker)
        ended = ops.value("plait_steps_completed_total") + ops.value("plait_steps_failed_total")
        finished = sum(work.value(f"plait_worker_tasks_{o}_total") for o in ("succeeded", "failed", "timed_out"))
        return (
            ops.value("plait_steps_dispatched_total") == ended
            and work.value("plait_worker_tasks_claimed_total") == finished
            and work.value("plait_worker_tasks_in_flight") == 0
        )

    wait_for(settled, timeout=10, what="the metrics to settle")
    ops, work = scrape(operator), scrape(worker)

    for workflow, (_, phase, succeeded, errors, timeouts, retries) in RUNS.items():
        w = {"workflow": workflow}
        attempts = succeeded + errors + timeouts
        # operator: every dispatched attempt ended exactly once, as a success or a failure
        assert ops.value("plait_steps_dispatched_total", **w) == attempts, workflow
        assert ops.value("plait_steps_completed_total", **w) == succeeded, workflow
        assert ops.value("plait_steps_failed_total", **w, outcome="error") == errors, workflow
        assert ops.value("plait_steps_failed_total", **w, outcome="timeout") == timeouts, workflow
        assert ops.value("plait_steps_failed_total", **w, outcome="lost") == 0, workflow
        assert ops.value("plait_steps_retried_total", **w) == retries, workflow
        assert ops.value("plait_step_schedule_to_start_seconds_count", **w) == attempts, workflow
        assert ops.value("plait_step_run_seconds_count", **w) == attempts, workflow
        assert ops.value("plait_instances_finished_total", **w, phase=phase) == 1, workflow
        assert ops.value("plait_instances", **w, phase=phase) == 1, workflow
        assert ops.value("plait_instances", **w, phase="Running") == 0, workflow
        assert ops.value("plait_instances", **w, phase="Pending") == 0, workflow
        # worker: what it claimed, it finished, with the same outcome the operator saw
        assert work.value("plait_worker_tasks_claimed_total", **w) == attempts, workflow
        assert work.value("plait_worker_tasks_succeeded_total", **w) == succeeded, workflow
        assert work.value("plait_worker_tasks_failed_total", **w) == errors, workflow
        assert work.value("plait_worker_tasks_timed_out_total", **w) == timeouts, workflow
        for outcome, count in (("succeeded", succeeded), ("failed", errors), ("timed_out", timeouts)):
            assert work.value("plait_worker_task_duration_seconds_count", **w, outcome=outcome) == count, workflow

    # the histograms measured real time: a timed-out attempt ran for about its 500 ms timeout
    timed_out_sum = work.value("plait_worker_task_duration_seconds_sum", workflow="timeout", outcome="timed_out")
    assert 0.4 < timed_out_sum < 3.0
    assert work.value("plait_worker_task_duration_seconds_bucket", workflow="timeout", le="0.25") == 0
    assert work.value("plait_worker_task_duration_seconds_bucket", workflow="timeout", le="+Inf") == 1
    assert ops.value("plait_step_run_seconds_sum", workflow="timeout") > 0.3
    assert ops.value("plait_reconcile_duration_seconds_count") > sum(r[2] + r[3] + r[4] for r in RUNS.values())

    # at rest: nothing waiting or running, no lease lost, no claim lost, nothing failed to reconcile
    assert ops.value("plait_queue_depth", queue="default") == 0
    assert ops.value("plait_queue_oldest_task_age_seconds", queue="default") == 0
    assert ops.value("plait_lease_expiries_total") == 0
    assert ops.value("plait_reconcile_errors_total") == 0
    assert ops.value("plait_operator_leader") == 1
    assert work.value("plait_worker_tasks_in_flight", queue="default") == 0
    assert work.value("plait_worker_claim_conflicts_total") == 0
    assert work.value("plait_worker_results_refused_total") == 0
    # one process's view agrees with the other's
    assert work.value("plait_worker_tasks_claimed_total") == ops.value("plait_steps_dispatched_total")

    # labels are the small fixed sets, never an instance or a task
    for scraped in (ops, work):
        for _, labels in scraped.samples:
            keys = {k for k, _ in labels}
            assert keys <= {"workflow", "queue", "phase", "outcome", "reason", "le"}, keys


def test_queue_depth_and_age_show_tasks_nobody_claims(
    kube: Kube, plait_crds: None, namespace: str, start_operator: Callable[..., PlaitProcess]
) -> None:
    """With no worker, dispatched tasks wait: the depth counts them and their age grows."""
    operator = start_operator("--namespace", namespace)
    wait_for(lambda: ready(operator), timeout=30, what="operator /readyz")
    # a definition published by a worker that then stopped: the operator dispatches, nobody claims
    from plait._kube.models import WorkflowDefinition
    from plait._worker.runtime import definition_object_name
    from tests.k8s import flows

    body = {
        "apiVersion": "plait.dev/v1alpha1",
        "kind": "WorkflowDefinition",
        "metadata": {"name": definition_object_name(flows.fork_join)},
        "spec": flows.fork_join.definition.to_data(),
    }
    kube.create(WorkflowDefinition.RESOURCE, body, namespace)
    submit(kube, namespace, "waiting", "fork-join", 2)
    wait_for(lambda: scrape(operator).value("plait_queue_depth", queue="default") == 3, what="3 waiting branch tasks")
    first = scrape(operator).value("plait_queue_oldest_task_age_seconds", queue="default")
    wait_for(
        lambda: scrape(operator).value("plait_queue_oldest_task_age_seconds", queue="default") >= first + 1,
        timeout=5,
        what="the oldest task's age to grow between scrapes",
    )
    assert scrape(operator).value("plait_instances", workflow="fork-join", phase="Running") == 1


def test_flow_control_metrics_count_queued_instances_and_held_tasks(
    kube: Kube,
    own: str,
    start_operator: Callable[..., PlaitProcess],
    start_worker: Callable[..., PlaitProcess],
) -> None:
    operator = start_operator("--namespace", own)
    start_worker(own, module="tests.k8s.flowcontrol_flows")
    wait_for(lambda: ready(operator), timeout=30, what="the operator to be ready")
    for i in range(4):
        submit(kube, own, f"q{i}", "fc-queue", {"seconds": 2})
        submit(kube, own, f"t{i}", "fc-task-concurrency", {"seconds": 2})

    def busy() -> Scrape | None:
        now = scrape(operator)
        queued = now.value("plait_instances", workflow="fc-queue", phase="Queued")
        held = now.value("plait_tasks_held", workflow="fc-task-concurrency", reason="Concurrency")
        unclaimed = now.value("plait_queue_depth")  # held tasks are not for workers yet: never in the queue
        return now if queued == 2 and held == 2 and unclaimed == 0 else None

    wait_for(busy, timeout=60, interval=0.2, what="two queued instances, two held tasks and nothing else unclaimed")
    for i in range(4):
        wait_phase(kube, own, f"q{i}", "Succeeded", timeout=60)
        wait_phase(kube, own, f"t{i}", "Succeeded", timeout=60)
    after = scrape(operator)
    assert after.value("plait_instances", workflow="fc-queue", phase="Queued") == 0
    assert after.value("plait_tasks_held", workflow="fc-task-concurrency") == 0
    assert after.value("plait_instance_queued_seconds_count", workflow="fc-queue") == 4
    assert (
        after.value("plait_instance_queued_seconds_sum", workflow="fc-queue") >= 3
    )  # two waited about a run each (2 s)
    assert after.value("plait_task_held_seconds_count", workflow="fc-task-concurrency", reason="Concurrency") == 2
