"""``plait operator`` and ``plait worker``: the two long-running processes."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
from contextlib import suppress

from plait._kube.idempotency import DEFAULT_WINDOW_SECONDS
from plait._kube.models import DEFAULT_MAX_PAYLOAD_BYTES
from plait._logging import LOG_FORMATS
from plait.cli.common import add_cluster_options, connect, namespace_of, payload_store

log = logging.getLogger(__name__)


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    operator = commands.add_parser(
        "operator",
        help="run the controller (kopf) that drives WorkflowInstances",
        description="Run the plait controller: validates instances, checkpoints every step into their status, "
        "creates WorkflowTasks for workers, and honours pause/cancel annotations. One replica leads; "
        "others wait on a Lease.",
    )
    add_cluster_options(operator, namespace=False)
    scope = operator.add_mutually_exclusive_group()
    scope.add_argument(
        "--namespace",
        "-n",
        action="append",
        default=[],
        help="watch this namespace, or those a glob such as team-* matches (repeatable)",
    )
    scope.add_argument("--all-namespaces", "-A", action="store_true", help="watch every namespace (the default)")
    operator.add_argument(
        "--metrics-port", type=int, default=8080, help="port of /metrics, /healthz, /readyz (default 8080)"
    )
    operator.add_argument("--no-metrics", action="store_true", help="do not serve HTTP at all")
    operator.add_argument(
        "--default-ttl", type=int, default=None, metavar="SECONDS",
        help="delete finished instances this long after they finish, unless spec.ttlSecondsAfterFinished says otherwise",
    )  # fmt: skip
    operator.add_argument(
        "--max-payload-bytes",
        type=int,
        default=DEFAULT_MAX_PAYLOAD_BYTES,
        help="inline payload limit without a payload store: a larger spec.input fails the instance with "
        "PayloadTooLarge (default 256 KiB)",
    )
    operator.add_argument(
        "--payload-orphan-grace", type=float, default=3600.0, metavar="SECONDS",
        help="with a payload store: delete objects of instances that no longer exist once this old (default 3600); "
        "the sweep runs a quarter of it apart",
    )  # fmt: skip
    operator.add_argument(
        "--idempotency-window", type=float, default=DEFAULT_WINDOW_SECONDS, metavar="SECONDS",
        help="an instance with the spec.idempotencyKey of one created this recently does not run: it points at "
        "that one (default 86400, a day)",
    )  # fmt: skip
    operator.add_argument(
        "--definition-retention", type=float, default=7 * 24 * 3600.0, metavar="SECONDS",
        help="delete a WorkflowDefinition version this long after no instance uses it and no live worker "
        "serves it; the newest version of each workflow is always kept (default 604800, 7 days)",
    )  # fmt: skip
    operator.add_argument(
        "--lease-grace", type=float, default=2.0, help="seconds past a task lease before it counts as lost"
    )
    operator.add_argument(
        "--no-leader-election", action="store_true", help="run without a Lease (a single replica only)"
    )
    operator.add_argument(
        "--leader-namespace",
        default=None,
        help="namespace of the leader Lease (default: $POD_NAMESPACE or the context's)",
    )
    operator.add_argument(
        "--leader-lease-name", default="plait-operator", help="name of the leader Lease (default plait-operator)"
    )
    operator.add_argument("--identity", default=None, help="this replica's name in the Lease (default: host and pid)")
    add_log_format_option(operator)
    operator.set_defaults(handler=_operator)

    worker = commands.add_parser(
        "worker",
        help="serve the workflows of MODULE: publish their definitions and run their tasks",
        description="Import MODULE (a module, MODULE:ATTR naming a workflow or a list, a .py file or a directory), "
        "publish a WorkflowDefinition for every workflow built at its top level, then claim and run their tasks.",
    )
    worker.add_argument("module", metavar="MODULE[:ATTR]", help="where the workflows are")
    add_cluster_options(worker)
    worker.add_argument(
        "--queue",
        "-q",
        action="append",
        default=[],
        help="serve this queue (repeatable; default: every queue the workflows use)",
    )
    worker.add_argument("--concurrency", "-c", type=int, default=8, help="tasks run at once (default 8)")
    worker.add_argument(
        "--lease-seconds", type=float, default=15.0, help="claim lease; renewed every third of it (default 15)"
    )
    worker.add_argument(
        "--drain-seconds", type=float, default=20.0, help="on SIGTERM, wait this long for running tasks (default 20)"
    )
    worker.add_argument(
        "--metrics-port", type=int, default=8081, help="port of /metrics, /healthz, /readyz (default 8081)"
    )
    worker.add_argument("--no-metrics", action="store_true", help="do not serve HTTP at all")
    worker.add_argument(
        "--max-payload-bytes",
        type=int,
        default=DEFAULT_MAX_PAYLOAD_BYTES,
        help="inline output limit without a payload store: a larger output fails the attempt with PayloadTooLarge "
        "(default 256 KiB)",
    )
    add_log_format_option(worker)
    worker.set_defaults(handler=_worker)


def add_log_format_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log-format", choices=LOG_FORMATS, default=os.environ.get("PLAIT_LOG_FORMAT", "text"),
        help="text lines, or JSON objects with the instance, step, attempt and the trace and span ids "
        "(default: $PLAIT_LOG_FORMAT or text)",
    )  # fmt: skip


def _operator(args: argparse.Namespace) -> int:
    import socket

    from plait_operator.main import run
    from plait_operator.settings import OperatorSettings

    connection = connect(args)
    identity = args.identity or os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"
    settings = OperatorSettings(
        namespaces=tuple(args.namespace),
        max_payload_bytes=args.max_payload_bytes,
        default_ttl_seconds=args.default_ttl,
        lease_grace_seconds=args.lease_grace,
        idempotency_window_seconds=args.idempotency_window,
        definition_retention_seconds=args.definition_retention,
        leader_election=not args.no_leader_election,
        leader_lease_name=args.leader_lease_name,
        leader_namespace=args.leader_namespace or os.environ.get("POD_NAMESPACE") or connection.namespace,
        metrics_port=None if args.no_metrics else args.metrics_port,
        identity=identity,
        payloads=payload_store(args),
        payload_orphan_grace_seconds=args.payload_orphan_grace,
    )
    asyncio.run(run(settings, connection))
    return 0


def _worker(args: argparse.Namespace) -> int:
    from plait import _tracing
    from plait._kube.client import AsyncKube
    from plait._serving import serve
    from plait._worker.loading import load_workflows
    from plait._worker.metrics import WorkerMetrics
    from plait._worker.runtime import Worker, WorkerSettings

    workflows = load_workflows(args.module)
    connection = connect(args)
    settings = WorkerSettings(
        namespace=namespace_of(args, connection),
        queues=tuple(args.queue),
        concurrency=args.concurrency,
        lease_seconds=args.lease_seconds,
        drain_seconds=args.drain_seconds,
        max_payload_bytes=args.max_payload_bytes,
        payloads=payload_store(args),
    )

    if _tracing.init_tracing("plait-worker", {"service.instance.id": settings.identity}):
        log.info("tracing: exporting spans over OTLP (OTEL_EXPORTER_OTLP_*)")

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            with suppress(NotImplementedError):
                loop.add_signal_handler(signum, stop.set)
        metrics = WorkerMetrics()
        async with AsyncKube(connection) as kube:
            worker = Worker(workflows, kube, settings, metrics)
            metrics.prime((w.workflow_id, q) for w in workflows for q in w.definition.queues() if q in worker.queues)
            http = None if args.no_metrics else await serve(metrics.registry, lambda: worker.ready, args.metrics_port)
            log.info(
                "worker %s serving %s on queues %s in namespace %s",
                settings.identity, ", ".join(w.workflow_id for w in workflows), ", ".join(worker.queues), settings.namespace,
            )  # fmt: skip
            try:
                await worker.run(stop)
            finally:
                if http is not None:
                    await http.cleanup()

    try:
        asyncio.run(main())
    finally:
        _tracing.shutdown_tracing()
    return 0
