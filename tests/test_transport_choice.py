"""Which transport a client uses, and that the core imports no extra at import time."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest

from phoneconfirm_async import ConfigurationError, PhoneConfirmClient
from phoneconfirm_async.emulator import Emulator
from tests.conftest import API_KEY, DOMAIN

pytestmark = pytest.mark.anyio


async def test_borrowed_http_client_is_used_and_stays_open(emulator: Emulator) -> None:
    """A caller's httpx client is used on any backend and not closed by the library."""
    async with httpx.AsyncClient() as http:
        async with PhoneConfirmClient(
            API_KEY, DOMAIN, base_url=emulator.base_url, http_client=http
        ) as client:
            assert client.transport == "httpx"
            assert (await client.place_call("5555550123", country_code="1", code="1")).placed
        assert not http.is_closed


async def test_auto_picks_the_fast_layer_where_it_can(
    anyio_backend: str, emulator: Emulator
) -> None:
    """'auto' is aiohttp on asyncio (installed in dev) and httpx on trio."""
    async with PhoneConfirmClient(API_KEY, DOMAIN, base_url=emulator.base_url) as client:
        assert client.transport == ("aiohttp" if anyio_backend == "asyncio" else "httpx")
        assert (await client.place_call("5555550123", country_code="1", code="1")).placed


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_aiohttp_on_trio_is_refused(anyio_backend: str, emulator: Emulator) -> None:
    """transport='aiohttp' on trio is a ConfigurationError that says why."""
    client = PhoneConfirmClient(API_KEY, DOMAIN, base_url=emulator.base_url, transport="aiohttp")
    with pytest.raises(ConfigurationError, match="asyncio"):
        await client.__aenter__()


def test_aiohttp_cannot_borrow_an_httpx_client() -> None:
    """transport='aiohttp' with an httpx client is refused at construction."""
    with pytest.raises(ConfigurationError, match="http_client"):
        PhoneConfirmClient(API_KEY, DOMAIN, transport="aiohttp", http_client=httpx.AsyncClient())


def test_core_import_pulls_no_extras() -> None:
    """Importing the package loads no extra (aiohttp, starlette, uvicorn) nor the CLI.

    click and rich are not checked: httpx itself imports them when they are installed.
    """
    code = (
        "import sys, phoneconfirm_async\n"
        "extras = {'aiohttp', 'starlette', 'uvicorn', 'phoneconfirm_async.cli',"
        " 'phoneconfirm_async.emulator', 'phoneconfirm_async._transports._aiohttp',"
        " 'phoneconfirm_async.testing'}\n"
        "print(sorted(extras & set(sys.modules)))\n"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert output.strip() == "[]"
