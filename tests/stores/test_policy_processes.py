"""The policy's limits hold across processes: two peer processes race on one store (a
SQLite file, a PostgreSQL table), and the emulator's count and a fresh read of the store
say what held."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from collections import Counter
from pathlib import Path

import anyio
import anyio.to_thread
import pytest

from phoneconfirm_async import (
    PhoneConfirmClient,
    SessionState,
    VerificationClosedError,
    store_from_url,
)
from phoneconfirm_async.emulator import Emulator
from tests.conftest import API_KEY, DOMAIN
from tests.stores.conftest import worker_env, worker_store_url

pytestmark = pytest.mark.anyio
PROJECT = Path(__file__).resolve().parents[2]
PHONE = "5555550123"


def race(action: str, store_url: str, emulator: Emulator, arg: str, count: int) -> list[str]:
    """Two peer processes, started together, each running ``count`` actions at once."""
    env = worker_env(store_url, emulator.base_url)
    peers = [
        subprocess.Popen(
            [
                *(sys.executable, "-m", "tests.stores.policy_peer"),
                *(action, store_url, emulator.base_url, arg, str(count)),
            ],
            cwd=PROJECT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        for peer in peers:
            assert peer.stdout is not None
            assert peer.stdout.readline().strip() == "ready", peer.stderr
        for peer in peers:
            assert peer.stdin is not None
            peer.stdin.write("go\n")
            peer.stdin.flush()
        outcomes: list[str] = []
        for peer in peers:
            out, err = peer.communicate(timeout=60)
            assert peer.returncode == 0, err
            outcomes += json.loads(out.strip().splitlines()[-1])
        return outcomes
    finally:
        for peer in peers:
            if peer.poll() is None:
                peer.kill()
                peer.wait()


@pytest.fixture
def store_url(store_kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    table = f"policy_{secrets.token_hex(4)}"  # a fresh table: no counter of another test
    return worker_store_url(store_kind, tmp_path, request, table=table, lease=5.0)


async def test_sixteen_guesses_from_two_processes_send_five_checks(
    store_url: str, emulator: Emulator
) -> None:
    async with (
        PhoneConfirmClient(API_KEY, DOMAIN, base_url=emulator.base_url) as client,
        client.scheduler(store=store_from_url(store_url)) as scheduler,
    ):
        session = await scheduler.schedule(PHONE, country_code="1")
        assert await session.wait_called()
    heard = emulator.heard_code(PHONE)
    assert heard is not None
    assert heard not in {f"9{n:05d}" for n in range(8)}  # every guess is wrong

    outcomes = await anyio.to_thread.run_sync(race, "guess", store_url, emulator, session.id, 8)

    assert emulator.verification_count == 5  # what left for the service, in all
    # Refused: "locked", or (before the fifth wrong answer locked it) "awaiting_code"
    # while every attempt was taken by checks in flight.
    assert Counter(outcomes)["wrong"] == 5
    assert set(outcomes) <= {"wrong", "locked", "awaiting_code"}
    async with (
        PhoneConfirmClient(API_KEY, DOMAIN, base_url=emulator.base_url) as client,
        client.scheduler(store=store_from_url(store_url), drive=False) as fresh,
    ):
        found = await fresh.get(session.id)
        assert found is not None
        assert found.state is SessionState.LOCKED
        assert found.verify_attempts == 5
        with pytest.raises(VerificationClosedError):
            await found.verify(heard)  # the right code, after the lock
    assert emulator.verification_count == 5


async def test_sixteen_schedules_from_two_processes_start_three(
    store_url: str, emulator: Emulator
) -> None:
    outcomes = await anyio.to_thread.run_sync(race, "schedule", store_url, emulator, PHONE, 8)
    assert Counter(outcomes) == {"started": 3, "throttled:phone": 13}
