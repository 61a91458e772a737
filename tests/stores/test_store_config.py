"""Choosing and opening a store: URLs, arguments, and the errors that say what is wrong."""

from __future__ import annotations

import threading
from pathlib import Path

import anyio
import pytest

from phoneconfirm_async import (
    ConfigurationError,
    MemoryStore,
    PhoneConfirmClient,
    PostgresStore,
    SessionStore,
    SQLiteStore,
    store_from_url,
)


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def offline_client() -> PhoneConfirmClient:
    # Nothing is ever sent: these tests fail before any call.
    return PhoneConfirmClient("key", "example.com", base_url="http://127.0.0.1:9/services")


def test_urls_name_stores() -> None:
    assert isinstance(store_from_url("memory:"), MemoryStore)
    relative = store_from_url("sqlite:///data/sessions.sqlite?lease=12&poll_interval=0.5")
    assert isinstance(relative, SQLiteStore)
    assert (relative.path, relative.lease, relative.poll_interval) == (
        "data/sessions.sqlite",
        12.0,
        0.5,
    )
    absolute = store_from_url("sqlite:////var/lib/app/sessions.sqlite")
    assert isinstance(absolute, SQLiteStore)
    assert absolute.path == "/var/lib/app/sessions.sqlite"
    pg = store_from_url("postgresql://app:hunter2@db.internal:5433/signup?table=calls&lease=9")
    assert isinstance(pg, PostgresStore)
    assert (pg.table, pg.lease, pg.poll_interval) == ("calls", 9.0, 1.0)
    assert pg.name == "postgresql://app@db.internal:5433/signup table calls"
    for store in (relative, absolute, pg, MemoryStore()):
        assert isinstance(store, SessionStore)


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("mysql://db/x", "'mysql' is not one of"),
        ("sqlite://host/x.sqlite", "no host"),
        ("sqlite:///x.sqlite?table=t", "only lease and poll_interval"),
        ("sqlite:///x.sqlite?lease=-1", "lease must be a positive"),
        ("postgresql://u:pw@h/db?poll_interval=x", "poll_interval must be a number"),
        ("postgresql://u:pw@h/db?table=drop%20table", "plain identifier"),
    ],
)
def test_bad_urls_say_why_without_the_password(url: str, says: str) -> None:
    with pytest.raises(ConfigurationError, match=says) as caught:
        store_from_url(url)
    assert "pw" not in str(caught.value)


@pytest.mark.parametrize(
    ("url", "right"),
    [
        ("sqlite://sessions.sqlite", "sqlite:///sessions.sqlite"),
        ("sqlite:app.sqlite", "sqlite:///app.sqlite"),
        ("sqlite://", "sqlite:///sessions.sqlite"),
    ],
)
def test_a_sqlite_url_with_too_few_slashes_shows_the_right_form(url: str, right: str) -> None:
    """The classic slip: two slashes. The error says it is the slashes, not the scheme."""
    with pytest.raises(ConfigurationError) as caught:
        store_from_url(url)
    message = str(caught.value)
    assert "three slashes before a relative path and four before an absolute one" in message
    assert right in message
    assert "scheme" not in message


@pytest.mark.anyio
async def test_an_unusable_sqlite_path_names_the_store(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "missing-directory" / "sessions.sqlite")
    async with offline_client() as client:
        with pytest.raises(ConfigurationError, match="missing-directory") as caught:
            async with client.scheduler(store=store):
                pass
    assert "cannot open the session store" in str(caught.value)


@pytest.mark.anyio
async def test_postgres_refuses_trio_and_unreachable_servers(anyio_backend: str) -> None:
    store = PostgresStore("postgresql://app:hunter2@127.0.0.1:1/signup", lease=5)
    async with offline_client() as client:
        with pytest.raises(ConfigurationError) as caught:
            async with client.scheduler(store=store):
                pass
    message = str(caught.value)
    assert "hunter2" not in message
    assert "postgresql://app@127.0.0.1:1/signup" in message
    if anyio_backend == "trio":
        assert "asyncio only" in message
    else:
        assert "cannot open the session store" in message


@pytest.mark.anyio
async def test_drive_false_needs_a_durable_store() -> None:
    async with offline_client() as client:
        with pytest.raises(ConfigurationError, match="durable store"):
            client.scheduler(drive=False)


@pytest.mark.anyio
async def test_a_store_serves_one_scheduler_at_a_time(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "sessions.sqlite")
    async with offline_client() as client, client.scheduler(store=store, drive=False):
        with pytest.raises(RuntimeError, match="one scheduler at a time"):
            async with client.scheduler(store=store, drive=False):
                pass


def test_workers_opening_a_new_sqlite_file_at_once_all_open(tmp_path: Path) -> None:
    """The workers of one host start together on a file nobody made yet: each opens it.
    (Switching a new file to WAL, one of several connections that all hold the shared
    lock was told "database is locked" at once, without SQLite's busy wait; about one
    open in sixty failed, and with it a uvicorn worker's startup.)"""
    failures: list[BaseException] = []

    async def open_and_leave(path: Path) -> None:
        async with SQLiteStore(path).open(retain=60, on_change=lambda session_id: None):
            pass

    def worker(path: Path, start: threading.Barrier) -> None:
        start.wait()
        try:
            anyio.run(open_and_leave, path)
        except BaseException as exc:
            failures.append(exc)

    for round_ in range(200):
        path = tmp_path / f"sessions-{round_}.sqlite"
        start = threading.Barrier(8)
        threads = [threading.Thread(target=worker, args=(path, start)) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert failures == []
