"""The parser layer: one normalized dict for every format, ParseError for everything else."""

from __future__ import annotations

import json
import time
import tracemalloc
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phoneconfirm_async import ParseError, ParserRegistry

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
def test_json_and_xml_normalize_identically(body: bytes, content_type: str | None) -> None:
    """Every format and label of the same answer gives the same dict."""
    assert registry.parse(body, content_type) == EXPECTED


def test_any_root_name_and_case() -> None:
    """The single root is unwrapped whatever its name; keys are lower-cased."""
    body = b"<PhoneConfirm><Error>2</Error><Status>invalid</Status><Message/></PhoneConfirm>"
    assert registry.parse(body) == {"error": 2, "status": "invalid", "message": None}


def test_flat_document_and_unknown_fields_kept() -> None:
    """A document without a wrapper is taken as is; unknown fields are kept."""
    body = json.dumps({"error": "4", "status": "invalid", "extra": {"Nested": ""}}).encode()
    assert registry.parse(body) == {"error": 4, "status": "invalid", "extra": {"nested": None}}


def test_transaction_numbers_stay_strings() -> None:
    """A numeric transaction number is kept as text (leading zeros matter)."""
    fields = registry.parse(b'{"r": {"error": 0, "transaction_number": 123}}')
    assert fields["transaction_number"] == "123"
    assert registry.parse(XML_PLACE)["transaction_number"] == "0012345"


def test_non_numeric_duration_is_kept() -> None:
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
def test_failures_are_parse_errors(body: bytes, reason: str) -> None:
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


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=512))
def test_arbitrary_bytes_give_a_dict_or_parse_error(body: bytes) -> None:
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
