"""Stores on real servers: SQLite files in a temporary directory, and one PostgreSQL server
(the ``pgserver`` package's binaries) started for the whole test session."""

from __future__ import annotations

import os
import secrets
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from phoneconfirm_async import PostgresStore, SessionStore, SQLiteStore
from tests.conftest import API_KEY, DOMAIN, ENV_NAMES


class StoreFactory:
    """New store objects on one database (two objects are two "processes"), and where that
    database is, for tests that look inside it."""

    def __init__(self, kind: str, *, path: Path, dsn: str = "", table: str = "") -> None:
        self.kind = kind
        self.path = path  # the SQLite file
        self.dsn = dsn  # the PostgreSQL server
        self.table = table  # the PostgreSQL table

    def __call__(self, **options: float) -> SessionStore:
        if self.kind == "sqlite":
            return SQLiteStore(self.path, **options)
        return PostgresStore(self.dsn, table=self.table, **options)


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
    path = tmp_path / "sessions.sqlite"
    if store_kind == "sqlite":
        return StoreFactory("sqlite", path=path)
    dsn = str(request.getfixturevalue("postgres_dsn"))
    return StoreFactory("postgres", path=path, dsn=dsn, table=f"sessions_{secrets.token_hex(4)}")


def worker_store_url(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest, *, table: str, lease: float
) -> str:
    """The URL of a fresh store for ``phoneconfirm worker`` processes: a SQLite file in
    ``tmp_path``, or ``table`` on the session's PostgreSQL server; short polls."""
    options = f"lease={lease}&poll_interval=0.05"
    if kind == "sqlite":
        return f"sqlite:///{tmp_path}/sessions.sqlite?{options}"
    dsn = str(request.getfixturevalue("postgres_dsn"))
    return f"{dsn}&table={table}&{options}"


def worker_env(store_url: str, base_url: str) -> dict[str, str]:
    """The environment of a ``phoneconfirm worker`` process on ``store_url`` that places
    its calls with the emulator at ``base_url`` (none of the test's own settings)."""
    env = {name: value for name, value in os.environ.items() if name not in ENV_NAMES}
    env.update(
        PHONECONFIRM_API_KEY=API_KEY,
        PHONECONFIRM_DOMAIN=DOMAIN,
        PHONECONFIRM_BASE_URL=base_url,
        PHONECONFIRM_STORE=store_url,
    )
    return env
