"""``plait operator``: start the controller (kopf inside, a plain watch for tasks), its metrics
server and leader election."""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import signal
from collections.abc import Callable
from contextlib import suppress

import kopf

from plait._kube.client import JSON, AsyncKube
from plait._kube.connection import Connection
from plait._kube.informer import list_and_watch
from plait._kube.models import TASKS
from plait._serving import serve
from plait_operator.controller import Controller
from plait_operator.handlers import kopf_settings, registry_for
from plait_operator.leader import LeaderElection
from plait_operator.metrics import OperatorMetrics, ScheduleMetrics
from plait_operator.schedules import ScheduleController
from plait_operator.settings import OperatorSettings
from plait_operator.store import Store
from plait_operator.tracing import OperatorTracing

log = logging.getLogger(__name__)
_GLOB = set("*?[")


async def run(settings: OperatorSettings, connection: Connection, metrics: OperatorMetrics | None = None) -> None:
    """Run until SIGTERM/SIGINT, or until leadership is lost."""
    metrics = metrics or OperatorMetrics()
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)  # kopf logs every event handled at INFO
    kube = AsyncKube(connection, max_connections=64)
    tracing = OperatorTracing.start(settings.identity)
    if tracing is not None:
        log.info("tracing: exporting spans over OTLP (OTEL_EXPORTER_OTLP_*)")
    controller = Controller(Store(kube, settings.identity), settings, metrics, tracing)
    schedules = ScheduleController(controller.store, ScheduleMetrics(metrics.registry))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    kopf_ready = asyncio.Event()
    watched, on_task = _task_watches(settings.namespaces, controller.on_task)
    tasks_synced = {namespace: asyncio.Event() for namespace in watched}

    def synced(namespace: str) -> bool:
        event = tasks_synced.get(namespace) or tasks_synced.get(None)
        return event is not None and event.is_set()

    controller.tasks_synced = synced

    def ready() -> bool:
        return kopf_ready.is_set() and all(synced.is_set() for synced in tasks_synced.values())

    http = None
    if settings.metrics_port is not None:
        http = await serve(metrics.registry, ready, settings.metrics_port)
        log.info("serving /metrics, /healthz and /readyz on port %d", settings.metrics_port)
    elector = None
    if settings.leader_election:
        elector = LeaderElection(
            kube,
            settings.leader_namespace,
            settings.leader_lease_name,
            settings.identity,
            settings.leader_lease_seconds,
        )
        acquiring = asyncio.ensure_future(elector.acquire())
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait({acquiring, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not acquiring.done():
            acquiring.cancel()
            await _shutdown(controller, kube, http)
            return
        stopping.cancel()
    metrics.leader.set(1)
    controller.start()
    task_watches = [
        asyncio.ensure_future(list_and_watch(kube, TASKS, namespace, on_task, on_synced=tasks_synced[namespace].set))
        for namespace in watched
    ]
    kopf_stop = asyncio.Event()
    operator = asyncio.ensure_future(
        kopf.operator(
            registry=registry_for(controller, connection, schedules),
            settings=kopf_settings(),
            standalone=True,
            clusterwide=not settings.namespaces,
            namespaces=list(settings.namespaces),
            stop_flag=kopf_stop,
            ready_flag=kopf_ready,
            # kopf's default identity asks the passwd database for the user, and the images' uid
            # 65532 has no entry there
            identity=settings.identity,  # type: ignore[arg-type]  # kopf's NewType of str, not exported
        )
    )
    waiters = {operator, asyncio.ensure_future(stop.wait())}
    if elector is not None:
        waiters.add(asyncio.ensure_future(elector.hold()))
    done, pending = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    kopf_stop.set()
    for waiter in [*pending, *task_watches]:
        if waiter is not operator:
            waiter.cancel()
    with suppress(asyncio.CancelledError, Exception):
        await asyncio.wait_for(operator, timeout=10)
    metrics.leader.set(0)
    await schedules.stop()
    await _shutdown(controller, kube, http)
    if operator in done and operator.exception() is not None:
        raise operator.exception()  # type: ignore[misc]


async def _shutdown(controller: Controller, kube: AsyncKube, http: object) -> None:
    await controller.stop()
    if controller.tracing is not None:
        await asyncio.to_thread(controller.tracing.stop)  # exports what is still buffered
    await kube.aclose()
    if http is not None:
        await http.cleanup()  # type: ignore[attr-defined]


def _task_watches(
    namespaces: tuple[str, ...], on_task: Callable[[str, JSON], None]
) -> tuple[tuple[str | None, ...], Callable[[str, JSON], None]]:
    """Which namespaces to watch tasks in (None: every one) and what to call for each event: one
    watch per namespace named, or, for globs like ``team-*`` (kopf matches them for the other
    resources), one watch over every namespace that passes on the matching ones only."""
    if not namespaces:
        return (None,), on_task
    if not any(set(namespace) & _GLOB for namespace in namespaces):
        return namespaces, on_task

    def matching(event_type: str, body: JSON) -> None:
        if any(fnmatch.fnmatchcase(body["metadata"].get("namespace", ""), glob) for glob in namespaces):
            on_task(event_type, body)

    return (None,), matching
