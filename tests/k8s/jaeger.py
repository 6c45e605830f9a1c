"""A real Jaeger for the tracing tests (a pytest plugin, loaded by tests/conftest.py): OTLP in,
the query API out, on free loopback ports, started once per session like the control plane."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from plait._devenv.jaeger import Jaeger


@pytest.fixture(scope="session")
def jaeger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Jaeger]:
    backend = Jaeger(tmp_path_factory.mktemp("jaeger")).start()
    yield backend
    backend.stop()


def otel_env(jaeger: Jaeger, service: str | None = None, **extra: str) -> dict[str, str]:
    """The environment that sends a plait process's spans to ``jaeger``, exported within ~0.2s."""
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": jaeger.otlp_endpoint, "OTEL_BSP_SCHEDULE_DELAY": "200", **extra}
    if service is not None:
        env["OTEL_SERVICE_NAME"] = service
    return env
