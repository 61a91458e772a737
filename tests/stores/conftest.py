"""Stores on real servers: SQLite files in a temporary directory, and one PostgreSQL server
(the ``pgserver`` package's binaries) started for the whole test session."""

from __future__ import annotations

import secrets
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from phoneconfirm_async import PostgresStore, SessionStore, SQLiteStore

#: Makes a new store object on the same database each call (two objects are two "processes").
StoreFactory = Callable[..., SessionStore]


@pytest.fixture(scope="session")
def postgres_dsn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A PostgreSQL 16 server on a Unix socket for the test session, deleted afterwards."""
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (CI containers): harmless here.
        warnings.simplefilter("ignore")
        from pgserver.postgres_server import get_server

        data = tmp_path_factory.mktemp("postgres") / "data"
        server = get_server(data, cleanup_mode="delete")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


#: (store, anyio backend): SQLite on both backends, PostgreSQL on asyncio (asyncpg's only).
STORE_CASES = [("sqlite", "asyncio"), ("sqlite", "trio"), ("postgres", "asyncio")]


@pytest.fixture(params=STORE_CASES, ids=["-".join(case) for case in STORE_CASES])
def store_case(request: pytest.FixtureRequest) -> tuple[str, str]:
    kind, backend = request.param
    return str(kind), str(backend)


@pytest.fixture
def anyio_backend(store_case: tuple[str, str]) -> str:
    return store_case[1]


@pytest.fixture
def store_kind(store_case: tuple[str, str]) -> str:
    return store_case[0]


@pytest.fixture
def make_store(store_kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> StoreFactory:
    """New store objects on one fresh database (a file, or a table of its own)."""
    if store_kind == "sqlite":
        path = tmp_path / "sessions.sqlite"

        def sqlite(**options: float) -> SessionStore:
            return SQLiteStore(path, **options)

        return sqlite
    dsn = request.getfixturevalue("postgres_dsn")
    table = f"sessions_{secrets.token_hex(4)}"

    def postgres(**options: float) -> SessionStore:
        return PostgresStore(dsn, table=table, **options)

    return postgres
