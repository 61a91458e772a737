"""A session's states and the throttle names: what the rules, the stores and the errors
all speak of (a module of its own so that ``_errors`` can name them without a cycle)."""

from __future__ import annotations

import enum
from typing import Final, Literal


class SessionState(enum.Enum):
    """Where a confirmation session stands."""

    SCHEDULED = "scheduled"  #: waiting for the first call's time
    CALLING = "calling"  #: a call placement is in flight (claimed, counted in calls_made)
    AWAITING_CODE = "awaiting_code"  #: called; waiting for the code or the next redial
    VERIFIED = "verified"  #: the person's code matched
    EXHAUSTED = "exhausted"  #: every call placed, no code within the last interval
    FAILED = "failed"  #: a permanent error (on ``session.error``)
    CANCELLED = "cancelled"  #: cancelled by the caller (or, memory store, by closing)
    LOCKED = "locked"  #: the last verification attempt allowed was a wrong code
    EXPIRED = "expired"  #: exhausted, and its code's lifetime ran out

    @property
    def is_final(self) -> bool:
        """True for the states a session waits for (EXHAUSTED can still become VERIFIED
        or EXPIRED)."""
        return self in FINAL_STATES


FINAL_STATES: Final = frozenset(
    {
        SessionState.VERIFIED,
        SessionState.EXHAUSTED,
        SessionState.FAILED,
        SessionState.CANCELLED,
        SessionState.LOCKED,
        SessionState.EXPIRED,
    }
)
#: States no call is placed from and no code is checked in (EXHAUSTED can still be
#: cancelled, verified or expire).
CLOSED_STATES: Final = FINAL_STATES - {SessionState.EXHAUSTED}
PENDING_STATES: Final = frozenset({SessionState.SCHEDULED, SessionState.AWAITING_CODE})
#: States a code may be checked in (with an attempt left and the code alive).
CHECKABLE_STATES: Final = frozenset(SessionState) - CLOSED_STATES
#: Throttle names, as ``ThrottledError.limit`` gives them.
Limit = Literal["phone", "key", "calls_per_hour"]
#: The spend cap's window: calls claimed in the trailing hour.
SPEND_WINDOW: Final = 3600.0
