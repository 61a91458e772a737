"""The parser layer: one normalized dict for every format, ParseError for everything else."""

from __future__ import annotations

import json
import time
import tracemalloc
from typing import Any

import pytest
import xmltodict
from hypothesis import given, settings
from hypothesis import strategies as st

from phoneconfirm_async import ConfigurationError, ParseError, ParserRegistry

#: The built-in JSON format with each decoder: both must give the same dicts.
REGISTRIES = {
    decoder: ParserRegistry.default(json_decoder=decoder) for decoder in ("json", "orjson")
}
DECODERS = pytest.mark.parametrize("registry", REGISTRIES.values(), ids=REGISTRIES.keys())
registry = ParserRegistry.default()

JSON_PLACE = b'{"phoneconfirm": {"error": 0, "status": " Valid ", "message": "call placed", "transaction_number": "0012345", "duration": 0.25}}'  # noqa: E501
JSON_VERIFY = b'{"verifycode": {"error": "0", "status": "valid", "message": "call placed", "transaction_number": "0012345", "duration": "0.25"}}'  # noqa: E501
XML_PLACE = b'<?xml version="1.0" encoding="UTF-8"?>\n<response><error>0</error><status>VALID</status><message>call placed</message><transaction_number>0012345</transaction_number><duration>0.25</duration></response>'  # noqa: E501
EXPECTED = {
    "error": 0,
    "status": "valid",
    "message": "call placed",
    "transaction_number": "0012345",
    "duration": 0.25,
}


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (JSON_PLACE, "application/json"),
        (JSON_VERIFY, "text/html; charset=UTF-8"),
        (XML_PLACE, "application/xml"),
        (XML_PLACE, "text/html"),
        (XML_PLACE, None),
        (JSON_PLACE, None),
        (JSON_PLACE, "application/xml"),  # labelled wrong: the body decides
        (b"\xef\xbb\xbf  \n" + JSON_PLACE, "text/plain"),
    ],
)
@DECODERS
def test_json_and_xml_normalize_identically(
    registry: ParserRegistry, body: bytes, content_type: str | None
) -> None:
    """Every format and label of the same answer gives the same dict."""
    assert registry.parse(body, content_type) == EXPECTED


def test_any_root_name_and_case() -> None:
    """The single root is unwrapped whatever its name; keys are lower-cased."""
    body = b"<PhoneConfirm><Error>2</Error><Status>invalid</Status><Message/></PhoneConfirm>"
    assert registry.parse(body) == {"error": 2, "status": "invalid", "message": None}


@DECODERS
def test_flat_document_and_unknown_fields_kept(registry: ParserRegistry) -> None:
    """A document without a wrapper is taken as is; unknown fields are kept."""
    body = json.dumps({"error": "4", "status": "invalid", "extra": {"Nested": ""}}).encode()
    assert registry.parse(body) == {"error": 4, "status": "invalid", "extra": {"nested": None}}


@DECODERS
def test_transaction_numbers_stay_strings(registry: ParserRegistry) -> None:
    """A numeric transaction number is kept as text (leading zeros matter)."""
    fields = registry.parse(b'{"r": {"error": 0, "transaction_number": 123}}')
    assert fields["transaction_number"] == "123"
    assert registry.parse(XML_PLACE)["transaction_number"] == "0012345"


@DECODERS
def test_non_numeric_duration_is_kept(registry: ParserRegistry) -> None:
    """Only a numeric duration becomes a float."""
    assert registry.parse(b'{"r": {"error": 0, "duration": "fast"}}')["duration"] == "fast"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "empty"),
        (b"\xff\xfe{}", "UTF-8"),
        (JSON_PLACE[:40], "malformed"),
        (XML_PLACE[:60], "malformed"),
        (b"[1, 2]", "not an object"),
        (b'{"r": {"error": "none"}}', "error"),
        (b'{"r": {"error": 1.5}}', "error"),
        (b"Bad Gateway", "unknown format"),
        (b"{" * 100_000, "malformed"),
        (b" " * (1024 * 1024 + 1), "larger"),
    ],
)
@DECODERS
def test_failures_are_parse_errors(registry: ParserRegistry, body: bytes, reason: str) -> None:
    """Truncated, non-UTF-8, oversized, unknown or ill-typed bodies raise ParseError."""
    with pytest.raises(ParseError, match=reason) as caught:
        registry.parse(body, "text/html", status_code=200)
    assert caught.value.status_code == 200
    assert len(caught.value.excerpt) <= 60


def test_excerpt_is_redacted() -> None:
    """The excerpt quoted in a ParseError passes through the redactor."""
    with pytest.raises(ParseError) as caught:
        registry.parse(b"oops apikey=SECRET", redact=lambda t: t.replace("SECRET", "***"))
    assert "SECRET" not in str(caught.value)
    assert "***" in caught.value.excerpt


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<response><error>0</error><message>&lol9;</message></response>"""
EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<response><error>0</error><message>&xxe;</message></response>"""


@pytest.mark.parametrize("body", [BILLION_LAUGHS, EXTERNAL_ENTITY], ids=["laughs", "external"])
def test_xml_bombs_are_refused_fast_with_bounded_memory(body: bytes) -> None:
    """DTDs and entity declarations are refused before any expansion."""
    tracemalloc.start()
    started = time.perf_counter()
    with pytest.raises(ParseError, match="DTD"):
        registry.parse(body, "application/xml")
    elapsed = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 1024 * 1024
    assert elapsed < 1.0  # generous: a refusal is a regex search, expansion would take ages


def test_custom_parser_gets_the_same_normalization() -> None:
    """A registered format is chosen by its content type and normalized like the others."""

    def parse_kv(body: bytes) -> dict[str, Any]:
        return {"Answer": dict(line.split("=", 1) for line in body.decode().splitlines())}

    custom = ParserRegistry.default()
    custom.register("kv", parse_kv, content_types=("text/x-kv",))
    fields = custom.parse(b"ERROR=3\nStatus=Invalid \nmessage=", "text/x-kv; charset=utf-8")
    assert fields == {"error": 3, "status": "invalid", "message": None}
    assert custom.names == ("json", "xml", "kv")
    assert "kv" in custom


def test_a_failing_custom_parser_raises_parse_error() -> None:
    """Whatever a custom parser raises becomes a ParseError."""

    def explode(body: bytes) -> dict[str, Any]:
        raise KeyError("boom")

    custom = ParserRegistry()
    custom.register("boom", explode, content_types=("text/boom",))
    with pytest.raises(ParseError, match="KeyError"):
        custom.parse(b"x", "text/boom")


@DECODERS
@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=512))
def test_arbitrary_bytes_give_a_dict_or_parse_error(registry: ParserRegistry, body: bytes) -> None:
    """Any bytes: a dict or ParseError, nothing else."""
    try:
        result = registry.parse(body, "text/html")
    except ParseError:
        return
    assert isinstance(result, dict)


_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20))
_JSON_VALUES = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(st.text(max_size=12), _JSON_VALUES, max_size=6),
    st.sampled_from(["json", "xml"]),
)
def test_structured_documents_give_a_dict_or_parse_error(
    document: dict[str, Any], fmt: str
) -> None:
    """Well-formed documents of any shape: a dict or ParseError, nothing else."""
    if fmt == "json":
        body = json.dumps({"root": document}).encode()
    else:
        children = "".join(f"<f{i}>{str(v)[:20]}</f{i}>" for i, v in enumerate(document.values()))
        body = f"<root>{children}</root>".encode()
    try:
        result = registry.parse(body)
    except ParseError:
        return
    assert isinstance(result, dict)
    if "error" in result:
        assert isinstance(result["error"], int)


def test_the_default_decoder_is_orjson_when_installed_and_names_are_checked() -> None:
    """``json_decoder="auto"`` takes orjson (installed by the dev extra); a wrong name is a
    ConfigurationError."""
    assert ParserRegistry.default().json_decoder == "orjson"
    with pytest.raises(ConfigurationError, match="json_decoder"):
        ParserRegistry.default(json_decoder="simdjson")  # type: ignore[arg-type]


_ANSWER_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=2**63 - 5, max_value=2**70),  # beyond orjson's exact integers
    st.floats(),
    st.text(max_size=12),
    st.sampled_from(["", "0", " 7 ", "1e400", "0.25", "VALID", " invalid "]),
    st.lists(st.integers(), max_size=2),
)
_SERVICE_FIELDS = ("error", "status", "message", "transaction_number", "duration")
_ANSWERS = st.fixed_dictionaries(dict.fromkeys(_SERVICE_FIELDS, _ANSWER_VALUES)) | (
    st.dictionaries(st.sampled_from([*_SERVICE_FIELDS, "Error", "extra"]), _ANSWER_VALUES)
)


@settings(max_examples=500, deadline=None)
@given(_ANSWERS, st.sampled_from(["verifycode", None]))
def test_both_decoders_give_what_the_general_path_gives(
    fields: dict[str, Any], root: str | None
) -> None:
    """Whatever the answer holds (integers past 64 bits, infinities, odd types, unknown or
    upper-case names), both decoders give the same dict or the same ParseError as plain
    ``json.loads`` followed by the general normalization (a registered parser)."""
    document: Any = fields if root is None else {root: fields}
    body = json.dumps(document).encode()
    plain = ParserRegistry.default()
    plain.register("json", json.loads, content_types=("application/json",), prefixes=(b"{",))
    outcomes = []
    for candidate in (*REGISTRIES.values(), plain):
        try:
            outcomes.append(repr(candidate.parse(body, "text/html")))  # nan != nan: compare reprs
        except ParseError as exc:
            outcomes.append(str(exc))
    assert outcomes[0] == outcomes[1] == outcomes[2]


def _xmltodict_registry() -> ParserRegistry:
    """The built-in registry with its XML format replaced by plain xmltodict."""
    plain = ParserRegistry.default()
    plain.register(
        "xml",
        lambda body: xmltodict.parse(body, disable_entities=True),
        content_types=("application/xml", "text/xml"),
        prefixes=(b"<",),
    )
    return plain


_XML_TEXT = st.one_of(
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=10),
    st.sampled_from(["", "  ", " 0 ", "a &amp; b", "<![CDATA[x<y]]>", "x<!--c-->y", "\n\t"]),
)


@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["error", "status", "message", "duration", "x:y", "Error"]),
            _XML_TEXT,
            st.sampled_from(["", ' a="1"', ' xmlns="urn:x"']),
        ),
        max_size=6,
    ),
    st.sampled_from(["", "  ", "text", "<?pi x?>"]),
    st.booleans(),
)
def test_the_fast_xml_path_gives_what_xmltodict_gives(
    children: list[tuple[str, str, str]], root_text: str, declaration: bool
) -> None:
    """Flat documents take the stdlib's parser; any document gives the same dict (or the
    same error) as xmltodict itself: whitespace, entities, CDATA, comments, attributes,
    namespaces, prefixes, repeated elements, mixed content."""
    body = "".join(
        f"<{name}{attributes}>{_xml_escape(text)}</{name}>" for name, text, attributes in children
    )
    head = '<?xml version="1.0" encoding="UTF-8"?>\n' if declaration else ""
    document = f"{head}<phoneconfirm>{root_text}{body}</phoneconfirm>".encode()
    outcomes: list[object] = []
    for candidate in (registry, _xmltodict_registry()):
        try:
            outcomes.append(candidate.parse(document, "text/xml"))
        except ParseError as exc:
            outcomes.append(str(exc))
    assert outcomes[0] == outcomes[1]


def _xml_escape(text: str) -> str:
    if text.startswith(("<![CDATA[", "x<!--")) or "&amp;" in text:
        return text  # markup on purpose
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
