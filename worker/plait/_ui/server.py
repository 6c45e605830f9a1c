"""The web UI's HTTP server (aiohttp): server-rendered pages, live fragments over SSE, actions.

Every page is a view (an async function reading the :class:`~plait._ui.watches.Hub`'s feeds,
returning a template context) and its templates. A browser's ``EventSource`` asks the page's own
URL with ``Accept: text/event-stream``: the server then subscribes to the feeds that view read
and, whenever one changes (or every ``TICK`` seconds, for ages and running durations), renders
the page's live fragments again and sends those that changed (htmx's SSE extension swaps them in).
Reading costs the API server nothing per page view; only the shared watches talk to it.

Actions (pause, resume, cancel, retry, upgrade, signal) are one plain write each, done with the
UI's credentials: the caller's kubeconfig for ``plait ui``, so RBAC decides, and a refusal (403)
is shown on the page. POSTs need the page's CSRF token and, on a loopback address, a loopback
``Host`` (against DNS rebinding). ``read_only`` hides the actions and refuses them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any
from urllib.parse import quote, urlencode

import jsonschema
from aiohttp import web
from aiohttp_sse import sse_response
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from plait._client.objects import signal_body
from plait._kube.client import CORE_EVENTS, NAMESPACES, AsyncKube, Resource
from plait._kube.models import (
    CANCEL_ANNOTATION,
    DEFINITIONS,
    INSTANCE_UID_LABEL,
    INSTANCES,
    PAUSE_ANNOTATION,
    RETRY_ANNOTATION,
    SCHEDULES,
    SIGNALS,
    TASKS,
    UPGRADE_ANNOTATION,
    definition_hash_of,
)
from plait._ui import views
from plait._ui.diff import diff_definitions
from plait._ui.forms import FormError, form_fields, payload_from_form
from plait._ui.graph import GraphError, NodeInfo, dot_source, render_svg
from plait._ui.watches import Feed, Hub
from plait.errors import ClusterError, Forbidden, NotFound

log = logging.getLogger(__name__)

TICK = 15.0  # seconds between renders of a quiet page (ages, running durations)
THROTTLE = 0.25  # seconds a stream waits after a change, so that a burst of changes renders once
LIST_LIMIT = 500  # rows of the instance list
_LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]", "::1")
ALL = "*"  # the namespace filter's value for every namespace


@dataclass(frozen=True)
class Settings:
    namespace: str
    read_only: bool = False
    trace_url: str | None = None
    loopback: bool = True  # bound to a loopback address: requests must name a loopback Host
    identity: str = ""  # who the UI acts as, for the header
    graphs: str = "server"  # where graphs are drawn: "server" (dot) or "browser" (static/graph.js)


@dataclass
class Reads:
    """The feeds one render read: a stream subscribes to exactly these."""

    hub: Hub
    feeds: list[Feed] = field(default_factory=list)

    async def __call__(self, resource: Resource, namespace: str | None) -> Feed:
        feed = await self.hub.feed(resource, namespace)
        self.feeds.append(feed)
        return feed

    def problems(self) -> list[str]:
        seen = []
        for feed in self.feeds:
            if feed.error:
                where = feed.namespace or "every namespace"
                hint = " (RBAC: this identity may not list or watch them)" if feed.forbidden else ""
                text = f"cannot read {feed.resource.plural} in {where}{hint}: {feed.error}"
                if text not in seen:
                    seen.append(text)
        return seen


View = Callable[[web.Request, Reads], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class Page:
    template: str
    fragments: tuple[tuple[str, str], ...]  # (SSE event name, template) of the live parts
    view: View


class ActionError(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def _revisions(reads: Reads) -> str:
    return ".".join(str(feed.revision) for feed in reads.feeds)


def _scope(namespace: str) -> str | None:
    return None if namespace == ALL else namespace


class UI:
    """The application: routes, views and actions over one :class:`Hub`."""

    def __init__(self, kube: AsyncKube, settings: Settings, *, hub: Hub | None = None) -> None:
        self.kube = kube
        self.settings = settings
        self.hub = hub or Hub(kube)
        self.csrf = secrets.token_urlsafe(32)
        # Graphviz in the browser is WebAssembly: compiling it is allowed, nothing else is
        scripts = "script-src 'self' 'wasm-unsafe-eval'; " if settings.graphs == "browser" else ""
        self._csp = (
            f"default-src 'self'; {scripts}img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
            "frame-ancestors 'none'"
        )
        self.templates = Environment(
            loader=PackageLoader("plait._ui", "templates"),
            autoescape=select_autoescape(["html"]),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.templates.filters["pretty"] = views.pretty
        self.templates.globals.update(phase_symbols=views.PHASE_SYMBOLS, quote=quote)
        self.pages = {
            "instances": Page("instances.html", (("live", "_instances.html"),), self._instances),
            "instance": Page(
                "instance.html",
                (("head", "_instance_head.html"), ("actions", "_instance_actions.html"), ("live", "_instance.html")),
                self._instance,
            ),
            "definitions": Page("list.html", (("live", "_definitions.html"),), self._definitions),
            "definition": Page("definition.html", (("live", "_definition.html"),), self._definition),
            "signals": Page("list.html", (("live", "_signals.html"),), self._signals),
            "schedules": Page("list.html", (("live", "_schedules.html"),), self._schedules),
            "queues": Page("list.html", (("live", "_queues.html"),), self._queues),
        }

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._guard])
        page = self._page
        app.add_routes(
            [
                web.get("/", lambda _: web.HTTPFound("/instances")),  # type: ignore[arg-type,return-value]
                web.get("/healthz", lambda _: web.Response(text="ok")),  # type: ignore[arg-type,return-value]
                web.get("/static/{name}", self._static),
                web.get("/instances", page("instances")),
                web.get("/instances/{namespace}/{name}", page("instance")),
                web.post("/instances/{namespace}/{name}/{action}", self._action),
                web.get("/definitions", page("definitions")),
                web.get("/definitions/{namespace}/{name}", page("definition")),
                web.get("/signals", page("signals")),
                web.get("/schedules", page("schedules")),
                web.get("/queues", page("queues")),
            ]
        )
        app.on_cleanup.append(self._close)
        return app

    async def _close(self, _: web.Application) -> None:
        await self.hub.close()

    # -- plumbing ----------------------------------------------------------------------------------

    @web.middleware
    async def _guard(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if self.settings.loopback and request.host.rsplit(":", 1)[0] not in _LOOPBACK_HOSTS:
            # a page elsewhere that rebinds its name to 127.0.0.1 must not reach (or act through) the UI
            return web.Response(status=421, text=f"this UI answers only to localhost, not to {request.host!r}\n")
        response = await handler(request)
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("Content-Security-Policy", self._csp)
        return response

    async def _static(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        types = {".js": "text/javascript", ".css": "text/css", ".txt": "text/plain", ".svg": "image/svg+xml"}
        kind = next((t for suffix, t in types.items() if name.endswith(suffix)), None)
        asset = resources.files("plait._ui").joinpath("static", name)
        if kind is None or "/" in name or not asset.is_file():
            raise web.HTTPNotFound()
        response = web.Response(
            body=asset.read_bytes(), content_type=kind, headers={"Cache-Control": "public, max-age=3600"}
        )
        response.enable_compression()  # viz-global.js: 1.3 MB, 0.5 MB gzipped
        return response

    def _namespace(self, request: web.Request) -> str:
        return request.match_info.get("namespace") or request.query.get("ns") or self.settings.namespace

    async def _common(self, request: web.Request, reads: Reads) -> dict[str, Any]:
        namespace = self._namespace(request)
        namespaces_feed = await self.hub.feed(NAMESPACES, None)  # the picker; not a live part
        names = sorted(o["metadata"]["name"] for o in namespaces_feed.items()) if not namespaces_feed.error else []
        return {
            "namespace": namespace,
            "namespaces": names,
            "all": ALL,
            "csrf": self.csrf,
            "read_only": self.settings.read_only,
            "identity": self.settings.identity,
            "browser_graphs": self.settings.graphs == "browser",
            "path": request.path,
            "query": request.query,
            "now": time.time(),
        }

    def _render(self, template: str, context: dict[str, Any]) -> str:
        return self.templates.get_template(template).render(context)

    def _page(self, name: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        page = self.pages[name]

        async def handle(request: web.Request) -> web.StreamResponse:
            if "text/event-stream" in request.headers.get("Accept", ""):
                return await self._stream(request, page)
            reads = Reads(self.hub)
            context = await self._context(request, page, reads)
            return web.Response(text=self._render(page.template, context), content_type="text/html")

        return handle

    async def _context(self, request: web.Request, page: Page, reads: Reads) -> dict[str, Any]:
        context = await self._common(request, reads)
        context.update(await page.view(request, reads))
        context["problems"] = reads.problems() + context.get("problems", [])
        context["live_template"] = page.fragments[-1][1]
        # the stream of this page starts from what it shows: it sends nothing until a feed moves on
        separator = "&" if request.query_string else "?"
        context["stream_url"] = f"{request.path_qs}{separator}{urlencode({'rev': _revisions(reads)})}"
        return context

    async def _stream(self, request: web.Request, page: Page) -> web.StreamResponse:
        wake = asyncio.Event()
        subscribed: set[Feed] = set()
        async with sse_response(request) as sse:

            async def push() -> None:
                sent: dict[str, str] = {}
                first = True
                while True:
                    reads = Reads(self.hub)
                    context = await self._context(request, page, reads)
                    if first and request.query.get("rev") == _revisions(reads):  # the page is current
                        sent = {event: self._render(template, context) for event, template in page.fragments}
                    first = False
                    feeds = set(reads.feeds)
                    self.hub.subscribe(feeds - subscribed, wake)
                    self.hub.unsubscribe(subscribed - feeds, wake)
                    subscribed.clear()
                    subscribed.update(feeds)
                    for event, template in page.fragments:
                        html = self._render(template, context)
                        if sent.get(event) != html:
                            await sse.send(html, event=event)
                            sent[event] = html
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(wake.wait(), TICK)
                    await asyncio.sleep(THROTTLE)
                    wake.clear()

            pusher = asyncio.ensure_future(push())
            try:
                await asyncio.wait([pusher, asyncio.ensure_future(sse.wait())], return_when=asyncio.FIRST_COMPLETED)
            finally:
                pusher.cancel()
                with contextlib.suppress(asyncio.CancelledError, ConnectionResetError, RuntimeError):
                    await pusher
                self.hub.unsubscribe(subscribed, wake)
        return sse

    # -- views -------------------------------------------------------------------------------------

    async def _instances(self, request: web.Request, reads: Reads) -> dict[str, Any]:
        namespace = self._namespace(request)
        feed = await reads(INSTANCES, _scope(namespace))
        items = feed.items(_scope(namespace))
        workflow, phase, label = (request.query.get(k, "").strip() for k in ("workflow", "phase", "label"))
        problems = []
        try:
            selector = views.parse_selector(label)
        except views.SelectorError as error:
            selector, problems = [], [str(error)]
        rows, matched = views.instance_rows(
            items, time.time(), workflow=workflow, phase=phase, selector=selector, limit=LIST_LIMIT
        )
        return {
            "title": "Instances",
            "rows": rows,
            "matched": matched,
            "total": len(items),
            "limit": LIST_LIMIT,
            "counts": views.phase_counts(items),
            "workflows": sorted({str((i.get("spec") or {}).get("workflow", "")) for i in items}),
            "phases": views.PHASES,
            "filters": {"workflow": workflow, "phase": phase, "label": label},
            "problems": problems,
        }

    async def _definition_of(self, reads: Reads, instance: dict[str, Any]) -> dict[str, Any] | None:
        namespace = instance["metadata"]["namespace"]
        wanted = definition_hash_of(instance)
        candidates = [
            d
            for d in (await reads(DEFINITIONS, namespace)).items(namespace)
            if d["spec"].get("workflow") == (instance.get("spec") or {}).get("workflow")
        ]
        if wanted:
            return next((d for d in candidates if d["spec"].get("hash") == wanted), None)
        return candidates[-1] if candidates else None

    async def _graph(
        self, spec: dict[str, Any], nodes: dict[str, NodeInfo], link: Callable[[str], str] | None
    ) -> dict[str, Any]:
        try:
            source = dot_source(spec, nodes, link)
            if self.settings.graphs == "browser":
                return {"dot": source}  # static/graph.js draws it
            return {"svg": Markup(await render_svg(source))}
        except GraphError as error:
            return {"graph_error": str(error)}
        except Exception as error:  # a definition this version cannot read: show the table alone
            return {"graph_error": f"cannot draw this definition: {error}"}

    async def _instance(self, request: web.Request, reads: Reads) -> dict[str, Any]:
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        instance = (await reads(INSTANCES, namespace)).get(namespace, name)
        if instance is None:
            return {"title": name, "missing": True, "name": name}
        now = time.time()
        definition = await self._definition_of(reads, instance)
        uid = instance["metadata"].get("uid")
        tasks = [
            t
            for t in (await reads(TASKS, namespace)).items(namespace)
            if (t["metadata"].get("labels") or {}).get(INSTANCE_UID_LABEL) == uid
        ]
        steps = views.step_views(definition, instance, tasks, now)
        selected = request.query.get("step")
        chosen = next((s for s in steps if s.row.id == selected), None)
        context: dict[str, Any] = {
            "title": name,
            "instance": instance,
            "row": views.instance_row(instance, now),
            "spec": instance.get("spec") or {},
            "status": instance.get("status") or {},
            "definition": definition,
            "steps": steps,
            "chosen": chosen,
            "events": views.events_of((await reads(CORE_EVENTS, namespace)).items(namespace), "WorkflowInstance", name),
            "signals": views.waiting_signals(instance, definition, (await reads(SIGNALS, namespace)).items(namespace)),
            "actions": views.actions_for(instance),
            "trace": views.trace_link(instance, self.settings.trace_url),
            "retry_steps": [s.row.id for s in steps if s.row.leaf and s.row.kind == "task"],
            "upgrade_to": [],
            "signal_forms": {},
        }
        if definition is not None:
            base = f"/instances/{quote(namespace)}/{quote(name)}"
            states = {k: NodeInfo(state, detail) for k, (state, detail) in views.node_states(steps).items()}
            context.update(
                await self._graph(definition["spec"], states, lambda i: f"{base}?{urlencode({'step': i})}#step")
            )
            workflow = definition["spec"]["workflow"]
            others = [
                d for d in (await reads(DEFINITIONS, namespace)).items(namespace) if d["spec"]["workflow"] == workflow
            ]
            context["upgrade_to"] = [
                d["spec"]["hash"] for d in reversed(others) if d["spec"]["hash"] != definition["spec"]["hash"]
            ]
            for node in definition["spec"].get("nodes") or []:
                if node.get("kind") == "signal":
                    context["signal_forms"][str(node.get("signal"))] = form_fields(node.get("payloadSchema"))
        return context

    async def _definitions(self, request: web.Request, reads: Reads) -> dict[str, Any]:
        scope = _scope(self._namespace(request))
        definitions = (await reads(DEFINITIONS, scope)).items(scope)
        instances = (await reads(INSTANCES, scope)).items(scope)
        return {"title": "Definitions", "workflows": views.versions(definitions, instances, time.time())}

    async def _definition(self, request: web.Request, reads: Reads) -> dict[str, Any]:
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        feed = await reads(DEFINITIONS, namespace)
        definition = feed.get(namespace, name)
        if definition is None:
            return {"title": name, "missing": True, "name": name}
        spec = definition["spec"]
        instances = (await reads(INSTANCES, namespace)).items(namespace)
        all_versions = views.versions(
            [d for d in feed.items(namespace) if d["spec"]["workflow"] == spec["workflow"]], instances, time.time()
        )
        versions = next(iter(all_versions.values()), [])
        against = feed.get(namespace, request.query.get("against", ""))
        context: dict[str, Any] = {
            "title": spec["workflow"],
            "definition": definition,
            "versions": versions,
            "against": against,
        }
        nodes: dict[str, NodeInfo] = {}
        if against is not None:
            diff = diff_definitions(against["spec"], spec)
            context["diff"] = diff
            nodes = {i: NodeInfo(state) for i, state in diff.states().items()}
            nodes.update(
                {i: NodeInfo("unchanged") for i in (n["id"] for n in spec.get("nodes") or []) if i not in nodes}
            )
        context["nodes"] = spec.get("nodes") or []
        context.update(await self._graph(spec, nodes, None))
        return context

    async def _signals(self, request: web.Request, reads: Reads) -> dict[str, Any]:
        scope = _scope(self._namespace(request))
        signals = (await reads(SIGNALS, scope)).items(scope)
        instances = (await reads(INSTANCES, scope)).items(scope)
        waiting = [views.instance_row(i, time.time()) for i in instances if views.phase_of(i) == "AwaitingSignal"]
        return {"title": "Signals", "signals": list(reversed(signals)), "waiting": waiting}

    async def _schedules(self, request: web.Request, reads: Reads) -> dict[str, Any]:
        scope = _scope(self._namespace(request))
        return {"title": "Schedules", "schedules": (await reads(SCHEDULES, scope)).items(scope)}

    async def _queues(self, request: web.Request, reads: Reads) -> dict[str, Any]:
        scope = _scope(self._namespace(request))
        now = time.time()
        return {
            "title": "Queues",
            "queued": views.queued((await reads(INSTANCES, scope)).items(scope), now),
            "held": views.held((await reads(TASKS, scope)).items(scope), now),
        }

    # -- actions -----------------------------------------------------------------------------------

    async def _action(self, request: web.Request) -> web.Response:
        namespace, name, action = (request.match_info[k] for k in ("namespace", "name", "action"))
        form = await request.post()
        values = {k: v for k, v in form.items() if isinstance(v, str)}
        try:
            self._check_request(request, values)
            message = await self._act(namespace, name, action, values)
            status, ok = 200, True
        except ActionError as error:
            message, status, ok = str(error), error.status, False
        except Forbidden as error:
            message = f"refused by the API server (RBAC): {error}"
            status, ok = 403, False
        except ClusterError as error:
            message, status, ok = str(error), error.status or 502, False
        log.info("action=%s instance=%s/%s outcome=%s: %s", action, namespace, name, "ok" if ok else status, message)
        html = self._render("_flash.html", {"ok": ok, "message": message})
        if request.headers.get("HX-Request"):
            return web.Response(text=html, status=status, content_type="text/html")
        back = f"/instances/{quote(namespace)}/{quote(name)}"
        page = self._render("result.html", {"ok": ok, "flash": Markup(html), "back": back, "title": action})
        return web.Response(text=page, status=status, content_type="text/html")

    def _check_request(self, request: web.Request, values: dict[str, str]) -> None:
        token = request.headers.get("X-CSRF-Token") or values.get("csrf", "")
        if not hmac.compare_digest(token.encode(), self.csrf.encode()):
            raise ActionError("missing or wrong CSRF token: reload the page and try again", 403)
        origin = request.headers.get("Origin")
        if origin and origin.split("://", 1)[-1] != request.host:
            raise ActionError(f"cross-origin request from {origin} refused", 403)
        if self.settings.read_only:
            raise ActionError("this UI is read-only (started with --read-only, or the chart's ui.readOnly)", 403)

    async def _annotate(self, namespace: str, name: str, annotations: dict[str, str | None]) -> None:
        try:
            await self.kube.patch(INSTANCES, name, {"metadata": {"annotations": annotations}}, namespace)
        except NotFound:
            raise ActionError(f"no instance {name!r} in namespace {namespace!r}", 404) from None

    async def _act(self, namespace: str, name: str, action: str, values: dict[str, str]) -> str:
        reason = values.get("reason", "").strip()
        if action in ("pause", "cancel"):
            key = PAUSE_ANNOTATION if action == "pause" else CANCEL_ANNOTATION
            await self._annotate(namespace, name, {key: reason})
            return f"{name}: {key}={reason!r} set; the operator {action}s it at the next task boundary"
        if action == "resume":
            await self._annotate(namespace, name, {PAUSE_ANNOTATION: None})
            return f"{name}: {PAUSE_ANNOTATION} removed; it goes on where it stopped"
        if action == "retry":
            step = values.get("step", "").strip()
            await self._annotate(namespace, name, {RETRY_ANNOTATION: step})
            return f"{name}: {RETRY_ANNOTATION}={step!r} set; it reruns from {step or 'its failed step'}"
        if action == "upgrade":
            version = values.get("version", "").strip() or "latest"
            if version != "latest" and not all(c in "0123456789abcdef" for c in version):
                raise ActionError(f"an upgrade goes to a definition hash or 'latest', not {version!r}")
            await self._annotate(namespace, name, {UPGRADE_ANNOTATION: version})
            return (
                f"{name}: {UPGRADE_ANNOTATION}={version} set; it moves at its next step boundary if its checkpoint maps"
            )
        if action == "signal":
            return await self._signal(namespace, name, values)
        raise ActionError(f"no action {action!r}", 404)

    async def _signal(self, namespace: str, name: str, values: dict[str, str]) -> str:
        signal = values.get("signal", "").strip()
        if not signal:
            raise ActionError("which signal? the form needs a signal name")
        reads = Reads(self.hub)
        instance = (await reads(INSTANCES, namespace)).get(namespace, name)
        definition = await self._definition_of(reads, instance) if instance is not None else None
        node = next(
            (
                n
                for n in ((definition or {}).get("spec") or {}).get("nodes") or []
                if n.get("kind") == "signal" and n.get("signal") == signal
            ),
            None,
        )
        schema = (node or {}).get("payloadSchema")
        fields = form_fields(schema)
        try:
            if fields is not None and "payload" not in values:
                payload: Any = payload_from_form(fields, values)
            else:
                text = values.get("payload", "").strip()
                payload = json.loads(text) if text else None
        except FormError as error:
            raise ActionError(f"signal {signal!r}: {error}") from None
        except ValueError as error:
            raise ActionError(f"signal {signal!r}: the payload is not JSON: {error}") from None
        if schema:
            try:
                jsonschema.validate(payload, schema)
            except jsonschema.ValidationError as error:
                raise ActionError(
                    f"signal {signal!r}: the payload does not match its schema: {error.message}"
                ) from None
        created = await self.kube.create(SIGNALS, signal_body(name, signal, payload, None), namespace)
        return f"workflowsignal {created['metadata']['name']} created: signal {signal!r} for {name}"
