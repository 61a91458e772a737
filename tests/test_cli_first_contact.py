"""What a newcomer meets on the command line: no silent emulator where the work is real,
the emulator's notice before any progress bar, numbers as people type them, and errors
that say what to do."""

from __future__ import annotations

import json
import os
import pty
import select
import sqlite3
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from phoneconfirm_async import PhoneConfirmClient, SessionState, SQLiteStore
from phoneconfirm_async.emulator import Emulator
from tests.conftest import API_KEY, DOMAIN, ENV_NAMES

PROJECT = Path(__file__).resolve().parent.parent
SEND_NOTHING = "http://127.0.0.1:9/services"  # the discard port: nothing listens there


def _env(**extra: str) -> dict[str, str]:
    names = (*ENV_NAMES, "PHONECONFIRM_STORE")
    env = {name: value for name, value in os.environ.items() if name not in names}
    env.update(extra)
    return env


def _cli(*args: str, stdin: str = "", **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "phoneconfirm_async.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=_env(**env),
        cwd=PROJECT,
        timeout=60,
        check=False,
    )


def _one_line(done: subprocess.CompletedProcess[str]) -> str:
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


async def _due_session(path: Path) -> str:
    """A session due now in the SQLite file, scheduled by a process that drives nothing."""
    client = PhoneConfirmClient(API_KEY, DOMAIN, base_url=SEND_NOTHING)
    async with client, client.scheduler(store=SQLiteStore(path), drive=False) as scheduler:
        session = await scheduler.schedule("5555550123", country_code="1")
    return session.id


async def _fresh_read(path: Path, session_id: str) -> tuple[SessionState, int]:
    client = PhoneConfirmClient(API_KEY, DOMAIN, base_url=SEND_NOTHING)
    async with client, client.scheduler(store=SQLiteStore(path), drive=False) as scheduler:
        session = await scheduler.get(session_id)
    assert session is not None
    return session.state, session.calls_made


@pytest.mark.anyio
@pytest.mark.parametrize("base_url", [None, "emulator"])
async def test_a_worker_without_an_api_key_refuses_and_places_nothing(
    tmp_path: Path, emulator: Emulator, base_url: str | None
) -> None:
    """The production hazard: no key set. The worker exits 2 in one line that names the
    variable and ``--emulator``; the due session of the real store is untouched. With a base
    URL but no key (a half-configured deployment) it refuses the same way."""
    path = tmp_path / "app.sqlite"
    session_id = await _due_session(path)
    env = {} if base_url is None else {"PHONECONFIRM_BASE_URL": emulator.base_url}
    done = await anyio.to_thread.run_sync(
        lambda: _cli("worker", "--store", f"sqlite:///{path}", **env)
    )
    assert done.returncode == 2
    line = _one_line(done)
    assert "PHONECONFIRM_API_KEY" in line
    assert "--emulator" in line
    assert await _fresh_read(path, session_id) == (SessionState.SCHEDULED, 0)
    assert emulator.calls == []


@pytest.mark.anyio
async def test_confirm_with_a_store_refuses_without_a_key_and_stores_nothing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "app.sqlite"
    done = await anyio.to_thread.run_sync(
        lambda: _cli("confirm", "+15555550123", "--store", f"sqlite:///{path}", stdin="123456\n")
    )
    assert done.returncode == 2
    assert "--emulator" in _one_line(done)
    assert not path.exists()  # nothing opened, nothing scheduled

    explicit = await anyio.to_thread.run_sync(
        lambda: _cli(
            *("confirm", "+15555550123", "--store", f"sqlite:///{path}", "--emulator"),
            stdin="",
        )
    )
    assert explicit.returncode == 1, explicit.stderr  # ran, then gave up at end of input
    assert "--emulator: using the built-in emulator" in explicit.stderr
    assert json.loads(explicit.stdout)["outcome"] == "cancelled"
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT state FROM sessions").fetchall() == [("cancelled",)]


def test_emulator_and_a_service_exclude_each_other() -> None:
    done = _cli("place", "+15555550123", "--code", "1234", "--emulator", "--api-key", "k")
    assert done.returncode == 2
    assert "--emulator excludes a service" in done.stderr


def test_place_takes_an_international_number_without_a_country_code(emulator: Emulator) -> None:
    creds = ("--api-key", API_KEY, "--domain", DOMAIN, "--base-url", emulator.base_url)
    done = _cli("place", "+44 20 7946 0018", "--code", "12-34", *creds)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["outcome"] == "placed"
    call = emulator.calls[0]
    assert (call.phone, call.country_code, call.code) == ("2079460018", "44", "1234")


def test_place_on_the_emulator_when_asked_says_so(emulator: Emulator) -> None:
    done = _cli("place", "5555550123", "--country-code", "1", "--code", "1234", "--emulator")
    assert done.returncode == 0, done.stderr
    assert _one_line(done).startswith("phoneconfirm: --emulator: using the built-in emulator")


@pytest.mark.parametrize(
    ("args", "says", "command"),
    [
        (("place", "5555550123"), "Missing option '--code'", "place"),
        (("place", "1", "--code", "1", "--format", "yaml"), "'yaml' is not one of", "place"),
        (("worker",), "Missing option '--store'", "worker"),
        (("worker", "--store", "mysql://db/x"), "'mysql' is not one of", "worker"),
        (("batch", "place"), "Missing argument 'INPUT'", "batch place"),
    ],
)
def test_usage_errors_end_with_the_help_hint(
    args: tuple[str, ...], says: str, command: str
) -> None:
    """A flag that does not parse: what is wrong, then where the help is (exit 2)."""
    done = _cli(*args)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 2, done.stderr
    assert says in lines[0]
    assert lines[1] == f"Try 'phoneconfirm {command} --help' for help."


def test_a_sqlite_url_with_two_slashes_shows_the_right_form() -> None:
    done = _cli("worker", "--store", "sqlite://app.sqlite", "--api-key", "k")
    assert done.returncode == 2
    assert "sqlite:///app.sqlite" in done.stderr
    assert "three slashes" in done.stderr


def test_the_emulator_notice_comes_before_the_progress_bar() -> None:
    """On a terminal, the batch's bar is drawn after the notice, not over it: the notice
    is the first thing written to stderr."""
    primary, secondary = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "phoneconfirm_async.cli", "batch", "place", "examples/numbers.csv"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=secondary,
        env=_env(COLUMNS="100", TERM="xterm"),
        cwd=PROJECT,
    )
    os.close(secondary)
    written = b""
    while True:
        ready, _, _ = select.select([primary], [], [], 60)
        assert ready, written
        try:
            chunk = os.read(primary, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        written += chunk
    os.close(primary)
    assert process.wait(timeout=60) == 0
    text = written.decode(errors="replace")
    notice = text.index("using the built-in emulator")
    assert notice < text.index("place numbers.csv"), text
    assert text.lstrip().startswith("phoneconfirm: no API key or base URL given"), text[:200]


def test_a_batch_of_international_numbers_needs_no_country_code_column(tmp_path: Path) -> None:
    """Rows as a sign-up form collects them: international numbers, codes with spaces; a
    national number without its country code is a failed row, reported and not dropped."""
    source = tmp_path / "in.csv"
    source.write_text(
        "phone,code\n+1 555-555-0123,12 34\n+44 20 7946 0018,5678\n555-555-0199,1234\n"
    )
    done = _cli("batch", "place", str(source))
    assert done.returncode == 1
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert [row["outcome"] for row in sorted(rows, key=lambda r: r["row"])] == [
        "placed",
        "placed",
        "failed",
    ]
    failed = next(row for row in rows if row["row"] == 3)
    assert failed["error"]["message"].startswith("country_code: is required")
