"""Input rules, checked before sending: each returns the wire form or raises
ValidationError."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from phoneconfirm_async import _numbers
from phoneconfirm_async._errors import ValidationError

MAX_REDIAL_COUNT: Final = 10
MAX_REDIAL_INTERVAL: Final = 86400.0

_PHONE_SEPARATORS = re.compile(r"[\s\-.()]")
_DIGITS = re.compile(r"[0-9]+")
_CODE = re.compile(r"[A-Za-z0-9]{1,10}")
_CODE_SEPARATORS = re.compile(r"[\s\-]")


def place_fields(phone_: Any, country_code_: Any, code_: Any) -> tuple[str, str, str]:
    """A placement's fields in wire form, by ``phone``, ``country_code`` and
    ``code``; values already in wire form (a batch's usual rows) pass in one check."""
    if (
        phone_.__class__ is str
        and country_code_.__class__ is str
        and code_.__class__ is str
        and phone_.isdigit()
        and country_code_.isdigit()
        and code_.isalnum()
        and phone_.isascii()
        and country_code_.isascii()
        and code_.isascii()
        and 4 <= len(phone_) <= 15
        and len(country_code_) <= 3
        and len(code_) <= 10
        and _numbers.library() is None
    ):
        return phone_, country_code_, code_
    phone_, country_code_ = number(phone_, country_code_)
    return phone_, country_code_, code(code_)


def number(phone_: object, country_code_: object) -> tuple[str, str]:
    """A phone and its country code in wire form: ``phone`` national (with
    ``country_code``) or international (``+15555550123``, country code optional), checked
    by libphonenumber when the ``numbers`` extra is installed."""
    given = None
    if country_code_ is not None and not (isinstance(country_code_, str) and not country_code_):
        given = country_code(country_code_)
    if isinstance(phone_, str) and phone_.lstrip().startswith("+"):
        digits = _PHONE_SEPARATORS.sub("", phone_.strip()[1:])
        if not _DIGITS.fullmatch(digits) or not 4 <= len(digits) <= 15:
            raise ValidationError(
                "phone",
                "an international number must be '+' and 4 to 15 digits (spaces, dashes, "
                "dots and parentheses allowed)",
            )
        return _numbers.international(f"+{digits}", given)
    digits = phone(phone_)
    if given is None:
        raise ValidationError(
            "country_code",
            "is required for a national number (1 to 3 digits); or give the phone in "
            "international form, +<country code><number>",
        )
    if _numbers.library() is not None:
        return _numbers.national(digits, given)
    return digits, given


def phone(value: object) -> str:
    """Digits only, 4 to 15 of them, after stripping spaces, dashes, dots and parentheses."""
    if value.__class__ is str and value.isdigit() and value.isascii() and 4 <= len(value) <= 15:
        return value  # already the wire form: the common case, without a regex
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise ValidationError("phone", "must be a string of 4 to 15 digits")
    digits = _PHONE_SEPARATORS.sub("", str(value))
    if not _DIGITS.fullmatch(digits) or not 4 <= len(digits) <= 15:
        raise ValidationError(
            "phone", "must be 4 to 15 digits (spaces, dashes, dots and parentheses allowed)"
        )
    return digits


def country_code(value: object) -> str:
    """1 to 3 digits; a leading ``+`` is stripped."""
    if value.__class__ is str and value.isdigit() and value.isascii() and len(value) <= 3:
        return value
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise ValidationError("country_code", "must be 1 to 3 digits")
    text = str(value).strip().removeprefix("+")
    if not _DIGITS.fullmatch(text) or len(text) > 3:
        raise ValidationError("country_code", "must be 1 to 3 digits (a leading '+' is allowed)")
    return text


def code(value: object) -> str:
    """1 to 10 letters or digits; spaces and dashes, as people type them (``123 456``,
    ``123-456``), are removed."""
    if value.__class__ is str and value.isalnum() and value.isascii() and len(value) <= 10:
        return value
    if isinstance(value, str):
        value = _CODE_SEPARATORS.sub("", value)
    if not isinstance(value, str) or not _CODE.fullmatch(value):
        raise ValidationError(
            "code", "must be 1 to 10 letters or digits (spaces and dashes allowed)"
        )
    return value


def transaction_number(value: object) -> str:
    """A non-empty string (kept as given; never converted to a number)."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip() or len(value) > 64:
        raise ValidationError("transaction_number", "must be a non-empty string")
    return value.strip()


def redial_count(value: object) -> int:
    """A whole number from 0 to 10."""
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_REDIAL_COUNT:
        raise ValidationError(
            "redial_count", f"must be a whole number from 0 to {MAX_REDIAL_COUNT}"
        )
    return value


def redial_interval(value: object) -> float:
    """Positive seconds (a number or a timedelta), at most one day. The same value gives
    the same float object: a scheduler's sessions share their interval instead of holding
    100,000 copies of ``60.0``."""
    seconds = _seconds(value)
    if seconds is None or not 0 < seconds <= MAX_REDIAL_INTERVAL:
        raise ValidationError(
            "redial_interval", "must be positive seconds (or a timedelta), at most one day"
        )
    if len(_INTERVALS) < 256:  # a bounded cache: intervals are few
        return _INTERVALS.setdefault(seconds, seconds)
    return _INTERVALS.get(seconds, seconds)


_INTERVALS: dict[float, float] = {}


def place_time(value: object) -> datetime | float:
    """An aware datetime (kept absolute) or a relative delay in seconds (never negative).

    A naive datetime is refused: a call must not be placed in the wrong time zone.
    """
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValidationError(
                "call_place_time", "a datetime must be timezone-aware (e.g. tzinfo=UTC)"
            )
        return value
    seconds = _seconds(value)
    if seconds is None:
        raise ValidationError(
            "call_place_time", "must be an aware datetime, a timedelta or a number of seconds"
        )
    return max(seconds, 0.0)


def place_time_wire(value: datetime | float) -> str:
    """``YYYY-MM-DD HH:MM:SS`` in UTC for a datetime, whole seconds for a delay."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    return str(math.ceil(value))


def _seconds(value: object) -> float | None:
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None
