"""The operator's Prometheus metrics, on a registry of their own (tests pass a fresh one).

The controller updates them (see :mod:`plait_operator.controller` and
:mod:`plait_operator.instances`); ``/metrics`` serves them (:mod:`plait._serving`). Names are in
base units; labels are small fixed sets (workflow, queue, phase, outcome), never instance names.
Queue depth and the age of the oldest unclaimed task are computed when scraped, from the tasks the
controller reports as unclaimed (:class:`UnclaimedTasks`), so they cost nothing per watch event and
an age keeps growing between events.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Metric
from prometheus_client.core import GaugeMetricFamily

FAILURE_OUTCOMES = ("error", "timeout", "lost")
LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class UnclaimedTasks:
    """Tasks created and not yet claimed, per queue: ``plait_queue_depth`` and ``plait_queue_oldest_task_age_seconds``.

    A queue seen once keeps reporting (depth 0, age 0) so autoscalers see it drain to zero.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._tasks: dict[tuple[str, str], tuple[str, float]] = {}  # (namespace, name) -> (queue, created)
        self._queues: set[str] = set()

    def __contains__(self, key: tuple[str, str]) -> bool:
        return key in self._tasks

    def add(self, key: tuple[str, str], queue: str, created: float) -> None:
        """A task waiting for a worker; ``created`` is its creationTimestamp (epoch seconds)."""
        self._tasks[key] = (queue, created)
        self._queues.add(queue)

    def discard(self, key: tuple[str, str]) -> None:
        """The task was claimed, finished, stopped or deleted."""
        self._tasks.pop(key, None)

    def describe(self) -> Iterable[Metric]:
        return self._families()

    def collect(self) -> Iterable[Metric]:
        depth = dict.fromkeys(self._queues, 0)
        oldest: dict[str, float] = {}
        for queue, created in list(self._tasks.values()):  # a copy: safe even from a scraping thread
            depth[queue] += 1
            oldest[queue] = min(created, oldest.get(queue, created))
        now = self._clock()
        families = self._families()
        for queue in sorted(depth):
            families[0].add_metric([queue], depth[queue])
            families[1].add_metric([queue], max(0.0, now - oldest[queue]) if queue in oldest else 0.0)
        return families

    @staticmethod
    def _families() -> list[GaugeMetricFamily]:
        return [
            GaugeMetricFamily("plait_queue_depth", "Tasks created and not yet claimed, per queue.", labels=["queue"]),
            GaugeMetricFamily(
                "plait_queue_oldest_task_age_seconds",
                "Age of the oldest task not yet claimed, per queue (0 when none waits).",
                labels=["queue"],
            ),
        ]


class HeldTasks:
    """``plait_tasks_held``: tasks flow control holds back, per workflow and reason (Concurrency,
    RateLimit), counted from the task gate when scraped."""

    def __init__(self) -> None:
        self.source: Callable[[], Iterable[tuple[str, str]]] = lambda: ()

    def describe(self) -> Iterable[Metric]:
        return [self._family()]

    def collect(self) -> Iterable[Metric]:
        counts: dict[tuple[str, str], int] = {}
        for labels in self.source():
            counts[labels] = counts.get(labels, 0) + 1
        family = self._family()
        for labels in sorted(counts):
            family.add_metric(list(labels), counts[labels])
        return [family]

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "plait_tasks_held",
            "Tasks held back by a task concurrency limit or rate limit, per workflow and reason.",
            labels=["workflow", "reason"],
        )


class OperatorMetrics:
    def __init__(self, registry: CollectorRegistry | None = None, clock: Callable[[], float] = time.time) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.instances = Gauge(
            "plait_instances", "Workflow instances by workflow and phase.", ["workflow", "phase"], registry=r
        )
        self.instances_finished = Counter(
            "plait_instances_finished_total", "Instances that finished, by outcome.", ["workflow", "phase"], registry=r
        )
        self.steps_dispatched = Counter(
            "plait_steps_dispatched_total", "Task attempts handed to workers.", ["workflow", "queue"], registry=r
        )
        self.steps_completed = Counter(
            "plait_steps_completed_total", "Task attempts that succeeded.", ["workflow", "queue"], registry=r
        )
        self.steps_failed = Counter(
            "plait_steps_failed_total",
            "Task attempts that failed (outcome: error, timeout or lost).",
            ["workflow", "queue", "outcome"],
            registry=r,
        )
        self.steps_retried = Counter(
            "plait_steps_retried_total",
            "Failed attempts followed by another attempt.",
            ["workflow", "queue"],
            registry=r,
        )
        self.schedule_to_start = Histogram(
            "plait_step_schedule_to_start_seconds",
            "From task created to task claimed by a worker.",
            ["workflow", "queue"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.start_to_close = Histogram(
            "plait_step_run_seconds",
            "From task claimed to its result recorded.",
            ["workflow", "queue"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.reconcile_duration = Histogram(
            "plait_reconcile_duration_seconds", "Time to reconcile one instance.", buckets=LATENCY_BUCKETS, registry=r
        )
        self.reconcile_errors = Counter(
            "plait_reconcile_errors_total", "Reconciles that raised and were retried.", ["reason"], registry=r
        )
        self.unclaimed = UnclaimedTasks(clock)
        r.register(self.unclaimed)
        self.lease_expiries = Counter(
            "plait_lease_expiries_total",
            "Running tasks whose worker stopped renewing the lease.",
            ["queue"],
            registry=r,
        )
        self.held_tasks = HeldTasks()
        r.register(self.held_tasks)
        self.task_held_seconds = Histogram(
            "plait_task_held_seconds",
            "From a held task created to its hold lifted, by workflow and reason.",
            ["workflow", "reason"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.instance_queued_seconds = Histogram(
            "plait_instance_queued_seconds",
            "Time instances of a workflow with a concurrency limit spent Queued before they started (0: at once).",
            ["workflow"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.leader = Gauge("plait_operator_leader", "1 while this operator replica is the active one.", registry=r)
        self._primed: set[tuple[str, str]] = set()

    def dispatched(self, workflow: str, queue: str) -> None:
        """A task attempt handed to workers. The first of a (workflow, queue) also exports zeros for
        what may follow it, so rates and dashboards show 0 rather than no data (Prometheus' advice
        for known label values)."""
        self.steps_dispatched.labels(workflow, queue).inc()
        if (workflow, queue) in self._primed:
            return
        self._primed.add((workflow, queue))
        self.steps_completed.labels(workflow, queue)
        self.steps_retried.labels(workflow, queue)
        self.lease_expiries.labels(queue)
        for outcome in FAILURE_OUTCOMES:
            self.steps_failed.labels(workflow, queue, outcome)


class ScheduleMetrics:
    """What schedules did at their ticks, on the operator's registry (see :mod:`plait_operator.schedules`)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.ticks = Counter(
            "plait_schedule_ticks_total",
            "Schedule ticks by outcome: started (a run was created), skipped (see the schedule's "
            "status.skipped), failed (the API server refused the run).",
            ["workflow", "outcome"],
            registry=registry,
        )
        self.start_delay = Histogram(
            "plait_schedule_start_delay_seconds",
            "From a tick's time to its run being created.",
            ["workflow"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
