"""Injected faults: each kind, before and after the call is recorded, reproducible by seed."""

from __future__ import annotations

import socket

import anyio
import httpx
import pytest

from phoneconfirm_async.emulator import FAULT_KINDS, EmulatorConfig, run_emulator
from tests.conftest import EmulatorFactory
from tests.emulator.conftest import PLACE, place, place_params
from tests.emulator.test_protocol import fields_of

pytestmark = pytest.mark.anyio

REQUESTS = 8


async def _outcome(http: httpx.AsyncClient, url: str, phone: str) -> str:
    """What a plain client sees: the HTTP status, or the exception type."""
    try:
        response = await http.get(url, params=place_params(phone=phone), timeout=0.5)
    except httpx.HTTPError as exc:
        return type(exc).__name__
    if response.status_code == 429:
        return f"429 retry-after={response.headers['retry-after']}"
    return f"{response.status_code} {response.headers['content-type'].split(';')[0]}"


EXPECTED = {
    "http_500": "500 text/plain",
    "http_503": "503 text/plain",
    "http_429": "429 retry-after=1",
    "reset": "RemoteProtocolError",
    "hang": "ReadTimeout",
    "truncated": "RemoteProtocolError",
    "html": "502 text/html",
}


@pytest.mark.parametrize("kind", FAULT_KINDS)
async def test_each_fault_kind_before_and_after(
    http: httpx.AsyncClient, make_emulator: EmulatorFactory, kind: str
) -> None:
    """Every request suffers the fault; only the 'after' ones left a call in the log."""
    emulator = make_emulator(fault_rate=1.0, faults=(kind,), seed=7)
    url = emulator.base_url + PLACE
    outcomes = [await _outcome(http, url, f"55555501{i:02d}") for i in range(REQUESTS)]
    assert outcomes == [EXPECTED[kind]] * REQUESTS
    faults = emulator.faults
    assert [f.kind for f in faults] == [kind] * REQUESTS
    after = [i for i, f in enumerate(faults) if f.phase == "after"]
    if kind == "http_429":
        assert after == []  # a refusal: the service did nothing
    else:
        assert 0 < len(after) < REQUESTS  # seed 7 draws both phases
    assert [c.phone for c in emulator.calls] == [f"55555501{i:02d}" for i in after]


async def test_truncated_body_is_cut_short(
    http: httpx.AsyncClient, make_emulator: EmulatorFactory
) -> None:
    """A truncated answer announces its full length and sends about half."""
    emulator = make_emulator(fault_rate=1.0, faults=("truncated",))
    received = bytearray()
    announced = 0

    async def read() -> None:
        nonlocal announced
        async with http.stream("GET", emulator.base_url + PLACE, params=place_params()) as r:
            announced = int(r.headers["content-length"])
            async for chunk in r.aiter_raw():
                received.extend(chunk)

    with pytest.raises(httpx.RemoteProtocolError):
        await read()
    assert 0 < len(received) < announced


async def test_fault_rate_zero_means_no_faults(
    http: httpx.AsyncClient, make_emulator: EmulatorFactory
) -> None:
    """With fault_rate 0 every request is answered normally."""
    emulator = make_emulator(fault_rate=0.0, seed=1)
    for _ in range(10):
        assert fields_of(await place(http, emulator))["status"] == "valid"
    assert emulator.faults == []


async def test_same_seed_same_faults(
    http: httpx.AsyncClient, make_emulator: EmulatorFactory
) -> None:
    """Two emulators with the same seed inject the same faults on the same requests."""
    kinds = ("http_500", "http_503", "http_429", "html", "reset", "truncated")
    runs = []
    for _ in range(2):
        emulator = make_emulator(fault_rate=0.5, faults=kinds, seed=42)
        url = emulator.base_url + PLACE
        outcomes = [await _outcome(http, url, f"55555502{i:02d}") for i in range(20)]
        runs.append((outcomes, emulator.faults, [c.phone for c in emulator.calls]))
    assert runs[0] == runs[1]
    assert 0 < len(runs[0][1]) < 20
    other = make_emulator(fault_rate=0.5, faults=kinds, seed=43)
    for i in range(20):
        await _outcome(http, other.base_url + PLACE, f"55555502{i:02d}")
    assert other.faults != runs[0][1]


async def test_hang_is_released_when_the_emulator_stops() -> None:
    """A hanging request does not keep the emulator from stopping."""
    config = EmulatorConfig(fault_rate=1.0, faults=("hang",), hang_seconds=600)
    with anyio.fail_after(20):
        async with run_emulator(config) as emulator, httpx.AsyncClient() as http:
            url = emulator.base_url + PLACE
            async with anyio.create_task_group() as tg:

                async def hang() -> None:
                    with pytest.raises(httpx.HTTPError):
                        await http.get(url, params=place_params(), timeout=30)

                tg.start_soon(hang)
                assert await anyio.to_thread.run_sync(emulator.wait_for_requests, 1, 10.0)
                await anyio.to_thread.run_sync(emulator.stop)


async def test_500_concurrent_requests_logged_exactly_once(
    http: httpx.AsyncClient, make_emulator: EmulatorFactory
) -> None:
    """500 requests at once are all answered, and each dialed number appears once."""
    emulator = make_emulator()
    url = emulator.base_url + PLACE
    transactions: dict[str, str] = {}

    async def one(i: int) -> None:
        phone = f"5555{i:06d}"
        response = await http.get(url, params=place_params(phone=phone))
        transactions[phone] = fields_of(response)["transaction_number"]

    async with anyio.create_task_group() as tg:
        for i in range(500):
            tg.start_soon(one, i)
    calls = emulator.calls
    assert len(calls) == 500
    assert {c.phone: c.transaction_number for c in calls} == transactions
    assert len({c.transaction_number for c in calls}) == 500
    assert emulator.request_count == 500


async def test_leaving_run_emulator_frees_the_port() -> None:
    """After the block, nothing listens on the port and it can be bound again."""
    async with run_emulator() as emulator, httpx.AsyncClient() as http:
        port = emulator.port
        assert (await http.get(emulator.base_url + PLACE, params=place_params())).is_success
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient() as http:
            await http.get(f"http://127.0.0.1:{port}/")
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen()


def test_config_rejects_nonsense() -> None:
    """EmulatorConfig refuses values that cannot mean anything."""
    for bad in (
        {"fault_rate": 1.5},
        {"faults": ("meteor",)},
        {"answer_on_attempt": 0},
        {"latency": -1},
        {"port": 70000},
    ):
        with pytest.raises(ValueError):  # noqa: PT011 - each message is checked by eye
            EmulatorConfig(**bad)
