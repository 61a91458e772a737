"""Client tests run on asyncio over both transports, and on trio over httpx."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import pytest

from phoneconfirm_async import PhoneConfirmClient, RetryPolicy
from phoneconfirm_async.emulator import Emulator
from tests.conftest import API_KEY, DOMAIN

#: Retries without waiting, so tests exercise the retry rules in no time.
FAST_RETRY = RetryPolicy(initial_wait=0, max_wait=0)

ClientFactory = Callable[..., AbstractAsyncContextManager[PhoneConfirmClient]]


@pytest.fixture(
    params=[
        pytest.param(("asyncio", "httpx"), id="asyncio-httpx"),
        pytest.param(("asyncio", "aiohttp"), id="asyncio-aiohttp"),
        pytest.param(("trio", "httpx"), id="trio-httpx"),
    ]
)
def backend_and_transport(request: pytest.FixtureRequest) -> tuple[str, str]:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def anyio_backend(backend_and_transport: tuple[str, str]) -> str:
    return backend_and_transport[0]


@pytest.fixture
def transport(backend_and_transport: tuple[str, str]) -> str:
    return backend_and_transport[1]


@pytest.fixture
def make_client(transport: str) -> ClientFactory:
    """Open a client on an emulator, over this test's transport."""

    @asynccontextmanager
    async def open_client(emulator: Emulator, **options: Any) -> AsyncIterator[PhoneConfirmClient]:
        options.setdefault("retry", FAST_RETRY)
        options.setdefault("transport", transport)
        api_key = options.pop("api_key", API_KEY)
        client = PhoneConfirmClient(api_key, DOMAIN, base_url=emulator.base_url, **options)
        async with client:
            assert client.transport == transport
            yield client

    return open_client
