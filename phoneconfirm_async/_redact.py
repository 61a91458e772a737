"""Keeping secrets out of logs and error text.

The API key, the secret key and confirmation codes travel in the query string, so every URL
that reaches a log record is rewritten with those values replaced by ``***``; phone numbers
in our own log lines are masked to their last four digits.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import Final

#: The query parameters whose values are secrets.
SECRET_PARAMS: Final = ("apikey", "secret_key", "code")
MASK: Final = "***"

_QUERY_SECRET = re.compile(
    rf"(?i)([?&;](?:{'|'.join(map(re.escape, SECRET_PARAMS))})=)[^&;#\s\"'>]*"
)

#: Loggers of the HTTP libraries that may format a request URL into a record.
THIRD_PARTY_LOGGERS: Final = (
    "httpx",
    "httpcore",
    "httpcore.http11",
    "httpcore.connection",
    "httpcore.proxy",
    "aiohttp.client",
)


def redact_url(url: str) -> str:
    """The URL with the values of ``apikey``, ``secret_key`` and ``code`` replaced."""
    return _QUERY_SECRET.sub(lambda m: m.group(1) + MASK, url)


def redact_text(text: str, secrets: Iterable[str | None]) -> str:
    """The text with every secret value, and every secret query parameter, replaced."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, MASK)
    return redact_url(text)


def mask_phone(phone: str) -> str:
    """A phone number for logs: only its last four digits show."""
    return MASK + phone[-4:] if len(phone) > 4 else MASK


class RedactingFilter(logging.Filter):
    """Rewrites a record's message with secret query values replaced, then lets it through."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken record is the logging module's business, not ours
            return True
        redacted = redact_url(message)
        if redacted != message:
            record.msg = redacted
            record.args = None
        return True


_FILTER = RedactingFilter()


def install_log_filters() -> None:
    """Put the redacting filter on the HTTP libraries' loggers (idempotent)."""
    for name in THIRD_PARTY_LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
