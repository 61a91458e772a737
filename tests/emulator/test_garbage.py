"""Garbage in gets the documented error in the requested format, never a 500."""

from __future__ import annotations

import httpx
import pytest

from phoneconfirm_async.emulator import Emulator
from tests.emulator.conftest import PLACE, VERIFY, place_params
from tests.emulator.test_protocol import fields_of

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    "query",
    [
        pytest.param("phone=5555550123&phone=5555550124", id="repeated-phone"),
        pytest.param("type=json&type=xml", id="repeated-type"),
        pytest.param("phone=555-CALL-NOW", id="non-digit-phone"),
        pytest.param("phone=123", id="short-phone"),
        pytest.param("phone=1234567890123456", id="long-phone"),
        pytest.param("country_code=%2B1234", id="long-country"),
        pytest.param("code=%00%01", id="control-code"),
        pytest.param("code=12345678901", id="long-code"),
        pytest.param("padding=" + "x" * 10_000, id="10kB-query"),
        pytest.param("type=yaml", id="unknown-type"),
        pytest.param("phone=%FF%FE", id="non-utf8"),
    ],
)
@pytest.mark.parametrize("fmt", ["json", "xml"])
async def test_garbage_placecall(
    http: httpx.AsyncClient, emulator: Emulator, query: str, fmt: str
) -> None:
    """Each malformed placecall is error 1, in the asked format (JSON for a bad type)."""
    base = {k: v for k, v in place_params(type=fmt).items() if f"{k}=" not in query}
    url = f"{emulator.base_url}{PLACE}?{httpx.QueryParams(base)}&{query}"
    response = await http.get(url)
    assert response.status_code == 200
    fields = fields_of(response)
    assert int(fields["error"]) == 1
    assert fields["message"]
    wants_xml = fmt == "xml" and "type=" not in query
    assert response.text.lstrip().startswith("<") == wants_xml
    assert emulator.calls == []


async def test_verify_with_nothing(http: httpx.AsyncClient, emulator: Emulator) -> None:
    """A verifycode with no parameters at all is error 1, not a crash."""
    response = await http.get(emulator.base_url + VERIFY)
    assert response.status_code == 200
    assert fields_of(response)["error"] == "1"


async def test_unknown_path_is_404(http: httpx.AsyncClient, emulator: Emulator) -> None:
    """Paths outside the protocol are a plain 404."""
    response = await http.get(emulator.base_url + "/phoneconfirm/other/")
    assert response.status_code == 404
