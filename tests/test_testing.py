"""phoneconfirm_async.testing: the emulator in process, as a user's own test suite uses it."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import anyio
import httpx
import pytest
import trio
from trio.testing import MockClock

from examples.web_backend import create_app
from phoneconfirm_async import (
    CallOutcomeUnknownError,
    InvalidRequestError,
    MemoryStore,
    RetryPolicy,
    SessionState,
    TransportError,
)
from phoneconfirm_async.emulator import EmulatorConfig
from phoneconfirm_async.testing import EmulatorTransport

pytestmark = pytest.mark.anyio

_SOCKET_EVENTS = frozenset({"socket.__new__", "socket.bind", "socket.connect"})
_watching: list[list[str]] = []


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _watching and event in _SOCKET_EVENTS:
        _watching[-1].append(event)


sys.addaudithook(_audit)  # hooks cannot be removed: it records only inside no_sockets()


@contextmanager
def no_sockets() -> Iterator[None]:
    """Fail if the block creates, binds or connects any socket (Python's audit events)."""
    seen: list[str] = []
    _watching.append(seen)
    try:
        yield
    finally:
        _watching.remove(seen)
    assert seen == [], f"sockets were used: {seen}"


async def test_a_sign_up_flow_runs_without_a_socket() -> None:
    """The sample web app confirms a number end to end in process: no port, no connection."""
    transport = EmulatorTransport(EmulatorConfig())
    app = create_app(client_factory=transport.client, store_factory=MemoryStore)
    with no_sockets():
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://app") as web,
        ):
            started = await web.post(
                "/confirm", json={"phone": "555-555-0123", "country_code": "1"}
            )
            assert started.status_code == 201
            await anyio.wait_all_tasks_blocked()  # the scheduler places the first call
            heard = transport.heard_code("5555550123")
            assert heard is not None
            session_id = started.json()["id"]
            wrong = await web.post(f"/confirm/{session_id}/verify", json={"code": "000000"})
            assert wrong.json()["verified"] is False
            right = await web.post(f"/confirm/{session_id}/verify", json={"code": heard})
            assert right.json() == {"verified": True, "state": "verified", "attempts_left": 3}
    assert len(transport.calls) == 1


@pytest.mark.parametrize("anyio_backend", [("trio", {"clock": MockClock()})])
async def test_redials_run_in_virtual_time() -> None:
    """Under trio's MockClock, a minute between redials costs nothing."""
    clock = trio.lowlevel.current_clock()
    assert isinstance(clock, MockClock)
    transport = EmulatorTransport(EmulatorConfig(answer_on_attempt=3))
    async with transport.client() as client, client.scheduler() as scheduler:
        session = await scheduler.schedule(
            "5555550123", country_code="1", code="4821", redial_count=4, redial_interval=60
        )
        for calls in (1, 2, 3):
            await anyio.wait_all_tasks_blocked()
            assert len(transport.calls) == calls
            if calls < 3:
                assert transport.heard_code("5555550123") is None
                clock.jump(60)
        assert transport.heard_code("5555550123") == "4821"
        assert (await session.verify("4821")).verified
        assert await session.wait() is SessionState.VERIFIED
    assert len(transport.calls) == 3


async def test_a_dropped_connection_after_the_call_is_an_unknown_outcome() -> None:
    """A 'reset' fault after dialing: the call exists, the client reports it unknown and
    never phones again, as over a socket."""
    transport = EmulatorTransport(EmulatorConfig(fault_rate=1.0, faults=("reset",), seed=2))
    async with transport.client() as client:
        for i in range(6):
            with pytest.raises(CallOutcomeUnknownError):
                await client.place_call(f"555555{i:04d}", country_code="1", code="4821")
    assert transport.request_count == 6
    after = [fault for fault in transport.faults if fault.phase == "after"]
    assert after
    assert len(transport.calls) == len(after)


@pytest.mark.parametrize("anyio_backend", [("trio", {"clock": MockClock(autojump_threshold=0)})])
async def test_a_hanging_answer_ends_at_attempt_timeout() -> None:
    """A 'hang' fault holds the request; attempt_timeout ends the attempt, counted as sent."""
    transport = EmulatorTransport(EmulatorConfig(fault_rate=1.0, faults=("hang",)))
    async with transport.client(attempt_timeout=5, retry=RetryPolicy.none()) as client:
        start = anyio.current_time()
        with pytest.raises(TransportError) as caught:
            await client.verify_code("123", "4821")
        assert anyio.current_time() - start == pytest.approx(5)
    assert (caught.value.kind, caught.value.sent) == ("attempt_timeout", True)


async def test_the_emulators_answers_are_those_of_the_server() -> None:
    """Error codes and XML come through the in-process transport as over a socket."""
    transport = EmulatorTransport(EmulatorConfig(uncallable_numbers=frozenset({"5555550100"})))
    async with transport.client(response_format="xml") as client:
        placed = await client.place_call("5555550123", country_code="1", code="4821")
        assert placed.placed
        assert transport.calls[0].params["type"] == "xml"
        with pytest.raises(InvalidRequestError, match="error 4"):
            await client.place_call("5555550100", country_code="1", code="4821")
    assert client.transport == "emulator"
