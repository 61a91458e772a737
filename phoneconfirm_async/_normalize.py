"""One shape for every format's answer: the dict every parser's output becomes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from phoneconfirm_async._errors import ParseError

_CANONICAL_STATUSES: Final = frozenset({"valid", "invalid"})
_SCALAR_TYPES: Final = frozenset({int, float, bool, type(None)})
#: The service's fields: an answer of exactly these takes the fast path (``flat_fields``).
_FIELD_NAMES: Final = frozenset({"error", "status", "message", "transaction_number", "duration"})


def normalize(document: Mapping[str, Any]) -> dict[str, Any]:
    """One shape for every format: the single root unwrapped, keys lower-cased,
    ``error`` an int, ``status`` lower-cased and stripped, empty values None, a numeric
    ``duration`` a float, ``transaction_number`` a string. Unknown fields are kept.
    ``document`` itself is left as it was.

    Raises:
        ParseError: the document is not a mapping of fields, or ``error`` is not a number.
    """
    if document.__class__ is not dict and not isinstance(document, Mapping):
        raise ParseError("the document is not a mapping")
    if len(document) == 1:
        (inner,) = document.values()
        if inner.__class__ is dict or isinstance(inner, Mapping):
            document = inner
    fields: dict[str, Any] = {}
    for key, value in document.items():
        kind = value.__class__
        if kind is str:
            if not value:
                value = None
        elif (
            kind is dict
            or kind is list
            or (kind not in _SCALAR_TYPES and isinstance(value, Mapping))
        ):
            value = _clean(value)
        fields[key if key.__class__ is str and key.islower() else str(key).lower()] = value
    return _typed(fields)


def normalize_decoded(document: dict[str, Any]) -> dict[str, Any]:
    """``normalize`` for a dict a built-in decoder just made (so it may be changed)."""
    fields = flat_fields(document)
    return fields if fields is not None else normalize(document)


def flat_fields(document: dict[str, Any]) -> dict[str, Any] | None:
    """The service's own answer normalized in place, or None for the general path.

    The service's shape is at most one wrapper around exactly its five lower-case fields,
    each text or null (``error`` and ``duration`` may be numbers, ``duration`` a float):
    every answer it gives. Anything else (and a float where it cannot come from the
    service, which orjson makes of an integer beyond 64 bits) goes to ``normalize``
    untouched, so both paths give the same dict.
    """
    if len(document) == 1:
        (inner,) = document.values()
        if inner.__class__ is dict:
            document = inner
    if len(document) != 5 or not _FIELD_NAMES.issuperset(document):
        return None
    get = document.get
    error = get("error")
    if error.__class__ is not int:
        if error.__class__ is not str:
            return None
        try:
            error = int(error)
        except ValueError:
            return None
    status = get("status")
    if status.__class__ is str:
        if status not in _CANONICAL_STATUSES:
            status = status.strip().lower() or None
    elif status is not None:
        return None
    message = get("message")
    if message.__class__ is str:
        message = message or None
    elif message is not None:
        return None
    number = get("transaction_number")
    if number.__class__ is str:
        number = number or None
    elif number is not None:
        return None
    duration = get("duration")
    if duration.__class__ is str:
        duration = _float_or_same(duration) if duration else None
    elif duration.__class__ is int:
        duration = float(duration)
    elif duration is not None and duration.__class__ is not float:
        return None
    document["error"] = error
    document["status"] = status
    document["message"] = message
    document["transaction_number"] = number
    document["duration"] = duration
    return document


def _typed(fields: dict[str, Any]) -> dict[str, Any]:
    """The typed fields: ``error``, ``status``, ``duration``, ``transaction_number``."""
    error = fields.get("error", 0)
    if error.__class__ is not int:
        fields["error"] = _error_code(error)
    status = fields.get("status")
    if status is not None and not (status.__class__ is str and status in _CANONICAL_STATUSES):
        fields["status"] = str(status).strip().lower() or None
    duration = fields.get("duration")
    if duration is not None and duration.__class__ is not float and duration.__class__ is not bool:
        fields["duration"] = _float_or_same(duration)
    number = fields.get("transaction_number")
    if number is not None and not isinstance(number, str):
        fields["transaction_number"] = str(number)
    return fields


def _float_or_same(value: Any) -> Any:
    try:
        return float(value)
    except (TypeError, ValueError):
        return value  # a non-numeric duration is kept as the service sent it


def _clean(value: Any) -> Any:
    if value == "":
        return None
    if isinstance(value, Mapping):
        return {str(k).lower(): _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def _error_code(value: Any) -> int:
    if value.__class__ is str:
        try:
            return int(value)  # "0", as XML and some JSON answers send it
        except ValueError:
            pass
    if isinstance(value, bool):
        raise ParseError("field 'error' is not a number")
    if isinstance(value, int):
        return value
    try:
        number = float(str(value).strip())
    except ValueError:
        raise ParseError("field 'error' is not a number") from None
    if not number.is_integer():
        raise ParseError("field 'error' is not a whole number")
    return int(number)
