"""The confirmation policy: the rules that make a confirmation impossible to guess or to
abuse, applied by a scheduler and counted in its store (so every worker shares them)."""

from __future__ import annotations

import secrets
from collections.abc import Collection
from dataclasses import dataclass
from datetime import timedelta
from typing import Final

from phoneconfirm_async import _numbers, _validation
from phoneconfirm_async._errors import (
    ConfigurationError,
    ValidationError,
    VerificationClosedError,
)
from phoneconfirm_async._models import PlaceCallRequest
from phoneconfirm_async._settings import seconds, whole
from phoneconfirm_async._stores._rules import (
    CHECKABLE_STATES,
    SPEND_WINDOW,
    Quota,
    SessionRecord,
    SessionState,
)

#: The longest code the service speaks.
MAX_CODE_LENGTH: Final = 10


@dataclass(frozen=True, slots=True)
class ConfirmationPolicy:
    """What a scheduler allows; ``None`` switches a limit off. The defaults are on.

    Args:
        max_verify_attempts: code checks per session. Each ``verify`` takes one in the
            store before its request leaves; the wrong code that used the last one LOCKS
            the session. Concurrent guesses from every worker never exceed it.
        code_ttl: seconds (or a timedelta) a code stays good after the latest call (each
            redial speaks it again). Past it, with no call left, the session is EXPIRED.
        max_sessions_per_phone: new sessions for one phone within ``phone_window`` seconds.
        phone_window: the window of ``max_sessions_per_phone`` (seconds or a timedelta).
        max_sessions_per_key: new sessions for one ``throttle_key`` (a client address, an
            account) within ``key_window`` seconds.
        key_window: the window of ``max_sessions_per_key`` (seconds or a timedelta).
        allowed_countries: the country codes calls may go to (``{"1", "44"}``); None: all.
        max_calls_per_hour: calls placed by every worker on the store in the trailing
            hour; at the cap ``schedule()`` is refused and due redials wait.
        code_length: digits of the code drawn (with ``secrets``) when ``schedule()`` is
            given none.
        min_code_length: the shortest code an application may give ``schedule()``.
        blocked_number_types: libphonenumber number types ``schedule()`` refuses
            (``{"premium_rate", "shared_cost"}``, the classic toll-fraud targets;
            ``"unknown"`` refuses numbers valid for no real line, fictional ones such as
            +1 555 555 0123 included). Needs the ``numbers`` extra.

    Raises:
        ConfigurationError: a value breaks its rule (names the field).
    """

    max_verify_attempts: int | None = 5
    code_ttl: float | timedelta | None = 600
    max_sessions_per_phone: int | None = 3
    phone_window: float | timedelta = 3600
    max_sessions_per_key: int | None = 10
    key_window: float | timedelta = 3600
    allowed_countries: Collection[str] | None = None
    max_calls_per_hour: int | None = None
    code_length: int = 6
    min_code_length: int = 4
    blocked_number_types: Collection[str] = frozenset()

    def __post_init__(self) -> None:
        for name in (
            "max_verify_attempts",
            "max_sessions_per_phone",
            "max_sessions_per_key",
            "max_calls_per_hour",
        ):
            value = getattr(self, name)
            if value is not None:
                whole(name, value, 1)
        for name in ("code_ttl", "phone_window", "key_window"):
            value = getattr(self, name)
            if value is None and name == "code_ttl":
                continue
            if isinstance(value, timedelta):
                value = value.total_seconds()
            object.__setattr__(self, name, seconds(name, value))
        whole("min_code_length", self.min_code_length, 1)
        whole("code_length", self.code_length, 1)
        if self.min_code_length > MAX_CODE_LENGTH:
            raise ConfigurationError(f"min_code_length must be at most {MAX_CODE_LENGTH}")
        if not self.min_code_length <= self.code_length <= MAX_CODE_LENGTH:
            raise ConfigurationError(
                f"code_length must be from min_code_length ({self.min_code_length}) to "
                f"{MAX_CODE_LENGTH}, not {self.code_length!r}"
            )
        # Normalized ("+44" is "44") and frozen: the policy stays hashable.
        object.__setattr__(self, "allowed_countries", _countries(self.allowed_countries))
        object.__setattr__(self, "blocked_number_types", _types(self.blocked_number_types))

    # -- what a scheduler asks --------------------------------------------------------------
    def code(self, given: object) -> str:
        """The code a session speaks: ``given`` checked, or a new one drawn."""
        if given is None:
            return f"{secrets.randbelow(10**self.code_length):0{self.code_length}d}"
        code = _validation.code(given)
        if len(code) < self.min_code_length:
            raise ValidationError(
                "code", f"must be at least {self.min_code_length} letters or digits"
            )
        return code

    def check(self, request: PlaceCallRequest, redial_interval: float) -> None:
        """The allow-list, the blocked number types, and a redial interval that keeps
        within the code's lifetime."""
        country_code = request.country_code
        allowed = self.allowed_countries
        if allowed is not None and country_code not in allowed:
            raise ValidationError(
                "country_code",
                f"calls to +{country_code} are not allowed by the confirmation policy "
                f"(allowed: {', '.join(sorted(allowed))})",
            )
        if self.blocked_number_types:
            kind = _numbers.number_type(request.phone, country_code)
            if kind in self.blocked_number_types:
                raise ValidationError(
                    "phone",
                    f"is a {kind.replace('_', ' ')} number, which the confirmation policy "
                    "refuses (blocked_number_types)",
                )
        if self.code_ttl is not None and redial_interval > _float(self.code_ttl):
            raise ValidationError(
                "redial_interval",
                f"must be at most the policy's code_ttl ({self.code_ttl:g} s): a redial "
                "after the code expired would speak a dead code",
            )

    def quotas(self, phone: str, country_code: str, throttle_key: str | None) -> list[Quota]:
        """The throttles a new session is counted in, in the order they are checked."""
        quotas = []
        if self.max_sessions_per_phone is not None:
            number = f"{country_code}:{phone}"
            window = _float(self.phone_window)
            quotas.append(Quota("phone", number, self.max_sessions_per_phone, window))
        if self.max_sessions_per_key is not None and throttle_key is not None:
            window = _float(self.key_window)
            quotas.append(Quota("key", throttle_key, self.max_sessions_per_key, window))
        if self.max_calls_per_hour is not None:
            quotas.append(Quota("calls_per_hour", None, self.max_calls_per_hour, SPEND_WINDOW))
        return quotas

    @property
    def ttl(self) -> float | None:
        """``code_ttl`` in seconds."""
        return None if self.code_ttl is None else _float(self.code_ttl)


def _float(value: float | timedelta) -> float:
    """Seconds (``__post_init__`` made every timedelta a float already)."""
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def _countries(value: object) -> frozenset[str] | None:
    if value is None:
        return None
    if isinstance(value, str | bytes) or not isinstance(value, Collection):
        raise ConfigurationError(
            'allowed_countries must be a collection of country codes, such as {"1", "44"}'
        )
    codes = set()
    for item in value:
        try:
            codes.add(_validation.country_code(item))
        except ValidationError:
            raise ConfigurationError(
                f"allowed_countries: {item!r} is not a country code (1 to 3 digits)"
            ) from None
    if not codes:
        raise ConfigurationError("allowed_countries must name at least one country (or None)")
    return frozenset(codes)


def _types(value: object) -> frozenset[str]:
    if isinstance(value, str | bytes) or not isinstance(value, Collection):
        raise ConfigurationError(
            "blocked_number_types must be a collection of number types, such as "
            '{"premium_rate", "shared_cost"}'
        )
    unknown = sorted(str(item) for item in value if item not in _numbers.NUMBER_TYPES)
    if unknown:
        raise ConfigurationError(
            f"blocked_number_types: {', '.join(map(repr, unknown))} is not a libphonenumber "
            f"number type (one of: {', '.join(_numbers.NUMBER_TYPES)})"
        )
    if value:
        _numbers.require("ConfirmationPolicy(blocked_number_types=...)")
    return frozenset(value)


def refusal(record: SessionRecord, now: float) -> VerificationClosedError:
    """Why no code may be checked in ``record`` (its attempt was refused by the store).

    EXPIRED once the code's lifetime ran out with no call left, even before a pass over
    due rows says so; else the session's state, with the reason.
    """
    state = record.state
    if state is SessionState.EXHAUSTED and (record.code_expires or float("inf")) <= now:
        state = SessionState.EXPIRED
    if state is SessionState.VERIFIED:
        why = "the session is verified already (a code is checked once)"
    elif state is SessionState.LOCKED:
        why = "every verification attempt was used"
    elif state is SessionState.EXPIRED:
        why = "the code expired; start a new confirmation"
    elif state not in CHECKABLE_STATES:
        why = "the session ended"
    elif record.verify_limit is not None and record.verify_attempts >= record.verify_limit:
        why = "every verification attempt is taken (checks in flight)"
    else:
        why = "the code expired; the next call speaks it again"
    return VerificationClosedError(state, why)


def refusal_outcome(state: SessionState) -> str:
    """A refused check's span outcome: ``locked``, ``expired``, or ``closed``."""
    return state.value if state in (SessionState.LOCKED, SessionState.EXPIRED) else "closed"
