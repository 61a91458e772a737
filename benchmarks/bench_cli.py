"""``phoneconfirm batch place`` against the script a user would write instead.

    python -m benchmarks.bench_cli [--quick] [--json FILE] [--rows N] [--rounds N]

Both are whole processes (interpreter start-up, imports, CSV in, JSON Lines out to a file)
placing every row of one CSV at concurrency 200 against an out-of-process emulator; rounds
interleaved, medians of the per-round ratios. The baseline is
``benchmarks/handwritten_batch.py`` (one ``aiohttp.ClientSession``, 200 workers,
``session.get(url, params=...)``, ``json.loads``, one ``print(json.dumps(...))`` per row).
Figures: rows per second (wall clock of the process, target >= 1.15x) and CPU seconds per
row (user + system of the process, from ``wait4``, target <= 0.85x). Both run as installed
packages do, with their bytecode cached (in the run's temporary folder).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks._common import API_KEY, DOMAIN, Result, emulator_process, machine, parser, report

CONCURRENCY = 200
ROWS_TARGET = 1.15
CPU_TARGET = 0.85


@dataclass(frozen=True)
class Run:
    """One whole process: wall seconds, CPU seconds (user + system), rows written."""

    wall: float
    cpu: float
    rows: int


def write_rows(path: Path, count: int) -> None:
    with path.open("w", encoding="utf-8") as out:
        out.write("phone,country_code,code\n")
        out.writelines(f"555{i % 10_000_000:07d},1,4821\n" for i in range(count))


def run_process(command: list[str], output: Path, env: dict[str, str]) -> Run:
    """Run ``command`` with stdout to ``output``; its wall time and its own CPU time."""
    with output.open("wb") as out:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.DEVNULL, env=env)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode not in (0, 1):  # 1: the CLI had rows that failed (counted below)
        raise RuntimeError(f"{command[2:4]} exited with {process.returncode}")
    with output.open("rb") as written:
        rows = sum(1 for _ in written)
    return Run(wall, usage.ru_utime + usage.ru_stime, rows)


def check_output(output: Path, count: int, field: str, value: str) -> int:
    """Rows of the output that did not succeed (a loaded machine may drop a connection:
    counted in the result's detail, not fatal); every input row must have its line."""
    with output.open(encoding="utf-8") as written:
        lines = [json.loads(line) for line in written]
    assert len(lines) == count, f"{len(lines)} output rows for {count} input rows"
    return sum(1 for line in lines if line.get(field) != value)


def commands(rows: Path, base_url: str, concurrency: int) -> tuple[list[str], list[str]]:
    """The CLI's command and the hand-written script's, on the same rows and emulator."""
    library = [
        sys.executable,
        "-m",
        "phoneconfirm_async.cli",
        "batch",
        "place",
        str(rows),
        "--concurrency",
        str(concurrency),
        "--base-url",
        base_url,
        "--api-key",
        API_KEY,
        "--domain",
        DOMAIN,
    ]
    script = [sys.executable, "-m", "benchmarks.handwritten_batch", str(rows), base_url]
    return library, [*script, str(concurrency)]


def installed_env(folder: Path) -> dict[str, str]:
    """The environment of both processes: as installed, with their bytecode cached (the
    first runs write it to ``folder``), also where PYTHONDONTWRITEBYTECODE is set, as it
    is on our CI machines."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(folder / "pycache")
    return env


def measure(count: int, rounds: int) -> list[Result]:
    with tempfile.TemporaryDirectory() as folder, emulator_process() as base_url:
        rows = Path(folder) / "rows.csv"
        output = Path(folder) / "out.jsonl"
        write_rows(rows, count)
        env = installed_env(Path(folder))
        library, script = commands(rows, base_url, CONCURRENCY)
        ours: list[Run] = []
        theirs: list[Run] = []
        run_process(library, output, env)  # warm up the emulator, page cache and bytecode
        failed = {"library": check_output(output, count, "outcome", "placed")}
        run_process(script, output, env)
        failed["script"] = check_output(output, count, "status", "valid")
        for _ in range(rounds):
            theirs.append(run_process(script, output, env))
            ours.append(run_process(library, output, env))
    detail = {
        "rows": count,
        "rounds": rounds,
        "concurrency": CONCURRENCY,
        "library_wall_s": [round(r.wall, 3) for r in ours],
        "library_cpu_s": [round(r.cpu, 3) for r in ours],
        "script_wall_s": [round(r.wall, 3) for r in theirs],
        "script_cpu_s": [round(r.cpu, 3) for r in theirs],
        "rows_not_placed_in_warm_up": failed,
    } | machine()
    speed = statistics.median(b.wall / a.wall for a, b in zip(ours, theirs, strict=True))
    cpu = statistics.median(a.cpu / b.cpu for a, b in zip(ours, theirs, strict=True))
    return [
        Result(
            name="batch place CLI vs hand-written aiohttp",
            unit="rows/s",
            value=count / statistics.median(r.wall for r in ours),
            baseline=count / statistics.median(r.wall for r in theirs),
            ratio=speed,
            target=f">= {ROWS_TARGET:.2f}x",
            met=speed >= ROWS_TARGET,
            detail=detail,
        ),
        Result(
            name="batch place CLI CPU per row vs hand-written",
            unit="us/row",
            value=statistics.median(r.cpu for r in ours) / count * 1e6,
            baseline=statistics.median(r.cpu for r in theirs) / count * 1e6,
            ratio=cpu,
            target=f"<= {CPU_TARGET:.2f}x",
            met=cpu <= CPU_TARGET,
            detail=detail,
        ),
    ]


def run(quick: bool, count: int | None = None, rounds: int | None = None) -> list[Result]:
    default_count, default_rounds = (8_000, 3) if quick else (20_000, 5)
    return measure(count or default_count, rounds or default_rounds)


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--rows", type=int, help="input rows per run (default 20,000; quick 8,000)")
    p.add_argument("--rounds", type=int, help="interleaved rounds (default 5; quick 3)")
    args = p.parse_args()
    report(run(args.quick, args.rows, args.rounds), args.json)


if __name__ == "__main__":
    main()
