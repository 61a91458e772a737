"""The whole suite in one run: ``phoneconfirm bench`` and ``python -m benchmarks.suite``.

    python -m benchmarks.suite [--quick] [--json FILE]

``--quick`` runs a small version of each benchmark (about four minutes on 2 cores); the full
run also sweeps concurrency for the docs chart (``benchmarks.bench_throughput``).
"""

from __future__ import annotations

from collections.abc import Callable

from benchmarks import (
    bench_batch,
    bench_cli,
    bench_cpu,
    bench_overhead,
    bench_parser,
    bench_policy,
    bench_scheduler,
    bench_stores,
    bench_sync,
    bench_telemetry,
    bench_throughput,
)
from benchmarks._common import Result, parser, report

SUITE: tuple[tuple[str, Callable[[bool], list[Result]]], ...] = (
    ("overhead", bench_overhead.run),
    ("cpu", bench_cpu.run),
    ("telemetry", bench_telemetry.run),
    ("parser", bench_parser.run),
    ("batch", bench_batch.run),
    ("cli", bench_cli.run),
    ("scheduler", bench_scheduler.run),
    ("stores", bench_stores.run),
    ("policy", bench_policy.run),
    ("sync", bench_sync.run),
)


def run_all(quick: bool, progress: Callable[[str], None] | None = None) -> list[Result]:
    results: list[Result] = []
    steps = [*SUITE] if quick else [*SUITE, ("throughput", bench_throughput.run)]
    for name, run in steps:
        if progress is not None:
            progress(name)
        results.extend(run(quick))
    return results


def main() -> None:
    args = parser(__doc__ or "").parse_args()
    report(run_all(args.quick), args.json)


if __name__ == "__main__":
    main()
