"""MemoryStore: sessions in this process's memory, on anyio's clock."""

from __future__ import annotations

import contextlib
import dataclasses
import heapq
import math
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator, Collection, Sequence

import anyio

from phoneconfirm_async._errors import PhoneConfirmError
from phoneconfirm_async._models import PlaceCallResult
from phoneconfirm_async._stores._protocol import ChangeHook, Claimed, Renewed
from phoneconfirm_async._stores._rules import (
    CLOSED_STATES,
    SPEND_WINDOW,
    Quota,
    SessionRecord,
    SessionState,
    Settled,
    Throttled,
    answered,
    counter_key,
    end,
    held_back,
    holds,
    may_check,
    may_finish,
    release,
    settle_due,
)

#: Seconds between sweeps of the throttle counters whose window passed.
SWEEP_INTERVAL = 10.0


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
        #: (due, record): records due at one time order by id (``SessionRecord.__lt__``).
        self._heap: list[tuple[float, SessionRecord]] = []
        self._wake = anyio.Event()
        self._retain = 0.0
        self._open = False
        self._secret = secrets.token_bytes(32)
        #: Throttle counters: the ends of the windows of the events counted, by hashed key.
        #: Compact (a store may hold a counter for each of 100,000 phones): the first 64
        #: bits of the key's HMAC -> the window end of its one event, or of each.
        self._counters: dict[int, float | tuple[float, ...]] = {}
        self._ends: dict[float, float] = {}
        self._swept_at = 0.0
        #: Calls claimed in the trailing hour: (window end, session id, claimed_at).
        #: In claim order, so in window-end order: expired calls leave from the left.
        self._calls: deque[tuple[float, str, float | None]] = deque()

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
        self._counters.clear()
        self._calls.clear()

    def _push(self, record: SessionRecord) -> None:
        entry = (record.due, record)
        heapq.heappush(self._heap, entry)
        if self._heap[0] is entry:
            self._wake.set()  # the driver sleeps until a later deadline: wake it

    async def add(
        self, record: SessionRecord, *, quotas: Sequence[Quota] = ()
    ) -> Throttled | None:
        now = self.now()
        counted: list[tuple[int, tuple[float, ...], float]] = []
        for quota in quotas:
            if quota.value is None:
                spent = len(self._spent(now))
                if spent >= quota.most:
                    frees = self._calls[spent - quota.most][0]
                    return Throttled(quota.limit, max(frees - now, 0.0))
                continue  # the spend cap: checked here, counted by claims
            # 60 bits: a two-digit int (32 bytes, not 36); collisions are negligible.
            key = int(counter_key(self._secret, quota.limit, quota.value)[:15], 16)
            events = tuple(until for until in self._events(key) if until > now)
            counted.append((key, events, self._window_end(now + quota.window)))
            if len(events) >= quota.most:
                # Free when the ``most``-th newest event leaves its window.
                frees = sorted(events)[len(events) - quota.most]
                return Throttled(quota.limit, max(frees - now, 0.0))
        for key, events, until in counted:
            self._counters[key] = (*events, until) if events else until
        self._records[record.id] = record
        self._push(record)
        return None

    def _window_end(self, until: float) -> float:
        """``until`` rounded up to a whole second, one float object per second: the events
        counted in one second share it (a count is at most a second longer for it)."""
        second = float(math.ceil(until))
        return self._ends.setdefault(second, second)

    def _events(self, key: int) -> tuple[float, ...]:
        events = self._counters.get(key, ())
        return (events,) if isinstance(events, float) else events

    def _sweep(self, now: float) -> None:
        """Forget the counters whose every event left its window."""
        self._counters = {
            key: events for key, events in self._counters.items() if max(self._events(key)) > now
        }
        self._ends = {end: end for end in self._ends if end > now}

    def _spent(self, now: float) -> deque[tuple[float, str, float | None]]:
        """The calls counted against the spend cap whose hour has not passed."""
        calls = self._calls
        while calls and calls[0][0] <= now:
            calls.popleft()
        return calls

    async def load(self, session_id: str) -> SessionRecord | None:
        return self._records.get(session_id)

    async def claim(
        self,
        now: float,
        limit: int,
        *,
        exclude: Collection[str] = (),
        calls_per_hour: int | None = None,
    ) -> Claimed:
        # ``exclude`` needs no look: a record in CALLING is never due here (no lease).
        if now - self._swept_at >= SWEEP_INTERVAL:
            self._swept_at = now
            self._sweep(now)
        heap = self._heap
        self._wake = anyio.Event()  # what is added from now on wakes the next wait
        claimed = Claimed([], [], time.monotonic())
        free = float("inf")
        if calls_per_hour is not None:
            free = calls_per_hour - len(self._spent(now))
        later: list[SessionRecord] = []  # due again now: pushed back after this pass
        held: list[SessionRecord] = []  # calls the spend cap held back
        while heap and heap[0][0] <= now and len(claimed.calls) < limit:
            due, record = heapq.heappop(heap)
            if due != record.due or record.id not in self._records:
                continue  # stale: the record moved on since this entry was pushed
            outcome = settle_due(record, now, lease=None, retain=self._retain, may_call=free > 0)
            if outcome is Settled.DELETED:
                del self._records[record.id]
                continue
            if outcome is Settled.CALLED:
                claimed.calls.append(record)
                if calls_per_hour is not None:
                    free -= 1
                    self._calls.append((now + SPEND_WINDOW, record.id, record.claimed_at))
            elif outcome is Settled.CHANGED:
                claimed.changed.append(record)
            (held if held_back(record, outcome, now) else later).append(record)
        if calls_per_hour is not None and free <= 0:
            # The held-back calls fall due when the cap frees one: its calls_per_hour-th
            # newest call leaves the trailing hour.
            spent = len(self._calls)
            frees = self._calls[spent - calls_per_hour][0] if spent >= calls_per_hour else now
            claimed = claimed._replace(capped=frees)
            for record in held:
                record.due = frees
            later += held
        for record in later:
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
        call = (current.id, current.claimed_at)  # never placed: out of the spend cap's count
        self._calls = deque(c for c in self._calls if c[1:] != call)
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

    async def take_attempt(self, session_id: str, now: float) -> SessionRecord | None:
        record = self._records.get(session_id)
        if record is None or not may_check(record, now):
            return None
        record.verify_attempts += 1
        return dataclasses.replace(record)  # a snapshot: the count this check took

    async def return_attempt(self, session_id: str) -> None:
        record = self._records.get(session_id)
        if record is not None and record.verify_attempts > 0:
            record.verify_attempts -= 1

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
