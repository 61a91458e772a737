"""The pytest plugin of phoneconfirm-async (entry point ``pytest11``): the emulator of the
service and clients on it, for your application's tests, with no socket and no network.

- ``phoneconfirm_emulator_config``: the ``EmulatorConfig`` (default: a person who answers
  the first call). Override the fixture in your ``conftest.py`` to shape the service.
- ``phoneconfirm_emulator``: a fresh ``EmulatorTransport`` per test, on that config:
  ``calls``, ``heard_code(phone)``, ``faults``.
- ``phoneconfirm_client``: an open ``PhoneConfirmClient`` on it (async: anyio's pytest
  plugin runs it on the test's ``anyio_backend``, asyncio or trio).
- ``phoneconfirm_sync_client``: an open ``SyncPhoneConfirmClient`` on it.

The module lives outside the ``phoneconfirm_async`` package so that loading it, as pytest
does at start for every project in the environment, imports nothing but pytest: the
library is imported when a test first uses a fixture, and a missing ``emulator`` extra
is then that test's error, naming the extra.
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator, Iterator
from types import ModuleType
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from phoneconfirm_async import PhoneConfirmClient, SyncPhoneConfirmClient
    from phoneconfirm_async.emulator import EmulatorConfig
    from phoneconfirm_async.testing import EmulatorTransport

__all__ = [
    "phoneconfirm_client",
    "phoneconfirm_emulator",
    "phoneconfirm_emulator_config",
    "phoneconfirm_sync_client",
]


def _emulator_module(fixture: str) -> ModuleType:
    """``phoneconfirm_async.emulator``, or this test's clear failure without the extra."""
    try:
        return importlib.import_module("phoneconfirm_async.emulator")
    except ModuleNotFoundError as exc:
        missing = (exc.name or "a dependency").split(".")[0]
    pytest.fail(  # outside the handler: the report is this line, not an import traceback
        f"the {fixture} fixture needs phoneconfirm-async's emulator extra "
        f"({missing} is not installed): pip install 'phoneconfirm-async[emulator]'",
        pytrace=False,
    )


@pytest.fixture
def phoneconfirm_emulator_config() -> EmulatorConfig:
    """The config of ``phoneconfirm_emulator``: ``EmulatorConfig()`` unless overridden.

    Override it (in a ``conftest.py``, a module, a class) to shape the service::

        @pytest.fixture
        def phoneconfirm_emulator_config():
            return EmulatorConfig(answer_on_attempt=2, uncallable_numbers={"5555550100"})
    """
    config: EmulatorConfig = _emulator_module("phoneconfirm_emulator_config").EmulatorConfig()
    return config


@pytest.fixture
def phoneconfirm_emulator(phoneconfirm_emulator_config: EmulatorConfig) -> EmulatorTransport:
    """A fresh ``EmulatorTransport`` (the emulator in process) for each test."""
    _emulator_module("phoneconfirm_emulator")
    from phoneconfirm_async.testing import EmulatorTransport

    return EmulatorTransport(phoneconfirm_emulator_config)


@pytest.fixture
async def phoneconfirm_client(
    phoneconfirm_emulator: EmulatorTransport, anyio_backend: object
) -> AsyncIterator[PhoneConfirmClient]:
    """An open ``PhoneConfirmClient`` on ``phoneconfirm_emulator``, with its key and
    domain; run by anyio's pytest plugin on the test's ``anyio_backend``."""
    async with phoneconfirm_emulator.client() as client:
        yield client


@pytest.fixture
def phoneconfirm_sync_client(
    phoneconfirm_emulator: EmulatorTransport,
) -> Iterator[SyncPhoneConfirmClient]:
    """An open ``SyncPhoneConfirmClient`` on ``phoneconfirm_emulator``; closed (its loop
    thread joined) after the test."""
    from phoneconfirm_async import SyncPhoneConfirmClient

    config = phoneconfirm_emulator.config
    with SyncPhoneConfirmClient(
        config.api_keys[0],
        config.trusted_domains[0],
        base_url=phoneconfirm_emulator.base_url,
        transport=phoneconfirm_emulator,
    ) as client:
        yield client
