"""``--otel`` on ``batch``, ``confirm`` and ``worker``: the OpenTelemetry SDK, exporting the
client's traces and metrics over OTLP.

The exporters read the standard ``OTEL_*`` environment variables (endpoint, headers,
protocol, timeouts, ``OTEL_SERVICE_NAME``). Without ``--otel`` a command turns the client's
telemetry off: nothing would receive it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from typing import Any, Final

import click

from phoneconfirm_async.cli._io import SetupError

#: What to install for ``--otel`` (the ``otel`` extra has the API only).
INSTALL_HINT: Final = (
    "--otel needs the OpenTelemetry SDK and an OTLP exporter: "
    "pip install opentelemetry-sdk opentelemetry-exporter-otlp-proto-http"
)
#: ``service.name`` unless ``OTEL_SERVICE_NAME`` or ``OTEL_RESOURCE_ATTRIBUTES`` names one.
SERVICE_NAME: Final = "phoneconfirm"


def otel_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--otel",
        is_flag=True,
        help="Export traces and metrics over OTLP (OTEL_EXPORTER_OTLP_ENDPOINT etc.; needs "
        "opentelemetry-sdk and an OTLP exporter).",
    )(func)


@contextlib.contextmanager
def telemetry_options(enabled: bool) -> Iterator[dict[str, Any]]:
    """The client's telemetry arguments: off, or SDK providers exporting over OTLP (flushed
    and shut down when the block ends).

    Raises:
        SetupError: ``enabled`` and the SDK or an OTLP exporter is not installed.
    """
    if not enabled:
        yield {"telemetry": False}
        return
    tracer_provider, meter_provider = _sdk_providers()
    try:
        yield {
            "telemetry": True,
            "tracer_provider": tracer_provider,
            "meter_provider": meter_provider,
        }
    finally:
        tracer_provider.shutdown()
        meter_provider.shutdown()


def _sdk_providers() -> tuple[Any, Any]:
    try:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        raise SetupError(INSTALL_HINT) from None
    span_exporter, metric_exporter = _exporters()
    named = os.environ.get("OTEL_SERVICE_NAME") or "service.name=" in os.environ.get(
        "OTEL_RESOURCE_ATTRIBUTES", ""
    )
    resource = Resource.create({} if named else {"service.name": SERVICE_NAME})
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(BatchSpanProcessor(span_exporter))
    reader = PeriodicExportingMetricReader(metric_exporter)
    meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
    return tracer_provider, meter_provider


def _exporters() -> tuple[Any, Any]:
    """OTLP over HTTP (protobuf) unless ``OTEL_EXPORTER_OTLP_PROTOCOL=grpc``; the other
    one when only it is installed."""
    protocols = ["http", "grpc"]
    if os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "").strip() == "grpc":
        protocols.reverse()
    for protocol in protocols:
        try:
            if protocol == "http":
                from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
                    OTLPMetricExporter,
                )
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                    OTLPSpanExporter,
                )
            else:
                from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (  # type: ignore[no-redef,unused-ignore]
                    OTLPMetricExporter,
                )
                from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (  # type: ignore[no-redef,unused-ignore]
                    OTLPSpanExporter,
                )
        except ImportError:
            continue
        return OTLPSpanExporter(), OTLPMetricExporter()
    raise SetupError(INSTALL_HINT)
