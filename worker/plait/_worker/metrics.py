"""The worker's Prometheus metrics, on a registry of their own (tests pass a fresh one).

The worker runtime (:mod:`plait._worker.runtime`) updates them as it claims, runs and reports
tasks; ``plait worker`` serves them on ``/metrics`` (:mod:`plait._serving`). Names are in base
units; labels are workflow, queue and outcome, never an instance or a task.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from plait._kube.models import label_value

DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)


class WorkerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        labels = ["workflow", "queue"]
        self.claimed = Counter("plait_worker_tasks_claimed_total", "Tasks this worker claimed.", labels, registry=r)
        self.succeeded = Counter(
            "plait_worker_tasks_succeeded_total", "Tasks that returned a result.", labels, registry=r
        )
        self.failed = Counter("plait_worker_tasks_failed_total", "Tasks that raised.", labels, registry=r)
        self.timed_out = Counter(
            "plait_worker_tasks_timed_out_total", "Tasks stopped at their timeout.", labels, registry=r
        )
        self.claim_conflicts = Counter(
            "plait_worker_claim_conflicts_total",
            "Claims lost to another worker (resourceVersion changed).",
            ["queue"],
            registry=r,
        )
        self.results_refused = Counter(
            "plait_worker_results_refused_total",
            "Results not recorded because this worker no longer held the claim.",
            labels,
            registry=r,
        )
        self.released = Counter(
            "plait_worker_tasks_released_total", "Tasks handed back unfinished at shutdown.", labels, registry=r
        )
        self.in_flight = Gauge("plait_worker_tasks_in_flight", "Tasks running now.", ["queue"], registry=r)
        self.duration = Histogram(
            "plait_worker_task_duration_seconds",
            "Time spent running a task, by outcome.",
            [*labels, "outcome"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )

    def prime(self, served: Iterable[tuple[str, str]]) -> None:
        """Export zeros for every (workflow, queue) served before anything happens to it, so rates
        and dashboards show 0 rather than no data (Prometheus' advice for known label values)."""
        for workflow, queue in served:
            labels = (workflow, label_value(queue))
            for counter in (
                self.claimed,
                self.succeeded,
                self.failed,
                self.timed_out,
                self.results_refused,
                self.released,
            ):
                counter.labels(*labels)
            self.claim_conflicts.labels(labels[1])
            self.in_flight.labels(labels[1])
