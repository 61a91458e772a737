"""PostgresStore: durable sessions in PostgreSQL, shared by processes on several hosts.

asyncpg, so asyncio only. A pass over due rows locks them with ``SELECT ... FOR UPDATE
SKIP LOCKED``: two workers never claim the same call and never wait for each other. A new
session ``NOTIFY``s the other workers (``d`` + its due time) so they wake at once; a
session that ends ``NOTIFY``s its id (``s`` + id) so that ``wait()`` in another process
returns without polling (an answered call does not notify: at a thousand calls a second the
notifications, serialized by PostgreSQL at commit, cost more than they save; a
``wait_called()`` elsewhere sees it within ``poll_interval``). Missed notifications cost at
most ``poll_interval``.

The table (and a ``<table>_schema`` table holding the schema version row) is created on
first use under an advisory lock, so several workers starting at once do not race.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from typing import TYPE_CHECKING, Any, Final, TypeVar
from urllib.parse import urlsplit

import anyio
import anyio.abc

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
from phoneconfirm_async._lifetime import background_tasks, running_on_asyncio
from phoneconfirm_async._models import PlaceCallResult
from phoneconfirm_async._store import (
    ChangeHook,
    Claimed,
    Renewed,
    SessionRecord,
    SessionState,
)

if TYPE_CHECKING:
    import asyncpg

SCHEMA_VERSION: Final = 1
#: Seconds between tries to listen again after the listening connection died, doubling.
_BACKOFF_FIRST: Final = 0.05
_BACKOFF_MAX: Final = 2.0
#: Seconds a closing store waits for its pool to close gracefully.
_CLOSE_PATIENCE: Final = 10.0
logger = logging.getLogger("phoneconfirm_async")
_IDENTIFIER: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,40}")
_T = TypeVar("_T")


def redact_dsn(dsn: str) -> str:
    """``scheme://user@host:port/db``: no password, no query (it may hold one)."""
    parts = urlsplit(dsn)
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}@" if parts.username else ""
    return f"{parts.scheme}://{user}{host}{parts.path}"


class PostgresStore:
    """Sessions in a PostgreSQL table, shared by every worker on every host (asyncio only).

    Args:
        dsn_or_pool: a ``postgresql://`` DSN (the store opens a small pool and one
            listening connection) or an ``asyncpg.Pool`` you own (never closed here).
        table: the sessions table; ``<table>_schema`` holds its schema version.
        lease: seconds a claimed call is held before another worker may count it as made
            with an unknown outcome (the holder renews it while the call is in flight).
        poll_interval: seconds between looks for due work whose notification was missed.

    Raises:
        ConfigurationError: asyncpg is not installed (the ``postgres`` extra), or the table
            name is not a plain identifier.
    """

    durable = True

    def __init__(
        self,
        dsn_or_pool: str | asyncpg.Pool,
        *,
        table: str = "phoneconfirm_sessions",
        lease: float = 30.0,
        poll_interval: float = 1.0,
    ) -> None:
        check_lease(lease, poll_interval)
        if importlib.util.find_spec("asyncpg") is None:
            raise ConfigurationError(
                "PostgresStore needs asyncpg: pip install 'phoneconfirm-async[postgres]'"
            )
        if not _IDENTIFIER.fullmatch(table):
            raise ConfigurationError(
                f"table: {table!r} must be a plain identifier (letters, digits, '_')"
            )
        self.table = table
        self.lease: float | None = lease
        self.poll_interval: float | None = poll_interval
        self._dsn = dsn_or_pool if isinstance(dsn_or_pool, str) else None
        self._given_pool = None if isinstance(dsn_or_pool, str) else dsn_or_pool
        where = "a given asyncpg pool" if self._dsn is None else redact_dsn(self._dsn)
        self.name = f"{where} table {table}"
        self._pool: asyncpg.Pool | None = None
        self._waker = Waker(poll_interval)
        self._retain = 0.0
        self._channel = f"{table}_events"
        quoted = f'"{table}"'
        self._sql = {
            "insert": (
                f"WITH row AS (INSERT INTO {quoted} ({', '.join(COLUMNS)}) VALUES "
                f"({', '.join(f'${i + 1}' for i in range(len(COLUMNS)))}) RETURNING due) "
                f"SELECT pg_notify('{self._channel}', 'd' || due::text) FROM row"
            ),
            "select": f"SELECT {', '.join(COLUMNS)} FROM {quoted}",
            "answered": (
                f"WITH row AS (UPDATE {quoted} SET state = 'awaiting_code', due = $3, "
                "attempts = (attempts::jsonb || $4::jsonb)::text "
                "WHERE id = $1 AND state = 'calling' AND claimed_at = $2 "
                f"RETURNING {', '.join(COLUMNS)}) "
                f"SELECT row.* FROM row"
            ),
            "append": (
                f"UPDATE {quoted} SET attempts = (attempts::jsonb || $2::jsonb)::text "
                "WHERE id = $1"
            ),
            "due": (
                f"SELECT {', '.join(COLUMNS)} FROM {quoted} WHERE due <= $1 "
                "AND NOT (id = ANY($3::text[])) ORDER BY due LIMIT $2 FOR UPDATE SKIP LOCKED"
            ),
            "renew": (
                f"UPDATE {quoted} AS t SET due = $1 FROM unnest($2::text[], $3::float8[]) "
                "AS c(id, claimed_at) WHERE t.id = c.id AND t.state = 'calling' "
                "AND t.claimed_at = c.claimed_at RETURNING t.id"
            ),
            "update": (
                f"UPDATE {quoted} SET phone = $1, country_code = $2, code = $3, state = $4, "
                "due = $5, calls_made = $6, attempts = $7, error = $8, claimed_at = $9 "
                "WHERE id = $10"
            ),
        }
        self._quoted = quoted

    def __repr__(self) -> str:
        return f"<PostgresStore {self.name}>"

    def now(self) -> float:
        return time.time()

    # -- lifetime ---------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def open(self, *, retain: float, on_change: ChangeHook) -> AsyncIterator[None]:
        if not running_on_asyncio():
            raise ConfigurationError(
                f"{self.name}: PostgresStore runs on asyncio only (asyncpg); on trio use "
                "SQLiteStore or MemoryStore"
            )
        if self._pool is not None:
            raise RuntimeError("a PostgresStore is used by one scheduler at a time")
        import asyncpg

        self._retain = retain

        def listen(_conn: object, _pid: int, _channel: str, payload: str) -> None:
            if payload.startswith("d"):
                try:
                    self._waker.due(float(payload[1:]))
                except ValueError:
                    self._waker.wake()
            elif payload.startswith("s"):
                on_change(payload[1:])

        async with contextlib.AsyncExitStack() as stack:
            try:
                if self._given_pool is not None:
                    pool = self._given_pool
                else:
                    # No reset on release: the store changes no session state, and the
                    # default reset is one more round trip per statement. No floor of idle
                    # connections: asyncpg would keep reconnecting (and logging a traceback
                    # each time) while the database is away; the next statement connects.
                    pool = await asyncpg.create_pool(
                        self._dsn, min_size=0, max_size=10, reset=_keep_session
                    )
                    stack.push_async_callback(_close_pool, pool)
                await self._create_schema(pool)
                # Leaving cancels it first (then the pool closes); an exception of the
                # block goes through unwrapped.
                tasks = await stack.enter_async_context(background_tasks())
                await tasks.start(self._keep_listening, pool, listen)
            except db_errors() as exc:
                raise ConfigurationError(
                    f"{self.name}: cannot open the session store: {type(exc).__name__}: "
                    f"{_first_line(exc)}"
                ) from None
            self._pool = pool
            try:
                yield
            finally:
                self._pool = None

    async def _keep_listening(
        self,
        pool: asyncpg.Pool,
        callback: Callable[..., None],
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Hold one connection that LISTENs for the other workers' notifications. When it
        dies (a restart, a terminated backend) say so, poll meanwhile (``poll_interval``),
        and listen again as soon as the database answers."""
        started = polling = False
        delay = _BACKOFF_FIRST
        while True:
            lost = anyio.Event()
            try:
                async with _listening(pool, self._channel, callback, lost.set):
                    if not started:
                        started = True
                        task_status.started()
                    elif polling:
                        polling = False
                        logger.warning("%s: listening for notifications again", self.name)
                        self._waker.wake()  # look now for what was missed meanwhile
                    delay = _BACKOFF_FIRST
                    await lost.wait()
            except db_errors():
                if not started:
                    raise  # the store cannot be opened: the caller says so
            if not polling:
                polling = True
                logger.warning(
                    "%s: the listening connection was lost; polling every %g s until it is back",
                    self.name,
                    self.poll_interval,
                )
            await anyio.sleep(delay)
            delay = min(delay * 2, _BACKOFF_MAX)

    async def _create_schema(self, pool: asyncpg.Pool) -> None:
        schema = f'"{self.table}_schema"'
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", self.table)
            await conn.execute(f"CREATE TABLE IF NOT EXISTS {schema} (version integer NOT NULL)")
            version = await conn.fetchval(f"SELECT max(version) FROM {schema}")
            if version is not None and version > SCHEMA_VERSION:
                raise ConfigurationError(
                    f"{self.name}: schema version {version} was written by a newer release "
                    f"(this one knows {SCHEMA_VERSION})"
                )
            if version is None:
                await conn.execute(
                    f"""CREATE TABLE IF NOT EXISTS {self._quoted} (
                        id text PRIMARY KEY,
                        phone text,
                        country_code text,
                        code text,
                        redial_count integer NOT NULL,
                        redial_interval double precision NOT NULL,
                        state text NOT NULL,
                        due double precision NOT NULL,
                        calls_made integer NOT NULL,
                        attempts text NOT NULL,
                        error text,
                        claimed_at double precision
                    )"""
                )
                await conn.execute(
                    f'CREATE INDEX IF NOT EXISTS "{self.table}_due" ON {self._quoted} (due)'
                )
                await conn.execute(f"INSERT INTO {schema} (version) VALUES ($1)", SCHEMA_VERSION)

    async def _run(self, work: Callable[[Any], Awaitable[_T]], *, transaction: bool = True) -> _T:
        """``work(connection)`` on a pooled connection, in a transaction unless it is one
        statement (atomic on its own).

        Whatever asyncpg raises (a server error, a connection that died with its backend or
        its server, a client in a state it cannot leave) comes out as ``StoreError``. A
        connection interrupted mid-operation, by an error or a cancellation, is closed
        rather than given back to the pool: asyncpg would hand it out again in the middle
        of that operation ("another operation is in progress").
        """
        import asyncpg

        pool = self._pool
        if pool is None:
            raise RuntimeError("the session store is not open (use it through a scheduler)")
        try:
            conn = await pool.acquire()
            try:
                if not transaction:
                    return await work(conn)
                async with conn.transaction():
                    return await work(conn)
            except BaseException as exc:
                if not isinstance(exc, asyncpg.PostgresError) or isinstance(
                    exc, asyncpg.PostgresConnectionError
                ):
                    with contextlib.suppress(asyncpg.InterfaceError):  # the pool took it back
                        conn.terminate()
                raise
            finally:
                await pool.release(conn)
        except db_errors() as exc:
            raise StoreError(
                f"{type(exc).__name__}: {_first_line(exc)}", store=self.name
            ) from None

    async def _notify_state(self, conn: Any, session_id: str) -> None:
        await conn.execute("SELECT pg_notify($1, $2)", self._channel, "s" + session_id)

    # -- the protocol -----------------------------------------------------------------------
    async def add(self, record: SessionRecord) -> None:
        values = row_values(record)

        async def work(conn: Any) -> None:
            await conn.execute(self._sql["insert"], *values)

        await self._run(work, transaction=False)  # one statement: atomic on its own
        self._waker.due(record.due)

    async def load(self, session_id: str) -> SessionRecord | None:
        async def work(conn: Any) -> SessionRecord | None:
            row = await conn.fetchrow(f"{self._sql['select']} WHERE id = $1", session_id)
            return None if row is None else record_from_row(row)

        return await self._run(work, transaction=False)

    async def claim(self, now: float, limit: int, *, exclude: Collection[str] = ()) -> Claimed:
        self._waker.arm()
        lease, retain = self.lease, self._retain
        skip = list(exclude)

        async def work(conn: Any) -> Claimed:
            rows = await conn.fetch(self._sql["due"], time.time(), DuePass.batch_for(limit), skip)
            # The rows are locked: the claims' time is read now, not before the wait.
            at, now = time.monotonic(), time.time()
            due = DuePass(now, limit, lease=lease, retain=retain)
            due.take(rows)
            claimed = due.claimed
            if due.updates:
                await conn.executemany(self._sql["update"], due.updates)
            if due.deletes:
                await conn.executemany(f"DELETE FROM {self._quoted} WHERE id = $1", due.deletes)
            if claimed.changed:
                await conn.execute(
                    "SELECT pg_notify($1, 's' || id) FROM unnest($2::text[]) AS id",
                    self._channel,
                    [record.id for record in claimed.changed],
                )
            return claimed._replace(at=at)

        return await self._run(work)

    async def renew(self, records: Collection[SessionRecord], now: float) -> Renewed:
        lease = self.lease
        assert lease is not None
        ids = [record.id for record in records]
        claims = [record.claimed_at for record in records]

        async def work(conn: Any) -> Renewed:
            # Read before the statement: the lease it writes ends no later than this says.
            at, now = time.monotonic(), time.time()
            rows = await conn.fetch(self._sql["renew"], now + lease, ids, claims)
            return Renewed(at, frozenset(row[0] for row in rows))

        return await self._run(work, transaction=False)  # one statement: atomic on its own

    async def release(self, record: SessionRecord, now: float) -> SessionRecord | None:
        async def work(conn: Any) -> SessionRecord | None:
            row = await conn.fetchrow(f"{self._sql['select']} WHERE id = $1 FOR UPDATE", record.id)
            current = released(row, record, time.time())
            if current is not None:
                await conn.execute(self._sql["update"], *update_values(current))
            return current

        updated = await self._run(work)
        if updated is not None:
            self._waker.wake()
        return updated

    async def record_call(
        self, record: SessionRecord, result: PlaceCallResult | None, now: float
    ) -> SessionRecord | None:
        attempt = "[]" if result is None else f"[{encode_attempt(result)}]"

        async def work(conn: Any) -> SessionRecord | None:
            # The claim holds: one conditional UPDATE (and its NOTIFY). It does not: keep
            # the answer only.
            due = time.time() + record.redial_interval
            row = await conn.fetchrow(
                self._sql["answered"], record.id, record.claimed_at, due, attempt
            )
            if row is not None:
                return record_from_row(row)
            if result is not None:
                await conn.execute(self._sql["append"], record.id, attempt)
            return None

        updated = await self._run(work, transaction=False)
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

        async def work(conn: Any) -> SessionRecord | None:
            row = await conn.fetchrow(
                f"{self._sql['select']} WHERE id = $1 FOR UPDATE", session_id
            )
            current: SessionRecord | None = finished(row, state, now, retain, error, claimed_at)
            if current is not None:
                await conn.execute(self._sql["update"], *update_values(current))
                await self._notify_state(conn, session_id)
            return current

        return await self._run(work)

    async def next_due(self) -> float | None:
        async def work(conn: Any) -> float | None:
            due: float | None = await conn.fetchval(f"SELECT min(due) FROM {self._quoted}")
            return due

        return await self._run(work, transaction=False)

    async def wait(self, until: float | None) -> None:
        await self._waker.wait(until)

    def wake(self) -> None:
        self._waker.wake()


async def _keep_session(connection: object) -> None:
    """The pool's reset: nothing to undo (the listening connection UNLISTENs itself)."""


def db_errors() -> tuple[type[BaseException], ...]:
    """Everything asyncpg raises for a database that failed or went away."""
    import asyncpg

    return (
        OSError,
        TimeoutError,
        asyncpg.PostgresError,
        asyncpg.InterfaceError,
        asyncpg.InternalClientError,
    )


@contextlib.asynccontextmanager
async def _listening(
    pool: asyncpg.Pool, channel: str, callback: Callable[..., None], lost: Callable[[], None]
) -> AsyncIterator[None]:
    """A pooled connection listening on ``channel``; ``lost()`` is called when it dies.
    Leaving gives it back, whatever state the connection is in."""
    conn = await pool.acquire()

    def terminated(_conn: object) -> None:
        lost()

    try:
        conn.add_termination_listener(terminated)
        await conn.add_listener(channel, callback)
        try:
            yield
        finally:
            with anyio.CancelScope(shield=True), contextlib.suppress(*db_errors()):
                if not conn.is_closed():
                    await conn.remove_listener(channel, callback)
    finally:
        conn.remove_termination_listener(terminated)
        with anyio.CancelScope(shield=True), contextlib.suppress(*db_errors()):
            await pool.release(conn)


async def _close_pool(pool: asyncpg.Pool) -> None:
    """Close the store's own pool; after an outage, connections that will not close
    gracefully are terminated."""
    with anyio.move_on_after(_CLOSE_PATIENCE):
        with contextlib.suppress(*db_errors()):
            await pool.close()
        return
    pool.terminate()


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else ""
