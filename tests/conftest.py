"""Shared fixtures: the anyio backends, and emulators on real loopback sockets."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from phoneconfirm_async.emulator import Emulator, EmulatorConfig

pytest_plugins = ["pytester"]  # tests of the store contract run it on broken stores

API_KEY = "emulator-key"
DOMAIN = "example.com"
#: The environment variables a client reads; CLI tests run without them.
ENV_NAMES = (
    "PHONECONFIRM_API_KEY",
    "PHONECONFIRM_DOMAIN",
    "PHONECONFIRM_BASE_URL",
    "PHONECONFIRM_SECRET_KEY",
)

EmulatorFactory = Callable[..., Emulator]


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Every async test runs on asyncio and on trio."""
    return str(request.param)


@pytest.fixture
def make_emulator() -> Iterator[EmulatorFactory]:
    """Start emulators with the given config fields; all are stopped after the test."""
    started: list[Emulator] = []

    def start(**fields: Any) -> Emulator:
        emulator = Emulator(EmulatorConfig(**fields))
        emulator.start()
        started.append(emulator)
        return emulator

    yield start
    for emulator in started:
        emulator.stop()


@pytest.fixture
def emulator(make_emulator: EmulatorFactory) -> Emulator:
    """A fault-free emulator with the default key and domain."""
    return make_emulator()
