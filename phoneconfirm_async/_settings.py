"""Settings checked where they are given: every bad value is a ``ConfigurationError`` that
names the argument and its rule (client, scheduler, stores, ``RetryPolicy``)."""

from __future__ import annotations

import math
from urllib.parse import urlsplit

from phoneconfirm_async._errors import ConfigurationError


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def seconds(name: str, value: object, *, zero: bool = False, finite: bool = True) -> float:
    """A number of seconds: positive (or ``zero`` allowed), finite unless told."""
    if _number(value):
        number = float(value)  # type: ignore[arg-type]
        if (number > 0 or (zero and number == 0)) and (
            math.isfinite(number) or (not finite and number == math.inf)
        ):
            return number
    rule = "a number of seconds >= 0" if zero else "a positive number of seconds"
    raise ConfigurationError(f"{name} must be {rule}, not {value!r}")


def seconds_or_none(name: str, value: object) -> float | None:
    """Positive seconds, or None for no bound."""
    if value is None:
        return None
    return seconds(name, value, finite=False)


def whole(name: str, value: object, minimum: int) -> int:
    """A whole number of at least ``minimum``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigurationError(f"{name} must be a whole number >= {minimum}, not {value!r}")
    return value


def check_base_url(url: str, variable: str) -> str:
    """An ``http(s)://`` URL with a host and no query, without its trailing slash."""
    try:
        parsed = urlsplit(url)
        parsed.port  # noqa: B018 - reading it checks it (a port that is not a number raises)
    except (ValueError, TypeError, AttributeError):
        parsed = None
    if (
        parsed is None
        or parsed.scheme not in ("http", "https")
        or not parsed.hostname
        or not url.isprintable()
        or " " in url
    ):
        raise ConfigurationError(
            f"base_url (or {variable}) must be an http:// or https:// URL with a host"
        )
    if parsed.query or parsed.fragment:
        raise ConfigurationError("base_url must not carry a query string or fragment")
    return url.rstrip("/")
