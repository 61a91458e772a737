"""The local redial scheduler: calls at the right time, again when nobody confirmed, never
after a confirmation, never twice by accident.

The scheduler keeps no session state itself: its store does (``phoneconfirm_async.stores``).
This module is what a user calls (``schedule``, ``get``, and through ``SessionDesk`` what a
session does); ``_driver`` places the calls. With the default ``MemoryStore`` everything
stays in this process, on ``anyio.current_time()`` (trio's ``MockClock`` drives it in tests).
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Final, Self

import anyio
import anyio.lowlevel

from phoneconfirm_async import _validation
from phoneconfirm_async._driver import Driver
from phoneconfirm_async._engine import RequestEngine
from phoneconfirm_async._errors import (
    ConfigurationError,
    StoreError,
    ThrottledError,
    TransportError,
    ValidationError,
)
from phoneconfirm_async._lifetime import background_tasks
from phoneconfirm_async._models import PlaceCallRequest, VerifyRequest, VerifyResult
from phoneconfirm_async._observe import OperationSpan, SessionObserver
from phoneconfirm_async._policy import ConfirmationPolicy, refusal, refusal_outcome
from phoneconfirm_async._retry import RetryPolicy
from phoneconfirm_async._session import (
    ConfirmationSession,
    SessionBook,
    latest_transaction,
)
from phoneconfirm_async._settings import seconds, whole
from phoneconfirm_async._store_writes import StoreWrites
from phoneconfirm_async._stores._memory import MemoryStore
from phoneconfirm_async._stores._protocol import SessionStore
from phoneconfirm_async._stores._rules import CHECKABLE_STATES, SessionRecord, SessionState

if TYPE_CHECKING:
    from phoneconfirm_async._telemetry import Telemetry

#: How long a finished session stays findable with ``scheduler.get`` (a late verify
#: after EXHAUSTED still succeeds within it).
DEFAULT_RETAIN: Final = 3600.0
#: Calls one scheduler holds at once when the client does not say (its max_concurrency).
DEFAULT_CONCURRENCY: Final = 100
#: The policy a scheduler applies unless told otherwise: every limit on.
DEFAULT_POLICY: Final = ConfirmationPolicy()
#: ``policy=None``: no limit, no lifetime, any code of one character or more.
_NO_POLICY: Final = ConfirmationPolicy(
    max_verify_attempts=None,
    code_ttl=None,
    max_sessions_per_phone=None,
    max_sessions_per_key=None,
    min_code_length=1,
)


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
        policy: attempt limits, code lifetime, throttles, allowed countries, spend cap
            (``ConfirmationPolicy``); the default has every limit on. None switches every
            rule off (any code, unlimited checks: only for tests and trusted callers).

    Raises:
        ConfigurationError: ``drive=False`` on a memory store (nobody would ever call),
            or a policy that is not a ``ConfirmationPolicy``.
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
        policy: ConfirmationPolicy | None = DEFAULT_POLICY,
    ) -> None:
        retain = seconds("retain", retain, zero=True)
        if policy is not None and not isinstance(policy, ConfirmationPolicy):
            raise ConfigurationError(
                f"policy must be a ConfirmationPolicy or None, not {type(policy).__name__}"
            )
        if store is None:
            store = MemoryStore()
        elif not isinstance(store, SessionStore):
            raise ConfigurationError(
                f"store must implement SessionStore, not {type(store).__name__}"
            )
        if not callable(wall_clock):
            raise ConfigurationError("wall_clock must be a function returning Unix time")
        if not isinstance(drive, bool):
            raise ConfigurationError(f"drive must be True or False, not {drive!r}")
        if not drive and not store.durable:
            raise ConfigurationError(
                "drive=False needs a durable store: with a MemoryStore no process would call"
            )
        if concurrency is None:
            concurrency = getattr(client, "max_concurrency", DEFAULT_CONCURRENCY)
        concurrency = whole("concurrency", concurrency, 1)
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise ConfigurationError(f"retry must be a RetryPolicy, not {type(retry).__name__}")
        self.client = client
        self.store = store
        self.retry = retry
        self.retain = float(retain)
        self.wall_clock = wall_clock
        self.concurrency = concurrency
        self.drive = drive
        self.policy = policy
        self._rules = _NO_POLICY if policy is None else policy
        self._book = SessionBook(_observer(getattr(client, "telemetry", None), store))
        self._writes = StoreWrites(store)
        self._driver = Driver(
            client,
            store,
            self._book,
            self._writes,
            retry=retry,
            concurrency=concurrency,
            calls_per_hour=self._rules.max_calls_per_hour,
        )
        self._desk = _Desk(self)
        self._open = False
        self._entered = False

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
        book = self._book
        try:
            async with (
                self.store.open(retain=self.retain, on_change=self._changed_elsewhere),
                background_tasks() as tasks,
            ):
                self._open = self._writes.open = True
                if self.drive:
                    tasks.start_soon(self._driver.run, tasks)
                try:
                    yield self
                finally:
                    self._open = self._writes.open = False
                    if not self.store.durable:
                        self._driver.cancel_all()
        finally:
            self._open = self._writes.open = False
            book.wake_all()  # waiters see the final state (memory) or a closed scheduler
            if not self.store.durable and book.pending:
                book.observer.finished(SessionState.CANCELLED, book.pending)
                book.pending = 0

    # -- public -----------------------------------------------------------------------------
    async def schedule(
        self,
        phone: str,
        *,
        country_code: str | None = None,
        code: str | None = None,
        redial_count: int = 0,
        redial_interval: float | timedelta = 60,
        call_place_time: datetime | timedelta | float | None = None,
        throttle_key: str | None = None,
    ) -> ConfirmationSession:
        """Start a session: the first call at ``call_place_time`` (now by default).

        Args:
            phone: the number to call, as for ``place_call`` (national, or international
                with the ``numbers`` extra); the policy's ``blocked_number_types`` refuse
                some kinds of line.
            country_code: its country code, as for ``place_call`` (optional for an
                international ``phone``); the policy's ``allowed_countries`` must
                include it.
            code: the code the calls speak (at least the policy's ``min_code_length``
                letters or digits); None (the default): a ``code_length``-digit code is
                drawn with ``secrets``, and nobody but the person called needs to know it.
            redial_count: calls after the first, 0-10, while nobody verifies.
            redial_interval: seconds (or a timedelta) from one answered call to the next,
                and from the last call to EXHAUSTED; at most the policy's ``code_ttl``.
            call_place_time: an aware datetime, or a delay (timedelta or seconds); a past
                time means now. A naive datetime is a ValidationError.
            throttle_key: who asks (``f"ip:{address}"``, an account id): the policy's
                ``max_sessions_per_key`` counts sessions per key. Stored as a keyed hash.

        Raises:
            ValidationError: an argument breaks its rule; nothing is scheduled.
            ThrottledError: a policy limit is reached (``.limit``, ``.retry_after``);
                nothing is scheduled.
            StoreError: a durable store failed; the session may not exist.
        """
        self._require_open()
        rules = self._rules
        request = PlaceCallRequest(phone, country_code, rules.code(code))
        count = _validation.redial_count(redial_count)
        interval = _validation.redial_interval(redial_interval)
        rules.check(request, interval)
        if throttle_key is not None and (not isinstance(throttle_key, str) or not throttle_key):
            raise ValidationError("throttle_key", "must be a non-empty string (or None)")
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
            verify_limit=rules.max_verify_attempts,
            code_ttl=rules.ttl,
        )
        quotas = rules.quotas(request.phone, request.country_code, throttle_key)
        with self._book.observer.operation("schedule", record) as span:
            throttled = await self.store.add(record, quotas=quotas)
            if throttled is None:
                span.outcome("scheduled")
                span.state(record)
            else:
                span.outcome("throttled")  # an answer of the policy, not a failure
                self._book.observer.throttled(throttled.limit)
        if throttled is not None:
            raise ThrottledError(throttled.limit, throttled.retry_after)
        self._book.added()
        session = self._book.hold(record, self._desk)
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
        return None if record is None else self._book.hold(record, self._desk)

    # -- bookkeeping ------------------------------------------------------------------------
    @property
    def telemetry(self) -> Telemetry | None:
        """The client's telemetry this scheduler reports through (None: off)."""
        return getattr(self.client, "telemetry", None)

    def _require_open(self) -> None:
        if not self._open:
            raise RuntimeError("the scheduler is not open: use 'async with client.scheduler()'")

    def _changed_elsewhere(self, session_id: str) -> None:
        self._driver.changed_elsewhere(session_id)
        self._book.changed(session_id)  # the waiters read the session again


class _Desk:
    """The scheduler's side of ``SessionDesk``: what its sessions ask of it."""

    __slots__ = ("book", "driver", "observer", "scheduler", "store")

    def __init__(self, scheduler: ConfirmationScheduler) -> None:
        self.scheduler = scheduler
        self.store = scheduler.store
        self.book = scheduler._book
        self.driver = scheduler._driver
        self.observer = self.book.observer

    async def verify(self, session: ConfirmationSession, code: str) -> VerifyResult:
        """Take an attempt in the store (no policy: read the session), check the code,
        and end the session on the answer: VERIFIED, or LOCKED by the last wrong one.
        A refusal is the span's outcome (``locked``, ``expired``, ``closed``), raised
        after it ends: an answer of the policy, not a failure."""
        self.scheduler._require_open()
        with self.observer.operation("verify", self.book.record_of(session)) as span:
            taken = await self._attempt(session)
            if taken is None:
                await self.refresh(session)
                closed = refusal(self.book.record_of(session), self.store.now())
                span.outcome(refusal_outcome(closed.state))
            else:
                return await self._check(session, taken, code, span)
        raise closed

    async def _attempt(self, session: ConfirmationSession) -> SessionRecord | None:
        """The session with one verification attempt taken for this check (no policy: as
        read now); None when it is closed to codes."""
        store = self.store
        if self.scheduler.policy is None:
            await self.refresh(session)
            record = self.book.record_of(session)
            return record if record.state in CHECKABLE_STATES else None
        # A snapshot with the count this check took (the lock rule reads it); a durable
        # store's is the session as it is now.
        taken = await store.take_attempt(session.id, store.now())
        if taken is not None and store.durable:
            self.book.see(taken)
        return taken

    async def _check(
        self, session: ConfirmationSession, record: SessionRecord, code: str, span: OperationSpan
    ) -> VerifyResult:
        """Send the check its attempt was taken for; give the attempt back if nothing
        left; end the session on the answer."""
        tries = 0

        async def fence() -> None:
            nonlocal tries
            tries += 1  # a request is about to leave: it may reach the service

        try:
            request = VerifyRequest(latest_transaction(record.attempts), code)
            result = await self.scheduler.client.verify(request, fence=fence)
        except BaseException as exc:
            # Given back only when no request left: none was tried, or the only one never
            # reached the service (it could not connect).
            unsent = tries == 0 or (
                tries == 1 and isinstance(exc, TransportError) and not exc.sent
            )
            if unsent and self.scheduler.policy is not None:
                # A store that fails here keeps the attempt used: the error that matters
                # is the one that stopped the check.
                with anyio.CancelScope(shield=True), contextlib.suppress(StoreError):
                    await self.store.return_attempt(session.id)
            raise
        if result.verified:
            if session.state is not SessionState.VERIFIED:
                await self.end(session, SessionState.VERIFIED)
            span.outcome("verified")
        elif record.verify_limit is not None and record.verify_attempts >= record.verify_limit:
            await self.end(session, SessionState.LOCKED)  # the last attempt was wrong
            span.outcome("locked" if session.state is SessionState.LOCKED else "not_verified")
        else:
            span.outcome("not_verified")
        return result

    async def refresh(self, session: ConfirmationSession) -> None:
        """Read a durable store's copy of the session (the memory store's is the live one)."""
        if self.store.durable:
            self.scheduler._require_open()
            record = await self.store.load(session.id)
            if record is not None:
                self.book.see(record)

    async def end(self, session: ConfirmationSession, state: SessionState) -> None:
        self.scheduler._require_open()
        before = session.state  # a memory store's record changes in place: read it first
        updated = await self.store.finish(session.id, state, self.store.now())
        if updated is None:
            await self.refresh(session)
            return
        self.book.ended(updated, was_final=before.is_final)
        # Its call here stops; a verified one's answer is kept once sent.
        self.driver.stop_call(session.id, sent_too=state is SessionState.CANCELLED)
        self.book.updated(updated)

    async def wait_for(
        self, session: ConfirmationSession, done: Callable[[SessionRecord], bool]
    ) -> SessionRecord:
        """Until ``done(record)``: woken by this process's changes, by a store's change
        notifications, and (durable stores) every ``poll_interval`` to read it again."""
        store = self.store
        if store.durable:
            await self.refresh(session)  # the snapshot may be old: read it first
        elif done(self.book.record_of(session)):
            await anyio.lowlevel.checkpoint()
            return self.book.record_of(session)
        while not done(self.book.record_of(session)):
            if not self.scheduler._open:
                raise RuntimeError(
                    "the scheduler closed before the session ended "
                    f"(it is {session.state.value}; it stays in {store.name})"
                )
            await self.book.wait(session.id, store.poll_interval)
            if store.durable:
                await self.refresh(session)
        return self.book.record_of(session)


def _observer(telemetry: Telemetry | None, store: SessionStore) -> SessionObserver:
    """The scheduler's telemetry: spans and metrics when the client's is on, else nothing."""
    if telemetry is None:
        return SessionObserver()
    from phoneconfirm_async._telemetry_sessions import TracedSessions

    return TracedSessions(telemetry, store)
