"""``phoneconfirm confirm --store`` and ``phoneconfirm worker``, as real processes."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import anyio.to_thread
import pytest

from phoneconfirm_async import PhoneConfirmClient, SessionState, SQLiteStore
from phoneconfirm_async.emulator import Emulator
from tests.conftest import API_KEY, DOMAIN, ENV_NAMES


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ENV_NAMES and k != "PHONECONFIRM_STORE"}
    env.update(extra)
    return env


def _cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "phoneconfirm_async.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=_env(),
        timeout=60,
        check=False,
    )


@pytest.mark.anyio
async def test_confirm_keeps_its_session_in_the_store(tmp_path: Path) -> None:
    """The session confirm started is in the file afterwards, VERIFIED, phone erased."""
    path = tmp_path / "sessions.sqlite"
    done = await anyio.to_thread.run_sync(
        lambda: _cli(
            *("confirm", "555-555-0123", "--country-code", "1", "--code", "4821"),
            *("--store", f"sqlite:///{path}", "--emulator"),
            stdin="4821\n",
        )
    )
    assert done.returncode == 0, done.stderr
    match = re.search(r"Session (\S+) in sqlite:", done.stderr)
    assert match is not None, done.stderr
    client = PhoneConfirmClient("key", "example.com", base_url="http://127.0.0.1:9/services")
    async with client, client.scheduler(store=SQLiteStore(path), drive=False) as scheduler:
        session = await scheduler.get(match.group(1))
    assert session is not None
    assert (session.state, session.calls_made, session.request) == (SessionState.VERIFIED, 1, None)


def test_a_store_that_cannot_be_reached_is_one_line_without_its_password() -> None:
    done = _cli(
        *("confirm", "5555550123", "--country-code", "1", "--code", "1"),
        *("--store", "postgresql://app:hunter2@127.0.0.1:1/signup", "--emulator"),
        stdin="",
    )
    assert done.returncode == 2, done.stderr
    assert "postgresql://app@127.0.0.1:1/signup" in done.stderr
    assert "hunter2" not in done.stderr + done.stdout
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--store", "mysql://db/x"), "'mysql' is not one of"),
        (("--store", "memory:"), "needs a durable store"),
        ((), "Missing option '--store'"),
        (("--store", "sqlite:///x.sqlite?lease=soon"), "lease must be a number"),
    ],
)
def test_worker_usage_errors_say_what_to_do(args: tuple[str, ...], says: str) -> None:
    done = _cli("worker", *args)
    assert done.returncode == 2
    first, *hint = done.stderr.strip().splitlines()
    assert says in first
    assert hint == ["Try 'phoneconfirm worker --help' for help."]


@pytest.mark.anyio
async def test_worker_places_due_calls_and_stops_on_sigterm(
    tmp_path: Path, emulator: Emulator
) -> None:
    url = f"sqlite:///{tmp_path}/sessions.sqlite"
    client = PhoneConfirmClient(API_KEY, DOMAIN, base_url=emulator.base_url)
    async with (
        client,
        client.scheduler(store=SQLiteStore(tmp_path / "sessions.sqlite"), drive=False) as web,
    ):
        session = await web.schedule("5555550123", country_code="1", code="4821")
        env = _env(
            PHONECONFIRM_API_KEY=API_KEY,
            PHONECONFIRM_DOMAIN=DOMAIN,
            PHONECONFIRM_BASE_URL=emulator.base_url,
        )
        worker = await anyio.to_thread.run_sync(
            lambda: subprocess.Popen(
                [sys.executable, "-m", "phoneconfirm_async.cli", "worker", "--store", url],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
        try:
            with anyio.fail_after(30):
                assert await session.wait_called()  # the worker placed it and wrote it down
            assert (await session.verify("4821")).verified
            assert len(emulator.calls) == 1
        finally:
            worker.send_signal(signal.SIGTERM)
            out, err = await anyio.to_thread.run_sync(lambda: worker.communicate(timeout=30))
    assert worker.returncode == 0, err
    assert "placing the due calls of sqlite:" in err
    assert err.strip().endswith("phoneconfirm worker: stopped")
    assert out == ""
    assert "4821" not in err
