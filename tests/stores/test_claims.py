"""Claims on the real stores, one rule a test: a lease starts when the store stamps the
claim (not when the caller read the clock), a process never claims what it holds, a call
never sent is given back only while its claim holds, a renewal says which claims still
hold, and a claimed call whose session ended elsewhere is not sent."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

import anyio
import anyio.to_thread
import pytest

from phoneconfirm_async import (
    ConfirmationScheduler,
    PhoneConfirmClient,
    PlaceCallRequest,
    SessionRecord,
    SessionState,
)
from tests.conftest import API_KEY, DOMAIN, EmulatorFactory
from tests.stores.conftest import StoreFactory

pytestmark = pytest.mark.anyio

PHONE = "5555550142"
CODE = "5318"
LEASE = 0.2
#: The caller's reading of the clock, as stale as after a long wait for the write lock.
STALE = 10.0


def due_now(session_id: str, *, interval: float = 60.0) -> SessionRecord:
    return SessionRecord(
        id=session_id,
        request=PlaceCallRequest(PHONE, "1", CODE),
        redial_count=1,
        redial_interval=interval,
        state=SessionState.SCHEDULED,
        due=time.time(),
    )


async def test_a_lease_starts_when_the_store_stamps_the_claim(make_store: StoreFactory) -> None:
    """A caller whose ``now`` went stale (it waited for the lock) still gets a whole lease:
    the store reads its clock again under the lock, and says when on the monotonic clock."""
    store = make_store(lease=30.0)
    async with store.open(retain=60.0, on_change=lambda _: None):
        await store.add(due_now("fresh"))
        before, before_monotonic = time.time(), time.monotonic()
        claimed = await store.claim(before - STALE, 10)
    [record] = claimed.calls
    assert record.claimed_at is not None
    assert record.claimed_at >= before
    assert record.due == pytest.approx(record.claimed_at + 30.0)
    assert before_monotonic <= claimed.at <= time.monotonic()


async def test_a_process_never_claims_what_it_holds(make_store: StoreFactory) -> None:
    """Its own call in flight past the lease is neither settled nor claimed again by the
    process holding it (``exclude``); another process settles it, and counts the call as
    made at the lease's end."""
    holder, peer = make_store(lease=LEASE), make_store(lease=LEASE)
    async with holder.open(retain=60.0, on_change=lambda _: None):
        await holder.add(due_now("held", interval=1.0))
        [held] = (await holder.claim(holder.now(), 10)).calls
        await anyio.sleep(LEASE * 2)  # the lease runs out while the call is in flight here
        again = await holder.claim(holder.now(), 10, exclude={held.id})
        assert (again.calls, again.changed) == ([], [])
        async with peer.open(retain=60.0, on_change=lambda _: None):
            settled = await peer.claim(peer.now(), 10)
    assert settled.calls == []
    [changed] = settled.changed
    assert (changed.state, changed.calls_made) == (SessionState.AWAITING_CODE, 1)
    assert changed.due == pytest.approx(held.due + 1.0)  # the lease's end + the interval


async def test_a_call_never_sent_is_given_back_while_its_claim_holds(
    make_store: StoreFactory,
) -> None:
    """``release``: due again, the call not counted; once the session moved on (here,
    cancelled), nothing is written."""
    store = make_store(lease=30.0)
    async with store.open(retain=60.0, on_change=lambda _: None):
        await store.add(due_now("given-back"))
        [first] = (await store.claim(store.now(), 10)).calls
        released = await store.release(first, store.now())
        assert released is not None
        again = await store.load("given-back")
        assert again is not None
        assert (again.state, again.calls_made) == (SessionState.SCHEDULED, 0)
        assert again.due <= time.time()

        [second] = (await store.claim(store.now(), 10)).calls
        assert second.calls_made == 1
        await store.finish(second.id, SessionState.CANCELLED, store.now())
        assert await store.release(second, store.now()) is None
        final = await store.load("given-back")
    assert final is not None
    assert (final.state, final.calls_made) == (SessionState.CANCELLED, 1)


async def test_a_renewal_says_which_claims_still_hold(make_store: StoreFactory) -> None:
    store = make_store(lease=30.0)
    async with store.open(retain=60.0, on_change=lambda _: None):
        await store.add(due_now("kept"))
        await store.add(due_now("ended"))
        claimed = (await store.claim(store.now(), 10)).calls
        await store.finish("ended", SessionState.CANCELLED, store.now())
        before = time.monotonic()
        renewed = await store.renew(claimed, store.now())
        kept = await store.load("kept")
    assert renewed.ids == frozenset({"kept"})
    assert before <= renewed.at <= time.monotonic()
    assert kept is not None
    assert kept.due >= time.time() + 29.0


class _Said(logging.Handler):
    """Sets ``event`` when the library logs a line holding ``text``."""

    def __init__(self, text: str) -> None:
        super().__init__(logging.INFO)
        self.text = text
        self.event = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.event.set()


@pytest.fixture
def not_sent() -> Iterator[_Said]:
    library = logging.getLogger("phoneconfirm_async")
    said = _Said("call not sent")
    level = library.level
    library.setLevel(logging.INFO)
    library.addHandler(said)
    yield said
    library.removeHandler(said)
    library.setLevel(level)


async def test_a_claimed_call_is_not_sent_after_its_session_ended_elsewhere(
    make_store: StoreFactory, make_emulator: EmulatorFactory, not_sent: _Said
) -> None:
    """A worker holds two due calls but sends one at a time (``max_concurrency=1``); while
    the first is in flight, another process cancels both sessions. The waiting call is
    read again before it would leave, and never leaves: one call in all."""
    emulator = make_emulator(latency=1.0)
    worker_client = PhoneConfirmClient(
        API_KEY, DOMAIN, base_url=emulator.base_url, max_concurrency=1
    )
    web_client = PhoneConfirmClient(API_KEY, DOMAIN, base_url=emulator.base_url)
    async with (
        web_client,
        web_client.scheduler(store=make_store(poll_interval=0.05), drive=False) as web,
    ):
        sessions = [
            await web.schedule(f"55555501{i:02d}", country_code="1", code=CODE) for i in range(2)
        ]
        async with (
            worker_client,
            # Two claims held, one sent at a time: the second waits for the client's slot.
            ConfirmationScheduler(
                worker_client, store=make_store(poll_interval=0.05), concurrency=2
            ),
        ):
            assert await anyio.to_thread.run_sync(emulator.wait_for_requests, 1, 10.0)
            for session in sessions:
                await session.cancel()
            assert await anyio.to_thread.run_sync(not_sent.event.wait, 10.0)
    assert len(emulator.calls) == 1
    assert emulator.request_count == 1
    assert [session.state for session in sessions] == [SessionState.CANCELLED] * 2
