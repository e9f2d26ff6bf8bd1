"""OpenTelemetry tracing: off unless the standard ``OTEL_*`` variables ask for it.

When on, FastAPI's own bridge traces each request, SQLAlchemy and httpx are instrumented,
the order path's driver statements get spans of their own (they bypass SQLAlchemy), and
Stockflow adds spans for the steps an operator asks about: ``place_order``,
``reserve_stock``, ``replenish``, ``deliver_webhook``. An event stores the ``traceparent``
of the request that wrote it, so the worker's delivery continues the same trace.

When off, nothing is instrumented and a span costs one comparison: the order path pays
nothing for tracing it does not use.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer
from sqlalchemy.ext.asyncio import AsyncEngine

from stockflow import __version__

_tracer: Tracer | None = None
_NO_SPAN: AbstractContextManager[None] = nullcontext()
_ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


def wanted(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the environment asks for traces: an OTLP endpoint, or an explicit
    ``OTEL_TRACES_EXPORTER`` other than ``none``; never with ``OTEL_SDK_DISABLED=true``."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter == "none":
        return False
    return bool(exporter) or any(environ.get(name, "").strip() for name in _ENDPOINT_VARIABLES)


def provider_from_environment(environ: Mapping[str, str] = os.environ) -> TracerProvider | None:
    """A provider exporting as the ``OTEL_*`` variables say (endpoint, headers such as New
    Relic's ``api-key``, protocol http/protobuf), or None when tracing is not wanted."""
    if not wanted(environ):
        return None
    resource = Resource.create(
        {
            "service.name": environ.get("OTEL_SERVICE_NAME") or "stockflow",
            "service.version": __version__,
        }
    )
    provider = TracerProvider(resource=resource)
    exporters = {
        name.strip()
        for name in (environ.get("OTEL_TRACES_EXPORTER", "").lower() or "otlp").split(",")
    } - {"", "none"}
    protocol = (
        environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    ).strip()
    if "otlp" in exporters and protocol != "http/protobuf":
        raise ValueError(
            f"OTLP protocol {protocol!r} is not supported: Stockflow exports OTLP over HTTP "
            "(http/protobuf, port 4318)"
        )
    if "console" in exporters:
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    if "otlp" in exporters:
        # The exporter reads OTEL_EXPORTER_OTLP_* (endpoint, headers, timeout) itself.
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider


def enable(provider: trace.TracerProvider) -> None:
    global _tracer
    _tracer = provider.get_tracer("stockflow", __version__)


def disable() -> None:
    global _tracer
    _tracer = None


def enabled() -> bool:
    return _tracer is not None


def span(name: str, **attributes: Any) -> AbstractContextManager[Any]:
    """A span of Stockflow's own around a step, current while the step runs."""
    if _tracer is None:
        return _NO_SPAN
    return _tracer.start_as_current_span(name, attributes=attributes)


@contextmanager
def continued(
    name: str,
    traceparent: str | None,
    attributes: Mapping[str, Any],
    *,
    kind: SpanKind = SpanKind.CONSUMER,
) -> Iterator[Span | None]:
    """A span continuing the trace whose ``traceparent`` was stored with the work (an
    event's), or a new trace when there is none. It starts from a fresh context, so what
    runs inside is traced even within `quiet`."""
    if _tracer is None:
        yield None
        return
    parent = (
        propagate.extract({"traceparent": traceparent}, context=Context())
        if traceparent
        else Context()
    )
    # Current while the span is: a span made current is put in the *current* context.
    token = otel_context.attach(parent)
    try:
        with _tracer.start_as_current_span(name, kind=kind, attributes=attributes) as current:
            yield current
    finally:
        otel_context.detach(token)


def quiet() -> AbstractContextManager[Any]:
    """No instrumentation spans for what runs inside (a worker's polling every half
    second would otherwise be a trace of its own each time); Stockflow's own spans, and
    whatever runs inside `continued`, are still traced."""
    if _tracer is None:
        return _NO_SPAN
    from opentelemetry.instrumentation.utils import suppress_instrumentation

    return suppress_instrumentation()


def failed(current: Span | None, description: str) -> None:
    if current is not None:
        current.set_status(Status(StatusCode.ERROR, description))


def traceparent() -> str | None:
    """The current span's W3C ``traceparent``, to store with work done later; None when
    tracing is off or no span is recording."""
    if _tracer is None:
        return None
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get("traceparent")


def current_ids() -> tuple[str, str] | None:
    """The current trace and span ids in hex, for log lines; None outside a span."""
    if _tracer is None:
        return None
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


def statement_span(sql: str) -> AbstractContextManager[Any]:
    """A client span for one statement sent straight through the driver, named and
    described as the SQLAlchemy instrumentation names its own."""
    if _tracer is None:
        return _NO_SPAN
    stripped = sql.lstrip()
    operation = stripped.split(None, 1)[0].upper() if stripped else "SQL"
    return _tracer.start_as_current_span(
        operation,
        kind=SpanKind.CLIENT,
        attributes={"db.system": "postgresql", "db.statement": stripped},
    )


def instrument(provider: trace.TracerProvider, engine: AsyncEngine) -> None:
    """Trace SQLAlchemy's statements on ``engine``, every httpx request, and Stockflow's own
    steps, into ``provider``. One application per process is traced; instrumenting again
    replaces what was instrumented before."""
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    uninstrument()
    # Its declared range stops short of SQLAlchemy 2.1, whose engine events it uses are
    # unchanged; the tracing tests hold it to that.
    SQLAlchemyInstrumentor().instrument(
        engine=engine.sync_engine, tracer_provider=provider, skip_dep_check=True
    )
    HTTPXClientInstrumentor().instrument(tracer_provider=provider)
    enable(provider)


def uninstrument() -> None:
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    disable()
    for instrumentor in (SQLAlchemyInstrumentor(), HTTPXClientInstrumentor()):
        if instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.uninstrument()
