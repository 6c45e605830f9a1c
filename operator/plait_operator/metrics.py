"""The operator's Prometheus metrics, on a registry of their own (tests pass a fresh one).

Labels are small fixed sets (workflow, queue, phase, outcome), never instance names.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class OperatorMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
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
            "Task attempts that failed, timed out or were lost.",
            ["workflow", "queue", "reason"],
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
        self.queue_depth = Gauge(
            "plait_queue_depth", "Tasks created and not yet claimed, per queue.", ["queue"], registry=r
        )
        self.lease_expiries = Counter(
            "plait_lease_expiries_total",
            "Running tasks whose worker stopped renewing the lease.",
            ["queue"],
            registry=r,
        )
        self.leader = Gauge("plait_operator_leader", "1 while this operator replica is the active one.", registry=r)
