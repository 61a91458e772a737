"""A batch's lifetime is structural: it starts with its loop and stops with its block or
its client, never by the garbage collector."""

from __future__ import annotations

from collections.abc import Iterator

import anyio
import pytest
from trio.testing import MockClock

from phoneconfirm_async import TransportRequest, TransportResponse
from phoneconfirm_async.emulator import EmulatorConfig
from phoneconfirm_async.testing import EmulatorTransport

pytestmark = pytest.mark.anyio

MOCK_CLOCK = [("trio", {"clock": MockClock(autojump_threshold=0)})]


def endless() -> Iterator[dict[str, str]]:
    number = 0
    while True:
        yield {"phone": f"555{number:07d}", "country_code": "1", "code": "4821"}
        number += 1


async def test_a_batch_starts_with_its_loop() -> None:
    """Making the iterator sends nothing; the loop starts the batch."""
    transport = EmulatorTransport()
    async with transport.client() as client:
        items = client.place_many(endless(), concurrency=3)
        await anyio.wait_all_tasks_blocked()
        assert transport.request_count == 0
        async with items:
            first = await anext(items)
        assert first.ok
    assert transport.request_count >= 1


@pytest.mark.parametrize("anyio_backend", MOCK_CLOCK)
async def test_leaving_its_block_stops_the_batch_at_once() -> None:
    """``async with`` around a batch: leaving it cancels the rows in flight and returns
    once the batch has stopped; nothing is sent afterwards."""
    transport = EmulatorTransport(EmulatorConfig(latency=1.0))
    async with transport.client() as client:
        seen = []
        async with client.place_many(endless(), concurrency=5) as items:
            async for item in items:
                seen.append(item)
                if len(seen) == 7:
                    break
        calls_at_exit = len(transport.calls)
        requests_at_exit = transport.request_count
        await anyio.sleep(60)  # virtual time: a running batch would place 300 more calls
        assert (len(transport.calls), transport.request_count) == (
            calls_at_exit,
            requests_at_exit,
        )
    assert len(seen) == 7
    # Rows in flight were cancelled during the emulator's latency, before being dialled;
    # at most the items waiting in the channel (5) were dialled beyond those seen.
    assert 7 <= calls_at_exit <= 7 + 5


@pytest.mark.parametrize("anyio_backend", MOCK_CLOCK)
async def test_the_clients_exit_stops_a_batch_left_early() -> None:
    """A bare loop left with ``break`` waits on its full channel; the client's exit
    cancels it, and nothing is sent after the client is closed."""
    transport = EmulatorTransport(EmulatorConfig(latency=1.0))
    async with transport.client() as client:
        async for _ in client.place_many(endless(), concurrency=5):
            break
        await anyio.sleep(60)
        paused_at = transport.request_count
        assert paused_at <= 1 + 5 + 5  # seen, waiting in the channel, in flight
    assert transport.request_count == paused_at


async def test_aclose_is_safe_before_and_after_the_batch_ran() -> None:
    """aclose on an unstarted or finished batch returns at once."""
    transport = EmulatorTransport()
    async with transport.client() as client:
        await client.place_many([]).aclose()
        items = client.place_many([{"phone": "5555550123", "country_code": "1", "code": "1"}])
        assert [item.ok async for item in items] == [True]
        await items.aclose()


class _Gated(EmulatorTransport):
    """The emulator, answering the first request at once, the next two when ``gate`` is
    set, and none of the others."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = anyio.Event()

    async def send(self, request: TransportRequest) -> TransportResponse:
        response = await super().send(request)
        if self.request_count > 3:
            await anyio.sleep_forever()
        if self.request_count > 1:
            await self.gate.wait()
        return response


async def test_leaving_as_answers_arrive_is_clean() -> None:
    """Answers that arrive just as the loop leaves its block are dropped with the batch,
    and the rows still waiting are cancelled: neither the block's exit nor the client's
    raises. (On trio, a task woken just before a cancel runs on to its next checkpoint,
    here into the closed channel.)"""
    transport = _Gated()
    client = transport.client()
    async with client, client.place_many(endless(), concurrency=5) as items:
        async for _ in items:
            transport.gate.set()  # wake the two workers waiting for an answer
            break
    assert transport.request_count >= 5
