"""What schedulers and batches report, as objects that do nothing while telemetry is off.

A scheduler holds a ``SessionObserver`` and a batch a ``BatchObserver``: these base classes
record nothing, so the code that reports never asks whether telemetry is on. With
telemetry on, ``_telemetry_sessions`` gives subclasses that make spans and metrics of the
same calls (and needs the ``otel`` extra; nothing here imports it).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from phoneconfirm_async._errors import PhoneConfirmError
    from phoneconfirm_async._models import Operation, PlaceCallResult
    from phoneconfirm_async._stores._rules import SessionRecord, SessionState


class OperationSpan:
    """One session operation being observed (``schedule``, ``verify``, ``cancel``,
    ``call``); this one records nothing."""

    __slots__ = ()

    def outcome(self, value: str) -> None:
        """How the operation ended: ``scheduled``, ``verified``, ``placed``, ..."""

    def state(self, record: SessionRecord) -> None:
        """The session is now in ``record.state``."""

    def call(self, result: PlaceCallResult | None, error: PhoneConfirmError | None) -> None:
        """What a session's call came to: placed or invalid (``result``), an unknown
        outcome (neither), or an error."""


NO_SPAN = OperationSpan()
_NOTHING = contextlib.nullcontext(NO_SPAN)


class SessionObserver:
    """What a scheduler reports about its sessions; this one records nothing."""

    __slots__ = ()

    def operation(
        self, name: str, record: SessionRecord, *, call: bool = False
    ) -> contextlib.AbstractContextManager[OperationSpan]:
        """Observe an operation on ``record``'s session for the length of a ``with``
        block (``call``: one of its calls, numbered)."""
        return _NOTHING  # one shared context: no generator per operation

    def state(self, record: SessionRecord) -> None:
        """The session changed state within the operation being observed."""

    def settled(self, records: list[SessionRecord]) -> None:
        """A pass over due rows changed these sessions without a call."""

    def added(self) -> None:
        """A session was scheduled here."""

    def finished(self, state: SessionState, count: int = 1) -> None:
        """``count`` sessions reached the final ``state`` from a pending one."""

    def finished_again(self, state: SessionState) -> None:
        """An EXHAUSTED session was verified late, or EXPIRED."""

    def throttled(self, limit: str) -> None:
        """``schedule()`` was refused by the policy's ``limit``."""


class BatchSpan:
    """A batch being observed; this one records nothing."""

    __slots__ = ()

    def done(
        self, *, answered: int, failed: int, replayed: int, error: BaseException | None
    ) -> None:
        """The batch ended: its row counts, and the error that stopped it, if any."""


class BatchObserver:
    """What a batch reports; this one records nothing."""

    __slots__ = ()

    def batch(
        self, operation: Operation, concurrency: int, journal: bool
    ) -> contextlib.AbstractContextManager[BatchSpan]:
        """Observe a batch for the length of a ``with`` block."""
        return contextlib.nullcontext(BatchSpan())
