"""Durable stores, in process: every rule of "What every durable store promises"
(docs/how-to/stores.md), with two store objects on one database standing for two
processes, against a served emulator."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import anyio
import anyio.to_thread
import asyncpg
import pytest

from phoneconfirm_async import (
    AuthenticationError,
    ConfigurationError,
    PhoneConfirmClient,
    SessionRecord,
    SessionState,
    StoreError,
)
from phoneconfirm_async.emulator import Emulator
from tests.conftest import API_KEY, DOMAIN
from tests.stores.conftest import StoreFactory

pytestmark = pytest.mark.anyio

PHONE = "5555550199"
CODE = "918273"
KEY = "ip:198.51.100.23"
#: Short enough that the tests run in a second or two, long enough to order events.
FAST = {"poll_interval": 0.05}


def client_for(emulator: Emulator, api_key: str = API_KEY) -> PhoneConfirmClient:
    return PhoneConfirmClient(api_key, DOMAIN, base_url=emulator.base_url)


async def wait_for_calls(emulator: Emulator, count: int) -> None:
    assert await anyio.to_thread.run_sync(emulator.wait_for_calls, count, 20.0)


async def test_a_session_outlives_its_scheduler_and_is_verified_elsewhere(
    make_store: StoreFactory, emulator: Emulator
) -> None:
    """Scheduled by a process that never dials and then exits; called and verified by
    others; the first process's scheduler leaving the block cancelled nothing."""
    async with client_for(emulator) as client:
        async with client.scheduler(store=make_store(**FAST), drive=False) as web:
            started = await web.schedule(PHONE, country_code="1", code=CODE, redial_count=1)
            session_id = started.id
        assert started.state is SessionState.SCHEDULED
        assert emulator.calls == []

        async with client.scheduler(store=make_store(**FAST)) as worker:
            session = await worker.get(session_id)
            assert session is not None
            assert await session.wait_called()
            assert session.calls_made == 1
            assert session.attempts[0].placed

            async with client.scheduler(store=make_store(**FAST), drive=False) as other:
                elsewhere = await other.get(session_id)
                assert elsewhere is not None
                assert not (await elsewhere.verify("000000")).verified
                states = [elsewhere.state]
                assert (await elsewhere.verify(CODE)).verified
                states.append(elsewhere.state)
                assert states == [SessionState.AWAITING_CODE, SessionState.VERIFIED]
            assert await session.wait() is SessionState.VERIFIED  # seen by the driving one
    assert [call.phone for call in emulator.calls] == [PHONE]


async def test_each_due_call_is_claimed_by_exactly_one_process(
    make_store: StoreFactory, emulator: Emulator
) -> None:
    """Two driving schedulers on one store, 60 sessions due at once: 60 calls, none twice."""
    phones = [f"55555501{i:02d}" for i in range(60)]
    async with client_for(emulator) as client:
        async with client.scheduler(store=make_store(**FAST), drive=False) as web:
            ids = [
                (await web.schedule(p, country_code="1", code=CODE, redial_interval=0.2)).id
                for p in phones
            ]

        async def drive(done: anyio.Event) -> None:
            async with client.scheduler(store=make_store(**FAST)):
                await done.wait()

        done = anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(drive, done)
            tg.start_soon(drive, done)
            async with client.scheduler(store=make_store(**FAST), drive=False) as watcher:
                for session_id in ids:
                    session = await watcher.get(session_id)
                    assert session is not None
                    assert await session.wait() is SessionState.EXHAUSTED
                    assert session.calls_made == 1
            done.set()
    assert sorted(call.phone for call in emulator.calls) == phones


async def test_a_claim_left_by_a_dead_process_is_never_dialled_again(
    make_store: StoreFactory, emulator: Emulator
) -> None:
    """Write before you dial: a process claims a call and dies before sending it. Once the
    lease ends the call counts as made (outcome unknown) and the next one follows
    ``redial_interval`` after the lease's end (the dead process could have dialled until
    then): one call in all, not two."""
    async with client_for(emulator) as client:
        async with client.scheduler(store=make_store(**FAST), drive=False) as web:
            session_id = (
                await web.schedule(
                    PHONE, country_code="1", code=CODE, redial_count=1, redial_interval=0.5
                )
            ).id
        dead = make_store(lease=0.3, **FAST)
        async with dead.open(retain=60, on_change=lambda _: None):
            claimed = await dead.claim(dead.now(), 10)
        [record] = claimed.calls
        assert (record.state, record.calls_made) == (SessionState.CALLING, 1)
        assert record.claimed_at is not None

        async with client.scheduler(store=make_store(lease=0.3, **FAST)) as survivor:
            session = await survivor.get(session_id)
            assert session is not None
            assert await session.wait() is SessionState.EXHAUSTED
            assert session.calls_made == 2  # the dead claim's call and the redial
            assert len(session.attempts) == 1  # only the redial was answered
    [call] = emulator.calls
    assert call.at >= record.due + 0.5  # the claim's lease ended at record.due


async def test_cancel_in_one_process_stops_the_session_everywhere(
    make_store: StoreFactory, emulator: Emulator
) -> None:
    client = client_for(emulator)
    async with client, client.scheduler(store=make_store(**FAST), drive=False) as web:
        session = await web.schedule(PHONE, country_code="1", code=CODE, call_place_time=3600)
        async with client.scheduler(store=make_store(**FAST)) as worker:
            found = await worker.get(session.id)
            assert found is not None
            assert found.state is SessionState.SCHEDULED
            await session.cancel()
            assert await found.wait() is SessionState.CANCELLED
            assert found.request is None  # phone and code erased
        assert await web.get("no-such-session") is None
    assert emulator.calls == []


async def test_a_permanent_error_is_kept_with_its_class_for_every_process(
    make_store: StoreFactory, emulator: Emulator
) -> None:
    async with client_for(emulator, api_key="not-the-key") as client:
        async with client.scheduler(store=make_store(**FAST)) as worker:
            session = await worker.schedule(PHONE, country_code="1", code=CODE)
            assert await session.wait() is SessionState.FAILED
        async with client.scheduler(store=make_store(**FAST), drive=False) as other:
            found = await other.get(session.id)
    assert found is not None
    assert found.state is SessionState.FAILED
    assert isinstance(found.error, AuthenticationError)
    assert (found.error.code, found.error.status_code) == (2, 200)
    assert str(found.error) == str(session.error)
    assert "not-the-key" not in repr(found.error)


async def test_phone_and_code_leave_the_store_at_a_final_state(
    make_store: StoreFactory, emulator: Emulator
) -> None:
    """Kept while calls can still be placed, erased at the end, from the files too; the
    throttle counters, which outlive the session, never hold the phone or the key."""
    store = make_store(**FAST)
    async with client_for(emulator) as client:
        async with client.scheduler(store=store, drive=False) as web:
            session = await web.schedule(
                PHONE, country_code="1", code=CODE, call_place_time=60, throttle_key=KEY
            )
            assert await _stored_secrets(make_store) == {PHONE, CODE}
            await session.cancel()
        async with client.scheduler(store=make_store(**FAST), drive=False) as other:
            found = await other.get(session.id)
            assert found is not None
            assert found.request is None
    assert await _stored_secrets(make_store) == set()


def _read_files(database: Path) -> bytes:
    """The SQLite file and its companions (WAL, shared memory), byte for byte."""
    return b"".join(path.read_bytes() for path in database.parent.glob(database.name + "*"))


async def _stored_secrets(database: StoreFactory) -> set[str]:
    """PHONE and CODE wherever they are still kept: any byte of the SQLite files (main
    file, WAL, shared memory), or any column of the PostgreSQL table."""
    if database.kind == "sqlite":
        blob = await anyio.to_thread.run_sync(_read_files, database.path)
        return {secret for secret in (PHONE, CODE, KEY) if secret.encode() in blob}
    conn = await asyncpg.connect(database.dsn)
    try:
        rows = await conn.fetch(f'SELECT * FROM "{database.table}"')
        counters = await conn.fetch(f'SELECT * FROM "{database.table}_throttle"')
        assert len(counters) == 2  # the phone's and the key's, as keyed hashes
    finally:
        await conn.close()
    text = repr([dict(row) for row in [*rows, *counters]])
    return {secret for secret in (PHONE, CODE, KEY) if secret in text}


async def test_a_store_that_fails_later_raises_store_error(
    make_store: StoreFactory, emulator: Emulator
) -> None:
    store = make_store(**FAST)
    async with client_for(emulator) as client, client.scheduler(store=store, drive=False) as web:
        await _alter(make_store, "DROP TABLE sessions", 'DROP TABLE "{table}"')
        with pytest.raises(StoreError) as caught:
            await web.get("any")
        with pytest.raises(StoreError):
            await web.schedule(PHONE, country_code="1", code=CODE)
    assert caught.value.store == store.name
    assert CODE not in str(caught.value)


async def _alter(database: StoreFactory, sqlite_sql: str, postgres_sql: str) -> None:
    """Change the database behind the store's back, as an operator (or a fault) would."""
    if database.kind == "sqlite":
        db = sqlite3.connect(database.path, isolation_level=None)
        db.execute(sqlite_sql)
        db.close()
        return
    conn = await asyncpg.connect(database.dsn)
    await conn.execute(postgres_sql.format(table=database.table))
    await conn.close()


async def test_a_newer_schema_is_refused(make_store: StoreFactory, emulator: Emulator) -> None:
    async with client_for(emulator) as client:
        async with client.scheduler(store=make_store(), drive=False):
            pass  # creates the schema, version 1
        await _alter(
            make_store, "PRAGMA user_version = 99", 'UPDATE "{table}_schema" SET version = 99'
        )
        with pytest.raises(ConfigurationError, match="schema version 99"):
            async with client.scheduler(store=make_store(), drive=False):
                pass


async def test_records_and_sessions_show_no_phone_or_code(
    make_store: StoreFactory, emulator: Emulator
) -> None:
    client = client_for(emulator)
    async with client, client.scheduler(store=make_store(), drive=False) as web:
        session = await web.schedule(PHONE, country_code="1", code=CODE, call_place_time=60)
        record = await web.store.load(session.id)
        assert isinstance(record, SessionRecord)
        for text in (repr(session), repr(record), repr(web), repr(web.store)):
            assert PHONE not in text
            assert CODE not in text


async def test_an_error_in_the_block_comes_out_as_it_is(
    make_store: StoreFactory, emulator: Emulator
) -> None:
    """Not wrapped in an exception group by the store's or the scheduler's own tasks."""
    with pytest.raises(KeyError, match="raised in the block"):
        async with client_for(emulator) as client, client.scheduler(store=make_store()):
            raise KeyError("raised in the block")
