"""What the durable stores share: rows to records and back, and the driver's sleep.

A row keeps the request's three fields (NULL once final), the attempts as a JSON list of
the result fields (never the normalized ``raw`` dict, which could echo anything the service
sent) and the error as its class, text and public attributes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from typing import Any, Final

import anyio

from phoneconfirm_async._errors import PhoneConfirmError, error_from_state, error_to_state
from phoneconfirm_async._models import PlaceCallRequest, PlaceCallResult
from phoneconfirm_async._store import (
    Claimed,
    SessionRecord,
    SessionState,
    end,
    holds,
    may_finish,
    release,
    settle_due,
)

#: The columns of a session row, in the order ``row_values`` gives them.
COLUMNS: Final = (
    "id",
    "phone",
    "country_code",
    "code",
    "redial_count",
    "redial_interval",
    "state",
    "due",
    "calls_made",
    "attempts",
    "error",
    "claimed_at",
)
_RESULT_FIELDS: Final = ("status", "error", "message", "transaction_number", "duration")
_STATES: Final = {state.value: state for state in SessionState}


def row_values(record: SessionRecord) -> tuple[Any, ...]:
    """The record as a row, in ``COLUMNS`` order."""
    request = record.request
    return (
        record.id,
        None if request is None else request.phone,
        None if request is None else request.country_code,
        None if request is None else request.code,
        record.redial_count,
        record.redial_interval,
        record.state.value,
        record.due,
        record.calls_made,
        encode_attempts(record.attempts),
        None if record.error is None else json.dumps(error_to_state(record.error)),
        record.claimed_at,
    )


def update_values(record: SessionRecord) -> tuple[object, ...]:
    """The values of an UPDATE of every mutable column (phone, country_code, code, state,
    due, calls_made, attempts, error, claimed_at), then the id for its WHERE."""
    (id_, phone, country_code, code, _, _, state, due, calls, attempts, error, claimed) = (
        row_values(record)
    )
    return (phone, country_code, code, state, due, calls, attempts, error, claimed, id_)


def record_from_row(row: Mapping[str, Any]) -> SessionRecord:
    """A record from a row read back (any mapping of ``COLUMNS``)."""
    phone = row["phone"]
    error = row["error"]
    return SessionRecord(
        id=row["id"],
        request=None
        if phone is None
        else PlaceCallRequest(phone, row["country_code"], row["code"]),
        redial_count=row["redial_count"],
        redial_interval=row["redial_interval"],
        state=_STATES[row["state"]],
        due=row["due"],
        calls_made=row["calls_made"],
        attempts=decode_attempts(row["attempts"]),
        error=None if error is None else decode_error(error),
        claimed_at=row["claimed_at"],
    )


class DuePass:
    """One pass over due rows, read in due order: the calls claimed, the sessions changed,
    and the rows to update and delete (a store writes them in the pass's transaction)."""

    __slots__ = ("batch", "claimed", "deletes", "lease", "limit", "now", "retain", "updates")

    def __init__(self, now: float, limit: int, *, lease: float | None, retain: float) -> None:
        self.now = now
        self.limit = limit
        self.lease = lease
        self.retain = retain
        self.batch = self.batch_for(limit)
        self.claimed = Claimed([], [])
        self.updates: list[tuple[object, ...]] = []
        self.deletes: list[tuple[str]] = []

    @staticmethod
    def batch_for(limit: int) -> int:
        """Rows to read at a time: enough for the claims and the rows settled beside them."""
        return max(limit, 1) * 2 + 64

    @property
    def full(self) -> bool:
        return len(self.claimed.calls) >= self.limit

    def take(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Apply the due rules to rows until ``limit`` calls are claimed."""
        for row in rows:
            if self.full:
                return
            record = record_from_row(row)
            outcome = settle_due(record, self.now, lease=self.lease, retain=self.retain)
            if outcome is None:
                self.deletes.append((record.id,))
                continue
            self.updates.append(update_values(record))
            (self.claimed.calls if outcome else self.claimed.changed).append(record)


def finished(
    row: Mapping[str, Any] | None,
    state: SessionState,
    now: float,
    retain: float,
    error: PhoneConfirmError | None,
    claimed_at: float | None,
) -> SessionRecord | None:
    """The record a ``SessionStore.finish`` writes back, or None when the row is gone
    or its state does not allow ``state``."""
    if row is None:
        return None
    current = record_from_row(row)
    if not may_finish(current, state, claimed_at):
        return None
    end(current, state, now, retain, error)
    return current


def released(
    row: Mapping[str, Any] | None, claim: SessionRecord, now: float
) -> SessionRecord | None:
    """The record a ``SessionStore.release`` writes back, or None when the claim no longer
    holds (settled elsewhere, or the session ended)."""
    if row is None:
        return None
    current = record_from_row(row)
    if not holds(current, claim):
        return None
    release(current, now)
    return current


def encode_attempts(attempts: tuple[PlaceCallResult, ...]) -> str:
    return json.dumps([[getattr(a, name) for name in _RESULT_FIELDS] for a in attempts])


def encode_attempt(result: PlaceCallResult) -> str:
    """One attempt as the JSON value appended to a row's ``attempts`` list."""
    return json.dumps([getattr(result, name) for name in _RESULT_FIELDS])


def decode_attempts(text: str) -> tuple[PlaceCallResult, ...]:
    results: tuple[PlaceCallResult, ...] = ()
    for values in json.loads(text):
        fields = dict(zip(_RESULT_FIELDS, values, strict=True))
        results += (PlaceCallResult.from_fields(fields),)
    return results


def decode_error(text: str) -> PhoneConfirmError:
    return error_from_state(json.loads(text))


class Waker:
    """The driver's sleep on a durable store: until the next due time, a wake from this
    process, or ``poll_interval`` (other processes' work is found by looking again)."""

    __slots__ = ("_event", "_until", "poll_interval")

    def __init__(self, poll_interval: float) -> None:
        self.poll_interval = poll_interval
        self._event = anyio.Event()
        self._until = float("inf")

    def arm(self) -> None:
        """Called as a pass over due rows starts: a wake from now on ends the next sleep."""
        self._event = anyio.Event()
        self._until = float("inf")

    def wake(self) -> None:
        self._event.set()

    def due(self, when: float) -> None:
        """Something falls due at ``when``: wake the sleeper if it would sleep past it."""
        if when < self._until:
            self._event.set()

    async def wait(self, until: float | None) -> None:
        now = time.time()
        delay = self.poll_interval
        if until is not None:
            delay = min(delay, until - now)
        self._until = now + delay
        with anyio.move_on_after(max(delay, 0.0)):
            await self._event.wait()
        self._until = float("inf")


def check_lease(lease: float, poll_interval: float) -> None:
    if not lease > 0:
        raise ValueError("lease must be a positive number of seconds")
    if not poll_interval > 0:
        raise ValueError("poll_interval must be a positive number of seconds")
