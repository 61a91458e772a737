"""The batch journal: one SQLite file recording each row's state, so a killed run resumes
without phoning anybody twice.

A row is marked ``sending`` (and committed) before its request goes out, and ``done``,
``failed`` or ``unknown`` after. Marks are committed in groups (one transaction for every row
that asked while the previous commit was running), off the event loop. The journal holds no
phone number, API key or code: rows are matched by a keyed hash (HMAC with a key derived
from the API key and a random salt kept in the file).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import anyio
import anyio.to_thread

from phoneconfirm_async._errors import ConfigurationError
from phoneconfirm_async._models import Operation

State = Literal["sending", "done", "failed", "unknown"]

SCHEMA_VERSION: Final = 1
_CHUNK: Final = 1024
#: What journals of the first release wrote for the operation.
_LEGACY_OPERATIONS: Final = {"place": "placecall", "verify": "verifycode"}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS rows (
    idx INTEGER PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    state TEXT NOT NULL,
    payload TEXT,
    updated REAL NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class Record:
    """What the journal knows of one row."""

    idx: int
    fingerprint: str
    state: State
    payload: dict[str, Any] | None


class Journal:
    """A journal file for one batch operation (placements or verifications).

    Open it with ``open`` and close it with ``aclose``. Rows must be looked up in
    increasing index order (as a batch reads its input), which lets the journal stream its
    records in chunks: memory stays flat for any number of rows.
    """

    def __init__(self, connection: sqlite3.Connection, operation: Operation, key: bytes) -> None:
        self._db = connection
        self.operation = operation
        self._key = key
        self._chunk_start = 0
        self._chunk_end = 0
        self._chunk: dict[int, Record] = {}
        self._pending: list[tuple[int, str, State, str | None, float]] = []
        self._batch_done = anyio.Event()
        self._flushing = False
        self._closed = False

    @classmethod
    async def open(
        cls, path: str | os.PathLike[str], operation: Operation, api_key: str
    ) -> Journal:
        """Open (or create) a journal file for ``operation`` rows.

        Raises:
            ConfigurationError: the file is not a journal, or one for the other operation.
        """
        return await anyio.to_thread.run_sync(cls._open_sync, Path(path), operation, api_key)

    @classmethod
    def _open_sync(cls, path: Path, operation: Operation, api_key: str) -> Journal:
        try:
            db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL survives a killed process
            db.executescript(_SCHEMA)
            meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.Error as exc:
            raise ConfigurationError(f"journal {path}: not a usable SQLite file ({exc})") from None
        if not meta:
            meta = {
                "version": str(SCHEMA_VERSION),
                "kind": operation,
                "salt": secrets.token_hex(16),
            }
            db.executemany("INSERT INTO meta VALUES (?, ?)", meta.items())
        recorded = _LEGACY_OPERATIONS.get(meta.get("kind", ""), meta.get("kind"))
        if recorded != operation:
            db.close()
            raise ConfigurationError(
                f"journal {path} records a '{recorded}' batch, not a '{operation}' batch"
            )
        key = hashlib.sha256(f"{meta['salt']}:{api_key}".encode()).digest()
        return cls(db, operation, key)

    def fingerprint(self, *fields: str) -> str:
        """A keyed hash of a row's fields (nothing readable is stored)."""
        message = "\x1f".join(fields).encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()[:32]

    # -- reading ----------------------------------------------------------------------------
    async def lookup(self, idx: int) -> Record | None:
        """The record of row ``idx``, or None. Indexes must not decrease between calls."""
        if not self._chunk_start <= idx < self._chunk_end:
            start = idx
            self._chunk = await anyio.to_thread.run_sync(self._read_chunk, start)
            self._chunk_start, self._chunk_end = start, start + _CHUNK
        return self._chunk.pop(idx, None)

    def _read_chunk(self, start: int) -> dict[int, Record]:
        cursor = self._db.execute(
            "SELECT idx, fingerprint, state, payload FROM rows WHERE idx >= ? AND idx < ?",
            (start, start + _CHUNK),
        )
        return {
            idx: Record(idx, fp, state, json.loads(payload) if payload else None)
            for idx, fp, state, payload in cursor
        }

    # -- writing ----------------------------------------------------------------------------
    async def mark_sending(self, idx: int, fingerprint: str) -> None:
        """Record that row ``idx`` is about to be sent; returns once that is on disk."""
        self._pending.append((idx, fingerprint, "sending", None, time.time()))
        await self._flush()

    async def mark(
        self, idx: int, fingerprint: str, state: State, payload: dict[str, Any] | None
    ) -> None:
        """Record a row's end state; returns once it is on disk (group commit).

        Waiting here bounds what a killed run can lose to the rows in flight: a row whose
        end state was not written is resumed as ``sending``.
        """
        text = json.dumps(payload, separators=(",", ":")) if payload is not None else None
        self._pending.append((idx, fingerprint, state, text, time.time()))
        await self._flush()

    async def _flush(self) -> None:
        """Group commit: the first caller writes everything pending, the others wait for it."""
        if self._flushing:
            await self._batch_done.wait()
            return
        self._flushing = True
        try:
            with anyio.CancelScope(shield=True):  # waiters depend on this commit
                while self._pending:
                    batch, self._pending = self._pending, []
                    done, self._batch_done = self._batch_done, anyio.Event()
                    try:
                        await anyio.to_thread.run_sync(self._write, batch)
                    finally:
                        done.set()
        finally:
            self._flushing = False

    def _write(self, batch: Sequence[tuple[int, str, State, str | None, float]]) -> None:
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT INTO rows (idx, fingerprint, state, payload, updated)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (idx) DO UPDATE SET"
                " fingerprint = excluded.fingerprint, state = excluded.state,"
                " payload = excluded.payload, updated = excluded.updated",
                batch,
            )

    async def aclose(self) -> None:
        """Commit what is pending and close the file."""
        if self._closed:
            return
        self._closed = True
        with anyio.CancelScope(shield=True):
            await self._flush()
            await anyio.to_thread.run_sync(self._db.close)
