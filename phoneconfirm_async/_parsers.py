"""The parser layer: bytes in, one normalized dict out, whatever the format.

A ``ResponseParser`` decodes a body into its raw document; the ``ParserRegistry``
picks the parser (Content-Type first, then the body's first non-blank byte, because HTTP APIs
of this age often label JSON as ``text/html``) and applies one normalization to every
parser's output. Parsers know bytes and dicts only: nothing here touches HTTP.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal
from xml.etree import ElementTree

from phoneconfirm_async._errors import ConfigurationError, ParseError
from phoneconfirm_async._normalize import flat_fields, normalize, normalize_decoded

MAX_BODY_BYTES: Final = 1024 * 1024
EXCERPT_CHARS: Final = 60

#: Any callable from body bytes to the raw decoded document.
ResponseParser = Callable[[bytes], Mapping[str, Any]]
#: The decoders of the built-in JSON format (see ``ParserRegistry.default``).
JsonDecoder = Literal["auto", "json", "orjson"]

_DTD = re.compile(rb"<!\s*(?:DOCTYPE|ENTITY|ELEMENT|ATTLIST|NOTATION)", re.IGNORECASE)
_BLANK = b" \t\r\n\xef\xbb\xbf"  # whitespace and a UTF-8 byte order mark


def parse_json(body: bytes) -> Mapping[str, Any]:
    """Decode a JSON document (stdlib ``json``)."""
    return _json_document(_text(body))


def _json_document(text: str) -> dict[str, Any]:
    if text[:1] in _BLANK_TEXT:
        document = _decode_json(text.lstrip("\ufeff"))  # ``decode`` skips whitespace
    else:
        # ``raw_decode`` without the two whitespace scans of ``decode``: the common case.
        document, end = _raw_decode_json(text)
        if end != len(text) and text[end:].strip(_JSON_WHITESPACE):
            raise json.JSONDecodeError("Extra data", text, end)
    if document.__class__ is not dict:
        raise ParseError("the JSON document is not an object")
    return document


def _json_fields(body: bytes) -> dict[str, Any]:
    """The built-in JSON format: decode with the stdlib, then normalize."""
    return normalize_decoded(_json_document(_text(body)))


def _json_fields_orjson(body: bytes) -> dict[str, Any]:
    """The built-in JSON format with orjson (the ``speedups`` extra) for the common case.

    The answer is the stdlib's, always: orjson accepts a subset of what ``json`` does, and
    reads integers beyond 64 bits as floats, so anything but the service's own shape (see
    ``flat_fields``) is decoded again by the stdlib (a rare, slower path).
    """
    try:
        document = _orjson_loads(body)  # type: ignore[misc]
    except ValueError:  # orjson.JSONDecodeError: the stdlib gives the verdict
        return _json_fields(body)
    if document.__class__ is dict:
        fields = flat_fields(document)
        if fields is not None:
            return fields
    return _json_fields(body)


def parse_xml(body: bytes) -> Mapping[str, Any]:
    """Decode an XML document (xmltodict's shape), refusing DTDs and entity declarations.

    A flat document (a root of leaf elements without attributes or namespaces: every
    answer of this service) is read with the stdlib's C parser, several times faster than
    xmltodict and giving the same dict; anything else goes through xmltodict.
    """
    if b"<!" in body and _DTD.search(body):  # the substring test is the cheap common case
        raise ParseError("XML with a DTD or entity declarations is refused")
    document = _flat_xml(body)
    if document is None:
        import xmltodict  # only now: it imports urllib, http.client and email

        document = xmltodict.parse(body, disable_entities=True)
    return document


def _xml_fields(body: bytes) -> dict[str, Any]:
    """The built-in XML format: the UTF-8 check, decoding, then normalization."""
    _text(body)
    return normalize_decoded(parse_xml(body))  # type: ignore[arg-type]


def _flat_xml(body: bytes) -> dict[str, Any] | None:
    """``{root: {child: text}}`` as xmltodict would give it, or None when the document is
    not flat (or not one ElementTree reads) and xmltodict must decide."""
    try:
        root = _xml_fromstring(body)
    except _XMLError:
        return None
    if root.attrib or not len(root) or "{" in root.tag or _has_text(root.text):
        return None
    children: dict[str, Any] = {}
    for child in root:
        if child.attrib or len(child) or "{" in child.tag or _has_text(child.tail):
            return None  # attributes, nesting, namespaces or mixed content
        text = child.text
        children[child.tag] = (text.strip() or None) if text else None
    if len(children) != len(root):
        return None  # a repeated element: xmltodict makes it a list
    return {root.tag: children}


def _has_text(text: str | None) -> bool:
    return bool(text) and not text.isspace()  # type: ignore[union-attr]


def _text(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise _Refused("body is not UTF-8") from None


@dataclass(frozen=True, slots=True)
class _Entry:
    name: str
    parser: ResponseParser
    content_types: tuple[str, ...]
    prefixes: tuple[bytes, ...]
    # Body bytes to normalized fields: the built-in formats have their own fast paths.
    fields: Callable[[bytes], dict[str, Any]]


_CHOICE_CACHE_SIZE: Final = 64
_JSON_WHITESPACE: Final = " \t\n\r"
_BLANK_TEXT: Final = frozenset({"", " ", "\t", "\r", "\n", "\ufeff"})
_json_decoder = json.JSONDecoder()
_decode_json = _json_decoder.decode
_raw_decode_json = _json_decoder.raw_decode
_XMLError = ElementTree.ParseError
_xml_fromstring = ElementTree.fromstring

_orjson_loads: Callable[[bytes], Any] | None
try:
    from orjson import loads as _orjson_loads
except ImportError:  # the ``speedups`` extra is not installed: the stdlib decodes
    _orjson_loads = None


class ParserRegistry:
    """Named response parsers, chosen per response, with one normalization for all.

    Example:

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
        #: The decoder of the built-in JSON format (``"json"`` or ``"orjson"``), or None.
        self.json_decoder: str | None = None

    @classmethod
    def default(cls, *, json_decoder: JsonDecoder = "auto") -> ParserRegistry:
        """A registry with the built-in ``"json"`` and ``"xml"`` parsers.

        Args:
            json_decoder: ``"auto"`` (orjson when the ``speedups`` extra is installed, else
                the stdlib), ``"json"`` (the stdlib) or ``"orjson"``. Both give the same
                dicts: orjson only speeds up the common answer.

        Raises:
            ConfigurationError: ``"orjson"`` was asked for and is not installed, or the
                name is unknown.
        """
        if json_decoder == "auto":
            json_decoder = "orjson" if _orjson_loads is not None else "json"
        if json_decoder == "orjson":
            if _orjson_loads is None:
                raise ConfigurationError(
                    "json_decoder='orjson' needs orjson: "
                    "pip install 'phoneconfirm-async[speedups]'"
                )
            json_fields = _json_fields_orjson
        elif json_decoder == "json":
            json_fields = _json_fields
        else:
            raise ConfigurationError("json_decoder must be 'auto', 'json' or 'orjson'")
        registry = cls()
        registry.json_decoder = json_decoder
        registry._add(
            _Entry(
                "json",
                parse_json,
                ("application/json", "text/json", "application/javascript"),
                (b"{", b"["),
                json_fields,
            )
        )
        registry._add(
            _Entry("xml", parse_xml, ("application/xml", "text/xml"), (b"<",), _xml_fields)
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
        types = tuple(t.lower() for t in content_types)
        self._add(_Entry(name, parser, types, tuple(prefixes), _custom_fields(parser)))

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
            start = body[:1]
            if not start or start in _BLANK:
                start = body.lstrip(_BLANK)[:1]
            entry = self._choices.get((content_type, start))
            if entry is None:
                entry = self._choose(body, start, content_type)
                if len(self._choices) < _CHOICE_CACHE_SIZE:
                    self._choices[content_type, start] = entry
            return entry.fields(body)
        except Exception as exc:  # every parser failure becomes one ParseError
            reason = exc.args[0] if isinstance(exc, _Refused) else _reason(exc)
            excerpt = _excerpt(body, redact)
        raise ParseError(reason, status_code=status_code, excerpt=excerpt)

    def _choose(self, body: bytes, start: bytes, content_type: str | None) -> _Entry:
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
        _text(body)  # a body of no known format that is not even text says so
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


def _custom_fields(parser: ResponseParser) -> Callable[[bytes], dict[str, Any]]:
    """Body to fields through a registered parser: the UTF-8 check, then normalization."""

    def fields(body: bytes) -> dict[str, Any]:
        _text(body)
        return normalize(parser(body))

    return fields
