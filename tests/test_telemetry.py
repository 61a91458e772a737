"""OpenTelemetry: the spans, events and metrics a client, its scheduler and its batches
export, read back through the SDK's in-memory exporter and reader; and what is never in
them (numbers, codes, keys, URLs with their query)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
import trio
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    HistogramDataPoint,
    InMemoryMetricReader,
    NumberDataPoint,
)
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from trio.testing import MockClock

from phoneconfirm_async import (
    ApiError,
    CallOutcomeUnknownError,
    ConfigurationError,
    ConfirmationPolicy,
    PhoneConfirmClient,
    RetryPolicy,
    SessionState,
    ThrottledError,
    Transport,
    TransportError,
    TransportRequest,
    TransportResponse,
    ValidationError,
    VerificationClosedError,
)
from phoneconfirm_async.emulator import EmulatorConfig
from phoneconfirm_async.testing import EmulatorTransport
from tests.conftest import API_KEY, DOMAIN

pytestmark = pytest.mark.anyio


@dataclass
class Otel:
    """An SDK tracer provider and meter provider that keep everything in memory."""

    exporter: InMemorySpanExporter
    reader: InMemoryMetricReader
    tracer_provider: TracerProvider
    meter_provider: MeterProvider

    @property
    def providers(self) -> dict[str, Any]:
        return {"tracer_provider": self.tracer_provider, "meter_provider": self.meter_provider}

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        found = self.exporter.get_finished_spans()
        return [span for span in found if name is None or span.name == name]

    def span(self, name: str) -> ReadableSpan:
        (found,) = self.spans(name)
        return found

    def metrics(self) -> dict[str, dict[frozenset[tuple[str, Any]], Any]]:
        """Each metric's points: attributes -> value (a histogram's: (count, sum))."""
        data = self.reader.get_metrics_data()
        assert data is not None
        points: dict[str, dict[frozenset[tuple[str, Any]], Any]] = {}
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                assert scope.scope.name == "phoneconfirm_async"
                for metric in scope.metrics:
                    values = points.setdefault(metric.name, {})
                    for point in metric.data.data_points:
                        key = frozenset((point.attributes or {}).items())
                        if isinstance(point, HistogramDataPoint):
                            values[key] = (point.count, point.sum)
                        elif isinstance(point, NumberDataPoint):
                            values[key] = point.value
        return points

    def exported_text(self) -> str:
        """Every span and every metric as the exporters would see them, as text."""
        spans = "\n".join(span.to_json() for span in self.spans())
        data = self.reader.get_metrics_data()
        return spans + "\n" + (data.to_json() if data is not None else "")


@pytest.fixture
def otel() -> Iterator[Otel]:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    yield Otel(exporter, reader, tracer_provider, meter_provider)
    tracer_provider.shutdown()
    meter_provider.shutdown()


def attribute(span: ReadableSpan, name: str) -> Any:
    return (span.attributes or {})[name]


def labels(**attributes: Any) -> frozenset[tuple[str, Any]]:
    return frozenset((f"phoneconfirm.{name}", value) for name, value in attributes.items())


class Scripted:
    """A transport that answers the first requests itself (429, a drop after sending),
    then hands the rest to the emulator in process."""

    def __init__(self, inner: EmulatorTransport, script: Sequence[str]) -> None:
        self.inner = inner
        self.script = list(script)
        self.name = "scripted"

    async def send(self, request: TransportRequest) -> TransportResponse:
        step = self.script.pop(0) if self.script else "pass"
        if step == "429":
            return TransportResponse(429, {"retry-after": "0"}, b"")
        answer = await self.inner.send(request)
        if step == "drop":  # the call went out; its answer never came back
            raise TransportError("connection reset by peer", sent=True, kind="disconnected")
        return answer


def scripted_client(otel: Otel, script: Sequence[str], **options: Any) -> PhoneConfirmClient:
    inner = EmulatorTransport(EmulatorConfig())
    transport: Transport = Scripted(inner, script)
    return PhoneConfirmClient(
        API_KEY,
        DOMAIN,
        base_url=inner.base_url,
        transport=transport,
        **otel.providers,
        **options,
    )


# -- requests -------------------------------------------------------------------------------
async def test_a_confirmed_number_over_loopback(otel: Otel, emulator: Any) -> None:
    """Place and verify against the emulator on a socket: two client spans, the request
    counter and histogram, one call placed."""
    async with PhoneConfirmClient(
        API_KEY, DOMAIN, base_url=emulator.base_url, **otel.providers
    ) as client:
        placed = await client.place_call("5555550123", country_code="1", code="4821")
        verified = await client.verify_code(placed.transaction_number, "4821")
        transport = client.transport
    assert verified.verified

    place = otel.span("phoneconfirm.place_call")
    assert place.kind is SpanKind.CLIENT
    assert place.status.status_code is StatusCode.UNSET
    assert dict(place.attributes or {}) == {
        "phoneconfirm.operation": "placecall",
        "phoneconfirm.transport": transport,
        "server.address": "127.0.0.1",
        "phoneconfirm.outcome": "placed",
        "phoneconfirm.status": "valid",
        "phoneconfirm.error_code": 0,
        "phoneconfirm.attempts": 1,
        "http.response.status_code": 200,
    }
    verify = otel.span("phoneconfirm.verify_code")
    assert verify.attributes is not None
    assert verify.attributes["phoneconfirm.outcome"] == "verified"
    assert place.context.trace_id != verify.context.trace_id  # no span around them: roots

    metrics = otel.metrics()
    assert metrics["phoneconfirm.client.requests"] == {
        labels(operation="placecall", outcome="placed"): 1,
        labels(operation="verifycode", outcome="verified"): 1,
    }
    durations = metrics["phoneconfirm.client.request.duration"]
    assert {key: count for key, (count, _) in durations.items()} == {
        labels(operation="placecall", outcome="placed"): 1,
        labels(operation="verifycode", outcome="verified"): 1,
    }
    assert all(total > 0 for _, total in durations.values())
    assert metrics["phoneconfirm.calls.placed"] == {labels(**{"call.outcome": "placed"}): 1}
    assert "phoneconfirm.client.retries" not in metrics


async def test_a_wrong_code_is_not_verified_and_not_an_error(otel: Otel) -> None:
    transport = EmulatorTransport()
    async with transport.client(**otel.providers) as client:
        placed = await client.place_call("5555550123", country_code="1", code="4821")
        result = await client.verify_code(placed.transaction_number, "0000")
    assert not result.verified
    verify = otel.span("phoneconfirm.verify_code")
    assert verify.status.status_code is StatusCode.UNSET
    attributes = dict(verify.attributes or {})
    assert attributes["phoneconfirm.outcome"] == "not_verified"
    assert attributes["phoneconfirm.status"] == "invalid"
    assert attributes["phoneconfirm.transport"] == "emulator"
    assert (
        otel.metrics()["phoneconfirm.client.requests"][
            labels(operation="verifycode", outcome="not_verified")
        ]
        == 1
    )


async def test_a_429_then_success_is_one_request_with_a_retry_event(otel: Otel) -> None:
    async with scripted_client(otel, ["429"]) as client:
        placed = await client.place_call("5555550123", country_code="1", code="4821")
    assert placed.placed
    span = otel.span("phoneconfirm.place_call")
    attributes = dict(span.attributes or {})
    assert attributes["phoneconfirm.attempts"] == 2
    assert attributes["phoneconfirm.outcome"] == "placed"
    assert attributes["http.response.status_code"] == 200  # the last attempt's
    (event,) = span.events
    assert event.name == "phoneconfirm.retry"
    assert dict(event.attributes or {}) == {
        "phoneconfirm.retry.attempt": 1,
        "phoneconfirm.retry.wait": 0.0,
        "phoneconfirm.retry.reason": "rate_limited",
        "error.type": "RateLimitedError",
    }
    metrics = otel.metrics()
    assert metrics["phoneconfirm.client.retries"] == {
        labels(operation="placecall", **{"retry.reason": "rate_limited"}): 1
    }
    assert metrics["phoneconfirm.client.requests"] == {
        labels(operation="placecall", outcome="placed"): 1
    }


async def test_a_placement_of_unknown_outcome_is_an_error_and_a_possible_call(
    otel: Otel,
) -> None:
    """The answer is lost after the call went out: not retried, the span failed with the
    exception's type, and the call counted as one that may have gone out."""
    async with scripted_client(otel, ["drop"]) as client:
        with pytest.raises(CallOutcomeUnknownError):
            await client.place_call("5555550123", country_code="1", code="4821")
    span = otel.span("phoneconfirm.place_call")
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "CallOutcomeUnknownError"
    attributes = dict(span.attributes or {})
    assert attributes["phoneconfirm.outcome"] == "error"
    assert attributes["error.type"] == "CallOutcomeUnknownError"
    assert attributes["phoneconfirm.attempts"] == 1
    assert "http.response.status_code" not in attributes  # no answer came back
    assert span.events == ()
    metrics = otel.metrics()
    assert metrics["phoneconfirm.calls.placed"] == {labels(**{"call.outcome": "unknown"}): 1}
    assert metrics["phoneconfirm.client.requests"] == {
        labels(operation="placecall", outcome="error"): 1
    }


async def test_a_refusal_carries_the_services_error_code(otel: Otel) -> None:
    transport = EmulatorTransport(EmulatorConfig(uncallable_numbers=frozenset({"5555550100"})))
    async with transport.client(**otel.providers) as client:
        with pytest.raises(ApiError):
            await client.place_call("5555550100", country_code="1", code="4821")
    attributes = dict(otel.span("phoneconfirm.place_call").attributes or {})
    assert attributes["phoneconfirm.error_code"] == 4
    assert attributes["phoneconfirm.outcome"] == "error"
    assert attributes["http.response.status_code"] == 200


async def test_clients_on_one_provider_share_its_instruments(
    otel: Otel, caplog: pytest.LogCaptureFixture
) -> None:
    """Instruments are registered by name: a second client reuses them (no conflict
    warning from the SDK) and the totals are the process's."""
    transport = EmulatorTransport()
    with caplog.at_level(logging.WARNING):
        for _ in range(2):
            async with transport.client(**otel.providers) as client:
                await client.place_call("5555550123", country_code="1", code="4821")
    assert caplog.records == []
    metrics = otel.metrics()
    assert metrics["phoneconfirm.client.requests"] == {
        labels(operation="placecall", outcome="placed"): 2
    }
    ((count, _),) = metrics["phoneconfirm.client.request.duration"].values()
    assert count == 2


async def test_spans_are_children_of_the_callers_span(otel: Otel) -> None:
    tracer = otel.tracer_provider.get_tracer("the-application")
    transport = EmulatorTransport()
    async with transport.client(**otel.providers) as client:
        with tracer.start_as_current_span("POST /signup") as parent:
            placed = await client.place_call("5555550123", country_code="1", code="4821")
            await client.verify_code(placed.transaction_number, "4821")
        assert trace.get_current_span() is not parent  # the client left no span current
    signup = otel.span("POST /signup")
    for name in ("phoneconfirm.place_call", "phoneconfirm.verify_code"):
        child = otel.span(name)
        assert child.parent is not None
        assert child.parent.span_id == signup.context.span_id
        assert child.context.trace_id == signup.context.trace_id


# -- sessions and batches ----------------------------------------------------------------------
@pytest.mark.parametrize("anyio_backend", [("trio", {"clock": MockClock()})])
async def test_sessions_with_two_redials(otel: Otel) -> None:
    """Two sessions of three calls: one verified on its third call, one exhausted. Each
    call is a session span around its placement; state changes are events."""
    clock = trio.lowlevel.current_clock()
    assert isinstance(clock, MockClock)
    transport = EmulatorTransport(EmulatorConfig(answer_on_attempt=3))
    async with transport.client(**otel.providers) as client, client.scheduler() as scheduler:
        answering = await scheduler.schedule(
            "5555550101", country_code="1", code="4821", redial_count=2, redial_interval=60
        )
        silent = await scheduler.schedule(
            "5555550102", country_code="1", code="4821", redial_count=2, redial_interval=60
        )
        for calls in (1, 2, 3):
            await anyio.wait_all_tasks_blocked()
            assert len(transport.calls) == 2 * calls
            if calls < 3:
                clock.jump(60)
        assert (await answering.verify("4821")).verified
        clock.jump(60)
        assert await silent.wait() is SessionState.EXHAUSTED
        assert await answering.wait() is SessionState.VERIFIED

    def states(span: ReadableSpan, session_id: str) -> list[str]:
        return [
            str((event.attributes or {})["phoneconfirm.session.state"])
            for event in span.events
            if event.name == "phoneconfirm.session.state"
            and (event.attributes or {})["phoneconfirm.session.id"] == session_id
        ]

    schedules = otel.spans("phoneconfirm.session.schedule")
    assert [states(span, attribute(span, "phoneconfirm.session.id")) for span in schedules] == [
        ["scheduled"],
        ["scheduled"],
    ]
    call_spans = otel.spans("phoneconfirm.session.call")
    places = otel.spans("phoneconfirm.place_call")
    assert len(call_spans) == len(places) == 6
    for session in (answering, silent):
        mine = [s for s in call_spans if attribute(s, "phoneconfirm.session.id") == session.id]
        assert [attribute(span, "phoneconfirm.session.call") for span in mine] == [1, 2, 3]
        for span in mine:
            assert states(span, session.id) == ["calling", "awaiting_code"]
            assert dict(span.attributes or {})["phoneconfirm.outcome"] == "placed"
            assert dict(span.attributes or {})["phoneconfirm.store"] == "memory"
            (child,) = [p for p in places if p.parent and p.parent.span_id == span.context.span_id]
            assert dict(child.attributes or {})["phoneconfirm.outcome"] == "placed"
    verify = otel.span("phoneconfirm.session.verify")
    assert states(verify, answering.id) == ["verified"]
    assert attribute(verify, "phoneconfirm.outcome") == "verified"
    assert all(attribute(s, "phoneconfirm.outcome") == "scheduled" for s in schedules)
    assert otel.span("phoneconfirm.verify_code").parent.span_id == verify.context.span_id  # type: ignore[union-attr]
    settle = otel.span("phoneconfirm.scheduler.settle")
    assert states(settle, silent.id) == ["exhausted"]

    metrics = otel.metrics()
    memory = ("phoneconfirm.store", "memory")
    assert metrics["phoneconfirm.sessions.finished"] == {
        frozenset({("phoneconfirm.session.state", "verified"), memory}): 1,
        frozenset({("phoneconfirm.session.state", "exhausted"), memory}): 1,
    }
    assert metrics["phoneconfirm.sessions.pending"] == {frozenset({memory}): 0}
    assert metrics["phoneconfirm.calls.placed"] == {labels(**{"call.outcome": "placed"}): 6}


@pytest.mark.parametrize("anyio_backend", [("trio", {"clock": MockClock(autojump_threshold=0)})])
async def test_the_policy_s_outcomes_locked_expired_throttled(otel: Otel) -> None:
    """A locked session, an expired one and a throttled schedule: their span outcomes, the
    throttled counter by limit, and the finished counter; no phone or key anywhere."""
    policy = ConfirmationPolicy(max_verify_attempts=1, code_ttl=60, max_sessions_per_phone=1)
    transport = EmulatorTransport()
    async with (
        transport.client(**otel.providers) as client,
        client.scheduler(policy=policy) as scheduler,
    ):
        locked = await scheduler.schedule("5555550101", country_code="1", throttle_key="ip:x")
        expired = await scheduler.schedule("5555550102", country_code="1", redial_interval=30)
        with pytest.raises(ThrottledError):
            await scheduler.schedule("5555550101", country_code="1", throttle_key="ip:x")
        assert await locked.wait_called()
        assert not (await locked.verify("000000")).verified
        assert locked.state is SessionState.LOCKED
        assert await expired.wait() is SessionState.EXHAUSTED
        await anyio.sleep(60)
        with pytest.raises(VerificationClosedError):
            await expired.verify("000000")
    outcomes = [(s.attributes or {}).get("phoneconfirm.outcome") for s in otel.spans()]
    for outcome in ("locked", "expired", "throttled"):
        assert outcome in outcomes
    metrics = otel.metrics()
    assert metrics["phoneconfirm.sessions.throttled"] == {
        labels(store="memory", **{"throttle.limit": "phone"}): 1
    }
    finished = metrics["phoneconfirm.sessions.finished"]
    for state in ("locked", "exhausted", "expired"):
        assert finished[labels(store="memory", **{"session.state": state})] == 1
    exported = repr([dict(span.attributes or {}) for span in otel.spans()]) + repr(
        [[dict(e.attributes or {}) for e in span.events] for span in otel.spans()]
    )
    for secret in ("5555550101", "5555550102", "ip:x"):
        assert secret not in exported + repr(metrics)


async def test_sessions_left_pending_count_as_cancelled_when_a_memory_scheduler_closes(
    otel: Otel,
) -> None:
    transport = EmulatorTransport()
    async with transport.client(**otel.providers) as client, client.scheduler() as scheduler:
        for i in range(3):
            await scheduler.schedule(
                f"555555010{i}", country_code="1", code="4821", call_place_time=3600
            )
        metrics = otel.metrics()
        assert metrics["phoneconfirm.sessions.pending"] == {labels(store="memory"): 3}
    metrics = otel.metrics()
    assert metrics["phoneconfirm.sessions.pending"] == {labels(store="memory"): 0}
    assert metrics["phoneconfirm.sessions.finished"] == {
        labels(store="memory", **{"session.state": "cancelled"}): 3
    }


async def test_a_batch_with_failing_rows(otel: Otel) -> None:
    """One batch span with its row counts; each row's request span is its child."""
    transport = EmulatorTransport(
        EmulatorConfig(
            uncallable_numbers=frozenset({"5555550100"}),
            failing_numbers=frozenset({"5555550101"}),
        )
    )
    rows = [
        {"phone": "5555550123", "country_code": "1", "code": "4821"},
        {"phone": "5555550100", "country_code": "1", "code": "4821"},  # refused: error 4
        {"phone": "5555550101", "country_code": "1", "code": "4821"},  # answered invalid
        {"phone": "not a phone", "country_code": "1", "code": "4821"},  # never sent
    ]
    async with transport.client(**otel.providers) as client:
        items = [item async for item in client.place_many(rows, concurrency=2)]
    failures = [item.error for item in items if item.error is not None]
    assert len(failures) == 2
    assert any(isinstance(error, ValidationError) for error in failures)
    assert any(isinstance(error, ApiError) for error in failures)

    batch = otel.span("phoneconfirm.batch")
    assert batch.status.status_code is StatusCode.UNSET
    assert dict(batch.attributes or {}) == {
        "phoneconfirm.operation": "placecall",
        "phoneconfirm.batch.concurrency": 2,
        "phoneconfirm.batch.journal": False,
        "phoneconfirm.batch.rows": 4,
        "phoneconfirm.batch.rows_answered": 2,
        "phoneconfirm.batch.rows_failed": 2,
        "phoneconfirm.batch.rows_from_journal": 0,
        "phoneconfirm.outcome": "completed",
    }
    places = otel.spans("phoneconfirm.place_call")
    assert len(places) == 3  # the invalid row was never sent
    assert all(span.parent and span.parent.span_id == batch.context.span_id for span in places)
    assert sorted(str((span.attributes or {})["phoneconfirm.outcome"]) for span in places) == [
        "error",
        "invalid",
        "placed",
    ]


# -- nothing secret -----------------------------------------------------------------------------
PHONE = "5555550199"
CODE = "QZ7Y4X"
KEY = "apikey-Wm3Zp9Lq"
SECRET = "secret-Hx4Kd8Vn"


@pytest.mark.parametrize("anyio_backend", [("trio", {"clock": MockClock(autojump_threshold=0)})])
async def test_nothing_exported_names_a_phone_a_code_a_key_or_a_query(otel: Otel) -> None:
    """Every kind of span, event and metric this library makes, each on a secret-laden
    request, then a grep over all that was exported."""
    config = EmulatorConfig(
        api_keys=(KEY,),
        answer_on_attempt=2,
        uncallable_numbers=frozenset({"5555550100"}),
    )
    transport = EmulatorTransport(config)
    scripted = Scripted(transport, ["429", "drop", "pass"])
    policy = RetryPolicy(initial_wait=0, max_wait=0)
    async with (
        PhoneConfirmClient(
            KEY,
            DOMAIN,
            secret_key=SECRET,
            base_url=transport.base_url,
            transport=scripted,
            retry=policy,
            **otel.providers,
        ) as client,
        client.scheduler() as scheduler,
    ):
        with pytest.raises(CallOutcomeUnknownError):
            await client.place_call(PHONE, country_code="1", code=CODE)  # 429, then dropped
        placed = await client.place_call(PHONE, country_code="1", code=CODE)
        await client.verify_code(placed.transaction_number, CODE)
        await client.verify_code(placed.transaction_number, "WRONG1")
        with pytest.raises(ApiError):
            await client.place_call("5555550100", country_code="1", code=CODE)
        session = await scheduler.schedule(
            PHONE, country_code="1", code=CODE, redial_count=1, redial_interval=30
        )
        await session.wait_called()
        await anyio.sleep(30)
        await session.wait_called()
        assert (await session.verify(CODE)).verified
        cancelled = await scheduler.schedule(PHONE, country_code="1", code=CODE)
        await cancelled.cancel()
        rows = [{"phone": PHONE, "country_code": "1", "code": CODE}] * 3
        async for _ in client.place_many(rows):
            pass
    text = otel.exported_text()
    for made in ("session.verify", "batch", "retry", "sessions.finished", "calls.placed"):
        assert f"phoneconfirm.{made}" in text  # the sweep saw every kind
    # "***0199" is how logs mask the number; "?" starts a URL's query (the JSON's ids are
    # hex, its times digits and ISO dates: neither can hold these by chance)
    masked = "***" + PHONE[-4:]
    for secret in (PHONE, masked, CODE, KEY, SECRET, "apikey=", "phone=", "code=", "?"):
        assert secret not in text, secret


# -- the switch -----------------------------------------------------------------------------------
def test_telemetry_false_is_off_and_refuses_providers(otel: Otel) -> None:
    assert PhoneConfirmClient(API_KEY, DOMAIN, telemetry=False).telemetry is None
    assert PhoneConfirmClient(API_KEY, DOMAIN).telemetry is not None  # the API is installed
    with pytest.raises(ConfigurationError, match="telemetry=False"):
        PhoneConfirmClient(API_KEY, DOMAIN, telemetry=False, **otel.providers)


async def test_telemetry_off_exports_nothing(otel: Otel) -> None:
    transport = EmulatorTransport()
    client = transport.client(telemetry=False)
    async with client:
        await client.place_call("5555550123", country_code="1", code="4821")
    assert otel.spans() == []


def test_without_the_api_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    """None: quietly off; True (or a provider): a ConfigurationError naming the extra."""
    for name in [name for name in sys.modules if name.split(".")[0] == "opentelemetry"]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "opentelemetry", None)  # import raises ImportError
    monkeypatch.delitem(sys.modules, "phoneconfirm_async._telemetry")
    assert PhoneConfirmClient(API_KEY, DOMAIN).telemetry is None
    with pytest.raises(ConfigurationError, match=r"phoneconfirm-async\[otel\]"):
        PhoneConfirmClient(API_KEY, DOMAIN, telemetry=True)


def test_telemetry_off_imports_nothing_of_opentelemetry() -> None:
    """A fresh process: the package, and a client with telemetry=False placing a call."""
    script = """
import sys, anyio
import phoneconfirm_async
from phoneconfirm_async.testing import EmulatorTransport
assert not [m for m in sys.modules if m.startswith("opentelemetry")], "on import"
async def main():
    async with EmulatorTransport().client(telemetry=False) as client:
        await client.place_call("5555550123", country_code="1", code="4821")
anyio.run(main)
print(sorted(m for m in sys.modules if m.startswith("opentelemetry")))
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert json.loads(done.stdout.strip().replace("'", '"')) == []


# -- the web example (docs/how-to/observability.md) -----------------------------------------------
def test_the_otel_web_example_nests_the_clients_spans_in_its_requests() -> None:
    """examples/otel_backend.py in a process of its own (it sets the global providers):
    a sign-up over ASGI against the in-process emulator, exported in memory."""
    script = """
import json, anyio, httpx
from opentelemetry import trace
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from examples.otel_backend import create_app
from phoneconfirm_async import MemoryStore
from phoneconfirm_async.testing import EmulatorTransport

spans, reader, transport = InMemorySpanExporter(), InMemoryMetricReader(), EmulatorTransport()
app = create_app(span_exporter=spans, metric_reader=reader,
                 client_factory=transport.client, store_factory=MemoryStore)

async def main():
    web = httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://app")
    async with app.router.lifespan_context(app), web:
        started = await web.post("/confirm", json={"phone": "5555550123", "country_code": "1"})
        await anyio.wait_all_tasks_blocked()
        code = transport.heard_code("5555550123")
        done = await web.post(f"/confirm/{started.json()['id']}/verify", json={"code": code})
        assert done.json()["verified"], done.text

anyio.run(main)
trace.get_tracer_provider().force_flush()
by_id = {s.context.span_id: s for s in spans.get_finished_spans()}
print(json.dumps({
    "spans": [[s.name, s.parent and by_id[s.parent.span_id].name] for s in by_id.values()],
    "metrics": reader.get_metrics_data().to_json(),
}))
"""
    project = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=project,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    pairs = {tuple(pair) for pair in report["spans"]}
    assert ("phoneconfirm.session.schedule", "POST /confirm") in pairs
    (verify_parent,) = [parent for name, parent in pairs if name == "phoneconfirm.session.verify"]
    assert verify_parent.startswith("POST /confirm/")  # the server span of the request
    assert verify_parent.endswith("/verify")
    assert ("phoneconfirm.verify_code", "phoneconfirm.session.verify") in pairs
    assert ("phoneconfirm.place_call", "phoneconfirm.session.call") in pairs
    assert ("phoneconfirm.session.call", None) in pairs  # the scheduler's own trace
    assert "phoneconfirm.sessions.finished" in report["metrics"]


def test_global_providers_set_after_the_client_are_used() -> None:
    """A process of its own (global providers are set once): before any SDK the client
    records nothing; a global meter provider set later gets the metrics, a global tracer
    provider set later the spans."""
    script = """
import json, anyio
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
import phoneconfirm_async._telemetry as telemetry
from phoneconfirm_async.testing import EmulatorTransport

telemetry.GLOBAL_LOOK_INTERVAL = 0.0  # look at every request (the test runs in a blink)
spans, reader = InMemorySpanExporter(), InMemoryMetricReader()

def requests():
    data = reader.get_metrics_data()
    return sum(
        point.value
        for resource in (data.resource_metrics if data else [])
        for scope in resource.scope_metrics
        for metric in scope.metrics if metric.name == "phoneconfirm.client.requests"
        for point in metric.data.data_points
    )

async def main():
    seen = []
    async with EmulatorTransport().client() as client:
        place = lambda: client.place_call("5555550123", country_code="1", code="4821")
        await place()  # no SDK yet
        metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
        await place()
        seen.append([requests(), len(spans.get_finished_spans())])
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(spans))
        trace.set_tracer_provider(provider)
        await place()
        seen.append([requests(), len(spans.get_finished_spans())])
    print(json.dumps(seen))

anyio.run(main)
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [[1, 0], [2, 1]]
