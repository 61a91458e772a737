"""The policy against the emulator over loopback, on asyncio and trio: what the service
sees is the proof (the emulator counts every code it checked)."""

from __future__ import annotations

import anyio
import pytest

from phoneconfirm_async import (
    ConfirmationPolicy,
    PhoneConfirmClient,
    SessionState,
    VerificationClosedError,
)
from phoneconfirm_async.emulator import Emulator
from tests.conftest import API_KEY, DOMAIN

pytestmark = pytest.mark.anyio
PHONE = "5555550123"


async def test_five_wrong_codes_lock_the_session_and_the_right_one_is_refused(
    emulator: Emulator,
) -> None:
    async with (
        PhoneConfirmClient(API_KEY, DOMAIN, base_url=emulator.base_url) as client,
        client.scheduler(policy=ConfirmationPolicy()) as scheduler,
    ):
        session = await scheduler.schedule(PHONE, country_code="1")
        assert await session.wait_called()
        heard = emulator.heard_code(PHONE)
        assert heard is not None
        assert len(heard) == 6  # drawn by the library
        wrong = f"{(int(heard) + 1) % 10**6:06d}"
        answers = []
        for _ in range(5):
            answers.append((await session.verify(wrong)).verified)
        assert answers == [False] * 5
        assert session.state is SessionState.LOCKED
        for code in (wrong, heard):
            with pytest.raises(VerificationClosedError) as closed:
                await session.verify(code)
            assert closed.value.state is SessionState.LOCKED
    assert emulator.verification_count == 5


async def test_sixteen_concurrent_guesses_send_five_checks(emulator: Emulator) -> None:
    async with (
        PhoneConfirmClient(API_KEY, DOMAIN, base_url=emulator.base_url) as client,
        client.scheduler() as scheduler,
    ):
        session = await scheduler.schedule(PHONE, country_code="1", code="482193")
        assert await session.wait_called()
        closed: list[SessionState] = []

        async def guess(code: str) -> None:
            try:
                assert not (await session.verify(code)).verified
            except VerificationClosedError as exc:
                closed.append(exc.state)

        async with anyio.create_task_group() as tasks:
            for n in range(16):
                tasks.start_soon(guess, f"{n:06d}")
        assert len(closed) == 11
        assert session.state is SessionState.LOCKED
    assert emulator.verification_count == 5


async def test_a_verified_session_is_verified_once(emulator: Emulator) -> None:
    async with (
        PhoneConfirmClient(API_KEY, DOMAIN, base_url=emulator.base_url) as client,
        client.scheduler() as scheduler,
    ):
        session = await scheduler.schedule(PHONE, country_code="1")
        assert await session.wait_called()
        heard = emulator.heard_code(PHONE)
        assert heard is not None
        assert (await session.verify(heard)).verified
        with pytest.raises(VerificationClosedError) as closed:
            await session.verify(heard)
        assert closed.value.state is SessionState.VERIFIED
    assert emulator.verification_count == 1
