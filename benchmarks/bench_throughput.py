"""Batch throughput against concurrency, with a chart (docs/explanation/numbers.md).

    python -m benchmarks.bench_throughput [--quick] [--json FILE] [--chart FILE.png]

For each concurrency level, rows per second of: ``place_many`` with ``transport="auto"``
(aiohttp) and ``transport="httpx"``, a hand-written ``httpx`` + semaphore + ``gather``
loop, and a raw ``aiohttp`` loop, all in this process on asyncio's own loop; and, as whole
processes, ``phoneconfirm batch place --concurrency N`` and the hand-written aiohttp script
of ``benchmarks.bench_cli``. One out-of-process emulator serves them all. The Result lines
report the library (auto) against raw aiohttp at each level, the median ratio of
interleaved rounds (target >= 0.9x at every level).
"""

from __future__ import annotations

import os
import statistics
import tempfile
from pathlib import Path

import anyio

from benchmarks._common import Result, emulator_process, machine, parser, report
from benchmarks.bench_batch import aiohttp_loop, httpx_loop, library
from benchmarks.bench_cli import commands, installed_env, run_process, write_rows

SERIES = (
    "phoneconfirm (auto: aiohttp)",
    "phoneconfirm (httpx)",
    "httpx + gather",
    "aiohttp",
    "phoneconfirm batch place (CLI process)",
    "hand-written aiohttp script (process)",
)
TARGET = 0.9


def sweep(
    levels: tuple[int, ...], rows: int, rounds: int
) -> tuple[dict[str, list[float]], list[float]]:
    """Median rows/s of each series at each level, and the median per-round ratio of the
    library (auto) to raw aiohttp at each level (rounds interleaved)."""
    figures: dict[str, list[float]] = {name: [] for name in SERIES}
    ratios: list[float] = []
    with tempfile.TemporaryDirectory() as folder, emulator_process() as base_url:
        path, output = Path(folder) / "rows.csv", Path(folder) / "out.jsonl"
        write_rows(path, rows)
        env = installed_env(Path(folder))
        anyio.run(library, base_url, 500, "auto", 50)  # warm up the emulator
        for level in levels:
            ours: list[float] = []
            theirs: list[float] = []
            for _ in range(rounds):
                theirs.append(anyio.run(aiohttp_loop, base_url, rows, level))
                ours.append(anyio.run(library, base_url, rows, "auto", level))
            ratios.append(statistics.median(a / b for a, b in zip(ours, theirs, strict=True)))
            figures[SERIES[0]].append(statistics.median(ours))
            figures[SERIES[3]].append(statistics.median(theirs))
            figures[SERIES[1]].append(anyio.run(library, base_url, rows, "httpx", level))
            figures[SERIES[2]].append(anyio.run(httpx_loop, base_url, rows, level))
            cli, script = commands(path, base_url, level)
            for name, command in ((SERIES[4], cli), (SERIES[5], script)):
                figures[name].append(rows / run_process(command, output, env).wall)
    return figures, ratios


def chart(levels: tuple[int, ...], figures: dict[str, list[float]], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9.5, 4.2), dpi=120)
    for name, values in figures.items():
        ax.plot(levels, values, marker="o", label=name)
    ax.set_xscale("log")
    ax.set_xticks(list(levels), [str(level) for level in levels])
    ax.set_xlabel("concurrency")
    ax.set_ylabel("rows per second")
    ax.set_title(f"place_many throughput, emulator on loopback, {os.cpu_count()} cores")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize="small")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def run(quick: bool, chart_path: str | None = None) -> list[Result]:
    levels, rows, rounds = ((10, 100), 1000, 1) if quick else ((10, 25, 50, 100, 200), 6000, 3)
    figures, ratios = sweep(levels, rows, rounds)
    if chart_path:
        chart(levels, figures, chart_path)
    results = []
    for i, level in enumerate(levels):
        results.append(
            Result(
                name=f"place_many auto vs raw aiohttp, c={level}",
                unit="rows/s",
                value=figures[SERIES[0]][i],
                baseline=figures[SERIES[3]][i],
                ratio=ratios[i],
                target=f">= {TARGET:.1f}x",
                met=ratios[i] >= TARGET,
                detail={name: values[i] for name, values in figures.items()}
                | {"rows": rows, "rounds": rounds}
                | machine(),
            )
        )
    return results


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--chart", metavar="FILE.png", help="draw the chart to this file")
    args = p.parse_args()
    report(run(args.quick, args.chart), args.json)


if __name__ == "__main__":
    main()
