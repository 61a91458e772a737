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
- EXHAUSTED whose code lifetime (``code_ttl`` after the latest call) ran out: EXPIRED;
- a final state past ``retain``: deleted.

A spend cap may hold calls back: a row whose call is due then stays as it is (WAITING).

A code is checked only after one verification attempt was taken in the store
(``may_check``, in one conditional update): while the session is open to codes, has
attempts left, and its code has not expired. A wrong answer that used the last attempt
LOCKS the session (``may_finish``).

A durable store reads ``now`` for a claim while it holds its lock, so that a claim that
waited for the lock does not start with part of its lease already gone. A claim whose call
was never sent goes back (``release``): due again, its call not counted.

Phone and code (the record's ``request``) are erased when a session reaches a final state.
Throttle counters (``Quota``) keep keyed hashes, never a phone or a throttle key in clear.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from dataclasses import dataclass
from typing import NamedTuple

from phoneconfirm_async._errors import PhoneConfirmError
from phoneconfirm_async._models import PlaceCallRequest, PlaceCallResult
from phoneconfirm_async._redact import mask_phone
from phoneconfirm_async._stores._states import CHECKABLE_STATES as CHECKABLE_STATES
from phoneconfirm_async._stores._states import CLOSED_STATES as CLOSED_STATES
from phoneconfirm_async._stores._states import FINAL_STATES as FINAL_STATES
from phoneconfirm_async._stores._states import PENDING_STATES as PENDING_STATES
from phoneconfirm_async._stores._states import SPEND_WINDOW as SPEND_WINDOW
from phoneconfirm_async._stores._states import Limit as Limit
from phoneconfirm_async._stores._states import SessionState as SessionState


class Settled(enum.Enum):
    """What ``settle_due`` did to a due record."""

    CALLED = "called"  #: a call was claimed: dial it
    CHANGED = "changed"  #: EXHAUSTED, EXPIRED, or a dead claim counted: write it
    DELETED = "deleted"  #: final and retained long enough: delete it
    WAITING = "waiting"  #: a call is due but the spend cap holds it back: unchanged


class Quota(NamedTuple):
    """One throttle ``SessionStore.add`` checks before it adds a session.

    At most ``most`` counted events within ``window`` seconds. ``value`` is what is
    counted (a phone, a throttle key; the store keeps only its keyed hash) and the new
    session counts one more; None counts the calls claimed on the whole store (the spend
    cap), which ``add`` only checks. A store may round a window's end up to the second.
    """

    limit: Limit
    value: str | None
    most: int
    window: float


class Throttled(NamedTuple):
    """A refused ``add``: which limit, and seconds until it frees."""

    limit: Limit
    retry_after: float


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
    #: Verification attempts taken (each before its request left), and how many may be.
    verify_attempts: int = 0
    verify_limit: int | None = None
    #: Seconds a code stays good after the latest call; when the current one stops.
    code_ttl: float | None = None
    code_expires: float | None = None

    def __lt__(self, other: SessionRecord) -> bool:
        """By id: the tie-break of records due at one time in a heap of ``(due, record)``
        (a third element per entry would cost 8 bytes each of 100,000 sessions)."""
        return self.id < other.id

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

    VERIFIED from any state but VERIFIED (a code is checked only after an attempt was
    taken while ``may_check`` allowed it, so a late code after EXHAUSTED counts, and a
    right code checked within the limit wins over a concurrent last wrong one); CANCELLED
    while not closed; LOCKED while open to codes with every attempt taken; FAILED only by
    the holder of the current claim.
    """
    if state is SessionState.VERIFIED:
        return current.state is not SessionState.VERIFIED
    if state is SessionState.CANCELLED:
        return current.state not in CLOSED_STATES
    if state is SessionState.LOCKED:
        return (
            current.state in CHECKABLE_STATES
            and current.verify_limit is not None
            and current.verify_attempts >= current.verify_limit
        )
    if state is SessionState.FAILED:
        return current.state is SessionState.CALLING and current.claimed_at == claimed_at
    return False  # EXHAUSTED and EXPIRED come from ``settle_due`` only


def may_check(record: SessionRecord, now: float) -> bool:
    """Whether a verification attempt may be taken (``SessionStore.take_attempt``): the
    session is open to codes, an attempt is left, and the code has not expired (a call in
    flight speaks it again)."""
    return (
        record.state in CHECKABLE_STATES
        and (record.verify_limit is None or record.verify_attempts < record.verify_limit)
        and (
            record.state is SessionState.CALLING
            or record.code_expires is None
            or record.code_expires > now
        )
    )


def settle_due(
    record: SessionRecord,
    now: float,
    *,
    lease: float | None,
    retain: float,
    may_call: bool = True,
) -> Settled:
    """Apply the due rule to one record whose ``due`` passed (``may_call`` False: the
    spend cap allows no call now)."""
    state = record.state
    if state is SessionState.EXHAUSTED and record.code_expires is not None:
        end(record, SessionState.EXPIRED, now, retain)  # ``due`` was the code's end
        return Settled.CHANGED
    if state in FINAL_STATES:
        return Settled.DELETED
    changed = False
    if state is SessionState.CALLING:  # the lease ran out: the call counts, unknown outcome
        # ``due`` was the lease's end: its holder may have dialled until then, never later.
        record.state = SessionState.AWAITING_CODE
        record.code_expires = code_expiry(record, record.due)
        record.due = next_call_due(record, record.due)
        if record.due > now:
            return Settled.CHANGED
        changed = True
    if record.calls_made >= record.calls_allowed:
        end(record, SessionState.EXHAUSTED, now, retain)
        if record.code_expires is not None:
            record.due = record.code_expires  # verifiable until then, EXPIRED after
        return Settled.CHANGED
    if not may_call:
        return Settled.CHANGED if changed else Settled.WAITING
    record.state = SessionState.CALLING
    record.calls_made += 1
    record.claimed_at = now
    record.due = now + lease if lease is not None else float("inf")
    return Settled.CALLED


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
    record.code_expires = code_expiry(record, now)
    record.due = next_call_due(record, now)


def next_call_due(record: SessionRecord, called: float) -> float:
    """When the session's next call is due (or, with none left, when it is EXHAUSTED):
    ``redial_interval`` after its latest call was made at ``called``."""
    return called + record.redial_interval


def held_back(record: SessionRecord, outcome: Settled, now: float) -> bool:
    """Whether the spend cap held ``record``'s due call back in this pass (the store then
    makes it due when the cap frees a call: ``record.due = Claimed.capped``)."""
    return outcome is Settled.WAITING or (
        outcome is Settled.CHANGED and record.state in PENDING_STATES and record.due <= now
    )


def code_expiry(record: SessionRecord, called: float) -> float | None:
    """When the code stops being accepted, for a call made at ``called`` (each call speaks
    it again); None without a ``code_ttl``."""
    return None if record.code_ttl is None else called + record.code_ttl


def counter_key(secret: bytes, limit: Limit, value: str) -> str:
    """What a throttle counter keeps of ``value``: its HMAC-SHA256 under the store's
    secret, so that counters, which outlive sessions, hold no phone or key in clear."""
    return hmac.new(secret, f"{limit}:{value}".encode(), hashlib.sha256).hexdigest()
