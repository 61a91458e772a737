"""The local redial scheduler: calls at the right time, again when nobody confirmed, never
after a confirmation, never twice by accident.

All timers live in one heap driven by one task (not a sleeping task per session), on
``anyio.current_time()``, so trio's ``MockClock`` drives it in tests and 100,000 pending
sessions cost a heap entry and a small object each. Call attempts run in the scheduler's task
group under the client's concurrency and rate limits.
"""

from __future__ import annotations

import contextlib
import enum
import heapq
import itertools
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from typing import Final, Self

import anyio
from anyio.abc import TaskGroup

from phoneconfirm_async import _validation
from phoneconfirm_async._engine import RequestEngine
from phoneconfirm_async._errors import (
    CallOutcomeUnknownError,
    PhoneConfirmError,
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

logger = logging.getLogger("phoneconfirm_async")

#: How long a finished session stays findable with ``scheduler.get`` (a late verify
#: after EXHAUSTED still succeeds within it).
DEFAULT_RETAIN: Final = 3600.0


class SessionState(enum.Enum):
    """Where a confirmation session stands."""

    SCHEDULED = "scheduled"  #: waiting for the first call's time
    CALLING = "calling"  #: a call placement is in flight
    AWAITING_CODE = "awaiting_code"  #: called; waiting for the code or the next redial
    VERIFIED = "verified"  #: the person's code matched
    EXHAUSTED = "exhausted"  #: every call placed, no code within the last interval
    FAILED = "failed"  #: a permanent error (on ``session.error``)
    CANCELLED = "cancelled"  #: cancelled by the caller or by closing the scheduler

    @property
    def is_final(self) -> bool:
        """True for the states a session waits for (EXHAUSTED can still become VERIFIED)."""
        return self in _FINAL


_FINAL: Final = frozenset(
    {SessionState.VERIFIED, SessionState.EXHAUSTED, SessionState.FAILED, SessionState.CANCELLED}
)
_CLOSED: Final = frozenset({SessionState.VERIFIED, SessionState.FAILED, SessionState.CANCELLED})


class _Timer(enum.IntEnum):
    CALL = 0
    EXHAUST = 1
    FORGET = 2


#: What a session calls when it reaches a final state (its scheduler's bookkeeping).
FinalStateHook = Callable[["ConfirmationSession", "SessionState"], None]


class ConfirmationSession:
    """One person being confirmed: its calls, its state, and the way to check their code.

    Create sessions with :meth:`ConfirmationScheduler.schedule`. ``id`` is a random opaque
    string to keep (in a web session, say) and find the session again with
    :meth:`ConfirmationScheduler.get`.
    """

    __slots__ = (
        "_called",
        "_client",
        "_done",
        "_generation",
        "_in_flight",
        "_on_final",
        "attempts",
        "calls_made",
        "error",
        "id",
        "redial_count",
        "redial_interval",
        "request",
        "state",
    )

    def __init__(
        self,
        request: PlaceCallRequest,
        redial_count: int,
        redial_interval: float,
        *,
        client: RequestEngine,
        on_final: FinalStateHook,
    ) -> None:
        self._client = client
        self._on_final = on_final
        self.id = secrets.token_urlsafe(16)
        self.request = request
        self.redial_count = redial_count
        self.redial_interval = redial_interval
        self.state = SessionState.SCHEDULED
        #: Every answered placement so far, in order.
        self.attempts: tuple[PlaceCallResult, ...] = ()
        #: Calls that may have gone out: answered ones plus those whose outcome is unknown.
        self.calls_made = 0
        #: The exception that made the session FAILED, if it did.
        self.error: PhoneConfirmError | None = None
        self._generation = 0
        self._in_flight: anyio.CancelScope | None = None
        self._done: anyio.Event | None = None
        self._called: anyio.Event | None = None

    def __repr__(self) -> str:
        return (
            f"<ConfirmationSession {self.id} phone={mask_phone(self.request.phone)} "
            f"state={self.state.name} calls={self.calls_made}/{1 + self.redial_count}>"
        )

    @property
    def calls_allowed(self) -> int:
        return 1 + self.redial_count

    async def verify(self, code: str) -> VerifyResult:
        """Check the code the person typed against the latest placed call.

        A match makes the session VERIFIED (also after EXHAUSTED) and cancels pending
        redials; a wrong code changes nothing, redials go on.

        Raises:
            ValidationError: the code breaks its rule, or no call was placed yet.
            PhoneConfirmError: the verification itself failed (see ``verify_code``).
        """
        code = _validation.code(code)
        request = VerifyRequest(self._latest_transaction(), code)
        result = await self._client.verify(request)
        if result.verified and self.state is not SessionState.VERIFIED:
            self._on_final(self, SessionState.VERIFIED)
        return result

    async def cancel(self) -> None:
        """Stop the session: pending calls are dropped, a placement in flight is cancelled."""
        if self.state not in _CLOSED:
            if self._in_flight is not None:
                self._in_flight.cancel()
            self._on_final(self, SessionState.CANCELLED)
        await anyio.lowlevel.checkpoint()

    async def wait(self) -> SessionState:
        """Wait until the session is VERIFIED, EXHAUSTED, FAILED or CANCELLED; return it."""
        if not self.state.is_final:
            if self._done is None:
                self._done = anyio.Event()
            await self._done.wait()
        else:
            await anyio.lowlevel.checkpoint()
        return self.state

    async def wait_called(self) -> bool:
        """Wait until the first call was placed (its answer, or an unknown outcome, is in).

        Returns False if the session ended before any call (cancelled or failed). Useful to
        tell a user "your phone is ringing" before asking for the code.
        """
        if self.calls_made == 0 and not self.state.is_final:
            if self._called is None:
                self._called = anyio.Event()
            await self._called.wait()
        else:
            await anyio.lowlevel.checkpoint()
        return self.calls_made > 0

    def _notify_called(self) -> None:
        if self._called is not None:
            self._called.set()
            self._called = None

    def _latest_transaction(self) -> str:
        for attempt in reversed(self.attempts):
            if attempt.placed and attempt.transaction_number:
                return attempt.transaction_number
        for attempt in reversed(self.attempts):
            if attempt.transaction_number:
                return attempt.transaction_number
        raise ValidationError("session", "no call has been placed yet: nothing to verify")


class ConfirmationScheduler(anyio.AsyncContextManagerMixin):
    """Places calls locally at ``call_place_time``, redials every ``redial_interval`` until
    the code is verified or ``1 + redial_count`` calls were placed.

    Use it as an async context manager (``async with client.scheduler() as scheduler``);
    leaving the block cancels every pending session and waits for in-flight work.

    Args:
        client: an open :class:`PhoneConfirmClient` (any object with its ``place`` and
            ``verify`` methods will do).
        retry: the policy for each placement (transient failures are retried inside an
            attempt and do not consume redials); default: the client's.
        retain: seconds a finished session stays findable with :meth:`get`.
        wall_clock: the Unix time source that turns an absolute ``call_place_time`` into a
            delay on anyio's clock (tests inject a fixed one).
    """

    def __init__(
        self,
        client: RequestEngine,
        *,
        retry: RetryPolicy | None = None,
        retain: float = DEFAULT_RETAIN,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if retain < 0:
            raise ValueError("retain must not be negative")
        self.client = client
        self.retry = retry
        self.retain = retain
        self.wall_clock = wall_clock
        self._sessions: dict[str, ConfirmationSession] = {}
        self._heap: list[tuple[float, int, _Timer, int, ConfirmationSession]] = []
        self._counter = itertools.count()
        self._task_group: TaskGroup | None = None
        self._wake = anyio.Event()
        self._open = False
        self._entered = False
        # One bound method shared by every session (a new one per session costs memory).
        self._on_final: FinalStateHook = self._finish

    def __len__(self) -> int:
        """Sessions held: pending ones and finished ones still retained."""
        return len(self._sessions)

    @contextlib.asynccontextmanager
    async def __asynccontextmanager__(self) -> AsyncIterator[Self]:
        if self._entered:
            raise RuntimeError("a ConfirmationScheduler can be entered only once")
        self._entered = True
        async with background_tasks() as tasks:
            self._task_group = tasks
            self._open = True
            tasks.start_soon(self._drive)
            try:
                yield self
            finally:
                self._close()

    def _close(self) -> None:
        """Cancel every pending session; the task group then cancels in-flight work."""
        self._open = False
        for session in list(self._sessions.values()):
            if session.state not in _CLOSED and session.state is not SessionState.EXHAUSTED:
                if session._in_flight is not None:
                    session._in_flight.cancel()
                self._finish(session, SessionState.CANCELLED)
        self._heap.clear()

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
            phone, country_code, code: as for ``place_call``.
            redial_count: calls after the first, 0-10, while nobody verifies.
            redial_interval: seconds (or a timedelta) from one placed call to the next, and
                from the last call to EXHAUSTED.
            call_place_time: an aware datetime, or a delay (timedelta or seconds); a past
                time means now. A naive datetime is a ValidationError.

        Raises:
            ValidationError: an argument breaks its rule; nothing is scheduled.
        """
        if not self._open:
            raise RuntimeError("the scheduler is not open: use 'async with client.scheduler()'")
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
        session = ConfirmationSession(
            request, count, interval, client=self.client, on_final=self._on_final
        )
        self._sessions[session.id] = session
        self._push(anyio.current_time() + max(delay, 0.0), _Timer.CALL, session)
        await anyio.lowlevel.checkpoint()
        return session

    def get(self, session_id: str) -> ConfirmationSession | None:
        """The session with this id, while pending or retained; None otherwise."""
        return self._sessions.get(session_id)

    # -- the timer loop ---------------------------------------------------------------------
    def _push(self, due: float, timer: _Timer, session: ConfirmationSession) -> None:
        entry = (due, next(self._counter), timer, session._generation, session)
        heapq.heappush(self._heap, entry)
        if self._heap[0] is entry:
            self._wake.set()  # the driver sleeps until an older, later deadline: wake it

    async def _drive(self) -> None:
        heap = self._heap
        while True:
            now = anyio.current_time()
            while heap and heap[0][0] <= now:
                due, _, timer, generation, session = heapq.heappop(heap)
                if generation == session._generation:
                    self._fire(timer, session, due)
            self._wake = anyio.Event()
            if heap:
                with anyio.CancelScope(deadline=heap[0][0]):
                    await self._wake.wait()
            else:
                await self._wake.wait()

    def _fire(self, timer: _Timer, session: ConfirmationSession, due: float) -> None:
        if timer is _Timer.FORGET:
            self._sessions.pop(session.id, None)
        elif timer is _Timer.EXHAUST:
            if session.state is SessionState.AWAITING_CODE:
                self._finish(session, SessionState.EXHAUSTED)
        elif session.state in (SessionState.SCHEDULED, SessionState.AWAITING_CODE):
            session.state = SessionState.CALLING
            assert self._task_group is not None
            self._task_group.start_soon(self._attempt, session, due)

    async def _attempt(self, session: ConfirmationSession, due: float) -> None:
        request = session.request
        generation = session._generation
        with anyio.CancelScope() as scope:
            session._in_flight = scope
            try:
                result = await self.client.place(request, retry=self.retry)
            except CallOutcomeUnknownError:
                result = None  # a call may have gone out: it counts, and nothing is re-sent
            except PhoneConfirmError as exc:
                session._in_flight = None
                session.error = exc
                self._finish(session, SessionState.FAILED)
                return
            finally:
                session._in_flight = None
        if scope.cancelled_caught:
            return  # cancelled: the session is CANCELLED already
        session.calls_made += 1
        if result is not None:
            session.attempts += (result,)
        session._notify_called()
        if generation != session._generation:
            return  # verified meanwhile: nothing more to schedule
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "session %s: call %d/%d to %s: %s (due %.3f)",
                session.id,
                session.calls_made,
                session.calls_allowed,
                mask_phone(request.phone),
                "unknown outcome" if result is None else result.status,
                due,
            )
        session.state = SessionState.AWAITING_CODE
        next_timer = _Timer.CALL if session.calls_made < session.calls_allowed else _Timer.EXHAUST
        self._push(anyio.current_time() + session.redial_interval, next_timer, session)

    def _finish(self, session: ConfirmationSession, state: SessionState) -> None:
        """Move a session to a final state: drop its pending timers, wake its waiters."""
        session.state = state
        session._generation += 1  # every timer pushed before now is stale
        if session._done is not None:
            session._done.set()
            session._done = None
        session._notify_called()
        if self._open:
            self._push(anyio.current_time() + self.retain, _Timer.FORGET, session)
        else:
            self._sessions.pop(session.id, None)
