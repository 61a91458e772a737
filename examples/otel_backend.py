"""The sign-up app of ``examples/web_backend.py``, observed with OpenTelemetry.

    pip install -e '.[otel,emulator]' opentelemetry-sdk \\
        opentelemetry-exporter-otlp-proto-http opentelemetry-instrumentation-asgi
    OTEL_SERVICE_NAME=signup OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4318 \\
    PHONECONFIRM_API_KEY=... PHONECONFIRM_DOMAIN=... \\
        uvicorn --factory examples.otel_backend:create_app

The SDK is configured once per process, before the app starts, as OpenTelemetry's global
providers: the client reports to them without being told (``telemetry=None``, the
default, is on when the API is installed). Each HTTP request is a server span (made by
``opentelemetry-instrumentation-asgi``); the client's spans are its children:
``phoneconfirm.session.schedule`` under ``POST /confirm``, ``phoneconfirm.session.verify``
and its ``phoneconfirm.verify_code`` under ``POST /confirm/{session_id}/verify``. The calls
the scheduler places in the background (``phoneconfirm.session.call`` around
``phoneconfirm.place_call``) are traces of their own. Metrics are exported every minute
(``OTEL_METRIC_EXPORT_INTERVAL``).
"""

from __future__ import annotations

from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from starlette.applications import Starlette

from examples import web_backend


def configure_opentelemetry(
    span_exporter: SpanExporter | None = None, metric_reader: MetricReader | None = None
) -> None:
    """Set OpenTelemetry's global tracer and meter providers (once per process).

    By default spans and metrics go over OTLP/HTTP to ``OTEL_EXPORTER_OTLP_ENDPOINT``; a
    test passes in-memory ones.
    """
    resource = Resource.create()  # OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(BatchSpanProcessor(span_exporter or OTLPSpanExporter()))
    trace.set_tracer_provider(tracer_provider)
    reader = metric_reader or PeriodicExportingMetricReader(OTLPMetricExporter())
    metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=[reader]))


def create_app(
    *,
    span_exporter: SpanExporter | None = None,
    metric_reader: MetricReader | None = None,
    **options: Any,
) -> Starlette:
    """Configure OpenTelemetry, then make the sign-up app with a server span per request.

    ``options`` are those of :func:`examples.web_backend.create_app`.
    """
    configure_opentelemetry(span_exporter, metric_reader)
    app = web_backend.create_app(**options)
    app.add_middleware(OpenTelemetryMiddleware)
    return app
