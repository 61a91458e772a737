"""The rules of a session's life, the same for every store: its states, its record, and
the functions a store applies to a record (public in ``phoneconfirm_async.stores``).

A scheduler keeps no session state of its own: it asks its store to add a session, to
*claim* the calls that are due (a claim records the call as made before it is dialled), to
record a call's answer, and to end a session. Every kind of pending work is a row whose
``due`` has passed, read in one ordered pass:

- SCHEDULED or AWAITING_CODE with calls left: claim a call (CALLING, ``calls_made + 1``,
  ``claimed_at = now``, ``due = now + lease``);
- AWAITING_CODE with no call left: EXHAUSTED;
- CALLING whose lease ran out (its process died or stalled): AWAITING_CODE, the call
  counted with an unknown outcome, the next one ``redial_interval`` after the lease ended
  (the holder may have dialled until then, never later);
- a final state past ``retain``: deleted.

A durable store reads ``now`` for a claim while it holds its lock, so that a claim that
waited for the lock does not start with part of its lease already gone. A claim whose call
was never sent goes back (``release``): due again, its call not counted.

Phone and code (the record's ``request``) are erased when a session reaches a final state.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from phoneconfirm_async._errors import PhoneConfirmError
from phoneconfirm_async._models import PlaceCallRequest, PlaceCallResult
from phoneconfirm_async._redact import mask_phone


class SessionState(enum.Enum):
    """Where a confirmation session stands."""

    SCHEDULED = "scheduled"  #: waiting for the first call's time
    CALLING = "calling"  #: a call placement is in flight (claimed, counted in calls_made)
    AWAITING_CODE = "awaiting_code"  #: called; waiting for the code or the next redial
    VERIFIED = "verified"  #: the person's code matched
    EXHAUSTED = "exhausted"  #: every call placed, no code within the last interval
    FAILED = "failed"  #: a permanent error (on ``session.error``)
    CANCELLED = "cancelled"  #: cancelled by the caller (or, memory store, by closing)

    @property
    def is_final(self) -> bool:
        """True for the states a session waits for (EXHAUSTED can still become VERIFIED)."""
        return self in FINAL_STATES


FINAL_STATES: Final = frozenset(
    {SessionState.VERIFIED, SessionState.EXHAUSTED, SessionState.FAILED, SessionState.CANCELLED}
)
#: States no call is placed from (EXHAUSTED can still be cancelled or verified).
CLOSED_STATES: Final = frozenset(
    {SessionState.VERIFIED, SessionState.FAILED, SessionState.CANCELLED}
)
PENDING_STATES: Final = frozenset({SessionState.SCHEDULED, SessionState.AWAITING_CODE})


@dataclass(slots=True, eq=False, repr=False)
class SessionRecord:
    """One session as a store keeps it (the currency of ``SessionStore``).

    ``due`` is on the store's clock (``SessionStore.now``): the next call, the lease's
    end while CALLING, the end of the last interval when no call is left, or the time the
    record is deleted once final. ``claimed_at`` is when the latest call was claimed (None
    before the first). ``request`` (phone and code) is None once final.
    """

    id: str
    request: PlaceCallRequest | None
    redial_count: int
    redial_interval: float
    state: SessionState
    due: float
    calls_made: int = 0
    attempts: tuple[PlaceCallResult, ...] = ()
    error: PhoneConfirmError | None = None
    claimed_at: float | None = None

    def __repr__(self) -> str:
        phone = "-" if self.request is None else mask_phone(self.request.phone)
        return (
            f"<SessionRecord {self.id} phone={phone} state={self.state.name} "
            f"calls={self.calls_made}/{1 + self.redial_count}>"
        )

    @property
    def calls_allowed(self) -> int:
        return 1 + self.redial_count


def may_finish(current: SessionRecord, state: SessionState, claimed_at: float | None) -> bool:
    """The rule every store applies to ``SessionStore.finish``.

    VERIFIED from any state but VERIFIED (a late code after EXHAUSTED still counts);
    CANCELLED while not closed; FAILED only by the holder of the current claim.
    """
    if state is SessionState.VERIFIED:
        return current.state is not SessionState.VERIFIED
    if state is SessionState.CANCELLED:
        return current.state not in CLOSED_STATES
    return current.state is SessionState.CALLING and current.claimed_at == claimed_at


def settle_due(
    record: SessionRecord, now: float, *, lease: float | None, retain: float
) -> bool | None:
    """Apply the due rule to one record whose ``due`` passed.

    Returns True when a call was claimed, False when the record changed otherwise
    (EXHAUSTED, a dead claim settled), None when it is to be deleted.
    """
    state = record.state
    if state in FINAL_STATES:
        return None
    if state is SessionState.CALLING:  # the lease ran out: the call counts, unknown outcome
        record.state = SessionState.AWAITING_CODE
        # ``due`` was the lease's end: its holder may have dialled until then, never later.
        record.due = next_call_due(record, record.due)
        if record.due > now:
            return False
    if record.calls_made >= record.calls_allowed:
        end(record, SessionState.EXHAUSTED, now, retain)
        return False
    record.state = SessionState.CALLING
    record.calls_made += 1
    record.claimed_at = now
    record.due = now + lease if lease is not None else float("inf")
    return True


def end(
    record: SessionRecord,
    state: SessionState,
    now: float,
    retain: float,
    error: PhoneConfirmError | None = None,
) -> None:
    """A final state: phone and code erased, deleted ``retain`` seconds from now."""
    record.state = state
    record.request = None
    record.due = now + retain
    if error is not None:
        record.error = error


def holds(current: SessionRecord, claim: SessionRecord) -> bool:
    """Whether ``claim`` (a record as claimed) is still the session's current claim."""
    return current.state is SessionState.CALLING and current.claimed_at == claim.claimed_at


def release(record: SessionRecord, now: float) -> None:
    """A claimed call that was never sent: due again at ``now``, the call not counted."""
    record.calls_made -= 1
    record.state = SessionState.AWAITING_CODE if record.calls_made else SessionState.SCHEDULED
    record.due = now


def answered(record: SessionRecord, result: PlaceCallResult | None, now: float) -> None:
    """A claimed call's answer is in (None: unknown outcome): wait for the code or redial."""
    if result is not None:
        record.attempts += (result,)
    record.state = SessionState.AWAITING_CODE
    record.due = next_call_due(record, now)


def next_call_due(record: SessionRecord, called: float) -> float:
    """When the session's next call is due (or, with none left, when it is EXHAUSTED):
    ``redial_interval`` after its latest call was made at ``called``."""
    return called + record.redial_interval
