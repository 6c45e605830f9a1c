"""kopf wiring: which events reach the controller, how kopf logs in, how kopf is tuned.

Only ``@kopf.on.event`` handlers: they observe without writing anything of kopf's own to the
objects (no progress annotations, no finalizers). Tasks, three events per step, do not go through
kopf at all: :mod:`plait_operator.main` follows them with a plain watch, which costs a fraction of
kopf's per-event machinery (see :mod:`plait._kube.informer`).
"""

from __future__ import annotations

from typing import Any

import kopf

from plait._kube.connection import Connection
from plait._kube.models import GROUP, SCHEDULE_LABEL, VERSION
from plait_operator.controller import Controller
from plait_operator.schedules import ScheduleController


def registry_for(
    controller: Controller, connection: Connection, schedules: ScheduleController
) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        token = connection.token_source() if connection.token_source else None
        return kopf.ConnectionInfo(
            server=connection.server,
            ca_path=connection.ca_file,
            insecure=not connection.verify,
            certificate_path=connection.cert_file,
            private_key_path=connection.key_file,
            token=token.removeprefix("Bearer ") if token else None,
            default_namespace=connection.namespace,
        )

    @kopf.on.event(GROUP, VERSION, "workflowdefinitions", registry=registry)
    async def definitions(event: kopf.RawEvent, **_: Any) -> None:
        await controller.on_definition(event.get("type"), dict(event["object"]))

    @kopf.on.event(GROUP, VERSION, "workflowinstances", registry=registry)
    async def instances(event: kopf.RawEvent, **_: Any) -> None:
        await controller.on_instance(event.get("type"), dict(event["object"]))

    @kopf.on.event(GROUP, VERSION, "workflowsignals", registry=registry)
    async def signals(event: kopf.RawEvent, **_: Any) -> None:
        await controller.on_signal(event.get("type"), dict(event["object"]))

    @kopf.on.event(GROUP, VERSION, "workflowschedules", registry=registry)
    async def schedule_events(event: kopf.RawEvent, **_: Any) -> None:
        await schedules.on_schedule(event.get("type"), dict(event["object"]))

    @kopf.on.event(GROUP, VERSION, "workflowinstances", labels={SCHEDULE_LABEL: kopf.PRESENT}, registry=registry)
    async def scheduled_runs(event: kopf.RawEvent, **_: Any) -> None:
        await schedules.on_instance(event.get("type"), dict(event["object"]))

    return registry


class NoDiffBase(kopf.DiffBaseStorage):
    """kopf computes a diff base (a deep copy of the body) for every event, for change handlers.
    There are none here: skipping that copy is a third of kopf's cost per event."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


def kopf_settings() -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    settings.persistence.diffbase_storage = NoDiffBase()
    settings.posting.enabled = False  # the controller posts its own, specific Events
    settings.watching.reconnect_backoff = 0.5
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.error_backoffs = [0.5, 1, 2, 3, 5, 8]
    settings.networking.request_timeout = 30
    return settings
