"""The emulator speaks the wire protocol: endpoints, formats, error codes, compatibility."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import httpx
import pytest

from phoneconfirm_async.emulator import Emulator
from tests.conftest import EmulatorFactory
from tests.emulator.conftest import PLACE, VERIFY, place, place_params, verify

pytestmark = pytest.mark.anyio


def fields_of(response: httpx.Response) -> dict[str, Any]:
    """The answer's fields from either format (the test's own reading, not the client's)."""
    if response.text.lstrip().startswith("<"):
        root = ET.fromstring(response.content)
        return {child.tag: child.text for child in root}
    (inner,) = response.json().values()
    assert isinstance(inner, dict)
    return inner


async def test_placecall_json_shape(http: httpx.AsyncClient, emulator: Emulator) -> None:
    """placecall JSON: one wrapper key; error and duration are numbers, the rest strings."""
    response = await place(http, emulator)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert len(body) == 1
    fields = fields_of(response)
    assert fields["error"] == 0
    assert fields["status"] == "valid"
    assert isinstance(fields["message"], str)
    assert isinstance(fields["transaction_number"], str)
    assert fields["transaction_number"].isdigit()
    assert isinstance(fields["duration"], float)


async def test_verifycode_json_mixes_types(http: httpx.AsyncClient, emulator: Emulator) -> None:
    """verifycode JSON: error and duration are strings, and it is labelled text/html."""
    tx = fields_of(await place(http, emulator))["transaction_number"]
    response = await verify(http, emulator, tx, "4821")
    assert response.headers["content-type"].startswith("text/html")
    fields = fields_of(response)
    assert fields["error"] == "0"
    assert isinstance(fields["duration"], str)
    assert fields["status"] == "valid"


async def test_xml_format(http: httpx.AsyncClient, emulator: Emulator) -> None:
    """type=xml gives one root element whose children are the fields, on both endpoints."""
    response = await place(http, emulator, type="xml")
    assert "xml" in response.headers["content-type"]
    fields = fields_of(response)
    assert fields["error"] == "0"
    assert fields["status"] == "valid"
    verified = await verify(http, emulator, fields["transaction_number"], "4821", type="xml")
    assert fields_of(verified)["status"] == "valid"
    roots = {ET.fromstring(r.content).tag for r in (response, verified)}
    assert len(roots) == 2  # root names are not stable across endpoints


@pytest.mark.parametrize("path", [PLACE, PLACE.rstrip("/")])
async def test_both_slash_forms_answer_without_redirect(
    http: httpx.AsyncClient, emulator: Emulator, path: str
) -> None:
    """Endpoints answer with and without the trailing slash, never with a redirect."""
    response = await http.get(emulator.base_url + path, params=place_params())
    assert response.status_code == 200
    assert fields_of(response)["status"] == "valid"


async def test_verify_right_wrong_and_unknown(http: httpx.AsyncClient, emulator: Emulator) -> None:
    """A right code is valid, a wrong one invalid, an unknown transaction error 5."""
    tx = fields_of(await place(http, emulator))["transaction_number"]
    assert fields_of(await verify(http, emulator, tx, "0000"))["status"] == "invalid"
    assert fields_of(await verify(http, emulator, tx, "4821"))["status"] == "valid"
    assert fields_of(await verify(http, emulator, tx, "4821"))["status"] == "valid"
    unknown = fields_of(await verify(http, emulator, "999999", "4821"))
    assert (unknown["error"], unknown["status"]) == ("5", "invalid")


@pytest.mark.parametrize("fmt", ["json", "xml"])
@pytest.mark.parametrize(
    ("overrides", "error", "http_status"),
    [
        pytest.param({"phone": None}, 1, 200, id="missing-phone"),
        pytest.param({"code": None}, 1, 200, id="missing-code"),
        pytest.param({"apikey": None}, 1, 200, id="missing-key"),
        pytest.param({"apikey": "wrong"}, 2, 200, id="unknown-key"),
        pytest.param({"domain": "evil.example"}, 3, 503, id="untrusted-domain"),
        pytest.param({"country_code": "0"}, 4, 200, id="country-zero"),
        pytest.param({"phone": "5555501990123", "country_code": "999"}, 4, 200, id="e164-16"),
        pytest.param({"phone": "555 555 0199"}, 4, 200, id="uncallable-number"),
    ],
)
async def test_error_codes(
    http: httpx.AsyncClient,
    make_emulator: EmulatorFactory,
    fmt: str,
    overrides: dict[str, Any],
    error: int,
    http_status: int,
) -> None:
    """Each error code of the service's table comes with its HTTP status, in the asked format."""
    emulator = make_emulator(uncallable_numbers={"5555550199"})
    response = await place(http, emulator, type=fmt, **overrides)
    assert response.status_code == http_status
    fields = fields_of(response)
    assert int(fields["error"]) == error
    assert fields["status"] == "invalid"
    assert fields["message"]
    assert ("xml" in response.headers["content-type"]) == (fmt == "xml")
    assert emulator.calls == []  # rejected requests are not calls


async def test_failing_numbers_answer_invalid_and_are_dialed(
    http: httpx.AsyncClient, make_emulator: EmulatorFactory
) -> None:
    """A failing number answers error 0, status invalid: the call was dialed but failed."""
    emulator = make_emulator(failing_numbers={"555-555-0100"})
    fields = fields_of(await place(http, emulator, phone="5555550100"))
    assert (fields["error"], fields["status"]) == (0, "invalid")
    assert [c.phone for c in emulator.calls] == ["5555550100"]
    assert emulator.heard_code("5555550100") is None


async def test_answer_on_attempt(http: httpx.AsyncClient, make_emulator: EmulatorFactory) -> None:
    """The simulated person picks up the Nth call, and heard_code says what they heard."""
    emulator = make_emulator(answer_on_attempt=2)
    await place(http, emulator, code="1111")
    assert emulator.heard_code("555-555-0123") is None
    await place(http, emulator, code="2222")
    assert emulator.heard_code("555-555-0123") == "2222"
    assert emulator.heard_code("5555559999") is None


@pytest.mark.parametrize("interval", ["10", "10.0", "1E+01"])
async def test_redial_interval_numeric_forms(
    http: httpx.AsyncClient, emulator: Emulator, interval: str
) -> None:
    """redial_interval is accepted in any numeric form a client may send."""
    response = await place(http, emulator, redial_count="2", redial_interval=interval)
    assert fields_of(response)["status"] == "valid"
    assert emulator.calls[-1].params["redial_interval"] == interval


@pytest.mark.parametrize("name", ["call_place_time", "call_place_tile"])
@pytest.mark.parametrize("when", ["2026-12-01 09:00:00", "2026-12-01T09:00:00+01:00", "30"])
async def test_call_place_time_forms(
    http: httpx.AsyncClient, emulator: Emulator, name: str, when: str
) -> None:
    """call_place_time (and the misspelt call_place_tile) accept a time or seconds."""
    fields = fields_of(await place(http, emulator, **{name: when}))
    assert fields["status"] == "valid"


@pytest.mark.parametrize(
    "overrides",
    [
        {"redial_count": "11"},
        {"redial_count": "two"},
        {"redial_interval": "0"},
        {"redial_interval": "soon"},
        {"redial_interval": "86401"},
        {"call_place_time": "tomorrow"},
    ],
)
async def test_bad_redial_parameters(
    http: httpx.AsyncClient, emulator: Emulator, overrides: dict[str, str]
) -> None:
    """Out-of-range or malformed redial parameters are error 1, and nobody is phoned."""
    fields = fields_of(await place(http, emulator, **overrides))
    assert fields["error"] == 1
    assert emulator.calls == []


async def test_call_log_over_http_equals_in_process(
    http: httpx.AsyncClient, emulator: Emulator
) -> None:
    """GET /_emulator/calls lists the same calls, in dialing order, as emu.calls."""
    for phone in ("5555550001", "5555550002", "5555550003"):
        await place(http, emulator, phone=phone)
    root = emulator.base_url.removesuffix("/services")
    over_http = (await http.get(root + "/_emulator/calls")).json()["calls"]
    in_process = emulator.calls
    assert [c["phone"] for c in over_http] == ["5555550001", "5555550002", "5555550003"]
    assert over_http == [
        {
            "phone": c.phone,
            "country_code": c.country_code,
            "transaction_number": c.transaction_number,
            "at": c.at,
        }
        for c in in_process
    ]
    assert "code" not in over_http[0]


async def test_verify_endpoint_path_without_slash(
    http: httpx.AsyncClient, emulator: Emulator
) -> None:
    """verifycode answers without the trailing slash too."""
    tx = fields_of(await place(http, emulator))["transaction_number"]
    response = await http.get(
        emulator.base_url + VERIFY.rstrip("/"),
        params={
            "transaction_number": tx,
            "code": "4821",
            "apikey": "emulator-key",
            "domain": "example.com",
        },
    )
    assert fields_of(response)["status"] == "valid"
