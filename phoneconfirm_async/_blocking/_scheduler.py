"""The blocking scheduler and its sessions: ``ConfirmationScheduler`` and
``ConfirmationSession`` for code that does not ``await``."""

from __future__ import annotations

import functools
from datetime import datetime, timedelta

from phoneconfirm_async._blocking._loop import Closable, LoopThread
from phoneconfirm_async._models import VerifyResult
from phoneconfirm_async._policy import ConfirmationPolicy
from phoneconfirm_async._scheduler import ConfirmationScheduler
from phoneconfirm_async._session import ConfirmationSession, SessionBook, SessionFacts
from phoneconfirm_async._stores._protocol import SessionStore
from phoneconfirm_async._stores._rules import SessionRecord, SessionState


class SyncConfirmationScheduler(Closable):
    """``ConfirmationScheduler``, blocking: made open by ``SyncPhoneConfirmClient.scheduler``.

    Its calls are placed by the client's loop thread while your threads serve requests;
    its sessions are ``SyncConfirmationSession``. Same store, policy, rules and errors as
    the async scheduler; ``close()`` (or leaving ``with``, or closing the client) leaves
    it as leaving ``async with`` would: a memory store's pending sessions are cancelled,
    a durable store's stay for the other processes, or for the next start.
    """

    def __init__(self, loop: LoopThread, scheduler: ConfirmationScheduler, owner: object) -> None:
        self._loop = loop
        self._owner = owner  # the client: while the scheduler is used, it is not collected
        self._scheduler, self._token = loop.enter(scheduler)
        self._closed = False

    def __repr__(self) -> str:
        state = "closed" if self._closed or self._loop.stopped else "open"
        return f"<SyncConfirmationScheduler store={self.store.name} {state}>"

    @property
    def store(self) -> SessionStore:
        return self._scheduler.store

    @property
    def policy(self) -> ConfirmationPolicy | None:
        return self._scheduler.policy

    def close(self) -> None:
        """Leave the scheduler (as leaving its ``async with`` block); again: nothing."""
        self._closed = True
        self._loop.leave(self._token)

    def schedule(
        self,
        phone: str,
        *,
        country_code: str | None = None,
        code: str | None = None,
        redial_count: int = 0,
        redial_interval: float | timedelta = 60,
        call_place_time: datetime | timedelta | float | None = None,
        throttle_key: str | None = None,
    ) -> SyncConfirmationSession:
        """``ConfirmationScheduler.schedule``, blocking: its arguments and errors."""
        session = self._loop.call(
            functools.partial(
                self._scheduler.schedule,
                phone,
                country_code=country_code,
                code=code,
                redial_count=redial_count,
                redial_interval=redial_interval,
                call_place_time=call_place_time,
                throttle_key=throttle_key,
            )
        )
        return SyncConfirmationSession(self, session)

    def get(self, session_id: str) -> SyncConfirmationSession | None:
        """``ConfirmationScheduler.get``, blocking: the session, or None."""
        session = self._loop.call(functools.partial(self._scheduler.get, session_id))
        return None if session is None else SyncConfirmationSession(self, session)


class SyncConfirmationSession(SessionFacts):
    """``ConfirmationSession``, blocking: the same properties, and methods that wait.

    ``wait`` and ``wait_called`` take a ``timeout`` in seconds: past it they raise
    ``TimeoutError`` (the session goes on; its properties say where it is).
    """

    __slots__ = ("_loop", "_scheduler", "_session")

    def __init__(self, scheduler: SyncConfirmationScheduler, session: ConfirmationSession) -> None:
        self._scheduler = scheduler  # kept alive (and its client) while the session is used
        self._loop = scheduler._loop
        self._session = session

    def _seen(self) -> SessionRecord:
        return SessionBook.record_of(self._session)

    def verify(self, code: str) -> VerifyResult:
        """``ConfirmationSession.verify``, blocking: its result and errors."""
        return self._loop.call(functools.partial(self._session.verify, code))

    def cancel(self) -> None:
        """``ConfirmationSession.cancel``, blocking."""
        self._loop.call(self._session.cancel)

    def refresh(self) -> None:
        """``ConfirmationSession.refresh``, blocking."""
        self._loop.call(self._session.refresh)

    def wait(self, timeout: float | None = None) -> SessionState:
        """Wait until the session is final; return its state.

        Raises:
            TimeoutError: not final after ``timeout`` seconds (None: no bound).
        """
        return self._loop.call(self._session.wait, timeout=timeout, waiting_for="a final state")

    def wait_called(self, timeout: float | None = None) -> bool:
        """Wait until the first call's answer is in; False if the session ended before
        any call.

        Raises:
            TimeoutError: no answer after ``timeout`` seconds (None: no bound).
        """
        return self._loop.call(
            self._session.wait_called, timeout=timeout, waiting_for="the first call's answer"
        )
