"""The local redial scheduler: calls at the right time, again when nobody confirmed, never
after a confirmation, never twice by accident.

The scheduler keeps no session state itself: its store does (see ``_store``). One driver
task per scheduler asks the store for the calls that are due, at most ``concurrency`` held
at once, places each in the scheduler's task group under the client's limits, and writes
the answer back. The store records a call as made before it is dialled, so a process that
dies mid-call never causes a second call: another process settles the claim when its lease
ends. With the default ``MemoryStore`` everything stays in this process, on
``anyio.current_time()`` (trio's ``MockClock`` drives it in tests).

On a durable store a claimed call is *fenced*: immediately before its request leaves, the
claim must still have a third of its lease left on this process's monotonic clock (counted
from the moment the store stamped it, under its lock, and moved on by each renewal), and
must have been seen still current within the last ``FRESH`` seconds (else the session is
read again). A process paused or cut off past its lease therefore sends nothing it held:
the claim is given back if it still holds, left to the peer that settled it if not.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import random
import secrets
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, Self, TypeVar

import anyio
import anyio.lowlevel
import tenacity
from anyio.abc import TaskGroup

from phoneconfirm_async import _validation
from phoneconfirm_async._engine import RequestEngine
from phoneconfirm_async._errors import (
    CallOutcomeUnknownError,
    ConfigurationError,
    PhoneConfirmError,
    StoreError,
    ValidationError,
)
from phoneconfirm_async._lifetime import background_tasks
from phoneconfirm_async._models import (
    PlaceCallRequest,
    PlaceCallResult,
    VerifyRequest,
    VerifyResult,
)
from phoneconfirm_async._redact import mask_phone
from phoneconfirm_async._retry import RetryPolicy
from phoneconfirm_async._store import (
    Claimed,
    MemoryStore,
    SessionRecord,
    SessionState,
    SessionStore,
    holds,
)

if TYPE_CHECKING:
    from opentelemetry.trace import Span

    from phoneconfirm_async._telemetry import Telemetry

logger = logging.getLogger("phoneconfirm_async")

#: How long a finished session stays findable with ``scheduler.get`` (a late verify
#: after EXHAUSTED still succeeds within it).
DEFAULT_RETAIN: Final = 3600.0
#: Calls one scheduler holds at once when the client does not say (its max_concurrency).
DEFAULT_CONCURRENCY: Final = 100
#: Least time between two passes over a durable store while calls keep falling due: a call
#: is placed at most this much after its due time for the sake of batching.
_CLAIM_GAP: Final = 0.01
#: Seconds a claim stays known-current after the store last confirmed it (the claim itself,
#: a renewal, a look); past it the session is read again before its call is sent, so that a
#: cancel or verify in another process stops the call.
FRESH: Final = 0.5
#: Share of the lease kept in hand: a call is sent only while its claim has more than this
#: left (it covers connecting, and clocks that differ a little between hosts).
FENCE_MARGIN: Final = 1 / 3
#: Backoff while the store fails: the first wait, doubling to the longest.
_BACKOFF_FIRST: Final = 0.05
_BACKOFF_MAX: Final = 2.0
#: Longest a write may take while the scheduler closes (the lease settles what is left).
_CLOSING_PATIENCE: Final = 10.0
_T = TypeVar("_T")


class _NotSent(Exception):
    """A fenced call that must not leave: its lease is (nearly) over (``stalled``: this
    process was paused or cut off from its store), or its session moved on (settled by a
    peer, cancelled, verified). Raised by the fence, never retried."""

    def __init__(self, reason: str, *, stalled: bool) -> None:
        super().__init__(reason)
        self.stalled = stalled


def _stalled() -> _NotSent:
    return _NotSent("its lease is nearly over", stalled=True)


class _Claim:
    """A call this process holds: its record as claimed, the scope that cancels it, and
    how long it may still be sent (``time.monotonic()``)."""

    __slots__ = ("checked", "record", "scope", "sent", "stale", "until")

    def __init__(self, record: SessionRecord, scope: anyio.CancelScope, at: float) -> None:
        self.record = record
        self.scope = scope
        self.until = float("inf")
        #: When the store last confirmed the claim (``time.monotonic()``).
        self.checked = at
        #: Another process changed the session: read it again before sending.
        self.stale = False
        #: The fence let the request go: it may have reached the service.
        self.sent = False

    def held(self, at: float, lease: float) -> None:
        """The store confirmed the claim at ``at``, with a lease of ``lease`` from then."""
        self.checked = at
        self.stale = False
        self.until = at + lease * (1 - FENCE_MARGIN)

    def lost(self) -> None:
        """The claim no longer holds: its call must not be sent."""
        self.until = float("-inf")


class _Outage:
    """Store failures as one period: a warning when they start, one line when they end
    (a worker retries for as long as the store is away; no line per retry)."""

    __slots__ = ("name", "since")

    def __init__(self, name: str) -> None:
        self.name = name
        self.since: float | None = None

    def failed(self, error: StoreError) -> None:
        if self.since is None:
            self.since = time.monotonic()
            logger.warning(
                "scheduler: the session store failed (%s); retrying until it answers", error
            )

    def recovered(self) -> None:
        if self.since is not None:
            logger.warning(
                "scheduler: %s answers again after %.1f s",
                self.name,
                time.monotonic() - self.since,
            )
            self.since = None


def _backoff(failures: int) -> float:
    """Seconds to wait after ``failures`` store failures in a row (jittered, bounded)."""
    return min(_BACKOFF_FIRST * 2.0 ** (failures - 1), _BACKOFF_MAX) * random.uniform(0.5, 1.0)


def _called(record: SessionRecord) -> bool:
    """A call's answer (or its unknown outcome) is in, or the session ended."""
    return record.state.is_final or record.calls_made > (record.state is SessionState.CALLING)


def _final(record: SessionRecord) -> bool:
    return record.state.is_final


class ConfirmationSession:
    """One person being confirmed: its calls, its state, and the way to check their code.

    Create sessions with ``ConfirmationScheduler.schedule``; find one again (in any
    process on the same durable store) with ``ConfirmationScheduler.get``. ``id`` is a
    random opaque string to keep, in a web session say.

    On a durable store the attributes are the session as this process last saw it: they are
    brought up to date by ``verify``, ``cancel``, ``wait``, ``wait_called``, ``refresh``
    and by this process's own calls.
    """

    __slots__ = ("__weakref__", "_record", "_scheduler")

    def __init__(self, record: SessionRecord, scheduler: ConfirmationScheduler) -> None:
        self._record = record
        self._scheduler = scheduler

    def __repr__(self) -> str:
        record = self._record
        phone = "-" if record.request is None else mask_phone(record.request.phone)
        return (
            f"<ConfirmationSession {record.id} phone={phone} state={record.state.name} "
            f"calls={record.calls_made}/{record.calls_allowed}>"
        )

    @property
    def id(self) -> str:
        return self._record.id

    @property
    def state(self) -> SessionState:
        return self._record.state

    @property
    def calls_made(self) -> int:
        """Calls that may have gone out: answered ones, one in flight, unknown outcomes."""
        return self._record.calls_made

    @property
    def attempts(self) -> tuple[PlaceCallResult, ...]:
        """Every answered placement so far, in order."""
        return self._record.attempts

    @property
    def error(self) -> PhoneConfirmError | None:
        """The exception that made the session FAILED, if it did."""
        return self._record.error

    @property
    def request(self) -> PlaceCallRequest | None:
        """The call to place; None once the session is final (phone and code are erased)."""
        return self._record.request

    @property
    def redial_count(self) -> int:
        return self._record.redial_count

    @property
    def redial_interval(self) -> float:
        return self._record.redial_interval

    @property
    def calls_allowed(self) -> int:
        return self._record.calls_allowed

    async def verify(self, code: str) -> VerifyResult:
        """Check the code the person typed against the latest placed call.

        A match makes the session VERIFIED (also after EXHAUSTED) and stops its redials in
        every process; a wrong code changes nothing, redials go on.

        Raises:
            ValidationError: the code breaks its rule, or no call was answered yet.
            StoreError: a durable store failed.
            PhoneConfirmError: the verification itself failed (see ``verify_code``).
        """
        code = _validation.code(code)
        scheduler = self._scheduler
        with scheduler._traced("verify", self.id) as span:
            await scheduler._refresh(self)
            request = VerifyRequest(_latest_transaction(self._record.attempts), code)
            result = await scheduler.client.verify(request)
            if result.verified and self._record.state is not SessionState.VERIFIED:
                await scheduler._end(self, SessionState.VERIFIED)
            if span is not None:
                span.set_attribute(
                    "phoneconfirm.outcome", "verified" if result.verified else "not_verified"
                )
        return result

    async def cancel(self) -> None:
        """Stop the session in every process: no more calls; one in flight here is cancelled
        (one in flight in another process may still ring)."""
        with self._scheduler._traced("cancel", self.id) as span:
            await self._scheduler._end(self, SessionState.CANCELLED)
            if span is not None:  # cancelled, or the final state it already had
                span.set_attribute("phoneconfirm.outcome", self.state.value)
        await anyio.lowlevel.checkpoint()

    async def wait(self) -> SessionState:
        """Wait until the session is VERIFIED, EXHAUSTED, FAILED or CANCELLED; return it."""
        return (await self._scheduler._wait_for(self, _final)).state

    async def wait_called(self) -> bool:
        """Wait until the first call's answer (or its unknown outcome) is in.

        Returns False if the session ended before any call (cancelled or failed). Useful to
        tell a user "your phone is ringing" before asking for the code.
        """
        return (await self._scheduler._wait_for(self, _called)).calls_made > 0

    async def refresh(self) -> None:
        """Read the session again from a durable store (no-op for the memory store)."""
        await self._scheduler._refresh(self)


def _telemetry_state(span: Span | None, record: SessionRecord) -> None:
    """A state-change event on ``span`` (None: the current span)."""
    from opentelemetry import trace  # only called with telemetry on: the API is installed

    from phoneconfirm_async._telemetry import session_state

    session_state(span if span is not None else trace.get_current_span(), record)


def _telemetry_call(
    span: Span, result: PlaceCallResult | None, error: PhoneConfirmError | None
) -> None:
    """What a session's call came to, on its span's ``phoneconfirm.outcome``: placed,
    invalid, unknown (it may have gone out) or error."""
    from phoneconfirm_async._telemetry import OUTCOME, fail_span

    if error is not None:
        span.set_attribute(OUTCOME, "error")
        fail_span(span, error)
    elif result is None:
        span.set_attribute(OUTCOME, "unknown")
    else:
        span.set_attribute(OUTCOME, "placed" if result.placed else "invalid")


def _latest_transaction(attempts: tuple[PlaceCallResult, ...]) -> str:
    for attempt in reversed(attempts):
        if attempt.placed and attempt.transaction_number:
            return attempt.transaction_number
    for attempt in reversed(attempts):
        if attempt.transaction_number:
            return attempt.transaction_number
    raise ValidationError("session", "no call has been placed yet: nothing to verify")


class ConfirmationScheduler(anyio.AsyncContextManagerMixin):
    """Places calls locally at ``call_place_time``, redials every ``redial_interval`` until
    the code is verified or ``1 + redial_count`` calls were placed.

    Use it as an async context manager (``async with client.scheduler() as scheduler``).
    With the default ``MemoryStore``, leaving the block cancels every pending session.
    With a durable store (``SQLiteStore``, ``PostgresStore``) leaving only stops
    this process's share of the work: sessions stay pending for the other processes on the
    store, or for the next start.

    Args:
        client: an open ``PhoneConfirmClient`` (any object with its ``place`` and
            ``verify`` methods will do); its ``telemetry``, when on, traces the sessions.
        store: where sessions live (default: a new ``MemoryStore``).
        retry: the policy for each placement (transient failures are retried inside an
            attempt and do not consume redials); default: the client's.
        retain: seconds a finished session stays findable with ``get``.
        wall_clock: the Unix time source that turns an absolute ``call_place_time`` into a
            delay (tests inject a fixed one).
        concurrency: calls this scheduler holds at once (a durable store's claims beyond
            it would wait under a lease); default: the client's ``max_concurrency``.
        drive: False to schedule, find, verify and cancel sessions without placing calls
            here (a web tier beside ``phoneconfirm worker`` processes); durable stores only.

    Raises:
        ConfigurationError: ``drive=False`` on a memory store (nobody would ever call).
    """

    def __init__(
        self,
        client: RequestEngine,
        *,
        store: SessionStore | None = None,
        retry: RetryPolicy | None = None,
        retain: float = DEFAULT_RETAIN,
        wall_clock: Callable[[], float] = time.time,
        concurrency: int | None = None,
        drive: bool = True,
    ) -> None:
        if retain < 0:
            raise ValueError("retain must not be negative")
        if store is None:
            store = MemoryStore()
        elif not isinstance(store, SessionStore):
            raise TypeError(f"store must implement SessionStore, not {type(store).__name__}")
        if not drive and not store.durable:
            raise ConfigurationError(
                "drive=False needs a durable store: with a MemoryStore no process would call"
            )
        if concurrency is None:
            concurrency = getattr(client, "max_concurrency", DEFAULT_CONCURRENCY)
        if not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError("concurrency must be a whole number >= 1")
        self.client = client
        self.telemetry: Telemetry | None = getattr(client, "telemetry", None)
        self.store = store
        self.retry = retry
        self.retain = retain
        self.wall_clock = wall_clock
        self.concurrency = concurrency
        self.drive = drive
        self._held: weakref.WeakValueDictionary[str, ConfirmationSession] = (
            weakref.WeakValueDictionary()
        )
        self._events: dict[str, anyio.Event] = {}
        #: Calls in flight here, by session id.
        self._in_flight: dict[str, _Claim] = {}
        self._outage = _Outage(store.name)
        self._starved = False
        self._refill_below = concurrency - (max(1, concurrency // 4) if store.durable else 1)
        self._tasks: TaskGroup | None = None
        self._open = False
        self._entered = False
        #: Sessions added here and not seen final here (exact for a memory store, whose
        #: pending sessions are cancelled when the block ends).
        self._pending_here = 0

    def __len__(self) -> int:
        """Sessions held by a memory store: pending ones and finished ones still retained.

        Raises:
            TypeError: on a durable store (its sessions live in the database).
        """
        if isinstance(self.store, MemoryStore):
            return len(self.store)
        raise TypeError(f"{self.store.name} keeps its sessions in the database: no len()")

    def __repr__(self) -> str:
        return f"<ConfirmationScheduler store={self.store.name} open={self._open}>"

    @contextlib.asynccontextmanager
    async def __asynccontextmanager__(self) -> AsyncIterator[Self]:
        if self._entered:
            raise RuntimeError("a ConfirmationScheduler can be entered only once")
        self._entered = True
        try:
            async with (
                self.store.open(retain=self.retain, on_change=self._changed_elsewhere),
                background_tasks() as tasks,
            ):
                self._tasks = tasks
                self._open = True
                if self.drive:
                    tasks.start_soon(self._drive, tasks)
                try:
                    yield self
                finally:
                    self._open = False
                    if not self.store.durable:
                        for claim in self._in_flight.values():
                            claim.scope.cancel()
        finally:
            self._open = False
            for event in self._events.values():
                event.set()  # waiters see the final state (memory) or a closed scheduler
            self._events.clear()
            if self.telemetry is not None and not self.store.durable and self._pending_here:
                self.telemetry.session_finished(
                    SessionState.CANCELLED, self.store, self._pending_here
                )
                self._pending_here = 0

    # -- public -----------------------------------------------------------------------------
    async def schedule(
        self,
        phone: str,
        *,
        country_code: str,
        code: str,
        redial_count: int = 0,
        redial_interval: float | timedelta = 60,
        call_place_time: datetime | timedelta | float | None = None,
    ) -> ConfirmationSession:
        """Start a session: the first call at ``call_place_time`` (now by default).

        Args:
            phone: the number to call, as for ``place_call``.
            country_code: its country code, as for ``place_call``.
            code: the code the calls speak, as for ``place_call``.
            redial_count: calls after the first, 0-10, while nobody verifies.
            redial_interval: seconds (or a timedelta) from one answered call to the next,
                and from the last call to EXHAUSTED.
            call_place_time: an aware datetime, or a delay (timedelta or seconds); a past
                time means now. A naive datetime is a ValidationError.

        Raises:
            ValidationError: an argument breaks its rule; nothing is scheduled.
            StoreError: a durable store failed; the session may not exist.
        """
        self._require_open()
        request = PlaceCallRequest(phone, country_code, code)
        count = _validation.redial_count(redial_count)
        interval = _validation.redial_interval(redial_interval)
        delay = 0.0
        if call_place_time is not None:
            when = _validation.place_time(call_place_time)
            if isinstance(when, datetime):
                delay = when.timestamp() - self.wall_clock()
            else:
                delay = when
        record = SessionRecord(
            id=secrets.token_urlsafe(16),
            request=request,
            redial_count=count,
            redial_interval=interval,
            state=SessionState.SCHEDULED,
            due=self.store.now() + max(delay, 0.0),
        )
        with self._traced("schedule", record.id) as span:
            await self.store.add(record)
            if span is not None:
                span.set_attribute("phoneconfirm.outcome", "scheduled")
                _telemetry_state(span, record)
        self._pending_here += 1
        if self.telemetry is not None:
            self.telemetry.session_added(self.store)
        session = self._hold(record)
        await anyio.lowlevel.checkpoint()
        return session

    async def get(self, session_id: str) -> ConfirmationSession | None:
        """The session with this id, while pending or retained; None otherwise.

        On a durable store it is found from any process (and read fresh).

        Raises:
            StoreError: a durable store failed.
        """
        self._require_open()
        record = await self.store.load(session_id)
        return None if record is None else self._hold(record)

    # -- what sessions call -------------------------------------------------------------------
    async def _refresh(self, session: ConfirmationSession) -> None:
        """Read a durable store's copy of the session (the memory store's is the live one)."""
        if self.store.durable:
            self._require_open()
            record = await self.store.load(session.id)
            if record is not None:
                session._record = record

    async def _end(self, session: ConfirmationSession, state: SessionState) -> None:
        """VERIFIED or CANCELLED, if the session's state allows; then read it again."""
        self._require_open()
        before = session.state  # a memory store's record changes in place: read it first
        updated = await self.store.finish(session.id, state, self.store.now())
        if updated is None:
            await self._refresh(session)
            return
        self._ended(updated, was_final=before.is_final)
        held = self._in_flight.get(session.id)
        if held is not None and (state is SessionState.CANCELLED or not held.sent):
            held.scope.cancel()  # its call here stops; a verified one's answer is kept
        self._updated(updated)

    async def _wait_for(
        self, session: ConfirmationSession, done: Callable[[SessionRecord], bool]
    ) -> SessionRecord:
        """Until ``done(record)``: woken by this process's changes, by a store's change
        notifications, and (durable stores) every ``poll_interval`` to read it again."""
        poll = self.store.poll_interval
        if self.store.durable:
            await self._refresh(session)  # the snapshot may be old: read it first
        elif done(session._record):
            await anyio.lowlevel.checkpoint()
            return session._record
        while not done(session._record):
            if not self._open:
                raise RuntimeError(
                    "the scheduler closed before the session ended "
                    f"(it is {session.state.value}; it stays in {self.store.name})"
                )
            event = self._events.get(session.id)
            if event is None:
                event = self._events[session.id] = anyio.Event()
            if poll is None:
                await event.wait()
            else:
                with anyio.move_on_after(poll):
                    await event.wait()
                await self._refresh(session)
        return session._record

    # -- bookkeeping ------------------------------------------------------------------------
    def _traced(
        self, name: str, session_id: str, **attributes: Any
    ) -> contextlib.AbstractContextManager[Span | None]:
        """A span for a session operation, current in the block (a no-op without
        telemetry); ``with`` gives the span, or None."""
        if self.telemetry is None:
            return contextlib.nullcontext(None)
        return self.telemetry.session_operation(name, session_id, self.store, **attributes)

    def _ended(self, record: SessionRecord, *, was_final: bool, event: bool = True) -> None:
        """``record`` reached a final state here: count it; ``event``: tell the current
        span (a session operation's or a call's)."""
        if not was_final:
            self._pending_here -= 1
        telemetry = self.telemetry
        if telemetry is not None:
            if not was_final:
                telemetry.session_finished(record.state, self.store)
            elif record.state is SessionState.VERIFIED:  # EXHAUSTED, then verified late
                telemetry.late_verification(self.store)
            if event:
                _telemetry_state(None, record)

    def _require_open(self) -> None:
        if not self._open:
            raise RuntimeError("the scheduler is not open: use 'async with client.scheduler()'")

    def _hold(self, record: SessionRecord) -> ConfirmationSession:
        """The one session object of this id while the caller holds it, up to date."""
        session = self._held.get(record.id)
        if session is None:
            session = ConfirmationSession(record, self)
            self._held[record.id] = session
        else:
            session._record = record
        return session

    def _updated(self, record: SessionRecord) -> None:
        """A record changed here: the held session sees it, its waiters wake."""
        session = self._held.get(record.id)
        if session is not None:
            session._record = record
        event = self._events.pop(record.id, None)
        if event is not None:
            event.set()

    def _changed_elsewhere(self, session_id: str) -> None:
        held = self._in_flight.get(session_id)
        if held is not None:
            held.stale = True  # settled, cancelled or verified there: look before dialling
        event = self._events.pop(session_id, None)
        if event is not None:
            event.set()  # the waiter reads the session again

    # -- placing the calls that are due -------------------------------------------------------
    async def _drive(self, tasks: TaskGroup) -> None:
        """The one driver: claim what is due (up to the free slots), start each call, sleep
        until the next due time, a wake, or (durable) ``poll_interval``. A failing store is
        retried with a bounded backoff for as long as it fails."""
        store = self.store
        in_flight = self._in_flight
        if store.lease is not None:
            tasks.start_soon(self._renew_claims, store.lease)
        failures = 0
        while True:
            free = self.concurrency - len(in_flight)
            until: float | None = None
            self._starved = free <= 0
            if free > 0:
                now = store.now()
                try:
                    claimed = await store.claim(now, free, exclude=in_flight.keys())
                    if len(claimed.calls) < free:
                        until = await store.next_due()
                    else:
                        self._starved = True  # more may be due: claim again as slots free
                except StoreError as exc:
                    failures += 1
                    self._outage.failed(exc)
                    until = store.now() + _backoff(failures)
                else:
                    failures = 0
                    self._outage.recovered()
                    self._start_calls(claimed, tasks)
                    if store.durable and until is not None:
                        if claimed.calls:
                            # Busy: gather what falls due in the next few milliseconds into
                            # one pass (each pass is a transaction, shared with the peers).
                            until = max(until, now + _CLAIM_GAP)
                        elif until <= now and not claimed.changed:
                            until = now + _CLAIM_GAP  # due rows locked by a peer's pass
            await store.wait(until)

    def _start_calls(self, claimed: Claimed, tasks: TaskGroup) -> None:
        """What a pass claimed: tell about the sessions it changed, start its calls."""
        for record in claimed.changed:
            self._updated(record)
            if record.state.is_final:
                self._ended(record, was_final=False, event=False)
        if claimed.changed and self.telemetry is not None:
            self.telemetry.settled(claimed.changed, self.store)
        lease = self.store.lease
        # A store that does not say when it stamped its claims: now (not before the claim).
        at = claimed.at if claimed.at > 0 else time.monotonic()
        for record in claimed.calls:
            if record.id in self._in_flight:  # a store that ignored ``exclude``
                logger.warning("scheduler: %s claimed a call already in flight here", record.id)
                continue
            claim = _Claim(record, anyio.CancelScope(), at)
            if lease is not None:
                claim.held(at, lease)
            self._in_flight[record.id] = claim
            self._updated(record)
            tasks.start_soon(self._call, claim)

    def _forget(self, claim: _Claim) -> None:
        """The claim's call is over here: free its slot."""
        if self._in_flight.get(claim.record.id) is claim:
            del self._in_flight[claim.record.id]
        self._slot_freed()

    def _slot_freed(self) -> None:
        """A call ended. A starved driver claims again once a quarter of its slots are free
        (a durable store's claim is a transaction: one per freed slot would cost more than
        the calls); the memory store's claim is cheap, so at once."""
        if self._starved and len(self._in_flight) <= self._refill_below:
            self._starved = False
            self.store.wake()

    async def _fence(self, claim: _Claim) -> None:
        """Awaited by the client immediately before the call's request leaves: the claim
        must still be this process's, with a third of its lease left (see the module doc).
        A memory store's record is the live one: it only has to be still CALLING."""
        if not self.store.durable:
            if claim.record.state is not SessionState.CALLING:
                raise _NotSent("its session ended", stalled=False)
            claim.sent = True
            return
        if time.monotonic() >= claim.until:
            raise _stalled()
        if claim.stale or time.monotonic() - claim.checked > FRESH:
            record = claim.record
            try:
                current = await self.store.load(record.id)
            except StoreError:
                pass  # no look possible: the lease alone decides (nobody can end it either)
            else:
                if current is None or not holds(current, record):
                    claim.lost()
                    raise _NotSent("its session moved on", stalled=False)
                claim.checked = time.monotonic()
                claim.stale = False
            if time.monotonic() >= claim.until:
                raise _stalled()
        claim.sent = True

    async def _call(self, claim: _Claim) -> None:
        """Place one claimed call and write down its answer (or its unknown outcome)."""
        if self.telemetry is None:
            await self._place_claimed(claim, None)
            return
        record = claim.record
        with self._traced(
            "call",
            record.id,
            **{
                "phoneconfirm.session.call": record.calls_made,
                "phoneconfirm.session.calls_allowed": record.calls_allowed,
            },
        ) as span:
            _telemetry_state(span, record)
            await self._place_claimed(claim, span)

    async def _place_claimed(self, claim: _Claim, span: Span | None) -> None:
        store = self.store
        record = claim.record
        request = record.request
        if request is None:  # cancelled after the claim, before this task ran: not sent
            self._forget(claim)
            return
        fence = functools.partial(self._fence, claim)
        result: PlaceCallResult | None = None
        error: PhoneConfirmError | None = None
        not_sent: _NotSent | None = None
        try:
            with claim.scope:
                try:
                    result = await self.client.place(request, retry=self.retry, fence=fence)
                except CallOutcomeUnknownError:
                    pass  # a call may have gone out: it counts, and nothing is re-sent
                except _NotSent as exc:
                    not_sent = exc
                except PhoneConfirmError as exc:
                    error = exc
        except anyio.get_cancelled_exc_class():
            self._forget(claim)
            if store.durable:  # closing: settle the claim now, not when its lease ends
                with anyio.CancelScope(shield=True):
                    if claim.sent:
                        await self._write(lambda: store.record_call(record, None, store.now()))
                    else:
                        await self._write(lambda: store.release(record, store.now()))
            raise
        self._forget(claim)
        if claim.scope.cancelled_caught:
            return  # the session was cancelled or verified: it is final already
        if not_sent is not None:
            await self._not_sent(claim, not_sent, span)
            return
        if span is not None:
            _telemetry_call(span, result, error)
        if error is not None:
            failed = error
            updated = await self._write(
                lambda: store.finish(
                    record.id,
                    SessionState.FAILED,
                    store.now(),
                    error=failed,
                    claimed_at=record.claimed_at,
                )
            )
        else:
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug(
                    "session %s: call %d/%d to %s: %s",
                    record.id,
                    record.calls_made,
                    record.calls_allowed,
                    mask_phone(request.phone),
                    "unknown outcome" if result is None else result.status,
                )
            updated = await self._write(lambda: store.record_call(record, result, store.now()))
        if updated is not None:
            if updated.state.is_final:
                self._ended(updated, was_final=False)
            elif span is not None:
                _telemetry_state(span, updated)
            self._updated(updated)
        elif store.durable:
            held = self._held.get(record.id)
            if held is not None:
                await self._write(lambda: self._refresh(held))

    async def _not_sent(self, claim: _Claim, reason: _NotSent, span: Span | None) -> None:
        """A fenced call that never left: give the claim back if it still holds (the
        session is due again, the call not counted); a peer's settlement is left as it is."""
        record = claim.record
        level = logging.WARNING if reason.stalled else logging.INFO
        logger.log(level, "session %s: call not sent: %s", record.id, reason)
        if span is not None:
            span.set_attribute("phoneconfirm.outcome", "not_sent")
        store = self.store
        updated = await self._write(lambda: store.release(record, store.now()))
        if updated is not None:
            self._updated(updated)

    async def _renew_claims(self, lease: float) -> None:
        """Keep this process's claims while their calls are in flight: every third of the
        lease, one statement for all of them. A claim the store no longer holds (a peer
        settled it after this process stalled, its session ended) is never sent."""
        store = self.store
        while True:
            await anyio.sleep(lease / 3)
            if not self._in_flight:
                continue
            claims = list(self._in_flight.values())
            try:
                renewed = await store.renew([claim.record for claim in claims], store.now())
            except StoreError as exc:
                self._outage.failed(exc)  # the fence stops the calls whose lease runs out
                continue
            self._outage.recovered()
            for claim in claims:
                if claim.record.id in renewed.ids:
                    claim.held(renewed.at, lease)
                else:
                    claim.lost()

    async def _write(self, write: Callable[[], Awaitable[_T]]) -> _T | None:
        """A store write after a call, retried (tenacity, jittered backoff up to 2 s) for as
        long as the store fails: its answer matters, the transaction number is what a
        verify needs. Each attempt is shielded; once the scheduler is closing, one attempt
        more, then the claim is left to its lease (the call counts, outcome unknown)."""
        if not self.store.durable:
            return await write()

        async def attempt() -> _T:
            with anyio.CancelScope(shield=True) as scope:
                if not self._open:
                    scope.deadline = anyio.current_time() + _CLOSING_PATIENCE
                try:
                    value = await write()
                except StoreError as exc:
                    self._outage.failed(exc)
                    raise
                self._outage.recovered()
                return value
            raise StoreError("no answer while closing", store=self.store.name)

        retrying = tenacity.AsyncRetrying(
            stop=lambda _: not self._open,
            wait=tenacity.wait_random_exponential(multiplier=_BACKOFF_FIRST, max=_BACKOFF_MAX),
            retry=tenacity.retry_if_exception_type(StoreError),
            sleep=anyio.sleep,
            reraise=True,
        )
        try:
            return await retrying(attempt)
        except StoreError:
            logger.warning("scheduler: closing with a write undone (its lease settles it)")
            return None
