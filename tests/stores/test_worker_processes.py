"""The crash test: three ``phoneconfirm worker`` processes on one store, one killed with
SIGKILL half way, 1,000 sessions with two redials each. Nothing is lost, nobody is called
more than three times, no two calls of a session come closer than ``redial_interval``."""

from __future__ import annotations

import collections
import itertools
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import anyio.to_thread
import pytest

from phoneconfirm_async import (
    ConfirmationSession,
    PhoneConfirmClient,
    SessionState,
    ValidationError,
    store_from_url,
)
from phoneconfirm_async.emulator import Emulator
from tests.conftest import API_KEY, DOMAIN, EmulatorFactory
from tests.stores.conftest import worker_env, worker_store_url

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

SESSIONS = 1000
REDIAL_COUNT = 2
INTERVAL = 1.0
#: Longer than INTERVAL: a dead worker's claim is settled after the redial it would have
#: been due for, so even its in-flight call keeps the spacing.
LEASE = 3.0
WORKERS = 3


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return worker_store_url(request.param, tmp_path, request, table="crash_test", lease=LEASE)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the test process only schedules and verifies (PostgreSQL: asyncio)


def start_worker(store_url: str, emulator: Emulator) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "phoneconfirm_async.cli", "worker"],
        env=worker_env(store_url, emulator.base_url),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


@pytest.fixture
def workers() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
        process.communicate()  # reaps it and closes its stderr pipe


async def test_a_worker_killed_mid_run_loses_and_doubles_nothing(
    store_url: str,
    make_emulator: EmulatorFactory,
    workers: list[subprocess.Popen[bytes]],
) -> None:
    emulator = make_emulator(answer_on_attempt=2)
    phones = [f"555{i:07d}" for i in range(SESSIONS)]
    verify_these = set(phones[::3])  # they pick up the 2nd call and type the code
    client = PhoneConfirmClient(API_KEY, DOMAIN, base_url=emulator.base_url)
    async with client, client.scheduler(store=store_from_url(store_url), drive=False) as web:
        sessions = {}
        for phone in phones:
            session = await web.schedule(
                phone,
                country_code="1",
                code="4821",
                redial_count=REDIAL_COUNT,
                redial_interval=INTERVAL,
            )
            sessions[phone] = session
        workers.extend(start_worker(store_url, emulator) for _ in range(WORKERS))

        half = SESSIONS * (1 + REDIAL_COUNT) // 2
        assert await anyio.to_thread.run_sync(emulator.wait_for_calls, half // 2, 60.0)
        workers[0].send_signal(signal.SIGKILL)
        assert workers[0].wait() == -signal.SIGKILL

        verified: set[str] = set()
        with anyio.fail_after(120):
            while verified != verify_these:
                for phone in verify_these - verified:
                    heard = emulator.heard_code(phone)
                    # From this process, not the worker's; a call whose answer is not in
                    # the store yet (or was lost with the killed worker) verifies later.
                    if heard is not None and await _verify(sessions[phone], heard):
                        verified.add(phone)
                seen = len(emulator.calls)
                await anyio.to_thread.run_sync(emulator.wait_for_calls, seen + 1, 0.5)

        with anyio.fail_after(60):
            finals = {phone: await session.wait() for phone, session in sessions.items()}

    for process in workers[1:]:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
        assert process.returncode == 0, stderr.decode()

    assert {p for p, s in finals.items() if s is SessionState.VERIFIED} == verify_these
    assert {s for p, s in finals.items() if p not in verify_these} == {SessionState.EXHAUSTED}
    for phone in phones:
        assert sessions[phone].calls_made <= 1 + REDIAL_COUNT
    calls = collections.defaultdict(list)
    for call in emulator.calls:
        calls[call.phone].append(call.at)
    assert set(calls) <= set(phones)
    for phone, times in calls.items():
        assert len(times) <= 1 + REDIAL_COUNT, phone
        gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
        assert all(gap >= INTERVAL for gap in gaps), (phone, gaps)
    for phone in set(phones) - verify_these:
        assert sessions[phone].calls_made == 1 + REDIAL_COUNT  # counted, even if lost mid-call


async def _verify(session: ConfirmationSession, heard: str) -> bool:
    try:
        return (await session.verify(heard)).verified
    except ValidationError:
        return False  # no answered call recorded yet
