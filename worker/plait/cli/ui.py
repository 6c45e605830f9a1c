"""``plait ui``: the web UI, served from this machine with the caller's kubeconfig (or in-cluster)."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import signal
from contextlib import suppress

from plait._kube.client import AsyncKube
from plait._kube.connection import Connection
from plait.cli.common import add_cluster_options, connect, namespace_of

log = logging.getLogger(__name__)


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "ui",
        help="serve the web UI: instances, graphs, live runs, signals, schedules, queues",
        description="Serve plait's web UI on http://ADDRESS:PORT. It reads and acts with your kubeconfig's "
        "identity (like kubectl): it shows what you may list and watch, and every action (pause, resume, "
        "cancel, retry, upgrade, send a signal) is one write that RBAC allows or refuses. Pages update live "
        "from one shared watch per kind and namespace. Bound to 127.0.0.1 by default; POSTs need the page's "
        "CSRF token. See docs/ui.md.",
        epilog="example:\n  plait ui                      # then open http://127.0.0.1:8484\n"
        "  plait ui -n orders --read-only --trace-url 'http://localhost:16686/trace/{trace_id}'",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--port", type=int, default=8484, help="port to listen on (default 8484)")
    parser.add_argument(
        "--address",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1; another address lets other machines reach the UI, "
        "and act with your identity unless --read-only)",
    )
    parser.add_argument("--read-only", action="store_true", help="show no actions, and refuse them")
    parser.add_argument(
        "--trace-url",
        metavar="TEMPLATE",
        help="link instances with a plait.dev/traceparent annotation to a trace viewer: {trace_id} "
        "(and {traceparent}) are filled in, e.g. http://localhost:16686/trace/{trace_id}",
    )
    parser.add_argument(
        "--graphs",
        choices=("auto", "server", "browser"),
        default="auto",
        help="where graphs are drawn: server (Graphviz's dot on this machine), browser (Graphviz compiled "
        "to WebAssembly, served by plait), auto (default: server when dot is installed)",
    )
    parser.add_argument(
        "--as", dest="as_user", metavar="USER", help="act as USER (Kubernetes impersonation, like kubectl --as)"
    )
    parser.add_argument(
        "--as-group", action="append", default=[], metavar="GROUP", help="with --as: a group to act as (repeatable)"
    )
    add_cluster_options(parser)
    parser.set_defaults(handler=_ui)


def impersonating(connection: Connection, user: str | None, groups: list[str]) -> Connection:
    if not user:
        return connection
    prefix = "system:serviceaccount:"
    if user.startswith(prefix) and not groups and user.count(":") == 3:
        namespace, name = user[len(prefix) :].split(":")
        return connection.as_service_account(namespace, name)
    return connection.as_user(user, tuple(groups) or ("system:authenticated",))


def _loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def _ui(args: argparse.Namespace) -> int:
    from aiohttp import web

    from plait._ui.graph import where_to_draw
    from plait._ui.server import UI, Settings

    connection = impersonating(connect(args), args.as_user, args.as_group)
    settings = Settings(
        namespace=namespace_of(args, connection),
        read_only=args.read_only,
        trace_url=args.trace_url,
        loopback=_loopback(args.address),
        identity=args.as_user or "",
        graphs=where_to_draw(args.graphs),
    )

    async def serve() -> None:
        kube = AsyncKube(connection)
        runner = web.AppRunner(UI(kube, settings).app(), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, args.address, args.port).start()
        host = f"[{args.address}]" if ":" in args.address else args.address
        print(f"plait ui: http://{host}:{args.port}/ (namespace {settings.namespace}; Ctrl-C stops)", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        try:
            await stop.wait()
        finally:
            await runner.cleanup()
            await kube.aclose()

    with suppress(KeyboardInterrupt):
        asyncio.run(serve())
    return 0
