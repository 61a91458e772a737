"""The sessions a scheduler hands out: ``ConfirmationSession``, the ``SessionDesk`` it asks
its scheduler through, and the ``SessionBook`` that keeps the session objects of one
scheduler up to date and wakes their waiters."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Protocol

import anyio
import anyio.lowlevel

from phoneconfirm_async import _validation
from phoneconfirm_async._errors import PhoneConfirmError, ValidationError
from phoneconfirm_async._models import PlaceCallRequest, PlaceCallResult, VerifyResult
from phoneconfirm_async._observe import SessionObserver
from phoneconfirm_async._redact import mask_phone
from phoneconfirm_async._stores._rules import SessionRecord, SessionState


class SessionDesk(Protocol):
    """What a ``ConfirmationSession`` asks of the scheduler that made it."""

    observer: SessionObserver

    async def verify(self, session: ConfirmationSession, code: str) -> VerifyResult:
        """Check ``code`` against the session's latest call; VERIFIED on a match."""
        ...

    async def end(self, session: ConfirmationSession, state: SessionState) -> None:
        """VERIFIED or CANCELLED, if the session's state allows; the session is read
        again either way."""
        ...

    async def refresh(self, session: ConfirmationSession) -> None:
        """Read the session again from a durable store."""
        ...

    async def wait_for(
        self, session: ConfirmationSession, done: Callable[[SessionRecord], bool]
    ) -> SessionRecord:
        """Until ``done(record)`` holds for the session."""
        ...


class SessionFacts:
    """What a session is, as this process last saw it: the properties shared by
    ``ConfirmationSession`` and the blocking face's ``SyncConfirmationSession``."""

    __slots__ = ()

    def _seen(self) -> SessionRecord:
        """The session's record as this process last saw it."""
        raise NotImplementedError

    def __repr__(self) -> str:
        record = self._seen()
        phone = "-" if record.request is None else mask_phone(record.request.phone)
        return (
            f"<{type(self).__name__} {record.id} phone={phone} state={record.state.name} "
            f"calls={record.calls_made}/{record.calls_allowed}>"
        )

    @property
    def id(self) -> str:
        return self._seen().id

    @property
    def state(self) -> SessionState:
        return self._seen().state

    @property
    def calls_made(self) -> int:
        """Calls that may have gone out: answered ones, one in flight, unknown outcomes."""
        return self._seen().calls_made

    @property
    def attempts(self) -> tuple[PlaceCallResult, ...]:
        """Every answered placement so far, in order."""
        return self._seen().attempts

    @property
    def error(self) -> PhoneConfirmError | None:
        """The exception that made the session FAILED, if it did."""
        return self._seen().error

    @property
    def request(self) -> PlaceCallRequest | None:
        """The call to place; None once the session is final (phone and code are erased)."""
        return self._seen().request

    @property
    def redial_count(self) -> int:
        return self._seen().redial_count

    @property
    def redial_interval(self) -> float:
        return self._seen().redial_interval

    @property
    def calls_allowed(self) -> int:
        return self._seen().calls_allowed

    @property
    def verify_attempts(self) -> int:
        """Verification attempts taken so far (each counted before its request left)."""
        return self._seen().verify_attempts

    @property
    def verify_attempts_left(self) -> int | None:
        """Attempts still allowed by the policy's ``max_verify_attempts`` (None: no limit)."""
        record = self._seen()
        limit = record.verify_limit
        return None if limit is None else max(limit - record.verify_attempts, 0)


class ConfirmationSession(SessionFacts):
    """One person being confirmed: its calls, its state, and the way to check their code.

    Create sessions with ``ConfirmationScheduler.schedule``; find one again (in any
    process on the same durable store) with ``ConfirmationScheduler.get``. ``id`` is a
    random opaque string to keep, in a web session say.

    On a durable store the attributes are the session as this process last saw it: they are
    brought up to date by ``verify``, ``cancel``, ``wait``, ``wait_called``, ``refresh``
    and by this process's own calls.
    """

    __slots__ = ("__weakref__", "_desk", "_record")

    def __init__(self, record: SessionRecord, desk: SessionDesk) -> None:
        self._record = record
        self._desk = desk

    def _seen(self) -> SessionRecord:
        return self._record

    async def verify(self, code: str) -> VerifyResult:
        """Check the code the person typed against the latest placed call.

        With a policy, one verification attempt is first taken in the store (shared by
        every worker); a request that never left gives it back. A match makes the session
        VERIFIED (also after EXHAUSTED, within the code's lifetime) and stops its redials in
        every process; a wrong code changes nothing, redials go on, unless it used the last
        attempt: then the session is LOCKED.

        Raises:
            VerificationClosedError: no code may be checked (``.state``: VERIFIED, LOCKED,
                EXPIRED, CANCELLED, FAILED, or every attempt in flight); nothing was sent.
            ValidationError: the code breaks its rule, or no call was answered yet.
            StoreError: a durable store failed.
            PhoneConfirmError: the verification itself failed (see ``verify_code``).
        """
        return await self._desk.verify(self, _validation.code(code))

    async def cancel(self) -> None:
        """Stop the session in every process: no more calls; one in flight here is cancelled
        (one in flight in another process may still ring)."""
        with self._desk.observer.operation("cancel", self._record) as span:
            await self._desk.end(self, SessionState.CANCELLED)
            span.outcome(self.state.value)  # cancelled, or the final state it already had
        await anyio.lowlevel.checkpoint()

    async def wait(self) -> SessionState:
        """Wait until the session is final (VERIFIED, EXHAUSTED, LOCKED, EXPIRED, FAILED or
        CANCELLED); return its state."""
        return (await self._desk.wait_for(self, _final)).state

    async def wait_called(self) -> bool:
        """Wait until the first call's answer (or its unknown outcome) is in.

        Returns False if the session ended before any call (cancelled or failed). Useful to
        tell a user "your phone is ringing" before asking for the code.
        """
        return (await self._desk.wait_for(self, _called)).calls_made > 0

    async def refresh(self) -> None:
        """Read the session again from a durable store (no-op for the memory store)."""
        await self._desk.refresh(self)


def _called(record: SessionRecord) -> bool:
    """A call's answer (or its unknown outcome) is in, or the session ended."""
    return record.state.is_final or record.calls_made > (record.state is SessionState.CALLING)


def _final(record: SessionRecord) -> bool:
    return record.state.is_final


def latest_transaction(attempts: tuple[PlaceCallResult, ...]) -> str:
    """The transaction number a verification checks: the latest placed call's."""
    for attempt in reversed(attempts):
        if attempt.placed and attempt.transaction_number:
            return attempt.transaction_number
    for attempt in reversed(attempts):
        if attempt.transaction_number:
            return attempt.transaction_number
    raise ValidationError("session", "no call has been placed yet: nothing to verify")


class SessionBook:
    """A scheduler's view of its sessions: one session object per id while the caller
    holds it, kept up to date; the events its waiters sleep on; the count of sessions
    added here and not yet seen final (reported to the observer)."""

    __slots__ = ("_events", "_held", "observer", "pending")

    def __init__(self, observer: SessionObserver) -> None:
        self.observer = observer
        self._held: weakref.WeakValueDictionary[str, ConfirmationSession] = (
            weakref.WeakValueDictionary()
        )
        self._events: dict[str, anyio.Event] = {}
        #: Sessions added here and not seen final here (exact for a memory store, whose
        #: pending sessions are cancelled when the block ends).
        self.pending = 0

    def hold(self, record: SessionRecord, desk: SessionDesk) -> ConfirmationSession:
        """The one session object of this id while the caller holds it, up to date."""
        session = self._held.get(record.id)
        if session is None:
            session = ConfirmationSession(record, desk)
            self._held[record.id] = session
        else:
            session._record = record
        return session

    @staticmethod
    def record_of(session: ConfirmationSession) -> SessionRecord:
        """The session's record as this process last saw it."""
        return session._record

    def held(self, session_id: str) -> ConfirmationSession | None:
        return self._held.get(session_id)

    def see(self, record: SessionRecord) -> None:
        """A fresh read of a session: the held object shows it."""
        session = self._held.get(record.id)
        if session is not None:
            session._record = record

    def updated(self, record: SessionRecord) -> None:
        """A record changed here: the held session sees it, its waiters wake."""
        session = self._held.get(record.id)
        if session is not None:
            session._record = record
        event = self._events.pop(record.id, None)
        if event is not None:
            event.set()

    def changed(self, session_id: str) -> None:
        """The session changed (here, or elsewhere: its waiters read it again)."""
        event = self._events.pop(session_id, None)
        if event is not None:
            event.set()

    async def wait(self, session_id: str, timeout: float | None) -> None:
        """Until the session changes, or ``timeout`` seconds (None: no bound)."""
        event = self._events.get(session_id)
        if event is None:
            event = self._events[session_id] = anyio.Event()
        with anyio.move_on_after(timeout):
            await event.wait()

    def wake_all(self) -> None:
        """The scheduler closes: every waiter looks once more."""
        for event in self._events.values():
            event.set()
        self._events.clear()

    def added(self) -> None:
        self.pending += 1
        self.observer.added()

    def ended(self, record: SessionRecord, *, was_final: bool, event: bool = True) -> None:
        """``record`` reached a final state here: count it; ``event``: tell the operation
        being observed."""
        if not was_final:
            self.pending -= 1
            self.observer.finished(record.state)
        elif record.state in (SessionState.VERIFIED, SessionState.EXPIRED):
            self.observer.finished_again(record.state)  # after EXHAUSTED
        if event:
            self.observer.state(record)
