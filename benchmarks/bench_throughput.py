"""Batch throughput against concurrency, with a chart (README figure).

    python -m benchmarks.bench_throughput [--quick] [--json FILE] [--chart FILE.png]

For each concurrency level, rows per second of: ``place_many`` with ``transport="auto"``
(aiohttp) and ``transport="httpx"``, a hand-written ``httpx`` + semaphore + ``gather``
loop, and a raw ``aiohttp`` loop, all against one out-of-process emulator on asyncio. The
Result lines report the library (auto) against raw aiohttp at each level.
"""

from __future__ import annotations

import os

import anyio

from benchmarks._common import Result, emulator_process, machine, parser, report
from benchmarks.bench_batch import aiohttp_loop, httpx_loop, library

SERIES = ("phoneconfirm (auto: aiohttp)", "phoneconfirm (httpx)", "httpx + gather", "aiohttp")


def sweep(levels: tuple[int, ...], rows: int) -> dict[str, list[float]]:
    figures: dict[str, list[float]] = {name: [] for name in SERIES}
    with emulator_process() as base_url:
        anyio.run(library, base_url, 500, "auto", 50)  # warm up the emulator
        for level in levels:
            figures[SERIES[0]].append(anyio.run(library, base_url, rows, "auto", level))
            figures[SERIES[1]].append(anyio.run(library, base_url, rows, "httpx", level))
            figures[SERIES[2]].append(anyio.run(httpx_loop, base_url, rows, level))
            figures[SERIES[3]].append(anyio.run(aiohttp_loop, base_url, rows, level))
    return figures


def chart(levels: tuple[int, ...], figures: dict[str, list[float]], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    for name, values in figures.items():
        ax.plot(levels, values, marker="o", label=name)
    ax.set_xscale("log")
    ax.set_xticks(list(levels), [str(level) for level in levels])
    ax.set_xlabel("concurrency")
    ax.set_ylabel("rows per second")
    ax.set_title(f"place_many throughput, emulator on loopback, {os.cpu_count()} cores")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def run(quick: bool, chart_path: str | None = None) -> list[Result]:
    levels, rows = ((10, 100), 1000) if quick else ((10, 25, 50, 100, 200), 6000)
    figures = sweep(levels, rows)
    if chart_path:
        chart(levels, figures, chart_path)
    results = []
    for i, level in enumerate(levels):
        ours, theirs = figures[SERIES[0]][i], figures[SERIES[3]][i]
        results.append(
            Result(
                name=f"place_many auto vs raw aiohttp, c={level}",
                unit="rows/s",
                value=ours,
                baseline=theirs,
                ratio=ours / theirs,
                target=">= 0.7x",
                met=ours / theirs >= 0.7,
                detail={name: values[i] for name, values in figures.items()} | machine(),
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
