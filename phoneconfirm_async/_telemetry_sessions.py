"""Sessions and batches as spans and metrics: the observers ``_observe`` defines, made
to record (telemetry on; the ``otel`` extra is installed)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from opentelemetry import trace

from phoneconfirm_async._observe import BatchObserver, BatchSpan, OperationSpan, SessionObserver
from phoneconfirm_async._stores._rules import SessionRecord, SessionState
from phoneconfirm_async._telemetry import (
    OPERATION,
    OUTCOME,
    SESSION_ID,
    SESSION_STATE,
    STORE,
    Telemetry,
    end_span,
    fail_span,
    leave_span,
    use_span,
)

if TYPE_CHECKING:
    from opentelemetry.trace import Span

    from phoneconfirm_async._errors import PhoneConfirmError
    from phoneconfirm_async._models import Operation, PlaceCallResult
    from phoneconfirm_async._stores._protocol import SessionStore


def session_state(span: Span, record: SessionRecord) -> None:
    """An event on ``span``: the session is now in ``record.state``."""
    if span.is_recording():
        span.add_event(
            "phoneconfirm.session.state",
            {
                SESSION_ID: record.id,
                SESSION_STATE: record.state.value,
                "phoneconfirm.session.calls_made": record.calls_made,
            },
        )


def store_kind(store: SessionStore) -> str:
    """``memory``, ``sqlite`` or ``postgresql``: the store's name without its path or host."""
    return store.name.split(":", 1)[0]


@contextmanager
def current_span(span: Span) -> Iterator[Span]:
    """``span`` current in this task for the length of a ``with`` block, and ended on the
    way out (failed by the exception that left the block, if any)."""
    token = use_span(span)
    try:
        yield span
    except BaseException as error:
        leave_span(token)
        end_span(span, error)
        raise
    leave_span(token)
    end_span(span, None)


class TracedOperation(OperationSpan):
    """A session operation's span."""

    __slots__ = ("span",)

    def __init__(self, span: Span) -> None:
        self.span = span

    def outcome(self, value: str) -> None:
        self.span.set_attribute(OUTCOME, value)

    def state(self, record: SessionRecord) -> None:
        session_state(self.span, record)

    def call(self, result: PlaceCallResult | None, error: PhoneConfirmError | None) -> None:
        if error is not None:
            self.span.set_attribute(OUTCOME, "error")
            fail_span(self.span, error)
        elif result is None:
            self.span.set_attribute(OUTCOME, "unknown")
        else:
            self.span.set_attribute(OUTCOME, "placed" if result.placed else "invalid")


class TracedSessions(SessionObserver):
    """A scheduler's sessions: a span ``phoneconfirm.session.<name>`` per operation
    (``schedule``, ``verify``, ``cancel``, ``call``), state events, the session metrics."""

    __slots__ = ("kind", "telemetry")

    def __init__(self, telemetry: Telemetry, store: SessionStore) -> None:
        self.telemetry = telemetry
        self.kind = store_kind(store)

    @contextmanager
    def operation(
        self, name: str, record: SessionRecord, *, call: bool = False
    ) -> Iterator[OperationSpan]:
        attributes: dict[str, Any] = {SESSION_ID: record.id, STORE: self.kind}
        if call:
            attributes["phoneconfirm.session.call"] = record.calls_made
            attributes["phoneconfirm.session.calls_allowed"] = record.calls_allowed
        span = self.telemetry.tracer.start_span(
            f"phoneconfirm.session.{name}", attributes=attributes
        )
        with current_span(span):
            yield TracedOperation(span)

    def state(self, record: SessionRecord) -> None:
        session_state(trace.get_current_span(), record)

    def settled(self, records: list[SessionRecord]) -> None:
        """One span ``phoneconfirm.scheduler.settle`` with an event per session."""
        span = self.telemetry.tracer.start_span(
            "phoneconfirm.scheduler.settle",
            attributes={STORE: self.kind, "phoneconfirm.sessions": len(records)},
        )
        for record in records:
            session_state(span, record)
        span.end()

    def added(self) -> None:
        self.telemetry.sessions_pending.add((self.kind,))

    def finished(self, state: SessionState, count: int = 1) -> None:
        self.telemetry.sessions_finished.add((state.value, self.kind), count)
        self.telemetry.sessions_pending.add((self.kind,), -count)

    def finished_again(self, state: SessionState) -> None:
        """Finished again (VERIFIED, EXPIRED after EXHAUSTED), no longer pending already."""
        self.telemetry.sessions_finished.add((state.value, self.kind))

    def throttled(self, limit: str) -> None:
        self.telemetry.sessions_throttled.add((limit, self.kind))


class TracedBatchSpan(BatchSpan):
    __slots__ = ("span",)

    def __init__(self, span: Span) -> None:
        self.span = span

    def done(
        self, *, answered: int, failed: int, replayed: int, error: BaseException | None
    ) -> None:
        self.span.set_attributes(
            {
                "phoneconfirm.batch.rows": answered + failed,
                "phoneconfirm.batch.rows_answered": answered,
                "phoneconfirm.batch.rows_failed": failed,
                "phoneconfirm.batch.rows_from_journal": replayed,
            }
        )
        if error is not None:
            self.span.set_attribute(OUTCOME, "error")
            fail_span(self.span, error)
        else:
            self.span.set_attribute(OUTCOME, "completed")


class TracedBatches(BatchObserver):
    """A batch as the span ``phoneconfirm.batch``, current while it runs (its requests are
    its children), with its row counts."""

    __slots__ = ("telemetry",)

    def __init__(self, telemetry: Telemetry) -> None:
        self.telemetry = telemetry

    @contextmanager
    def batch(self, operation: Operation, concurrency: int, journal: bool) -> Iterator[BatchSpan]:
        span = self.telemetry.tracer.start_span(
            "phoneconfirm.batch",
            attributes={
                OPERATION: operation,
                "phoneconfirm.batch.concurrency": concurrency,
                "phoneconfirm.batch.journal": journal,
            },
        )
        with current_span(span):
            yield TracedBatchSpan(span)
