"""SQLiteStore: durable sessions in one file, shared by the processes of one host.

WAL mode lets readers and one writer work at once; every change is one ``BEGIN IMMEDIATE``
transaction, so two processes never claim the same call. ``synchronous=NORMAL``: a killed
process loses nothing it committed (an operating-system crash may lose the last
transactions). ``secure_delete`` zeroes erased phone numbers and codes in the file, and the
WAL is checkpointed and truncated after sessions end, so they do not linger there either.

sqlite3 blocks: every operation runs in a worker thread, one at a time per store.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Final, TypeVar

import anyio
import anyio.to_thread

from phoneconfirm_async._errors import ConfigurationError, StoreError
from phoneconfirm_async._models import PlaceCallResult
from phoneconfirm_async._stores._protocol import ChangeHook
from phoneconfirm_async._stores._schema import (
    NAMES,
    SCHEMA_VERSION,
    create_table,
    encode_attempt,
    migrate,
)
from phoneconfirm_async._stores._sql import SQLStore
from phoneconfirm_async._stores._statements import Op, Statement, Statements, run_sync

#: Seconds between WAL truncations while sessions keep ending (and once at close).
CHECKPOINT_INTERVAL: Final = 5.0
#: Seconds a connection waits for another's lock before "database is locked".
BUSY_TIMEOUT: Final = 30.0
TABLE: Final = "sessions"
_T = TypeVar("_T")


class SQLiteStore(SQLStore):
    """Sessions in a SQLite file: survive restarts, shared by the processes of one host.

    Args:
        path: the database file (created with its table on first use).
        lease: seconds a claimed call is held before another process may count it as made
            with an unknown outcome (the holder renews it while the call is in flight).
        poll_interval: seconds between looks for sessions other processes added or made
            due (this process's own work wakes the scheduler at once).

    Raises:
        ConfigurationError: ``lease`` or ``poll_interval`` is not a positive number.
    """

    statements = Statements(TABLE, lambda n: f"?{n}")
    due_sql = (
        f"SELECT {', '.join(NAMES)} FROM {TABLE} WHERE due <= ?1 "
        "AND id NOT IN (SELECT value FROM json_each(?2)) ORDER BY due LIMIT ?3 OFFSET ?4"
    )
    answered_sql = (
        f"UPDATE {TABLE} SET state = 'awaiting_code', due = ?3, code_expires = ?5, "
        "attempts = CASE WHEN ?4 IS NULL THEN attempts "
        "ELSE json_insert(attempts, '$[#]', json(?4)) END "
        f"WHERE id = ?1 AND state = 'calling' AND claimed_at = ?2 RETURNING {', '.join(NAMES)}"
    )
    append_sql = (
        f"UPDATE {TABLE} SET attempts = json_insert(attempts, '$[#]', json(?2)) WHERE id = ?1"
    )
    renew_sql = (
        f"UPDATE {TABLE} SET due = ?1 WHERE id = ?2 AND state = 'calling' AND claimed_at = ?3 "
        "RETURNING id"
    )

    def __init__(
        self, path: str | os.PathLike[str], *, lease: float = 30.0, poll_interval: float = 0.25
    ) -> None:
        super().__init__(lease=lease, poll_interval=poll_interval)
        self.path = os.fspath(path)
        self.name = f"sqlite:{self.path}"
        self._db: sqlite3.Connection | None = None
        self._limiter = anyio.CapacityLimiter(1)
        self._ended_since_checkpoint = False
        self._last_checkpoint = 0.0

    def __repr__(self) -> str:
        return f"<SQLiteStore {self.path!r}>"

    # -- lifetime ---------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def open(self, *, retain: float, on_change: ChangeHook) -> AsyncIterator[None]:
        if self._db is not None:
            raise RuntimeError("an SQLiteStore is used by one scheduler at a time")
        self.retain = retain
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
            self.path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
        )
        try:
            db.row_factory = sqlite3.Row
            _write_ahead_log(db)
            db.execute("PRAGMA synchronous = NORMAL")
            db.execute("PRAGMA secure_delete = ON")
            if db.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
                self._create_schema(db)
            self.secret = run_sync(self.secret_op(), _executor(db))
        except BaseException:
            db.close()
            raise
        return db

    def _create_schema(self, db: sqlite3.Connection) -> None:
        """Create the table, or migrate an older one, under the write lock (another
        process may be doing the same)."""
        db.execute("BEGIN IMMEDIATE")
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version == 0:
                steps = create_table("sqlite", TABLE)
            else:
                steps = migrate("sqlite", TABLE, version, store=self.name)
            for statement in steps:
                db.execute(statement)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _disconnect(self, db: sqlite3.Connection | None) -> None:
        if db is None:
            return
        with contextlib.suppress(sqlite3.Error):
            _checkpoint(db)
        db.close()

    async def _run(self, op: Op[_T], *, transaction: bool = True) -> _T:
        """``op`` in a worker thread: in one ``BEGIN IMMEDIATE`` transaction (the write
        lock first: no other process can change what it read), else each statement a
        transaction of its own."""
        db = self._db
        if db is None:
            raise RuntimeError("the session store is not open (use it through a scheduler)")

        execute = _executor(db)

        def run() -> _T:
            if not transaction:
                return run_sync(op, execute)
            db.execute("BEGIN IMMEDIATE")  # waits (up to the busy timeout) for the lock
            try:
                value = run_sync(op, execute)
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

    def _due_args(self, now: float, skip: list[str], rows: int, offset: int) -> tuple[Any, ...]:
        return (now, json.dumps(skip), rows, offset)

    def _attempt_arg(self, result: PlaceCallResult | None) -> object:
        return None if result is None else encode_attempt(result)

    async def _ended(self, ended: bool, now: float) -> None:
        self._ended_since_checkpoint |= ended
        await self._maybe_checkpoint(now)

    async def _maybe_checkpoint(self, now: float) -> None:
        if self._ended_since_checkpoint and now - self._last_checkpoint >= CHECKPOINT_INTERVAL:
            self._ended_since_checkpoint = False
            self._last_checkpoint = now
            db = self._db
            if db is not None:
                with contextlib.suppress(sqlite3.Error):  # busy readers: try again later
                    await anyio.to_thread.run_sync(_checkpoint, db, limiter=self._limiter)


def _executor(db: sqlite3.Connection) -> Callable[[Statement], Any]:
    """Run one ``Statement`` on ``db`` and read its result to the end (a statement left
    part-read stays "in progress" until its cursor is collected, and a COMMIT meanwhile
    fails)."""

    def execute(statement: Statement) -> Any:
        kind, sql, args = statement
        if kind == "executemany":
            db.executemany(sql, args)
            return None
        cursor = db.execute(sql, args)
        if kind == "execute":
            return None
        rows = cursor.fetchall()
        if kind == "fetch":
            return rows
        if not rows:
            return None
        return rows[0] if kind == "fetchrow" else rows[0][0]

    return execute


def _checkpoint(db: sqlite3.Connection) -> None:
    """Truncate the WAL (erased phone numbers and codes leave it too). Its result row is
    read here, in the thread: a cursor handed back unread keeps the statement in progress
    until it is collected, and the next transaction's COMMIT fails meanwhile (seen on
    trio, whose thread results live a little longer)."""
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()


def _write_ahead_log(db: sqlite3.Connection) -> None:
    """Switch the file to WAL (once per file; then a no-op).

    Processes that open a new file at once (the workers of one host starting together)
    may each hold the shared lock and want the exclusive one to switch: SQLite answers
    one of them "database is locked" at once, without waiting in its busy handler (that
    would deadlock). That one tries again, within the busy timeout.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT
    pause = 0.005
    while True:
        try:
            db.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
        time.sleep(pause)  # in the store's worker thread, never on the event loop
        pause = min(pause * 2, 0.1)
