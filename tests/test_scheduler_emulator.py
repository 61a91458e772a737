"""The scheduler with short real intervals against the emulator, on asyncio and trio."""

from __future__ import annotations

import anyio
import pytest

from phoneconfirm_async import PhoneConfirmClient, RetryPolicy, SessionState
from tests.conftest import API_KEY, DOMAIN, EmulatorFactory

pytestmark = pytest.mark.anyio

INTERVAL = 0.5


async def test_person_answers_second_call(make_emulator: EmulatorFactory) -> None:
    """The person picks up the 2nd call, types the code: VERIFIED after exactly two calls."""
    emulator = make_emulator(answer_on_attempt=2)
    async with (
        PhoneConfirmClient(API_KEY, DOMAIN, base_url=emulator.base_url) as client,
        client.scheduler() as scheduler,
    ):
        session = await scheduler.schedule(
            "5555550123", country_code="1", code="7391", redial_count=3, redial_interval=INTERVAL
        )
        assert await anyio.to_thread.run_sync(emulator.wait_for_calls, 2, 10.0)
        # The 2nd call's answer may still be on its way: verify checks the latest answered
        # call, and every call of a session speaks the same code.
        heard = emulator.heard_code("5555550123")
        assert heard == "7391"
        assert (await session.verify(heard)).verified
        assert await session.wait() is SessionState.VERIFIED
        await anyio.sleep(INTERVAL * 2)  # a third call would have gone out by now
    calls = emulator.calls
    assert len(calls) == 2
    assert calls[1].at - calls[0].at >= INTERVAL
    for call in calls:
        assert "redial_count" not in call.params
        assert "call_place_time" not in call.params


async def test_nobody_answers(make_emulator: EmulatorFactory) -> None:
    """Without an answer the session makes 1 + redial_count calls and is EXHAUSTED."""
    emulator = make_emulator(answer_on_attempt=99)
    async with (
        PhoneConfirmClient(API_KEY, DOMAIN, base_url=emulator.base_url) as client,
        client.scheduler() as scheduler,
    ):
        session = await scheduler.schedule(
            "5555550123", country_code="1", code="4821", redial_count=2, redial_interval=INTERVAL
        )
        with anyio.fail_after(10):
            assert await session.wait() is SessionState.EXHAUSTED
    assert len(emulator.calls) == 3
    gaps = [b.at - a.at for a, b in zip(emulator.calls, emulator.calls[1:], strict=False)]
    assert all(gap >= INTERVAL * 0.9 for gap in gaps)


async def test_lost_answer_is_not_redialled_early(make_emulator: EmulatorFactory) -> None:
    """A placement whose answer is lost counts as a call: no immediate re-send."""
    emulator = make_emulator(fault_rate=1.0, faults=("http_500",), seed=5)
    async with (
        PhoneConfirmClient(
            API_KEY, DOMAIN, base_url=emulator.base_url, retry=RetryPolicy(initial_wait=0)
        ) as client,
        client.scheduler() as scheduler,
    ):
        session = await scheduler.schedule(
            "5555550123", country_code="1", code="4821", redial_count=1, redial_interval=INTERVAL
        )
        with anyio.fail_after(10):
            assert await session.wait() is SessionState.EXHAUSTED
    assert emulator.request_count == 2  # one request per call, none repeated
    assert session.calls_made == 2
