"""Stores named by URL, for the CLI, the example backend and configuration files."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from phoneconfirm_async._errors import ConfigurationError
from phoneconfirm_async._stores._memory import MemoryStore
from phoneconfirm_async._stores._postgres import PostgresStore
from phoneconfirm_async._stores._protocol import SessionStore
from phoneconfirm_async._stores._sqlite import SQLiteStore

#: Query parameters the store takes for itself; the rest of a PostgreSQL DSN's query goes
#: to asyncpg.
_STORE_PARAMS = ("lease", "poll_interval", "table")


def store_from_url(url: str) -> SessionStore:
    """The store a URL names.

    - ``memory:`` — a ``MemoryStore``;
    - ``sqlite:///relative/file.sqlite`` or ``sqlite:////absolute/file.sqlite`` (as
      SQLAlchemy writes them) — a ``SQLiteStore``;
    - ``postgresql://user:password@host/db`` (or ``postgres://``) — a
      ``PostgresStore`` on that DSN.

    Durable stores take ``lease`` and ``poll_interval`` (seconds) from the query, and
    PostgreSQL ``table``: ``postgresql://db.internal/app?table=signup_calls&lease=10``.

    Raises:
        ConfigurationError: the URL names no store this library has, or a parameter is
            wrong (the message never repeats the URL, which may hold a password).
    """
    scheme = url.partition(":")[0].lower()
    if scheme == "memory":
        return MemoryStore()
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    ours = {name: value for name, value in query if name in _STORE_PARAMS}
    rest = [(name, value) for name, value in query if name not in _STORE_PARAMS]
    options: dict[str, float] = {}
    for name in ("lease", "poll_interval"):
        if name in ours:
            try:
                options[name] = float(ours[name])
            except ValueError:
                raise ConfigurationError(
                    f"store URL: {name} must be a number of seconds"
                ) from None
    try:
        if scheme == "sqlite" and parts.path.startswith("/") and len(parts.path) > 1:
            if parts.netloc or "table" in ours or rest:
                raise ConfigurationError(
                    "store URL: write sqlite:///relative/path or sqlite:////absolute/path "
                    "(no host; only lease and poll_interval parameters)"
                )
            return SQLiteStore(parts.path[1:], **options)
        if scheme == "sqlite":
            # sqlite://file.sqlite (the path read as a host) or sqlite:/file.sqlite.
            path = url[len("sqlite:") :].partition("?")[0].lstrip("/") or "sessions.sqlite"
            raise ConfigurationError(
                "store URL: a SQLite URL has three slashes before a relative path and four "
                f"before an absolute one: sqlite:///{path} (./{path}) or sqlite:////{path} "
                f"(/{path})"
            )
        if scheme in ("postgresql", "postgres") and (parts.netloc or parts.path):
            dsn = urlunsplit(parts._replace(query=urlencode(rest)))
            table = ours.get("table", "phoneconfirm_sessions")
            return PostgresStore(dsn, table=table, **options)
    except ConfigurationError:
        raise
    except ValueError as exc:
        raise ConfigurationError(f"store URL: {exc}") from None
    raise ConfigurationError(
        f"store URL: scheme {scheme!r} is not one of memory:, sqlite:///PATH, postgresql://..."
    )
