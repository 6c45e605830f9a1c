"""The small HTTP server both the operator and the worker run: ``/metrics``, ``/healthz``, ``/readyz``.

``/healthz`` answers while the process's event loop turns; ``/readyz`` asks the caller's readiness
check (the operator: leading and watching; the worker: definitions published and watching).
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest


async def serve(
    registry: CollectorRegistry, ready: Callable[[], bool], port: int, host: str = "0.0.0.0"
) -> web.AppRunner:
    """Start serving in the running loop; stop with ``await runner.cleanup()``."""

    async def metrics(_: web.Request) -> web.Response:
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def readyz(_: web.Request) -> web.Response:
        return web.Response(text="ready") if ready() else web.Response(status=503, text="not ready")

    app = web.Application()
    app.add_routes([web.get("/metrics", metrics), web.get("/healthz", healthz), web.get("/readyz", readyz)])
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
