"""OpenTelemetry tracing: W3C trace context, derived ids, and the OTLP exporter's set-up.

Shared by the operator (:mod:`plait_operator.tracing` writes each instance's spans), the workers
(a span around every task run, current while the user's function runs) and the clients (the
submitter's current span becomes the instance's parent, in ``plait.dev/traceparent``).

Configured only by the standard variables: ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or
``OTEL_EXPORTER_OTLP_ENDPOINT`` (OTLP over HTTP), ``OTEL_SERVICE_NAME``,
``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_SAMPLER`` and ``OTEL_TRACES_SAMPLER_ARG``. Without an
endpoint nothing is set up and the OpenTelemetry SDK is never imported: tracing costs nothing.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$")
_TRACER = "plait"


@dataclass(frozen=True, slots=True)
class TraceParent:
    """A W3C ``traceparent``: the trace, the parent span in it, and whether the trace is sampled."""

    trace_id: int
    span_id: int
    sampled: bool = True

    @property
    def header(self) -> str:
        return f"00-{self.trace_id:032x}-{self.span_id:016x}-{'01' if self.sampled else '00'}"


def parse_traceparent(value: str) -> TraceParent | None:
    """The W3C ``traceparent`` header ``value``, or ``None`` when it is not a valid one (wrong form,
    version ``ff``, all-zero ids, or version ``00`` with anything after the flags)."""
    match = _TRACEPARENT.match(value.strip())
    if match is None:
        return None
    version, trace_id, span_id, flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest) or int(trace_id, 16) == 0 or int(span_id, 16) == 0:
        return None
    return TraceParent(int(trace_id, 16), int(span_id, 16), bool(int(flags, 16) & 1))


def derived_id(bits: int, *parts: str) -> int:
    """A trace id (``bits=128``) or span id (64) that is the same wherever and whenever ``parts`` are:
    spans can be written by any process, after any restart, and still find their parents."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return int.from_bytes(digest[: bits // 8], "big") or 1


def configured(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the environment asks for traces: an OTLP endpoint set, the SDK not disabled."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return False
    return any(environ.get(name, "").strip() for name in ENDPOINT_VARIABLES)


_provider: Any = None  # the SDK's TracerProvider, once init_tracing set one up
_forced_ids: ContextVar[tuple[int, int] | None] = ContextVar("plait_forced_ids", default=None)


def init_tracing(service_name: str | None = None, attributes: Mapping[str, str] | None = None) -> bool:
    """Start exporting spans over OTLP/HTTP when the environment configures an endpoint (sayiir's
    ``init_tracing()``); returns whether tracing is on. Idempotent.

    ``service_name`` and ``attributes`` are defaults: ``OTEL_SERVICE_NAME`` and
    ``OTEL_RESOURCE_ATTRIBUTES`` win. The tracer provider becomes the global one, so spans that
    task code starts with the OpenTelemetry API go to the same place, nested under the task's run.
    """
    global _provider
    if _provider is not None:
        return True
    if not configured():
        return False
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from_env = Resource.create()
    defaults = {key: value for key, value in (attributes or {}).items() if key not in from_env.attributes}
    if service_name and str(from_env.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        defaults[SERVICE_NAME] = service_name
    provider = new_provider(from_env.merge(Resource(defaults)))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    _provider = provider
    return True


def new_provider(resource: Any = None) -> Any:
    """An SDK ``TracerProvider`` (the sampler from ``OTEL_TRACES_SAMPLER``) whose ids are random,
    except for the spans :func:`write` gives ids of their own. Imports the SDK."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

    class DerivedIds(RandomIdGenerator):
        def generate_span_id(self) -> int:
            forced = _forced_ids.get()
            return forced[1] if forced is not None else super().generate_span_id()

        def generate_trace_id(self) -> int:
            forced = _forced_ids.get()
            return forced[0] if forced is not None else super().generate_trace_id()

    return TracerProvider(resource=resource, id_generator=DerivedIds())


def shutdown_tracing() -> None:
    """Export the spans still buffered and stop (sayiir's ``shutdown_tracing()``); a no-op when off."""
    global _provider
    if _provider is not None:
        _provider.shutdown()
        _provider = None


def enabled() -> bool:
    """Whether spans go anywhere: :func:`init_tracing` set up the export, or the application
    installed a tracer provider of its own (a client process running a :class:`plait.Worker`)."""
    if _provider is not None:
        return True
    if "opentelemetry.trace" not in sys.modules:  # nobody imported the API: there is no provider
        return False
    from opentelemetry import trace

    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider | trace.NoOpTracerProvider)


def current_traceparent() -> str | None:
    """The ``traceparent`` of the caller's current span, if it has one (never imports OpenTelemetry)."""
    if "opentelemetry.trace" not in sys.modules:
        return None
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return TraceParent(context.trace_id, context.span_id, context.trace_flags.sampled).header


def current_ids() -> tuple[str, str] | None:
    """The trace and span id (hex) of the current span, for a log line; ``None`` outside of one."""
    if "opentelemetry.trace" not in sys.modules:
        return None
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return f"{context.trace_id:032x}", f"{context.span_id:016x}"


def _tracer() -> Any:
    from opentelemetry import trace

    return _provider.get_tracer(_TRACER) if _provider is not None else trace.get_tracer(_TRACER)


def _remote(parent: TraceParent) -> Any:
    """An OpenTelemetry context whose current span is ``parent`` (from another process)."""
    from opentelemetry import trace

    flags = trace.TraceFlags(trace.TraceFlags.SAMPLED if parent.sampled else trace.TraceFlags.DEFAULT)
    span_context = trace.SpanContext(parent.trace_id, parent.span_id, is_remote=True, trace_flags=flags)
    return trace.set_span_in_context(trace.NonRecordingSpan(span_context))


def root_sampled(trace_id: int, name: str) -> bool:
    """Whether the configured sampler keeps a trace ``trace_id`` started here (so every span of an
    instance's trace, whichever process writes it, makes the same decision)."""
    if _provider is None:
        return False
    return bool(_provider.sampler.should_sample(None, trace_id, name).decision.is_sampled())


@dataclass(frozen=True, slots=True)
class SpanRecord:
    """A finished span to write in one go, its ids given (an operator span: see :func:`write`)."""

    name: str
    trace_id: int
    span_id: int
    parent: TraceParent | None  # None: the root of its trace
    start: float  # seconds since the epoch
    end: float
    attributes: Mapping[str, str | int | float | bool]
    events: Sequence[tuple[str, float, Mapping[str, str | int | float | bool]]] = ()
    error: str | None = None


def write(record: SpanRecord) -> None:
    """Write a span that already ended, with the ids it was given (a no-op when tracing is off)."""
    if _provider is None:
        return
    from opentelemetry import trace

    context = _remote(record.parent) if record.parent is not None else None
    token = _forced_ids.set((record.trace_id, record.span_id))
    try:
        span = _tracer().start_span(
            record.name, context=context, attributes=dict(record.attributes), start_time=_ns(record.start)
        )
    finally:
        _forced_ids.reset(token)
    for name, at, attributes in record.events:
        span.add_event(name, dict(attributes), timestamp=_ns(at))
    if record.error is not None:
        span.set_status(trace.Status(trace.StatusCode.ERROR, record.error[:1024]))
    span.end(end_time=_ns(max(record.end, record.start)))


@contextmanager
def task_span(name: str, traceparent: str | None, attributes: Mapping[str, str | int]) -> Iterator[Any]:
    """A span around one task run, the current span inside (the user's own spans nest under it):
    a child of the attempt's ``traceparent`` when the operator gave one. Yields the span."""
    from opentelemetry import trace

    parent = parse_traceparent(traceparent) if traceparent else None
    context = _remote(parent) if parent is not None else None
    with _tracer().start_as_current_span(
        name, context=context, kind=trace.SpanKind.CONSUMER, attributes=dict(attributes), record_exception=False
    ) as span:
        yield span


def fail(span: Any, error: str) -> None:
    """Mark a :func:`task_span` failed with ``error``."""
    from opentelemetry import trace

    span.set_status(trace.Status(trace.StatusCode.ERROR, error[:1024]))


def _ns(seconds: float) -> int:
    return round(seconds * 1e9)
