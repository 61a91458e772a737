"""What the SQL stores share: every operation of ``SessionStore`` written once.

An operation is a generator (``_statements``): it yields each ``Statement`` it needs,
receives its result (rows, one row, one value, or None) and returns its answer, applying
the session rules of ``_rules`` in between. A dialect (``SQLiteStore``, ``PostgresStore``)
runs operations on its driver, in one transaction when asked, and gives the text of the
few statements that differ between databases (the due rows, the JSON append of an
answered call, a renewal, notifications, a lock on a throttle counter).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import (
    Collection,
    Sequence,
)
from typing import Any, Final, TypeVar

import anyio

from phoneconfirm_async._errors import PhoneConfirmError
from phoneconfirm_async._models import PlaceCallResult
from phoneconfirm_async._settings import seconds
from phoneconfirm_async._stores._pass import DuePass
from phoneconfirm_async._stores._protocol import Claimed, Renewed
from phoneconfirm_async._stores._rules import (
    SPEND_WINDOW,
    Quota,
    SessionRecord,
    SessionState,
    Throttled,
    code_expiry,
    counter_key,
    end,
    holds,
    may_finish,
    next_call_due,
    release,
)
from phoneconfirm_async._stores._schema import record_from_row, row_values, update_values
from phoneconfirm_async._stores._statements import Op, Statement, Statements, one

#: Seconds between deletions of the throttle counters whose window passed.
SWEEP_INTERVAL: Final = 10.0
_T = TypeVar("_T")


class Waker:
    """The driver's sleep on a durable store: until the next due time, a wake from this
    process, or ``poll_interval`` (other processes' work is found by looking again)."""

    __slots__ = ("_event", "_until", "poll_interval")

    def __init__(self, poll_interval: float) -> None:
        self.poll_interval = poll_interval
        self._event = anyio.Event()
        self._until = float("inf")

    def arm(self) -> None:
        """Called as a pass over due rows starts: a wake from now on ends the next sleep."""
        self._event = anyio.Event()
        self._until = float("inf")

    def wake(self) -> None:
        self._event.set()

    def due(self, when: float) -> None:
        """Something falls due at ``when``: wake the sleeper if it would sleep past it."""
        if when < self._until:
            self._event.set()

    async def wait(self, until: float | None) -> None:
        now = time.time()
        delay = self.poll_interval
        if until is not None:
            delay = min(delay, until - now)
        self._until = now + delay
        with anyio.move_on_after(max(delay, 0.0)):
            await self._event.wait()
        self._until = float("inf")


class SQLStore:
    """The skeleton of a SQL store: ``SessionStore`` over a dialect's hooks.

    A dialect sets ``statements`` and its own statement texts (``due_sql``,
    ``answered_sql``, ``append_sql``, ``renew_sql``), implements ``_run`` and the hooks
    below, and may override ``_notify`` and ``_renew_op``.
    """

    durable = True
    name: str
    #: Whether a claim reads due rows page after page until it has its calls (SQLite,
    #: under its write lock), or takes one page of rows it locks (PostgreSQL, SKIP LOCKED).
    pages = True
    statements: Statements
    #: Due rows: args (now, excluded ids, rows, offset) as ``_due_args`` gives them.
    due_sql: str
    #: The conditional update of an answered call, ``RETURNING`` the row: args (id,
    #: claimed_at, due, attempt, code_expires).
    answered_sql: str
    #: Appends an answer to a session whose claim no longer holds: args (id, attempt).
    append_sql: str
    #: One claim's renewal, ``RETURNING id``: args (lease end, id, claimed_at).
    renew_sql: str
    #: The key of the throttle counters' hashes (read from ``<table>_meta`` by ``open``).
    secret: bytes = b""

    def __init__(self, *, lease: float, poll_interval: float) -> None:
        self.lease: float | None = seconds("lease", lease)
        self.poll_interval: float | None = seconds("poll_interval", poll_interval)
        #: The driver's sleep, woken by this process's changes (and a dialect's news).
        self.waker = Waker(self.poll_interval)
        #: Seconds a finished session is kept (the scheduler's ``retain``, set by ``open``).
        self.retain = 0.0
        self._swept_at = 0.0

    def now(self) -> float:
        return time.time()

    # -- the dialect's hooks ----------------------------------------------------------------
    async def _run(self, op: Op[_T], *, transaction: bool = True) -> _T:
        """Run ``op`` on a connection, in one transaction unless told not to; a database
        failure is a ``StoreError``."""
        raise NotImplementedError

    def _due_args(self, now: float, skip: list[str], rows: int, offset: int) -> tuple[Any, ...]:
        raise NotImplementedError

    def _attempt_arg(self, result: PlaceCallResult | None) -> object:
        """The JSON an answered call appends to ``attempts`` (None: nothing)."""
        raise NotImplementedError

    def _lock(self, name: str) -> Statement | None:
        """A statement that serializes, until the transaction ends, the transactions that
        count ``name`` (a throttle counter); None where every write transaction is
        serialized already (SQLite)."""
        return None

    async def _ended(self, ended: bool, now: float) -> None:
        """After a pass over due rows (``ended``: it changed some) or a session's end; a
        dialect tidies up here (SQLite truncates its WAL of erased phones and codes)."""

    def _notify(self, session_ids: list[str]) -> Statement | None:
        """A statement that tells other processes these sessions changed, if it can."""
        return None

    def _renew_op(self, lease_end: float, claims: list[tuple[str, float | None]]) -> Op[set[str]]:
        """Move the lease of every claim that still holds to ``lease_end``; return their ids."""
        held = set()
        for session_id, claimed_at in claims:
            row = yield Statement("fetchrow", self.renew_sql, (lease_end, session_id, claimed_at))
            if row is not None:
                held.add(session_id)
        return held

    def secret_op(self) -> Op[bytes]:
        """Make the store's secret if the tables are new, and read it (run by ``open``)."""
        yield Statement("execute", self.statements.write_secret, (secrets.token_hex(32),))
        value = yield Statement("fetchval", self.statements.read_secret, ())
        return bytes.fromhex(value)

    # -- the protocol -----------------------------------------------------------------------
    async def add(
        self, record: SessionRecord, *, quotas: Sequence[Quota] = ()
    ) -> Throttled | None:
        if not quotas:
            await self._run(
                one("execute", self.statements.insert, row_values(record)), transaction=False
            )
            self.waker.due(record.due)
            return None
        counters = []  # each quota with its counter's key ("" for the spend cap)
        for quota in quotas:
            value = quota.value
            key = "" if value is None else counter_key(self.secret, quota.limit, value)
            counters.append((quota, key))
        throttled = await self._run(self._add_op(record, counters))
        if throttled is None:
            self.waker.due(record.due)
        return throttled

    def _add_op(
        self, record: SessionRecord, counters: list[tuple[Quota, str]]
    ) -> Op[Throttled | None]:
        """Check every quota, then count the session in each and add it: one transaction,
        each counter locked first (in one order: two adds never wait for each other)."""
        statements = self.statements
        for key in sorted(key for quota, key in counters if quota.value is not None):
            lock = self._lock(key)
            if lock is not None:
                yield lock
        now = time.time()
        for quota, key in counters:
            frees = yield Statement(
                "fetchval", statements.newest, (quota.limit, key, now, quota.most - 1)
            )
            if frees is not None:
                return Throttled(quota.limit, max(frees - now, 0.0))
        for quota, key in counters:
            if quota.value is not None:
                counted = (quota.limit, key, now + quota.window, None)
                yield Statement("execute", statements.count, counted)
        yield Statement("execute", statements.insert, row_values(record))
        return None

    async def load(self, session_id: str) -> SessionRecord | None:
        row = await self._run(
            one("fetchrow", self.statements.select, (session_id,)), transaction=False
        )
        return None if row is None else record_from_row(row)

    async def claim(
        self,
        now: float,
        limit: int,
        *,
        exclude: Collection[str] = (),
        calls_per_hour: int | None = None,
    ) -> Claimed:
        self.waker.arm()
        sweep = now - self._swept_at >= SWEEP_INTERVAL
        if sweep:
            self._swept_at = now
        claimed = await self._run(self._claim_op(limit, list(exclude), calls_per_hour, sweep))
        await self._ended(bool(claimed.changed), now)
        return claimed

    def _claim_op(self, limit: int, skip: list[str], cap: int | None, sweep: bool) -> Op[Claimed]:
        statements = self.statements
        rows_per_page = DuePass.batch_for(limit)
        due: DuePass | None = None
        at = 0.0
        offset = 0
        free = float("inf")
        if cap is not None:  # the spend cap: counted by one pass at a time
            lock = self._lock("calls_per_hour")
            if lock is not None:
                yield lock
            free = cap - (yield Statement("fetchval", statements.spent, (time.time(),)))
        while True:
            now = time.time() if due is None else due.now
            rows = yield Statement(
                "fetch", self.due_sql, self._due_args(now, skip, rows_per_page, offset)
            )
            if due is None:
                # The rows are locked (or the write lock held): the claims' time is read
                # now, not before the wait for the lock.
                at = time.monotonic()
                due = DuePass(time.time(), limit, lease=self.lease, retain=self.retain, free=free)
            due.take(rows)
            if not self.pages or due.full or len(rows) < rows_per_page:
                break
            offset += rows_per_page
        capped = None
        if cap is not None:
            if due.claimed.calls:
                counted = [
                    ("calls_per_hour", "", (r.claimed_at or 0.0) + SPEND_WINDOW, r.id)
                    for r in due.claimed.calls
                ]
                yield Statement("executemany", statements.count, counted)
            if due.free <= 0:
                args = ("calls_per_hour", "", due.now, cap - 1)
                capped = yield Statement("fetchval", statements.newest, args)
                if capped is not None:
                    due.hold(capped)
        if due.updates:
            yield Statement("executemany", statements.update, due.updates)
        if due.deletes:
            yield Statement("executemany", statements.delete, due.deletes)
        if sweep:
            yield Statement("execute", statements.sweep, (due.now,))
        if due.claimed.changed:
            notify = self._notify([record.id for record in due.claimed.changed])
            if notify is not None:
                yield notify
        return due.claimed._replace(at=at, capped=capped)

    async def renew(self, records: Collection[SessionRecord], now: float) -> Renewed:
        lease = self.lease
        assert lease is not None
        claims = [(record.id, record.claimed_at) for record in records]

        def op() -> Op[Renewed]:
            at, now = time.monotonic(), time.time()  # under the lock, as for a claim
            held = yield from self._renew_op(now + lease, claims)
            return Renewed(at, frozenset(held))

        return await self._run(op())

    async def release(self, record: SessionRecord, now: float) -> SessionRecord | None:
        def op() -> Op[SessionRecord | None]:
            row = yield Statement("fetchrow", self.statements.lock, (record.id,))
            if row is None:
                return None
            current = record_from_row(row)
            if not holds(current, record):
                return None  # settled elsewhere, or the session ended
            counted = (current.id, (current.claimed_at or 0.0) + SPEND_WINDOW)
            release(current, time.time())
            yield Statement("execute", self.statements.update, update_values(current))
            yield Statement("execute", self.statements.uncount, counted)  # never placed
            return current

        updated = await self._run(op())
        if updated is not None:
            self.waker.wake()
        return updated

    async def record_call(
        self, record: SessionRecord, result: PlaceCallResult | None, now: float
    ) -> SessionRecord | None:
        attempt = self._attempt_arg(result)

        def op() -> Op[SessionRecord | None]:
            # The claim holds: one conditional UPDATE. It does not: keep the answer only.
            now = time.time()
            due = next_call_due(record, now)
            args = (record.id, record.claimed_at, due, attempt, code_expiry(record, now))
            row = yield Statement("fetchrow", self.answered_sql, args)
            if row is not None:
                return record_from_row(row)
            if result is not None:
                yield Statement("execute", self.append_sql, (record.id, attempt))
            return None

        updated = await self._run(op(), transaction=False)  # each statement atomic alone
        if updated is not None:
            self.waker.due(updated.due)
        return updated

    async def take_attempt(self, session_id: str, now: float) -> SessionRecord | None:
        row = await self._run(
            one("fetchrow", self.statements.take, (session_id, time.time())), transaction=False
        )
        return None if row is None else record_from_row(row)

    async def return_attempt(self, session_id: str) -> None:
        await self._run(
            one("execute", self.statements.give_back, (session_id,)), transaction=False
        )

    async def finish(
        self,
        session_id: str,
        state: SessionState,
        now: float,
        *,
        error: PhoneConfirmError | None = None,
        claimed_at: float | None = None,
    ) -> SessionRecord | None:
        retain = self.retain

        def op() -> Op[SessionRecord | None]:
            row = yield Statement("fetchrow", self.statements.lock, (session_id,))
            if row is None:
                return None
            current = record_from_row(row)
            if not may_finish(current, state, claimed_at):
                return None
            end(current, state, now, retain, error)
            yield Statement("execute", self.statements.update, update_values(current))
            notify = self._notify([session_id])
            if notify is not None:
                yield notify
            return current

        updated = await self._run(op())
        if updated is not None:
            await self._ended(True, now)
        return updated

    async def next_due(self) -> float | None:
        due: float | None = await self._run(
            one("fetchval", self.statements.next_due, ()), transaction=False
        )
        return due

    async def wait(self, until: float | None) -> None:
        await self.waker.wait(until)

    def wake(self) -> None:
        self.waker.wake()
