"""The emulator's reading of the Phone Confirm wire protocol: the service's endpoints,
parameters and error codes.

Pure functions from query parameters to answers, kept apart from the HTTP plumbing so the
rules can be read in one place. Nothing here is shared with the client on purpose: the
emulator is an independent counterpart, so a misreading of the protocol cannot hide by being
made on both sides at once.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Literal
from xml.sax.saxutils import escape

Format = Literal["json", "xml"]
Endpoint = Literal["placecall", "verifycode"]

MAX_QUERY_BYTES: Final = 4096
_PHONE_JUNK = re.compile(r"[\s\-.()]")
_CODE = re.compile(r"[A-Za-z0-9]{1,10}")
_DIGITS = re.compile(r"[0-9]+")
_KNOWN_PARAMS: Final = frozenset(
    {
        "phone",
        "country_code",
        "code",
        "type",
        "apikey",
        "domain",
        "redial_count",
        "redial_interval",
        "call_place_time",
        "call_place_tile",
        "secret_key",
        "transaction_number",
    }
)

#: JSON wrapper key / XML root per endpoint: the real service is not consistent either.
_ROOTS: Final[dict[Endpoint, dict[Format, str]]] = {
    "placecall": {"json": "phoneconfirm", "xml": "response"},
    "verifycode": {"json": "verifycode", "xml": "phoneconfirm"},
}
_CONTENT_TYPES: Final[dict[Endpoint, dict[Format, str]]] = {
    "placecall": {"json": "application/json", "xml": "application/xml"},
    # The real service labels JSON as HTML on some endpoints; clients must cope.
    "verifycode": {"json": "text/html; charset=UTF-8", "xml": "text/xml; charset=UTF-8"},
}


class ProtocolError(Exception):
    """A request the service answers with an error code instead of doing the work."""

    def __init__(self, code: int, message: str, http_status: int = 200) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.http_status = http_status


@dataclass(frozen=True, slots=True)
class Answer:
    """The fields of one answer, before rendering."""

    error: int
    status: str
    message: str
    transaction_number: str = ""
    http_status: int = 200


def requested_format(params: list[tuple[str, str]]) -> tuple[Format, ProtocolError | None]:
    """The response format asked for, and an error if ``type`` is repeated or unknown."""
    values = [value for key, value in params if key == "type"]
    if len(values) > 1:
        return "json", ProtocolError(1, "parameter 'type' given more than once")
    wanted = values[0].strip().lower() if values else "json"
    if wanted == "json":
        return "json", None
    if wanted == "xml":
        return "xml", None
    return "json", ProtocolError(1, "parameter 'type' must be 'json' or 'xml'")


def single_values(params: list[tuple[str, str]], query_bytes: int) -> dict[str, str]:
    """Collapse the query to one value per name, refusing repeats and oversized queries."""
    if query_bytes > MAX_QUERY_BYTES:
        raise ProtocolError(1, f"query string longer than {MAX_QUERY_BYTES} bytes")
    values: dict[str, str] = {}
    for key, value in params:
        if key in values and key in _KNOWN_PARAMS:
            raise ProtocolError(1, f"parameter '{key}' given more than once")
        values.setdefault(key, value)
    return values


def required(values: dict[str, str], name: str) -> str:
    value = values.get(name, "").strip()
    if not value:
        raise ProtocolError(1, f"missing parameter '{name}'")
    return value


def authorize(values: dict[str, str], api_keys: tuple[str, ...], domains: tuple[str, ...]) -> None:
    """Check the key (error 2) and the domain it is used from (error 3, HTTP 503)."""
    key = required(values, "apikey")
    domain = required(values, "domain")
    if key not in api_keys:
        raise ProtocolError(2, "API key unknown")
    if domain.lower() not in {d.lower() for d in domains}:
        raise ProtocolError(3, "domain not trusted for this API key", http_status=503)


@dataclass(frozen=True, slots=True)
class PlaceParams:
    phone: str
    country_code: str
    code: str


def read_place_params(values: dict[str, str], uncallable: frozenset[str]) -> PlaceParams:
    """Validate a placecall request (error 1) and whether the number can be called (error 4)."""
    phone = _PHONE_JUNK.sub("", required(values, "phone"))
    if not _DIGITS.fullmatch(phone) or not 4 <= len(phone) <= 15:
        raise ProtocolError(1, "parameter 'phone' must be 4 to 15 digits")
    country_code = required(values, "country_code").removeprefix("+")
    if not _DIGITS.fullmatch(country_code) or len(country_code) > 3:
        raise ProtocolError(1, "parameter 'country_code' must be 1 to 3 digits")
    code = required(values, "code")
    if not _CODE.fullmatch(code):
        raise ProtocolError(1, "parameter 'code' must be 1 to 10 letters or digits")
    _check_redial(values)
    if int(country_code) == 0 or len(country_code) + len(phone) > 15 or phone in uncallable:
        raise ProtocolError(4, "phone number or country code not callable")
    return PlaceParams(phone, country_code, code)


def _check_redial(values: dict[str, str]) -> None:
    count = values.get("redial_count")
    if count is not None and (not _DIGITS.fullmatch(count.strip()) or int(count) > 10):
        raise ProtocolError(1, "parameter 'redial_count' must be a whole number from 0 to 10")
    interval = values.get("redial_interval")
    if interval is not None:
        try:
            seconds = float(interval)  # clients send 10, 10.0 or 1E+01 alike
        except ValueError:
            seconds = -1.0
        if not 0 < seconds <= 86400:
            raise ProtocolError(1, "parameter 'redial_interval' must be 1 to 86400 seconds")
    when = values.get("call_place_time", values.get("call_place_tile"))
    if when is not None and parse_place_time(when) is None:
        raise ProtocolError(
            1, "parameter 'call_place_time' must be 'YYYY-MM-DD HH:MM:SS' or seconds"
        )


def parse_place_time(text: str) -> datetime | float | None:
    """A ``call_place_time``: seconds from now, or a time (UTC when it has no zone)."""
    text = text.strip()
    if _DIGITS.fullmatch(text):
        return float(text)
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def read_verify_params(values: dict[str, str]) -> tuple[str, str]:
    transaction_number = required(values, "transaction_number")
    code = required(values, "code")
    if not _CODE.fullmatch(code):
        raise ProtocolError(1, "parameter 'code' must be 1 to 10 letters or digits")
    return transaction_number, code


def render(endpoint: Endpoint, fmt: Format, answer: Answer, duration: float) -> tuple[bytes, str]:
    """Render an answer as the service does: body bytes and Content-Type.

    ``error`` and ``duration`` are numbers on placecall and strings on verifycode, because
    the real service is reported to mix them.
    """
    numeric = endpoint == "placecall"
    fields: dict[str, object] = {
        "error": answer.error if numeric else str(answer.error),
        "status": answer.status,
        "message": answer.message,
        "transaction_number": answer.transaction_number,
        "duration": round(duration, 6) if numeric else f"{duration:.6f}",
    }
    root = _ROOTS[endpoint][fmt]
    content_type = _CONTENT_TYPES[endpoint][fmt]
    if fmt == "json":
        return json.dumps({root: fields}).encode(), content_type
    children = "".join(
        f"<{name}/>" if value == "" else f"<{name}>{escape(str(value))}</{name}>"
        for name, value in fields.items()
    )
    body = f'<?xml version="1.0" encoding="UTF-8"?>\n<{root}>{children}</{root}>\n'
    return body.encode(), content_type
