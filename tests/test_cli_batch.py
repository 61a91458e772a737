"""phoneconfirm batch: files in, one row out per input row, resumable after SIGKILL."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import API_KEY, DOMAIN, ENV_NAMES, EmulatorFactory

EXAMPLES = Path(__file__).parent.parent / "examples" / "numbers.csv"


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "phoneconfirm_async.cli", *args]


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ENV_NAMES}


def phoneconfirm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command(*args),
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=120,
        check=False,
    )


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_quick_start_command() -> None:
    """`phoneconfirm batch place examples/numbers.csv` runs on the built-in emulator."""
    done = phoneconfirm("batch", "place", str(EXAMPLES))
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert sorted(r["row"] for r in rows) == list(range(1, 26))
    assert {r["outcome"] for r in rows} == {"placed"}
    assert set(rows[0]) == {
        "row",
        "phone",
        "country_code",
        "outcome",
        "status",
        "transaction_number",
        "message",
        "error",
    }
    assert "built-in emulator" in done.stderr
    assert "placed" in done.stderr  # the summary table
    assert "25" in done.stderr
    codes = {line.split(",")[2] for line in EXAMPLES.read_text().splitlines()[1:]}
    for code in codes:
        assert f'"{code}"' not in done.stdout


def test_bad_rows_failed_rows_and_csv_output(tmp_path: Path) -> None:
    """Bad rows are reported as failed (exit 1); CSV output has one row per input row."""
    source = write_csv(
        tmp_path / "in.csv",
        ["phone", "country_code", "code"],
        [["5555550001", "1", "1234"], ["12", "1", "1234"], ["5555550003", "0", "1234"]],
    )
    out = tmp_path / "out.csv"
    done = phoneconfirm("batch", "place", str(source), "-o", str(out))
    assert done.returncode == 1
    with out.open() as handle:
        rows = sorted(csv.DictReader(handle), key=lambda r: int(r["row"]))
    assert [r["outcome"] for r in rows] == ["placed", "failed", "failed"]
    assert rows[1]["error"].startswith("ValidationError: phone")
    assert rows[2]["error"].startswith("ValidationError: country_code")  # +0: nobody's
    assert rows[1]["phone"] == "12"
    assert done.stdout == ""


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("phone,country_code\n5555550123,1\n", "lacks column(s) code"),
        (None, "cannot read"),
    ],
)
def test_unusable_input_exits_2_in_one_line(
    tmp_path: Path, content: str | None, message: str
) -> None:
    """A missing file or a header without the columns: exit 2, one line, no traceback."""
    source = tmp_path / "in.csv"
    if content is not None:
        source.write_text(content)
    done = phoneconfirm("batch", "place", str(source))
    assert done.returncode == 2
    assert message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_bad_flag_exits_2_with_the_help_hint() -> None:
    """A bad flag value: one line saying what is wrong, one saying where the help is."""
    done = phoneconfirm("batch", "place", str(EXAMPLES), "--concurrency", "0")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "phoneconfirm: Invalid value for '--concurrency': 0 is not in the range x>=1.",
        "Try 'phoneconfirm batch place --help' for help.",
    ]


def test_batch_verify(tmp_path: Path, make_emulator: EmulatorFactory) -> None:
    """batch verify checks each pair: right codes verified, wrong ones not, unknown failed."""
    emulator = make_emulator()
    creds = ["--api-key", API_KEY, "--domain", DOMAIN, "--base-url", emulator.base_url]
    placed_in = write_csv(
        tmp_path / "in.csv",
        ["phone", "country_code", "code"],
        [[f"555555{i:04d}", "1", "4821"] for i in range(6)],
    )
    placed_out = tmp_path / "placed.jsonl"
    assert (
        phoneconfirm("batch", "place", str(placed_in), "-o", str(placed_out), *creds).returncode
        == 0
    )
    placed = sorted(read_jsonl(placed_out), key=lambda r: r["row"])
    pairs = [[r["transaction_number"], "4821" if r["row"] % 2 else "0000"] for r in placed]
    pairs.append(["999999", "4821"])
    verify_in = write_csv(tmp_path / "pairs.csv", ["transaction_number", "code"], pairs)
    done = phoneconfirm("batch", "verify", str(verify_in), *creds)
    assert done.returncode == 1  # the unknown transaction failed
    rows = sorted((json.loads(line) for line in done.stdout.splitlines()), key=lambda r: r["row"])
    assert [r["outcome"] for r in rows] == ["verified", "not_verified"] * 3 + ["failed"]
    assert set(rows[0]) == {"row", "transaction_number", "outcome", "status", "message", "error"}


def test_killed_run_resumes_without_phoning_twice(
    tmp_path: Path, make_emulator: EmulatorFactory
) -> None:
    """SIGKILL half way, then the same command: every row once, nobody phoned twice."""
    emulator = make_emulator(latency=0.01)
    count, concurrency = 400, 10
    source = write_csv(
        tmp_path / "in.csv",
        ["phone", "country_code", "code"],
        [[f"555{i:07d}", "1", "4821"] for i in range(count)],
    )
    journal = tmp_path / "journal.sqlite"
    creds = ["--api-key", API_KEY, "--domain", DOMAIN, "--base-url", emulator.base_url]
    common = ["--journal", str(journal), "--concurrency", str(concurrency), *creds]
    first_out, second_out = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    process = subprocess.Popen(
        command("batch", "place", str(source), "-o", str(first_out), *common),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=clean_env(),
    )
    try:
        assert emulator.wait_for_calls(count // 2, timeout=60)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    first = read_jsonl(first_out)
    assert 0 < len(first) < count

    done = phoneconfirm("batch", "place", str(source), "-o", str(second_out), *common)
    second = read_jsonl(second_out)
    assert sorted(r["row"] for r in second) == list(range(1, count + 1))
    calls = Counter(call.phone for call in emulator.calls)
    assert max(calls.values()) == 1
    unknown = [r for r in second if r["outcome"] == "unknown"]
    assert len(unknown) <= concurrency
    assert done.returncode == (1 if unknown else 0)
    by_row = {r["row"]: r for r in second}
    for row in first:  # what the first run finished is reported the same way again
        assert by_row[row["row"]]["transaction_number"] == row["transaction_number"]
    assert sum(r["outcome"] == "placed" for r in second) == count - len(unknown)
