"""Tables written by an older release open: 0.2.0's as they are, and a schema-version step
adds its columns to an older table when a store opens it."""

from __future__ import annotations

import json
import sqlite3
import time

import asyncpg
import pytest

import phoneconfirm_async._stores._postgres as postgres_module
import phoneconfirm_async._stores._schema as schema
import phoneconfirm_async._stores._sqlite as sqlite_module
from phoneconfirm_async import ConfigurationError, SessionRecord, SessionState, SessionStore
from phoneconfirm_async.stores import Quota
from tests.stores.conftest import StoreFactory

pytestmark = pytest.mark.anyio

#: The sessions table exactly as 0.2.0 created it (columns, types, index, version 1).
TABLE_0_2_0 = """
    id {text} PRIMARY KEY,
    phone {text},
    country_code {text},
    code {text},
    redial_count {integer} NOT NULL,
    redial_interval {real} NOT NULL,
    state {text} NOT NULL,
    due {real} NOT NULL,
    calls_made {integer} NOT NULL,
    attempts {text} NOT NULL,
    error {text},
    claimed_at {real}
"""
SQLITE_TYPES = {"text": "TEXT", "integer": "INTEGER", "real": "REAL"}
POSTGRES_TYPES = {"text": "text", "integer": "integer", "real": "double precision"}
#: Two sessions as 0.2.0 wrote them: one waiting for its code (its call answered), one due.
ROWS = [
    (
        "awaiting",
        "5555550123",
        "1",
        "4821",
        2,
        60.0,
        "awaiting_code",
        time.time() + 3600,
        1,
        json.dumps([["valid", 0, None, "tx-1", 1.5]]),
        None,
        time.time() - 5,
    ),
    ("due", "5555550124", "1", "4822", 0, 60.0, "scheduled", 0.0, 0, "[]", None, None),
]


async def write_0_2_0(database: StoreFactory) -> None:
    """A database as a 0.2.0 worker left it."""
    if database.kind == "sqlite":
        db = sqlite3.connect(database.path, isolation_level=None)
        db.execute(f"CREATE TABLE sessions ({TABLE_0_2_0.format(**SQLITE_TYPES)})")
        db.execute("CREATE INDEX sessions_due ON sessions (due)")
        db.executemany(f"INSERT INTO sessions VALUES ({', '.join('?' * 12)})", ROWS)
        db.execute("PRAGMA user_version = 1")
        db.close()
        return
    conn = await asyncpg.connect(database.dsn)
    table = f'"{database.table}"'
    await conn.execute(f'CREATE TABLE "{database.table}_schema" (version integer NOT NULL)')
    await conn.execute(f"CREATE TABLE {table} ({TABLE_0_2_0.format(**POSTGRES_TYPES)})")
    await conn.execute(f'CREATE INDEX "{database.table}_due" ON {table} (due)')
    values = ", ".join(f"${i + 1}" for i in range(12))
    await conn.executemany(f"INSERT INTO {table} VALUES ({values})", ROWS)
    await conn.execute(f'INSERT INTO "{database.table}_schema" VALUES (1)')
    await conn.close()


async def columns_and_version(database: StoreFactory) -> tuple[list[str], int]:
    if database.kind == "sqlite":
        db = sqlite3.connect(database.path)
        names = [row[1] for row in db.execute("PRAGMA table_info(sessions)")]
        version = db.execute("PRAGMA user_version").fetchone()[0]
        db.close()
        return names, version
    conn = await asyncpg.connect(database.dsn)
    rows = await conn.fetch(
        "SELECT column_name FROM information_schema.columns WHERE table_name = $1 "
        "ORDER BY ordinal_position",
        database.table,
    )
    version = await conn.fetchval(f'SELECT max(version) FROM "{database.table}_schema"')
    await conn.close()
    return [row[0] for row in rows], version


async def sessions_read_and_run(store: SessionStore, *, claim: bool = True) -> None:
    async with store.open(retain=60, on_change=lambda _: None):
        awaiting = await store.load("awaiting")
        assert awaiting is not None
        assert awaiting.state is SessionState.AWAITING_CODE
        assert [a.transaction_number for a in awaiting.attempts] == ["tx-1"]
        assert awaiting.request is not None
        assert awaiting.request.phone == "5555550123"
        if claim:
            claimed = await store.claim(store.now(), 10)
            assert [record.id for record in claimed.calls] == ["due"]


async def test_a_0_2_0_database_opens_as_it_is(make_store: StoreFactory) -> None:
    """Version 1 to 2: the policy's columns (old rows: no attempt taken, no limit, no
    lifetime) and the throttle tables, with a secret; the policy then works on it."""
    await write_0_2_0(make_store)
    await sessions_read_and_run(make_store())
    names, version = await columns_and_version(make_store)
    assert names == list(schema.NAMES)
    assert version == schema.SCHEMA_VERSION == 2
    store = make_store()
    async with store.open(retain=60, on_change=lambda _: None):
        awaiting = await store.load("awaiting")
        assert awaiting is not None
        assert (awaiting.verify_attempts, awaiting.verify_limit) == (0, None)
        assert (awaiting.code_ttl, awaiting.code_expires) == (None, None)
        taken = await store.take_attempt("awaiting", store.now())
        assert taken is not None
        assert taken.verify_attempts == 1
        quota = Quota("phone", "1:5555550123", 1, 60.0)
        record = SessionRecord("new", None, 0, 60.0, SessionState.SCHEDULED, store.now() + 60)
        assert await store.add(record, quotas=[quota]) is None
        assert await store.add(record, quotas=[quota]) is not None


async def test_a_schema_step_adds_its_column_to_an_older_table(
    make_store: StoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The next version adds a column (as a new rule would): one ``Column`` entry and the
    version raised; a version-1 table gains it, keeps its rows, and records the step."""
    await write_0_2_0(make_store)
    await sessions_read_and_run(make_store())  # to version 2, as this release writes it
    added = schema.Column("attempts_left", "integer", null=False, since=3, default="5")
    monkeypatch.setattr(schema, "COLUMNS", (*schema.COLUMNS, added))
    for module in (schema, sqlite_module, postgres_module):
        monkeypatch.setattr(module, "SCHEMA_VERSION", 3)
    await sessions_read_and_run(make_store(), claim=False)
    names, version = await columns_and_version(make_store)
    assert names == [*schema.NAMES, "attempts_left"]
    assert version == 3
    await sessions_read_and_run(make_store(), claim=False)  # again: nothing left to do


async def test_a_newer_table_is_refused_with_what_to_do(make_store: StoreFactory) -> None:
    await write_0_2_0(make_store)
    store = make_store()
    with pytest.MonkeyPatch.context() as patch:
        for module in (schema, sqlite_module, postgres_module):
            patch.setattr(module, "SCHEMA_VERSION", 0)
        with pytest.raises(ConfigurationError, match=r"newer release.*upgrade"):
            async with store.open(retain=60, on_change=lambda _: None):
                pass
