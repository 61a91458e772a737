"""``--otel``: real CLI processes export over OTLP/HTTP to a collector on loopback, which
decodes what they send with OpenTelemetry's own protobuf messages."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from phoneconfirm_async import PhoneConfirmClient, SQLiteStore
from phoneconfirm_async.emulator import Emulator
from tests.conftest import API_KEY, DOMAIN, ENV_NAMES


@dataclass
class Collector:
    """An OTLP/HTTP receiver: every request it was sent, decoded."""

    endpoint: str = ""
    traces: list[ExportTraceServiceRequest] = field(default_factory=list)
    metrics: list[ExportMetricsServiceRequest] = field(default_factory=list)

    def span_names(self) -> list[str]:
        return [
            span.name
            for request in self.traces
            for resource in request.resource_spans
            for scope in resource.scope_spans
            for span in scope.spans
        ]

    def metric_names(self) -> set[str]:
        return {
            metric.name
            for request in self.metrics
            for resource in request.resource_metrics
            for scope in resource.scope_metrics
            for metric in scope.metrics
        }

    def service_names(self) -> set[str]:
        resources = [r.resource for request in self.traces for r in request.resource_spans]
        return {
            attribute.value.string_value
            for resource in resources
            for attribute in resource.attributes
            if attribute.key == "service.name"
        }

    def text(self) -> str:
        """Everything received as protobuf text, without the trace and span ids: they are
        random bytes, which the text shows raw (a "?" among them is chance, not a URL)."""
        parts = []
        for request in self.traces:
            spans = ExportTraceServiceRequest()
            spans.CopyFrom(request)
            for resource in spans.resource_spans:
                for scope in resource.scope_spans:
                    for span in scope.spans:
                        span.ClearField("trace_id")
                        span.ClearField("span_id")
                        span.ClearField("parent_span_id")
            parts.append(str(spans))
        for request in self.metrics:
            points = ExportMetricsServiceRequest()
            points.CopyFrom(request)
            for resource in points.resource_metrics:
                for scope in resource.scope_metrics:
                    for metric in scope.metrics:
                        for point in metric.histogram.data_points:
                            del point.exemplars[:]  # each names a span by its ids
            parts.append(str(points))
        return "\n".join(parts)


@pytest.fixture
def collector() -> Iterator[Collector]:
    received = Collector()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            answer: Any
            if self.path == "/v1/traces":
                received.traces.append(ExportTraceServiceRequest.FromString(body))
                answer = ExportTraceServiceResponse()
            elif self.path == "/v1/metrics":
                received.metrics.append(ExportMetricsServiceRequest.FromString(body))
                answer = ExportMetricsServiceResponse()
            else:
                self.send_error(404)
                return
            payload = answer.SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    received.endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    yield received
    server.shutdown()
    server.server_close()
    thread.join()


def environment(collector: Collector, **extra: str) -> dict[str, str]:
    """This process's environment without credentials or OTel settings, exporting to
    ``collector``."""
    env = {k: v for k, v in os.environ.items() if k not in ENV_NAMES and k[:5] != "OTEL_"}
    env.pop("PHONECONFIRM_STORE", None)
    env["OTEL_EXPORTER_OTLP_ENDPOINT"] = collector.endpoint
    env.update(extra)
    return env


def phoneconfirm(
    collector: Collector, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "phoneconfirm_async.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=environment(collector),
        timeout=120,
        check=False,
    )


def test_batch_place_exports_its_spans_and_metrics(collector: Collector, tmp_path: Path) -> None:
    rows = tmp_path / "rows.csv"
    rows.write_text(
        "phone,country_code,code\n5555550123,1,Q7X4\n5555550124,1,Q7X4\nnot-a-phone,1,Q7X4\n"
    )
    done = phoneconfirm(collector, "batch", "place", str(rows), "--otel")
    assert done.returncode == 1, done.stderr  # the invalid row failed
    names = collector.span_names()
    assert names.count("phoneconfirm.batch") == 1
    assert names.count("phoneconfirm.place_call") == 2
    assert {
        "phoneconfirm.client.requests",
        "phoneconfirm.client.request.duration",
        "phoneconfirm.calls.placed",
    } <= collector.metric_names()
    assert collector.service_names() == {"phoneconfirm"}
    text = collector.text()
    assert "rows_failed" in text
    for secret in ("555555012", "Q7X4", "emulator-key", "apikey", "?"):
        assert secret not in text


def test_confirm_exports_the_sessions_spans(collector: Collector) -> None:
    done = phoneconfirm(
        collector,
        "confirm",
        "5555550123",
        "--country-code",
        "1",
        "--code",
        "4821",
        "--otel",
        stdin="4821\n",
    )
    assert done.returncode == 0, done.stderr
    names = set(collector.span_names())
    assert {
        "phoneconfirm.session.schedule",
        "phoneconfirm.session.call",
        "phoneconfirm.place_call",
        "phoneconfirm.session.verify",
        "phoneconfirm.verify_code",
    } <= names
    assert "phoneconfirm.sessions.finished" in collector.metric_names()


@pytest.mark.anyio
async def test_a_worker_exports_the_calls_it_places(
    collector: Collector, tmp_path: Path, emulator: Emulator
) -> None:
    """A session scheduled by a web tier (no driver), called by ``worker --otel``."""
    store = SQLiteStore(tmp_path / "sessions.sqlite")
    client = PhoneConfirmClient(API_KEY, DOMAIN, base_url=emulator.base_url, telemetry=False)
    async with client, client.scheduler(store=store, drive=False) as web:
        session = await web.schedule("5555550123", country_code="1", code="4821")
        env = environment(
            collector,
            PHONECONFIRM_API_KEY=API_KEY,
            PHONECONFIRM_DOMAIN=DOMAIN,
            PHONECONFIRM_BASE_URL=emulator.base_url,
        )
        command = [sys.executable, "-m", "phoneconfirm_async.cli", "worker", "--otel"]
        worker = await anyio.to_thread.run_sync(
            lambda: subprocess.Popen(
                [*command, "--store", f"sqlite:///{store.path}"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
        try:
            with anyio.fail_after(30):
                assert await session.wait_called()
        finally:
            worker.send_signal(signal.SIGTERM)
            _, err = await anyio.to_thread.run_sync(lambda: worker.communicate(timeout=30))
    assert worker.returncode == 0, err
    names = collector.span_names()
    assert names.count("phoneconfirm.session.call") == 1
    assert names.count("phoneconfirm.place_call") == 1
    assert 'string_value: "sqlite"' in collector.text()
    assert "5555550123" not in collector.text()


def test_otel_without_the_sdk_is_one_line(tmp_path: Path) -> None:
    script = (
        "import sys; sys.modules['opentelemetry.sdk'] = None\n"
        "from phoneconfirm_async.cli import run\n"
        f"sys.argv = ['phoneconfirm', 'batch', 'place', {str(tmp_path / 'x.csv')!r}, '--otel']\n"
        "run()\n"
    )
    (tmp_path / "x.csv").write_text("phone,country_code,code\n5555550123,1,4821\n")
    env = {k: v for k, v in os.environ.items() if k not in ENV_NAMES}
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "phoneconfirm: --otel needs the OpenTelemetry SDK and an OTLP exporter: "
        "pip install opentelemetry-sdk opentelemetry-exporter-otlp-proto-http"
    ]
    assert done.stdout == ""
