"""OpenTelemetry traces and metrics (the ``otel`` extra: opentelemetry-api only).

Imported only when a client turns telemetry on; without the API installed nothing here is
loaded. Telemetry is on by default whenever the API is installed: the application's SDK,
configured before or after the client, decides whether anything is recorded; until one is
(no provider given, the global ones unset) a request does no telemetry work at all.

What is exported never names a phone number, a code, a key or a URL with its query:
attributes are operation names, outcomes, the service's status and error code, counts,
session ids, the transport's name, the service's host and HTTP statuses. Exceptions are
reported by type, never by message (a service's message may repeat the number).
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.trace import SpanKind, Status, StatusCode

from phoneconfirm_async._errors import (
    CallOutcomeUnknownError,
    PhoneConfirmError,
    RateLimitedError,
    ServerError,
    TransportError,
)
from phoneconfirm_async._models import Operation, PlaceCallResult, VerifyResult
from phoneconfirm_async._version import __version__

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import Span, TracerProvider


#: The tracer's and the meter's name (the instrumentation scope).
SCOPE: Final = "phoneconfirm_async"

#: Span names per operation.
SPAN_NAMES: Final[Mapping[str, str]] = {
    "placecall": "phoneconfirm.place_call",
    "verifycode": "phoneconfirm.verify_code",
}

# Attribute names (OpenTelemetry's own where one exists: error.type, server.address,
# http.response.status_code).
OPERATION: Final = "phoneconfirm.operation"
OUTCOME: Final = "phoneconfirm.outcome"
STATUS: Final = "phoneconfirm.status"
ERROR_CODE: Final = "phoneconfirm.error_code"
ATTEMPTS: Final = "phoneconfirm.attempts"
TRANSPORT: Final = "phoneconfirm.transport"
RETRY_REASON: Final = "phoneconfirm.retry.reason"
SESSION_ID: Final = "phoneconfirm.session.id"
SESSION_STATE: Final = "phoneconfirm.session.state"
STORE: Final = "phoneconfirm.store"
CALL_OUTCOME: Final = "phoneconfirm.call.outcome"
ERROR_TYPE: Final = "error.type"
HTTP_STATUS: Final = "http.response.status_code"
SERVER_ADDRESS: Final = "server.address"

#: Seconds between two looks for global providers while none is set: one set later is
#: used from at most this long after.
GLOBAL_LOOK_INTERVAL: Final = 1.0

#: Bucket bounds of the request duration histogram, in seconds (a request is milliseconds
#: to tens of seconds with retries).
DURATION_BUCKETS: Final = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 30.0, 60.0,
)  # fmt: skip


def retry_reason(error: BaseException) -> str:
    """A retry's reason, for attributes: low-cardinality, no message."""
    if isinstance(error, CallOutcomeUnknownError):
        return "outcome_unknown"
    if isinstance(error, RateLimitedError):
        return "rate_limited"
    if isinstance(error, ServerError):
        return "server_error"
    if isinstance(error, TransportError):
        return error.kind
    return type(error).__name__


def _cancelled(error: BaseException) -> bool:
    """Cancellation of either backend (asyncio's CancelledError, trio's Cancelled)."""
    return not isinstance(error, Exception) and type(error).__name__ in (
        "CancelledError",
        "Cancelled",
    )


class Tally:
    """A counter kept as running totals per attribute set, read by an observable
    instrument when the SDK collects (every export interval), so that counting costs a
    dict update per request instead of an SDK measurement (which costs many times that).

    ``key`` tuples hold the attribute values in the order of ``names``.
    """

    __slots__ = ("counts", "names")

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names
        self.counts: dict[tuple[Any, ...], int] = {}

    def add(self, key: tuple[Any, ...], amount: int = 1) -> None:
        counts = self.counts
        counts[key] = counts.get(key, 0) + amount

    def observe(self, options: CallbackOptions) -> list[Observation]:
        # dict() copies in one step under the GIL: the collecting thread never sees the
        # event loop's thread change the dict mid-iteration.
        counts = dict(self.counts)
        return [
            Observation(value, dict(zip(self.names, key, strict=True)))
            for key, value in counts.items()
        ]


class Instruments:
    """The meter's instruments, one set per meter provider: instruments are registered by
    name, so every client on a provider shares them (and their totals)."""

    def __init__(self, meter: metrics.Meter) -> None:
        self.duration = meter.create_histogram(
            "phoneconfirm.client.request.duration",
            unit="s",
            description="Time from a request's start to its result, retries and waits "
            "included, by operation and outcome.",
            explicit_bucket_boundaries_advisory=list(DURATION_BUCKETS),
        )
        self.requests = self._tally(
            meter.create_observable_counter,
            "phoneconfirm.client.requests",
            "{request}",
            "Requests to the service, by operation and outcome (retries inside one request "
            "are not counted again).",
            (OPERATION, OUTCOME),
        )
        self.retries = self._tally(
            meter.create_observable_counter,
            "phoneconfirm.client.retries",
            "{retry}",
            "Retries of failed attempts, by operation and reason.",
            (OPERATION, RETRY_REASON),
        )
        self.calls = self._tally(
            meter.create_observable_counter,
            "phoneconfirm.calls.placed",
            "{call}",
            "Calls that went out (outcome placed) or may have (outcome unknown).",
            (CALL_OUTCOME,),
        )
        self.sessions_finished = self._tally(
            meter.create_observable_counter,
            "phoneconfirm.sessions.finished",
            "{session}",
            "Confirmation sessions that reached a final state, by that state.",
            (SESSION_STATE, STORE),
        )
        self.sessions_throttled = self._tally(
            meter.create_observable_counter,
            "phoneconfirm.sessions.throttled",
            "{session}",
            "schedule() calls refused by the confirmation policy, by limit.",
            ("phoneconfirm.throttle.limit", STORE),
        )
        self.sessions_pending = self._tally(
            meter.create_observable_up_down_counter,
            "phoneconfirm.sessions.pending",
            "{session}",
            "Sessions scheduled and not yet final (summed over the processes sharing a store).",
            (STORE,),
        )

    @staticmethod
    def _tally(
        create: Callable[..., object],
        name: str,
        unit: str,
        description: str,
        names: tuple[str, ...],
    ) -> Tally:
        tally = Tally(names)
        create(name, callbacks=[tally.observe], unit=unit, description=description)
        return tally


#: The instruments of each meter provider (None: OpenTelemetry's global one).
_instruments: weakref.WeakKeyDictionary[MeterProvider, Instruments] = weakref.WeakKeyDictionary()
_global_instruments: list[Instruments] = []
_instruments_lock = threading.Lock()


def instruments_for(meter_provider: MeterProvider | None) -> Instruments:
    """The one set of instruments of ``meter_provider`` (made on first use)."""
    with _instruments_lock:
        found = _global_instruments[0] if meter_provider is None and _global_instruments else None
        if meter_provider is not None:
            found = _instruments.get(meter_provider)
        if found is None:
            meter = metrics.get_meter(SCOPE, __version__, meter_provider=meter_provider)
            found = Instruments(meter)
            if meter_provider is None:
                _global_instruments.append(found)
            else:
                _instruments[meter_provider] = found
        return found


class Telemetry:
    """The client's tracer and instruments: what a client, its schedulers and its batches
    report through.

    Args:
        tracer_provider: default OpenTelemetry's global one (set before or after).
        meter_provider: default OpenTelemetry's global one.
        server_address: the service's host (no path, no query).
    """

    def __init__(
        self,
        *,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        server_address: str,
    ) -> None:
        self.tracer = trace.get_tracer(SCOPE, __version__, tracer_provider=tracer_provider)
        self.explicit_tracer = tracer_provider is not None
        self.explicit = self.explicit_tracer or meter_provider is not None
        self.global_tracer_set = False
        self.global_meter_set = False
        self.next_look = 0.0
        self.server_address = server_address
        self.span_attributes: dict[tuple[str, str], dict[str, str]] = {}
        instruments = instruments_for(meter_provider)
        self.duration = instruments.duration
        self.requests = instruments.requests
        self.retries = instruments.retries
        self.calls = instruments.calls
        self.sessions_finished = instruments.sessions_finished
        self.sessions_pending = instruments.sessions_pending
        self.sessions_throttled = instruments.sessions_throttled
        #: The histogram's attributes per (operation, outcome), made once.
        self.labels: dict[tuple[str, str], dict[str, str]] = {}

    def __repr__(self) -> str:
        return f"<Telemetry scope={SCOPE!r}>"

    # -- requests ---------------------------------------------------------------------------
    def live(self) -> bool:
        """Whether anything could be recorded now: a provider was given, or a global one
        is set (an SDK is configured). Until then a request costs no telemetry at all."""
        return self.explicit or self.global_tracer_set or self.global_meter_set or self._look()

    def tracing(self) -> bool:
        """Whether a span started now could record: a tracer provider was given, or the
        global one is set."""
        if self.explicit_tracer or self.global_tracer_set:
            return True
        self._look()
        return self.global_tracer_set

    def _look(self) -> bool:
        """Look for global providers, at most every ``GLOBAL_LOOK_INTERVAL`` seconds (the
        API's own look reads the environment: it costs more than a request's telemetry).
        True when one of them is set now."""
        now = time.monotonic()
        if now < self.next_look:
            return False
        self.next_look = now + GLOBAL_LOOK_INTERVAL
        self.global_tracer_set = not isinstance(
            trace.get_tracer_provider(), trace.ProxyTracerProvider
        )
        # The API's stand-in for an unset meter provider has no public class; should the
        # name change, metrics are simply always taken (correct, a little slower).
        provider = metrics.get_meter_provider()
        self.global_meter_set = type(provider).__name__ != "_ProxyMeterProvider"
        return self.global_tracer_set or self.global_meter_set

    def request(
        self, operation: Operation, transport: str, clock: Callable[[], float]
    ) -> RequestObservation:
        """Observe one request, started now (use it with ``with``): a span, the metrics."""
        key = (operation, transport)
        attributes = self.span_attributes.get(key)
        if attributes is None:  # the span's first attributes, made once (never changed)
            attributes = self.span_attributes[key] = {
                OPERATION: operation,
                TRANSPORT: transport,
                SERVER_ADDRESS: self.server_address,
            }
        return RequestObservation(self, operation, attributes, clock)


def fail_span(span: Span, error: BaseException) -> None:
    """Mark ``span`` failed by ``error`` (by its type: messages are never exported)."""
    name = type(error).__name__
    span.set_attribute(ERROR_TYPE, name)
    span.set_status(Status(StatusCode.ERROR, name))


def use_span(span: Span) -> object:
    """Make ``span`` current in this task; returns the token for ``leave_span``."""
    return otel_context.attach(trace.set_span_in_context(span))


def leave_span(token: object) -> None:
    otel_context.detach(token)  # type: ignore[arg-type]


def end_span(span: Span, error: BaseException | None) -> None:
    """End ``span``; when an exception ended it, its outcome is ``error`` (failed, with the
    exception's type) or ``cancelled`` (cancellation is not a failure)."""
    if error is not None:
        if _cancelled(error):
            span.set_attribute(OUTCOME, "cancelled")
        else:
            span.set_attribute(OUTCOME, "error")
            fail_span(span, error)
    span.end()


class RequestObservation:
    """One request, observed: its span (current while it runs, when it records) and, on
    the way out, the span's attributes, the request tally, the duration histogram and
    (placements) the calls tally.

    No span is started while OpenTelemetry's global tracer provider is unset (no SDK):
    the API would hand back a span that records nothing, at a cost of its own.
    """

    __slots__ = (
        "attempt",
        "clock",
        "operation",
        "result",
        "span",
        "started",
        "telemetry",
        "token",
    )

    def __init__(
        self,
        telemetry: Telemetry,
        operation: Operation,
        attributes: Mapping[str, str],
        clock: Callable[[], float],
    ) -> None:
        self.telemetry = telemetry
        self.operation = operation
        self.clock = clock
        self.result: PlaceCallResult | VerifyResult | None = None
        #: Set by the engine: an object with ``count`` (attempts made) and ``status`` (the
        #: last attempt's HTTP status, 0 when it had none).
        self.attempt: Any = None
        self.token: object = None
        span: Span | None = None
        if telemetry.tracing():
            span = telemetry.tracer.start_span(
                SPAN_NAMES[operation], kind=SpanKind.CLIENT, attributes=attributes
            )
            # A span that records nothing (sampled out) changes nothing for the spans
            # below it: it is not made current.
            if span.is_recording():
                self.token = use_span(span)
            else:
                span.end()
                span = None
        self.span = span
        self.started = clock()

    def __enter__(self) -> RequestObservation:
        return self

    def retried(self, attempt: int, wait: float, error: BaseException) -> None:
        """Attempt ``attempt`` failed with ``error``; the next starts after ``wait`` s."""
        reason = retry_reason(error)
        span = self.span
        if span is not None:
            span.add_event(
                "phoneconfirm.retry",
                {
                    "phoneconfirm.retry.attempt": attempt,
                    "phoneconfirm.retry.wait": wait,
                    RETRY_REASON: reason,
                    ERROR_TYPE: type(error).__name__,
                },
            )
        self.telemetry.retries.add((self.operation, reason))

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        duration = self.clock() - self.started
        telemetry = self.telemetry
        result = self.result
        if error is None and result is not None:
            if result.__class__ is PlaceCallResult:
                outcome = "placed" if result.placed else "invalid"
            else:
                outcome = "verified" if result.verified else "not_verified"  # type: ignore[union-attr]
        elif error is not None and _cancelled(error):
            outcome = "cancelled"
        else:
            outcome = "error"
        span = self.span
        if span is not None:
            if self.token is not None:
                leave_span(self.token)
            attributes: dict[str, Any] = {OUTCOME: outcome}
            attempt = self.attempt
            if attempt is not None:
                attributes[ATTEMPTS] = attempt.count
                if attempt.status:
                    attributes[HTTP_STATUS] = attempt.status
            if result is not None:
                if result.status is not None:
                    attributes[STATUS] = result.status
                attributes[ERROR_CODE] = result.error
            elif isinstance(error, PhoneConfirmError):
                code = getattr(error, "code", None)
                if isinstance(code, int):
                    attributes[ERROR_CODE] = code
            span.set_attributes(attributes)
            end_span(span, error)
        key = (self.operation, outcome)
        telemetry.requests.add(key)
        labels = telemetry.labels.get(key)
        if labels is None:
            labels = telemetry.labels[key] = {OPERATION: self.operation, OUTCOME: outcome}
        telemetry.duration.record(duration, labels)
        if self.operation == "placecall":
            if outcome == "placed":
                telemetry.calls.add(("placed",))
            elif isinstance(error, CallOutcomeUnknownError):
                telemetry.calls.add(("unknown",))
