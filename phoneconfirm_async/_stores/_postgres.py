"""PostgresStore: durable sessions in PostgreSQL, shared by processes on several hosts.

asyncpg, so asyncio only. A pass over due rows locks them with ``SELECT ... FOR UPDATE
SKIP LOCKED``: two workers never claim the same call and never wait for each other. A new
session ``NOTIFY``s the other workers (``d`` + its due time) so they wake at once; a
session that ends ``NOTIFY``s its id (``s`` + id) so that ``wait()`` in another process
returns without polling (an answered call does not notify: at a high call rate the
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
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, Final, TypeVar
from urllib.parse import urlsplit

import anyio
import anyio.abc

from phoneconfirm_async._errors import ConfigurationError, StoreError
from phoneconfirm_async._lifetime import background_tasks, running_on_asyncio
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
from phoneconfirm_async._stores._statements import Op, Statement, Statements, run_async

if TYPE_CHECKING:
    import asyncpg

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


class PostgresStore(SQLStore):
    """Sessions in a PostgreSQL table, shared by every worker on every host (asyncio only).

    Args:
        dsn_or_pool: a ``postgresql://`` DSN (the store opens a small pool and one
            listening connection) or an ``asyncpg.Pool`` you own (never closed here).
        table: the sessions table; ``<table>_schema`` holds its schema version.
        lease: seconds a claimed call is held before another worker may count it as made
            with an unknown outcome (the holder renews it while the call is in flight).
        poll_interval: seconds between looks for due work whose notification was missed.

    Raises:
        ConfigurationError: asyncpg is not installed (the ``postgres`` extra), the table
            name is not a plain identifier, or ``lease``/``poll_interval`` is not a
            positive number.
    """

    pages = False

    def __init__(
        self,
        dsn_or_pool: str | asyncpg.Pool,
        *,
        table: str = "phoneconfirm_sessions",
        lease: float = 30.0,
        poll_interval: float = 1.0,
    ) -> None:
        super().__init__(lease=lease, poll_interval=poll_interval)
        if importlib.util.find_spec("asyncpg") is None:
            raise ConfigurationError(
                "PostgresStore needs asyncpg: pip install 'phoneconfirm-async[postgres]'"
            )
        if not isinstance(table, str) or not _IDENTIFIER.fullmatch(table):
            raise ConfigurationError(
                f"table: {table!r} must be a plain identifier (letters, digits, '_')"
            )
        self.table = table
        self._dsn = dsn_or_pool if isinstance(dsn_or_pool, str) else None
        self._given_pool = None if isinstance(dsn_or_pool, str) else dsn_or_pool
        where = "a given asyncpg pool" if self._dsn is None else redact_dsn(self._dsn)
        self.name = f"{where} table {table}"
        self._pool: asyncpg.Pool | None = None
        self._channel = f"{table}_events"
        quoted = self._quoted = f'"{table}"'
        columns = ", ".join(NAMES)
        self.statements = Statements(quoted, lambda n: f"${n}", lock=" FOR UPDATE")
        # A new session tells the other workers when it falls due.
        self.statements.insert = (
            f"WITH row AS ({self.statements.insert} RETURNING due) "
            f"SELECT pg_notify('{self._channel}', 'd' || due::text) FROM row"
        )
        self.due_sql = (
            f"SELECT {columns} FROM {quoted} WHERE due <= $1 AND NOT (id = ANY($2::text[])) "
            "ORDER BY due LIMIT $3 FOR UPDATE SKIP LOCKED"
        )
        self.answered_sql = (
            f"UPDATE {quoted} SET state = 'awaiting_code', due = $3, code_expires = $5, "
            "attempts = (attempts::jsonb || $4::jsonb)::text "
            f"WHERE id = $1 AND state = 'calling' AND claimed_at = $2 RETURNING {columns}"
        )
        self.append_sql = (
            f"UPDATE {quoted} SET attempts = (attempts::jsonb || $2::jsonb)::text WHERE id = $1"
        )
        self._renew_sql = (
            f"UPDATE {quoted} AS t SET due = $1 FROM unnest($2::text[], $3::float8[]) "
            "AS c(id, claimed_at) WHERE t.id = c.id AND t.state = 'calling' "
            "AND t.claimed_at = c.claimed_at RETURNING t.id"
        )

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

        self.retain = retain

        def listen(_conn: object, _pid: int, _channel: str, payload: str) -> None:
            if payload.startswith("d"):
                try:
                    self.waker.due(float(payload[1:]))
                except ValueError:
                    self.waker.wake()
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
                        self.waker.wake()  # look now for what was missed meanwhile
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
        """Create the table, or migrate an older one, under an advisory lock (other workers
        may be starting too); ``<table>_schema`` gets a row per version reached."""
        schema = f'"{self.table}_schema"'
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", self.table)
            await conn.execute(f"CREATE TABLE IF NOT EXISTS {schema} (version integer NOT NULL)")
            version = await conn.fetchval(f"SELECT max(version) FROM {schema}")
            if version != SCHEMA_VERSION:
                if version is None:
                    steps = create_table("postgresql", self._quoted)
                else:
                    steps = migrate("postgresql", self._quoted, version, store=self.name)
                for statement in steps:
                    await conn.execute(statement)
                await conn.execute(f"INSERT INTO {schema} (version) VALUES ($1)", SCHEMA_VERSION)

            async def execute(statement: Statement) -> Any:
                return await getattr(conn, statement.kind)(statement.sql, *statement.args)

            self.secret = await run_async(self.secret_op(), execute)

    async def _run(self, op: Op[_T], *, transaction: bool = True) -> _T:
        """``op`` on a pooled connection, in a transaction unless told not to.

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

            async def execute(statement: Statement) -> Any:
                kind, sql, args = statement
                if kind == "executemany":
                    return await conn.executemany(sql, args)
                return await getattr(conn, kind)(sql, *args)

            try:
                if not transaction:
                    return await run_async(op, execute)
                async with conn.transaction():
                    return await run_async(op, execute)
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

    # -- the dialect's hooks ----------------------------------------------------------------
    def _due_args(self, now: float, skip: list[str], rows: int, offset: int) -> tuple[Any, ...]:
        return (now, skip, rows)

    def _attempt_arg(self, result: PlaceCallResult | None) -> object:
        return "[]" if result is None else f"[{encode_attempt(result)}]"

    def _lock(self, name: str) -> Statement | None:
        return Statement(
            "execute", "SELECT pg_advisory_xact_lock(hashtext($1))", (f"{self.table}:{name}",)
        )

    def _notify(self, session_ids: list[str]) -> Statement | None:
        """Sessions that end or settle tell the other workers (``s`` + id), so that a
        ``wait()`` elsewhere returns without polling."""
        return Statement(
            "execute",
            "SELECT pg_notify($1, 's' || id) FROM unnest($2::text[]) AS id",
            (self._channel, session_ids),
        )

    def _renew_op(self, lease_end: float, claims: list[tuple[str, float | None]]) -> Op[set[str]]:
        ids = [session_id for session_id, _ in claims]
        claimed_at = [claimed for _, claimed in claims]
        rows = yield Statement("fetch", self._renew_sql, (lease_end, ids, claimed_at))
        return {row[0] for row in rows}


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
