"""Helpers for talking to the emulator with plain httpx (no client code involved)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from phoneconfirm_async.emulator import Emulator
from tests.conftest import API_KEY, DOMAIN

PLACE = "/phoneconfirm/placecall/"
VERIFY = "/phoneconfirm/verifycode/"


def place_params(**overrides: Any) -> dict[str, Any]:
    params: dict[str, Any] = {
        "phone": "5555550123",
        "country_code": "1",
        "code": "4821",
        "apikey": API_KEY,
        "domain": DOMAIN,
    }
    params.update(overrides)
    return {k: v for k, v in params.items() if v is not None}


def verify_params(transaction_number: str, code: str, **overrides: Any) -> dict[str, Any]:
    params: dict[str, Any] = {
        "transaction_number": transaction_number,
        "code": code,
        "apikey": API_KEY,
        "domain": DOMAIN,
    }
    params.update(overrides)
    return {k: v for k, v in params.items() if v is not None}


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    """A plain httpx client with a generous pool."""
    limits = httpx.Limits(max_connections=500, max_keepalive_connections=500)
    async with httpx.AsyncClient(limits=limits, timeout=10) as client:
        yield client


async def place(http: httpx.AsyncClient, emulator: Emulator, **overrides: Any) -> httpx.Response:
    return await http.get(emulator.base_url + PLACE, params=place_params(**overrides))


async def verify(
    http: httpx.AsyncClient, emulator: Emulator, transaction_number: str, code: str, **kw: Any
) -> httpx.Response:
    return await http.get(
        emulator.base_url + VERIFY, params=verify_params(transaction_number, code, **kw)
    )
