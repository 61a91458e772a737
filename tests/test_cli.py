"""The phoneconfirm command: place, verify, and the emulator server."""

from __future__ import annotations

import json
import os
import re
import selectors
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from phoneconfirm_async.cli import main
from phoneconfirm_async.emulator import Emulator
from tests.conftest import API_KEY, DOMAIN, ENV_NAMES


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    return CliRunner()


def test_place_on_the_builtin_emulator(runner: CliRunner) -> None:
    """Without credentials, place runs on the built-in emulator and says so on stderr."""
    result = runner.invoke(main, ["place", "555-555-0123", "--country-code", "1", "--code", "42"])
    assert result.exit_code == 0
    assert "built-in emulator" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    row = json.loads(result.stdout)
    assert row["outcome"] == "placed"
    assert row["row"] == 1
    assert row["status"] == "valid"
    assert row["error"] is None
    assert "42" not in json.dumps({k: v for k, v in row.items() if k != "transaction_number"})


def test_place_and_verify_against_a_named_service(runner: CliRunner, emulator: Emulator) -> None:
    """With --api-key/--domain/--base-url, place then verify; exit codes follow outcomes."""
    creds = ["--api-key", API_KEY, "--domain", DOMAIN, "--base-url", emulator.base_url]
    placed = runner.invoke(
        main, ["place", "5555550123", "--country-code", "1", "--code", "4821", *creds]
    )
    assert placed.exit_code == 0, placed.output
    assert "emulator" not in placed.stderr
    tx = json.loads(placed.stdout)["transaction_number"]
    wrong = runner.invoke(main, ["verify", tx, "--code", "0000", *creds])
    assert wrong.exit_code == 1
    assert json.loads(wrong.stdout)["outcome"] == "not_verified"
    right = runner.invoke(main, ["verify", tx, "--code", "4821", *creds])
    assert right.exit_code == 0
    assert json.loads(right.stdout)["outcome"] == "verified"


def test_credentials_from_environment(
    runner: CliRunner, emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PHONECONFIRM_* variables stand in for the flags."""
    monkeypatch.setenv("PHONECONFIRM_API_KEY", API_KEY)
    monkeypatch.setenv("PHONECONFIRM_DOMAIN", DOMAIN)
    monkeypatch.setenv("PHONECONFIRM_BASE_URL", emulator.base_url)
    result = runner.invoke(main, ["place", "5555550123", "--country-code", "1", "--code", "1"])
    assert result.exit_code == 0
    assert len(emulator.calls) == 1


def test_bad_input_is_a_failed_row(runner: CliRunner) -> None:
    """A bad phone is reported as a failed row naming the field, exit 1."""
    result = runner.invoke(main, ["place", "12", "--country-code", "1", "--code", "1"])
    assert result.exit_code == 1
    row = json.loads(result.stdout)
    assert row["outcome"] == "failed"
    assert row["error"]["type"] == "ValidationError"
    assert "phone" in row["error"]["message"]


def test_missing_domain_is_a_usage_error(runner: CliRunner) -> None:
    """A key without a domain exits 2 with one line naming the variable, no traceback."""
    result = runner.invoke(
        main, ["place", "5555550123", "--country-code", "1", "--code", "1", "--api-key", "k"]
    )
    assert result.exit_code == 2
    assert "PHONECONFIRM_DOMAIN" in result.stderr
    assert "Traceback" not in result.output


def test_secret_flags_never_printed(runner: CliRunner, emulator: Emulator) -> None:
    """The key and secret key appear nowhere in the output, even on failure."""
    creds = [
        "--api-key",
        "sk-NOTPRINTED-1",
        "--domain",
        DOMAIN,
        "--base-url",
        emulator.base_url,
        "--secret-key",
        "SECRETNOTPRINTED",
    ]
    result = runner.invoke(
        main, ["place", "5555550123", "--country-code", "1", "--code", "Zx9", *creds]
    )
    assert result.exit_code == 1  # the emulator does not know that key
    assert json.loads(result.stdout)["error"]["type"] == "AuthenticationError"
    for secret in ("sk-NOTPRINTED-1", "SECRETNOTPRINTED", "Zx9"):
        assert secret not in result.output


def test_emulator_command_serves_until_interrupted() -> None:
    """`phoneconfirm emulator` serves on loopback; Ctrl-C exits 0 with a goodbye."""
    env = {k: v for k, v in os.environ.items() if k not in ENV_NAMES}
    process = subprocess.Popen(
        [sys.executable, "-m", "phoneconfirm_async.cli", "emulator", "--port", "0", "--seed", "1"],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stderr is not None
        with selectors.DefaultSelector() as selector:
            selector.register(process.stderr, selectors.EVENT_READ)
            assert selector.select(timeout=30), "the emulator printed nothing"
        banner = process.stderr.readline()
        match = re.search(r"http://127\.0\.0\.1:\d+/services", banner)
        assert match, banner
        params = {
            "phone": "5555550123",
            "country_code": "1",
            "code": "1",
            "apikey": "emulator-key",
            "domain": "example.com",
        }
        response = httpx.get(match.group(0) + "/phoneconfirm/placecall/", params=params)
        assert response.json()["phoneconfirm"]["status"] == "valid"
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
        goodbye = process.stderr.read()
        assert "Goodbye" in goodbye
        assert len(goodbye.strip().splitlines()) == 1
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()


def _confirm(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ENV_NAMES}
    return subprocess.run(
        [sys.executable, "-m", "phoneconfirm_async.cli", "confirm", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_confirm_prompts_until_the_code_matches() -> None:
    """A wrong code is refused with a hint; the right one verifies: exit 0."""
    done = _confirm(
        "555-555-0123",
        "--country-code",
        "1",
        "--code",
        "4821",
        "--redial-count",
        "2",
        stdin="0000\n4821\n",
    )
    assert done.returncode == 0, done.stderr
    row = json.loads(done.stdout)
    assert (row["outcome"], row["calls"]) == ("verified", 1)
    assert "does not match" in done.stderr
    assert "4821" not in done.stderr
    assert "4821" not in done.stdout


def test_confirm_gives_up_at_end_of_input() -> None:
    """Ctrl-D (end of input) cancels the session: exit 1."""
    done = _confirm("5555550123", "--country-code", "1", "--code", "4821", stdin="")
    assert done.returncode == 1
    assert json.loads(done.stdout)["outcome"] == "cancelled"


def test_confirm_reports_a_locked_session_in_one_line() -> None:
    """Wrong codes up to --max-verify-attempts lock the session: exit 1, outcome locked."""
    done = _confirm(
        "5555550123",
        "--country-code",
        "1",
        "--max-verify-attempts",
        "2",
        stdin="000000\n000001\n000002\n",
    )
    assert done.returncode == 1, done.stderr
    assert json.loads(done.stdout)["outcome"] == "locked"
    assert "1 attempt(s) left" in done.stderr
    assert done.stderr.count("Session locked") == 1


def test_confirm_reports_a_throttled_phone_in_one_line(tmp_path: Path) -> None:
    """The fourth session for one phone within the hour is refused before any call."""
    store = f"sqlite:///{tmp_path}/sessions.sqlite"
    args = ("5555550123", "--country-code", "1", "--store", store, "--emulator")
    for _ in range(3):  # each gives up at once (end of input): a session counted anyway
        assert _confirm(*args).returncode == 1
    done = _confirm(*args)
    assert done.returncode == 1
    row = json.loads(done.stdout)
    assert (row["outcome"], row["error"]["type"]) == ("throttled", "ThrottledError")
    assert 3500 < row["retry_after"] <= 3600
    assert done.stderr.count("Throttled") == 1
    assert "5555550123" not in done.stderr


def test_confirm_bad_at_is_a_usage_error() -> None:
    """--at without a zone exits 2 with one line."""
    done = _confirm("5555550123", "--country-code", "1", "--at", "2026-12-01T09:00")
    assert done.returncode == 2
    assert "zone" in done.stderr


def test_confirm_ctrl_c_exits_130() -> None:
    """Ctrl-C while waiting for the code cancels and exits 130 at once."""
    env = {k: v for k, v in os.environ.items() if k not in ENV_NAMES}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "phoneconfirm_async.cli",
            "confirm",
            "5555550123",
            "--country-code",
            "1",
            "--code",
            "4821",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stderr is not None
        for _ in range(2):  # the emulator line, then the prompt
            line = process.stderr.readline()
        assert "Type the code" in line
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 130
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for stream in (process.stdin, process.stdout, process.stderr):
            if stream is not None:
                stream.close()


@pytest.mark.slow
def test_bench_quick_runs_and_prints_every_row(tmp_path: Path) -> None:
    """`phoneconfirm bench --quick` runs the whole suite and reports every benchmark."""
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "phoneconfirm_async.cli", "bench", "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode in (0, 1), done.stderr  # 1: a target missed on a loaded machine
    names = [r["name"] for r in json.loads(out.read_text())["results"]]
    assert len(names) == 31
    for fragment in (
        "overhead",
        "CPU per place_call",
        "telemetry on, no SDK (no-op)",
        "SDK + in-memory exporter",
        "JSON",
        "strings as text/html (json)",
        "XML verifycode",
        "batch place CLI",
        "httpx+gather",
        "raw aiohttp",
        "rate_limit=50",
        "RSS growth",
        "verify, attempt counted",
        "three throttles on",
        "pending sessions",
        "lateness",
        "SQLite: sessions scheduled",
        "SQLite: worker RSS",
        "sync place_call, 1 thread",
        "sync place_call, 8 threads",
        "PostgreSQL, 2 workers",
        "PostgreSQL wake-up lateness",
    ):
        assert any(fragment in name for name in names), fragment
        assert any(fragment in line for line in done.stdout.splitlines()), fragment


def test_bench_outside_a_checkout_says_so_in_one_line() -> None:
    """From a wheel install (no benchmarks/ package), bench explains itself in one line."""
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            # What a wheel install sees: no benchmarks package to import.
            "import sys; sys.modules['benchmarks'] = None\n"
            "from phoneconfirm_async.cli import run\n"
            "sys.argv = ['phoneconfirm', 'bench', '--quick']\n"
            "run()\n",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    (line,) = done.stderr.strip().splitlines()
    assert "source checkout" in line
