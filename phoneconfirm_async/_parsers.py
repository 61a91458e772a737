"""The parser layer: bytes in, one normalized dict out, whatever the format.

A :data:`ResponseParser` decodes a body into its raw document; the :class:`ParserRegistry`
picks the parser (Content-Type first, then the body's first non-blank byte, because HTTP APIs
of this age often label JSON as ``text/html``) and applies one normalization to every
parser's output. Parsers know bytes and dicts only: nothing here touches HTTP.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import xmltodict

from phoneconfirm_async._errors import ParseError

MAX_BODY_BYTES: Final = 1024 * 1024
EXCERPT_CHARS: Final = 60

#: Any callable from body bytes to the raw decoded document.
ResponseParser = Callable[[bytes], Mapping[str, Any]]

_DTD = re.compile(rb"<!\s*(?:DOCTYPE|ENTITY|ELEMENT|ATTLIST|NOTATION)", re.IGNORECASE)
_BLANK = b" \t\r\n\xef\xbb\xbf"  # whitespace and a UTF-8 byte order mark


def parse_json(body: bytes) -> Mapping[str, Any]:
    """Decode a JSON document (stdlib ``json``)."""
    return _parse_json_text(body.decode("utf-8"))


def _parse_json_text(text: str) -> Mapping[str, Any]:
    document = _decode_json(text)
    if document.__class__ is not dict:
        raise ParseError("the JSON document is not an object")
    return document


def parse_xml(body: bytes) -> Mapping[str, Any]:
    """Decode an XML document (xmltodict), refusing DTDs and entity declarations."""
    if b"<!" in body and _DTD.search(body):  # the substring test is the cheap common case
        raise ParseError("XML with a DTD or entity declarations is refused")
    document: Mapping[str, Any] = xmltodict.parse(body, disable_entities=True)
    return document


@dataclass(frozen=True, slots=True)
class _Entry:
    name: str
    parser: ResponseParser
    content_types: tuple[str, ...]
    prefixes: tuple[bytes, ...]
    # The built-in JSON parser takes the text the UTF-8 check already decoded.
    text_parser: Callable[[str], Mapping[str, Any]] | None = None


_CHOICE_CACHE_SIZE: Final = 64
_CANONICAL_STATUSES: Final = frozenset({"valid", "invalid"})
_SCALAR_TYPES: Final = frozenset({int, float, bool, type(None)})
_decode_json = json.JSONDecoder().decode


class ParserRegistry:
    """Named response parsers, chosen per response, with one normalization for all.

    Example::

        registry = ParserRegistry.default()
        registry.register("yaml", parse_yaml, content_types=("application/yaml",))
        data = registry.parse(body, content_type="text/html")
    """

    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}
        self._by_type: dict[str, _Entry] = {}
        # (Content-Type, first non-blank byte) -> parser: the choice is the same for every
        # answer of one endpoint, so it is made once.
        self._choices: dict[tuple[str | None, bytes], _Entry] = {}

    @classmethod
    def default(cls) -> ParserRegistry:
        """A registry with the built-in ``"json"`` and ``"xml"`` parsers."""
        registry = cls()
        registry._add(
            _Entry(
                "json",
                parse_json,
                ("application/json", "text/json", "application/javascript"),
                (b"{", b"["),
                text_parser=_parse_json_text,
            )
        )
        registry.register(
            "xml",
            parse_xml,
            content_types=("application/xml", "text/xml"),
            prefixes=(b"<",),
        )
        return registry

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    @property
    def names(self) -> tuple[str, ...]:
        """The registered format names, in registration order."""
        return tuple(self._entries)

    def register(
        self,
        name: str,
        parser: ResponseParser,
        *,
        content_types: tuple[str, ...] = (),
        prefixes: tuple[bytes, ...] = (),
    ) -> None:
        """Add (or replace) a parser.

        Args:
            name: the format's name, e.g. ``"yaml"``.
            parser: callable from body bytes to the raw document (a mapping).
            content_types: media types that select this parser (``text/html`` never should).
            prefixes: first non-blank bytes that identify the format when the Content-Type is
                missing or wrong (``b"{"`` for JSON).
        """
        self._add(_Entry(name, parser, tuple(t.lower() for t in content_types), tuple(prefixes)))

    def _add(self, entry: _Entry) -> None:
        self._entries[entry.name] = entry
        for media_type in entry.content_types:
            self._by_type[media_type] = entry
        self._choices.clear()

    def parse(
        self,
        body: bytes,
        content_type: str | None = None,
        *,
        status_code: int | None = None,
        redact: Callable[[str], str] | None = None,
    ) -> dict[str, Any]:
        """Decode and normalize a response body.

        Args:
            body: the raw bytes.
            content_type: the response's Content-Type header, if any.
            status_code: the HTTP status, quoted in a ParseError.
            redact: applied to the body excerpt quoted in a ParseError.

        Raises:
            ParseError: the body is too large, not UTF-8, of no known format, malformed,
                refused (DTDs, entities), or not one document of fields.
        """
        try:
            if len(body) > MAX_BODY_BYTES:
                raise _Refused(f"body larger than {MAX_BODY_BYTES} bytes")
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError:
                raise _Refused("body is not UTF-8") from None
            start = body[:1]
            if not start or start in _BLANK:
                start = body.lstrip(_BLANK)[:1]
                text = text.lstrip("\ufeff")
            entry = self._choices.get((content_type, start))
            if entry is None:
                entry = self._choose(start, content_type)
                if len(self._choices) < _CHOICE_CACHE_SIZE:
                    self._choices[content_type, start] = entry
            if entry.text_parser is not None:
                return normalize(entry.text_parser(text))
            return normalize(entry.parser(body))
        except Exception as exc:  # every parser failure becomes one ParseError
            reason = exc.args[0] if isinstance(exc, _Refused) else _reason(exc)
            excerpt = _excerpt(body, redact)
        raise ParseError(reason, status_code=status_code, excerpt=excerpt)

    def _choose(self, start: bytes, content_type: str | None) -> _Entry:
        labelled = None
        if content_type:
            labelled = self._by_type.get(content_type.split(";", 1)[0].strip().lower())
        if labelled is not None and (not labelled.prefixes or start in labelled.prefixes):
            return labelled
        for entry in self._entries.values():
            if start and start in entry.prefixes:
                return entry
        if labelled is not None:
            return labelled
        if not start:
            raise _Refused("empty body")
        raise _Refused(f"unknown format (Content-Type {content_type!r})")


class _Refused(Exception):
    """A body refused before parsing; its message is the whole reason."""


def _reason(exc: Exception) -> str:
    if isinstance(exc, ParseError):
        return str(exc)
    return f"malformed body ({type(exc).__name__})"


def _excerpt(body: bytes, redact: Callable[[str], str] | None) -> str:
    text = body[: EXCERPT_CHARS * 4].decode("utf-8", errors="replace")[:EXCERPT_CHARS]
    return redact(text) if redact is not None else text


def normalize(document: Mapping[str, Any]) -> dict[str, Any]:
    """One shape for every format: the single root unwrapped, keys lower-cased,
    ``error`` an int, ``status`` lower-cased and stripped, empty values None, a numeric
    ``duration`` a float, ``transaction_number`` a string. Unknown fields are kept.

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
    error = fields.get("error", 0)
    if error.__class__ is not int:
        fields["error"] = _error_code(error)
    status = fields.get("status")
    if status is not None and status not in _CANONICAL_STATUSES:
        fields["status"] = str(status).strip().lower() or None
    duration = fields.get("duration")
    if duration is not None and duration.__class__ is not float and not isinstance(duration, bool):
        # A non-numeric duration is kept as the service sent it.
        with contextlib.suppress(TypeError, ValueError):
            fields["duration"] = float(duration)
    number = fields.get("transaction_number")
    if number is not None and number.__class__ is not str and not isinstance(number, str):
        fields["transaction_number"] = str(number)
    return fields


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
