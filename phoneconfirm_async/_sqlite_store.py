"""SQLiteStore: durable sessions in one file, shared by the processes of one host.

WAL mode lets readers and one writer work at once; every change is one ``BEGIN IMMEDIATE``
transaction, so two processes never claim the same call. ``synchronous=NORMAL``: a killed
process loses nothing it committed (an operating-system crash may lose the last
transactions). ``secure_delete`` zeroes erased phone numbers and codes in the file, and the
WAL is checkpointed and truncated after sessions end, so they do not linger there either.

sqlite3 blocks: every call runs in a worker thread, one at a time per store.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Collection
from typing import Final, TypeVar

import anyio
import anyio.to_thread

from phoneconfirm_async._durable import (
    COLUMNS,
    DuePass,
    Waker,
    check_lease,
    encode_attempt,
    finished,
    record_from_row,
    released,
    row_values,
    update_values,
)
from phoneconfirm_async._errors import ConfigurationError, PhoneConfirmError, StoreError
from phoneconfirm_async._models import PlaceCallResult
from phoneconfirm_async._store import (
    ChangeHook,
    Claimed,
    Renewed,
    SessionRecord,
    SessionState,
)

SCHEMA_VERSION: Final = 1
#: Seconds between WAL truncations while sessions keep ending (and once at close).
CHECKPOINT_INTERVAL: Final = 5.0
_T = TypeVar("_T")

_CREATE: Final = f"""
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    phone TEXT,
    country_code TEXT,
    code TEXT,
    redial_count INTEGER NOT NULL,
    redial_interval REAL NOT NULL,
    state TEXT NOT NULL,
    due REAL NOT NULL,
    calls_made INTEGER NOT NULL,
    attempts TEXT NOT NULL,
    error TEXT,
    claimed_at REAL
);
CREATE INDEX IF NOT EXISTS sessions_due ON sessions (due);
PRAGMA user_version = {SCHEMA_VERSION};
"""
_INSERT: Final = (
    f"INSERT INTO sessions ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
)
_UPDATE: Final = (
    "UPDATE sessions SET phone = ?, country_code = ?, code = ?, state = ?, due = ?, "
    "calls_made = ?, attempts = ?, error = ?, claimed_at = ? WHERE id = ?"
)
_SELECT: Final = f"SELECT {', '.join(COLUMNS)} FROM sessions"
_ANSWERED: Final = (
    "UPDATE sessions SET state = 'awaiting_code', due = ?, "
    "attempts = CASE WHEN ?2 IS NULL THEN attempts "
    "ELSE json_insert(attempts, '$[#]', json(?2)) END "
    f"WHERE id = ? AND state = 'calling' AND claimed_at = ? RETURNING {', '.join(COLUMNS)}"
)
_APPEND: Final = (
    "UPDATE sessions SET attempts = json_insert(attempts, '$[#]', json(?)) WHERE id = ?"
)
_DUE: Final = f"{_SELECT} WHERE due <= ? ORDER BY due LIMIT ? OFFSET ?"
_DUE_EXCEPT: Final = (
    f"{_SELECT} WHERE due <= ? AND id NOT IN (SELECT value FROM json_each(?)) "
    "ORDER BY due LIMIT ? OFFSET ?"
)
_RENEW: Final = "UPDATE sessions SET due = ? WHERE id = ? AND state = 'calling' AND claimed_at = ?"


class SQLiteStore:
    """Sessions in a SQLite file: survive restarts, shared by the processes of one host.

    Args:
        path: the database file (created with its table on first use).
        lease: seconds a claimed call is held before another process may count it as made
            with an unknown outcome (the holder renews it while the call is in flight).
        poll_interval: seconds between looks for sessions other processes added or made
            due (this process's own work wakes the scheduler at once).
    """

    durable = True

    def __init__(
        self, path: str | os.PathLike[str], *, lease: float = 30.0, poll_interval: float = 0.25
    ) -> None:
        check_lease(lease, poll_interval)
        self.path = os.fspath(path)
        self.lease: float | None = lease
        self.poll_interval: float | None = poll_interval
        self.name = f"sqlite:{self.path}"
        self._db: sqlite3.Connection | None = None
        self._limiter = anyio.CapacityLimiter(1)
        self._waker = Waker(poll_interval)
        self._retain = 0.0
        self._ended_since_checkpoint = False
        self._last_checkpoint = 0.0

    def __repr__(self) -> str:
        return f"<SQLiteStore {self.path!r}>"

    def now(self) -> float:
        return time.time()

    # -- lifetime ---------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def open(self, *, retain: float, on_change: ChangeHook) -> AsyncIterator[None]:
        if self._db is not None:
            raise RuntimeError("an SQLiteStore is used by one scheduler at a time")
        self._retain = retain
        try:
            self._db = await anyio.to_thread.run_sync(self._connect, limiter=self._limiter)
        except (sqlite3.Error, OSError) as exc:
            raise ConfigurationError(
                f"{self.name}: cannot open the session store: {exc}"
            ) from None
        try:
            yield
        finally:
            db, self._db = self._db, None
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self._disconnect, db, limiter=self._limiter)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(
            self.path, timeout=30.0, isolation_level=None, check_same_thread=False
        )
        try:
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")
            db.execute("PRAGMA secure_delete = ON")
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise ConfigurationError(
                    f"{self.name}: schema version {version} was written by a newer release "
                    f"(this one knows {SCHEMA_VERSION})"
                )
            if version < SCHEMA_VERSION:
                db.execute("BEGIN IMMEDIATE")
                db.executescript(_CREATE)  # commits
        except BaseException:
            db.close()
            raise
        return db

    def _disconnect(self, db: sqlite3.Connection | None) -> None:
        if db is None:
            return
        with contextlib.suppress(sqlite3.Error):
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        db.close()

    async def _run(
        self, work: Callable[[sqlite3.Connection], _T], *, transaction: bool = True
    ) -> _T:
        """``work`` in a worker thread: one ``BEGIN IMMEDIATE`` transaction when it reads
        then writes (the write lock first: no other process can change what it read), else
        as it is (a single statement is a transaction of its own)."""
        db = self._db
        if db is None:
            raise RuntimeError("the session store is not open (use it through a scheduler)")

        def run() -> _T:
            if not transaction:
                return work(db)
            db.execute("BEGIN IMMEDIATE")  # waits (up to the busy timeout) for the lock
            try:
                value = work(db)
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:  # a failed COMMIT too: never leave one open
                    with contextlib.suppress(sqlite3.Error):
                        db.execute("ROLLBACK")
                raise
            return value

        try:
            return await anyio.to_thread.run_sync(run, limiter=self._limiter)
        except sqlite3.Error as exc:
            raise StoreError(f"{type(exc).__name__}: {exc}", store=self.name) from None

    # -- the protocol -----------------------------------------------------------------------
    async def add(self, record: SessionRecord) -> None:
        values = row_values(record)
        await self._run(lambda db: db.execute(_INSERT, values), transaction=False)  # one statement
        self._waker.due(record.due)

    async def load(self, session_id: str) -> SessionRecord | None:
        def work(db: sqlite3.Connection) -> SessionRecord | None:
            row = db.execute(f"{_SELECT} WHERE id = ?", (session_id,)).fetchone()
            return None if row is None else record_from_row(row)

        return await self._run(work, transaction=False)

    async def claim(self, now: float, limit: int, *, exclude: Collection[str] = ()) -> Claimed:
        self._waker.arm()
        lease, retain = self.lease, self._retain
        skip = json.dumps(list(exclude)) if exclude else None

        def work(db: sqlite3.Connection) -> Claimed:
            # The write lock is held: the claims' time is read now, not before the wait.
            at, now = time.monotonic(), time.time()
            due = DuePass(now, limit, lease=lease, retain=retain)
            offset = 0
            while not due.full:
                if skip is None:
                    rows = db.execute(_DUE, (now, due.batch, offset)).fetchall()
                else:
                    rows = db.execute(_DUE_EXCEPT, (now, skip, due.batch, offset)).fetchall()
                due.take(rows)
                if len(rows) < due.batch:
                    break
                offset += due.batch
            db.executemany(_UPDATE, due.updates)
            db.executemany("DELETE FROM sessions WHERE id = ?", due.deletes)
            return due.claimed._replace(at=at)

        claimed = await self._run(work)
        if claimed.changed:
            self._ended_since_checkpoint = True
        await self._maybe_checkpoint(now)
        return claimed

    async def _maybe_checkpoint(self, now: float) -> None:
        if self._ended_since_checkpoint and now - self._last_checkpoint >= CHECKPOINT_INTERVAL:
            self._ended_since_checkpoint = False
            self._last_checkpoint = now
            db = self._db
            if db is not None:
                with contextlib.suppress(sqlite3.Error):  # busy readers: try again later
                    await anyio.to_thread.run_sync(
                        db.execute, "PRAGMA wal_checkpoint(TRUNCATE)", limiter=self._limiter
                    )

    async def renew(self, records: Collection[SessionRecord], now: float) -> Renewed:
        lease = self.lease
        assert lease is not None
        claims = [(r.id, r.claimed_at) for r in records]

        def work(db: sqlite3.Connection) -> Renewed:
            at, now = time.monotonic(), time.time()  # under the lock, as for a claim
            held = frozenset(
                session_id
                for session_id, claimed_at in claims
                if db.execute(_RENEW, (now + lease, session_id, claimed_at)).rowcount
            )
            return Renewed(at, held)

        return await self._run(work)

    async def release(self, record: SessionRecord, now: float) -> SessionRecord | None:
        def work(db: sqlite3.Connection) -> SessionRecord | None:
            row = db.execute(f"{_SELECT} WHERE id = ?", (record.id,)).fetchone()
            current = released(row, record, time.time())
            if current is not None:
                db.execute(_UPDATE, update_values(current))
            return current

        updated = await self._run(work)
        if updated is not None:
            self._waker.wake()
        return updated

    async def record_call(
        self, record: SessionRecord, result: PlaceCallResult | None, now: float
    ) -> SessionRecord | None:
        attempt = None if result is None else encode_attempt(result)

        def work(db: sqlite3.Connection) -> SessionRecord | None:
            # The claim holds: one conditional UPDATE. It does not: keep the answer only.
            due = time.time() + record.redial_interval
            row = db.execute(_ANSWERED, (due, attempt, record.id, record.claimed_at)).fetchone()
            if row is not None:
                return record_from_row(row)
            if attempt is not None:
                db.execute(_APPEND, (attempt, record.id))
            return None

        updated = await self._run(work)
        if updated is not None:
            self._waker.due(updated.due)
        return updated

    async def finish(
        self,
        session_id: str,
        state: SessionState,
        now: float,
        *,
        error: PhoneConfirmError | None = None,
        claimed_at: float | None = None,
    ) -> SessionRecord | None:
        retain = self._retain

        def work(db: sqlite3.Connection) -> SessionRecord | None:
            row = db.execute(f"{_SELECT} WHERE id = ?", (session_id,)).fetchone()
            current = finished(row, state, now, retain, error, claimed_at)
            if current is not None:
                db.execute(_UPDATE, update_values(current))
            return current

        updated = await self._run(work)
        if updated is not None:
            self._ended_since_checkpoint = True
        return updated

    async def next_due(self) -> float | None:
        def work(db: sqlite3.Connection) -> float | None:
            due: float | None = db.execute("SELECT min(due) FROM sessions").fetchone()[0]
            return due

        return await self._run(work, transaction=False)

    async def wait(self, until: float | None) -> None:
        await self._waker.wait(until)

    def wake(self) -> None:
        self._waker.wake()
