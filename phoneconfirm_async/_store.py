"""Where confirmation sessions live: the store protocol, its record, and the memory store.

A scheduler keeps no session state of its own: it asks its store to add a session, to
*claim* the calls that are due (a claim records the call as made before it is dialled), to
record a call's answer, and to end a session. Every kind of pending work is a row whose
``due`` has passed, read in one ordered pass:

- SCHEDULED or AWAITING_CODE with calls left: claim a call (CALLING, ``calls_made + 1``,
  ``claimed_at = now``, ``due = now + lease``);
- AWAITING_CODE with no call left: EXHAUSTED;
- CALLING whose lease ran out (its process died or stalled): AWAITING_CODE, the call
  counted with an unknown outcome, the next one ``redial_interval`` after the lease ended
  (the holder may have dialled until then, never later);
- a final state past ``retain``: deleted.

A durable store reads ``now`` for a claim while it holds its lock, so that a claim that
waited for the lock does not start with part of its lease already gone. A claim whose call
was never sent goes back (``release``): due again, its call not counted.

Phone and code (the record's ``request``) are erased when a session reaches a final state.
"""

from __future__ import annotations

import contextlib
import enum
import heapq
import itertools
import time
from collections.abc import AsyncIterator, Callable, Collection
from dataclasses import dataclass
from typing import Final, NamedTuple, Protocol, runtime_checkable

import anyio
import anyio.lowlevel

from phoneconfirm_async._errors import PhoneConfirmError
from phoneconfirm_async._models import PlaceCallRequest, PlaceCallResult
from phoneconfirm_async._redact import mask_phone


class SessionState(enum.Enum):
    """Where a confirmation session stands."""

    SCHEDULED = "scheduled"  #: waiting for the first call's time
    CALLING = "calling"  #: a call placement is in flight (claimed, counted in calls_made)
    AWAITING_CODE = "awaiting_code"  #: called; waiting for the code or the next redial
    VERIFIED = "verified"  #: the person's code matched
    EXHAUSTED = "exhausted"  #: every call placed, no code within the last interval
    FAILED = "failed"  #: a permanent error (on ``session.error``)
    CANCELLED = "cancelled"  #: cancelled by the caller (or, memory store, by closing)

    @property
    def is_final(self) -> bool:
        """True for the states a session waits for (EXHAUSTED can still become VERIFIED)."""
        return self in FINAL_STATES


FINAL_STATES: Final = frozenset(
    {SessionState.VERIFIED, SessionState.EXHAUSTED, SessionState.FAILED, SessionState.CANCELLED}
)
#: States no call is placed from (EXHAUSTED can still be cancelled or verified).
CLOSED_STATES: Final = frozenset(
    {SessionState.VERIFIED, SessionState.FAILED, SessionState.CANCELLED}
)
PENDING_STATES: Final = frozenset({SessionState.SCHEDULED, SessionState.AWAITING_CODE})


@dataclass(slots=True, eq=False, repr=False)
class SessionRecord:
    """One session as a store keeps it (the currency of ``SessionStore``).

    ``due`` is on the store's clock (``SessionStore.now``): the next call, the lease's
    end while CALLING, the end of the last interval when no call is left, or the time the
    record is deleted once final. ``claimed_at`` is when the latest call was claimed (None
    before the first). ``request`` (phone and code) is None once final.
    """

    id: str
    request: PlaceCallRequest | None
    redial_count: int
    redial_interval: float
    state: SessionState
    due: float
    calls_made: int = 0
    attempts: tuple[PlaceCallResult, ...] = ()
    error: PhoneConfirmError | None = None
    claimed_at: float | None = None

    def __repr__(self) -> str:
        phone = "-" if self.request is None else mask_phone(self.request.phone)
        return (
            f"<SessionRecord {self.id} phone={phone} state={self.state.name} "
            f"calls={self.calls_made}/{1 + self.redial_count}>"
        )

    @property
    def calls_allowed(self) -> int:
        return 1 + self.redial_count


class Claimed(NamedTuple):
    """What one pass over the due rows did: calls to dial now, sessions that changed."""

    calls: list[SessionRecord]
    changed: list[SessionRecord]
    #: ``time.monotonic()`` read with the claims' ``claimed_at``, under the store's lock:
    #: where their leases start on this process's clock.
    at: float = 0.0


class Renewed(NamedTuple):
    """What ``SessionStore.renew`` did: the claims this process still holds, whose leases
    now run from ``at`` (``time.monotonic()``, read with the new lease end)."""

    at: float
    ids: frozenset[str]


#: Called with a session id when another process changed that session (a store that can
#: tell, such as PostgreSQL with LISTEN/NOTIFY).
ChangeHook = Callable[[str], None]


@runtime_checkable
class SessionStore(Protocol):
    """What a scheduler needs from the place its sessions live.

    The three stores are ``MemoryStore`` (one process, anyio's clock),
    ``SQLiteStore`` (one host) and ``PostgresStore`` (several hosts). Every method
    but ``open``, ``now`` and ``wake`` is used only while open. Conditional
    updates (``claimed_at`` must match, VERIFIED is final) are what make several processes
    on one store safe: each returns None when the condition failed.

    A durable store's failures are ``StoreError``; it must never lose a claim.
    """

    #: For messages: "memory", "sqlite:<path>", "postgresql://host/db" (no password).
    name: str
    #: True when sessions outlive the scheduler and are shared between processes.
    durable: bool
    #: Seconds a claim holds a call before another process may settle it; None: never.
    lease: float | None
    #: Seconds between looks for work other processes made due; None: nothing to look for.
    poll_interval: float | None

    def now(self) -> float:
        """The store's clock: anyio's for memory, Unix time (UTC) for durable stores."""
        ...

    def open(
        self, *, retain: float, on_change: ChangeHook
    ) -> contextlib.AbstractAsyncContextManager[None]:
        """Connect (and create the schema) for the length of a scheduler's block.

        Raises:
            ConfigurationError: the store cannot be reached or used (names the store).
        """
        ...

    async def add(self, record: SessionRecord) -> None:
        """Store a new session."""
        ...

    async def load(self, session_id: str) -> SessionRecord | None:
        """The session, or None when unknown or deleted."""
        ...

    async def claim(self, now: float, limit: int, *, exclude: Collection[str] = ()) -> Claimed:
        """Settle every row due at ``now`` and claim at most ``limit`` calls, leaving the
        sessions in ``exclude`` (this process's calls in flight) alone.

        A durable store reads its clock again once it holds its lock, stamps ``claimed_at``
        and the lease with that reading, and returns ``time.monotonic()`` read with it.
        """
        ...

    async def renew(self, records: Collection[SessionRecord], now: float) -> Renewed:
        """Extend the leases of the calls this process has in flight; say which claims
        still hold (the others were settled elsewhere, or their session ended)."""
        ...

    async def release(self, record: SessionRecord, now: float) -> SessionRecord | None:
        """Give back a claimed call that was never sent, if the claim still holds: the
        session is due again at ``now`` and the call is not counted."""
        ...

    async def record_call(
        self, record: SessionRecord, result: PlaceCallResult | None, now: float
    ) -> SessionRecord | None:
        """A claimed call's answer (None: outcome unknown). Appends it to ``attempts``;
        when the claim still holds, AWAITING_CODE with the next ``due = now + interval``."""
        ...

    async def finish(
        self,
        session_id: str,
        state: SessionState,
        now: float,
        *,
        error: PhoneConfirmError | None = None,
        claimed_at: float | None = None,
    ) -> SessionRecord | None:
        """Move a session to a final state, if its state allows (see the module doc)."""
        ...

    async def next_due(self) -> float | None:
        """The earliest ``due`` of any row, or None."""
        ...

    async def wait(self, until: float | None) -> None:
        """Sleep until ``until`` (store clock), ``wake``, or work another process made."""
        ...

    def wake(self) -> None:
        """End the current ``wait`` early (this process added or freed something)."""
        ...


def may_finish(current: SessionRecord, state: SessionState, claimed_at: float | None) -> bool:
    """The rule every store applies to ``SessionStore.finish``.

    VERIFIED from any state but VERIFIED (a late code after EXHAUSTED still counts);
    CANCELLED while not closed; FAILED only by the holder of the current claim.
    """
    if state is SessionState.VERIFIED:
        return current.state is not SessionState.VERIFIED
    if state is SessionState.CANCELLED:
        return current.state not in CLOSED_STATES
    return current.state is SessionState.CALLING and current.claimed_at == claimed_at


def settle_due(
    record: SessionRecord, now: float, *, lease: float | None, retain: float
) -> bool | None:
    """Apply the due rule to one record whose ``due`` passed.

    Returns True when a call was claimed, False when the record changed otherwise
    (EXHAUSTED, a dead claim settled), None when it is to be deleted.
    """
    state = record.state
    if state in FINAL_STATES:
        return None
    if state is SessionState.CALLING:  # the lease ran out: the call counts, unknown outcome
        record.state = SessionState.AWAITING_CODE
        # ``due`` was the lease's end: its holder may have dialled until then, never later.
        record.due += record.redial_interval
        if record.due > now:
            return False
    if record.calls_made >= record.calls_allowed:
        end(record, SessionState.EXHAUSTED, now, retain)
        return False
    record.state = SessionState.CALLING
    record.calls_made += 1
    record.claimed_at = now
    record.due = now + lease if lease is not None else float("inf")
    return True


def end(
    record: SessionRecord,
    state: SessionState,
    now: float,
    retain: float,
    error: PhoneConfirmError | None = None,
) -> None:
    """A final state: phone and code erased, deleted ``retain`` seconds from now."""
    record.state = state
    record.request = None
    record.due = now + retain
    if error is not None:
        record.error = error


def holds(current: SessionRecord, claim: SessionRecord) -> bool:
    """Whether ``claim`` (a record as claimed) is still the session's current claim."""
    return current.state is SessionState.CALLING and current.claimed_at == claim.claimed_at


def release(record: SessionRecord, now: float) -> None:
    """A claimed call that was never sent: due again at ``now``, the call not counted."""
    record.calls_made -= 1
    record.state = SessionState.AWAITING_CODE if record.calls_made else SessionState.SCHEDULED
    record.due = now


def answered(record: SessionRecord, result: PlaceCallResult | None, now: float) -> None:
    """A claimed call's answer is in (None: unknown outcome): wait for the code or redial."""
    if result is not None:
        record.attempts += (result,)
    record.state = SessionState.AWAITING_CODE
    record.due = now + record.redial_interval


class MemoryStore:
    """Sessions in this process's memory: the default, and the fastest.

    One heap of due times driven by the scheduler's one task, on ``anyio.current_time()``
    (trio's ``MockClock`` drives it in tests). Nothing outlives the scheduler: leaving its
    block cancels every pending session. Use ``SQLiteStore`` or
    ``PostgresStore`` to share sessions between processes and survive restarts.
    """

    name: str = "memory"
    durable: bool = False
    lease: float | None = None
    poll_interval: float | None = None

    def __init__(self) -> None:
        self._records: dict[str, SessionRecord] = {}
        self._heap: list[tuple[float, int, SessionRecord]] = []
        self._counter = itertools.count()
        self._wake = anyio.Event()
        self._retain = 0.0
        self._open = False

    def __len__(self) -> int:
        """Sessions held: pending ones and finished ones still retained."""
        return len(self._records)

    def __repr__(self) -> str:
        return f"<MemoryStore sessions={len(self._records)}>"

    def now(self) -> float:
        return anyio.current_time()

    @contextlib.asynccontextmanager
    async def open(self, *, retain: float, on_change: ChangeHook) -> AsyncIterator[None]:
        if self._open:
            raise RuntimeError("a MemoryStore is used by one scheduler at a time")
        self._open = True
        self._retain = retain
        try:
            yield
        finally:
            self._open = False
            self._close()

    def _close(self) -> None:
        """Nothing outlives the block: cancel what is pending, forget everything."""
        for record in self._records.values():
            if record.state not in CLOSED_STATES and record.state is not SessionState.EXHAUSTED:
                end(record, SessionState.CANCELLED, 0.0, 0.0)
        self._records.clear()
        self._heap.clear()

    def _push(self, record: SessionRecord) -> None:
        entry = (record.due, next(self._counter), record)
        heapq.heappush(self._heap, entry)
        if self._heap[0] is entry:
            self._wake.set()  # the driver sleeps until a later deadline: wake it

    async def add(self, record: SessionRecord) -> None:
        self._records[record.id] = record
        self._push(record)

    async def load(self, session_id: str) -> SessionRecord | None:
        return self._records.get(session_id)

    async def claim(self, now: float, limit: int, *, exclude: Collection[str] = ()) -> Claimed:
        # ``exclude`` needs no look: a record in CALLING is never due here (no lease).
        heap = self._heap
        self._wake = anyio.Event()  # what is added from now on wakes the next wait
        claimed = Claimed([], [], time.monotonic())
        while heap and heap[0][0] <= now and len(claimed.calls) < limit:
            due, _, record = heapq.heappop(heap)
            if due != record.due or record.id not in self._records:
                continue  # stale: the record moved on since this entry was pushed
            outcome = settle_due(record, now, lease=None, retain=self._retain)
            if outcome is None:
                del self._records[record.id]
                continue
            (claimed.calls if outcome else claimed.changed).append(record)
            if record.due != float("inf"):
                self._push(record)
        return claimed

    async def renew(self, records: Collection[SessionRecord], now: float) -> Renewed:
        # No leases (nobody else could settle a claim): say which claims still hold.
        ids = frozenset(
            record.id
            for record in records
            if (current := self._records.get(record.id)) is not None and holds(current, record)
        )
        return Renewed(time.monotonic(), ids)

    async def release(self, record: SessionRecord, now: float) -> SessionRecord | None:
        current = self._records.get(record.id)
        if current is None or not holds(current, record):
            return None
        release(current, now)
        self._push(current)
        return current

    async def record_call(
        self, record: SessionRecord, result: PlaceCallResult | None, now: float
    ) -> SessionRecord | None:
        claimed_at = record.claimed_at
        if record.state is not SessionState.CALLING or claimed_at is None:
            if result is not None:
                record.attempts += (result,)  # verified or cancelled meanwhile
            return None
        answered(record, result, now)
        self._push(record)
        return record

    async def finish(
        self,
        session_id: str,
        state: SessionState,
        now: float,
        *,
        error: PhoneConfirmError | None = None,
        claimed_at: float | None = None,
    ) -> SessionRecord | None:
        record = self._records.get(session_id)
        if record is None or not may_finish(record, state, claimed_at):
            return None
        end(record, state, now, self._retain, error)
        if self._open:
            self._push(record)
        return record

    async def next_due(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    async def wait(self, until: float | None) -> None:
        wake = self._wake
        if until is None:
            await wake.wait()
        else:
            with anyio.CancelScope(deadline=until):
                await wake.wait()

    def wake(self) -> None:
        self._wake.set()
