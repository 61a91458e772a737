"""Shared helpers: an out-of-process emulator, interleaved rounds, and reporting.

Every figure is a ratio against a baseline measured in the same process run, rounds of the
two interleaved so that drift (CPU frequency, other load) hits both alike.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import selectors
import signal
import statistics
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

API_KEY = "emulator-key"
DOMAIN = "example.com"


@dataclass
class Result:
    """One benchmark line: the figure, its baseline, their ratio and the target."""

    name: str
    unit: str
    value: float
    baseline: float
    ratio: float
    target: str
    met: bool
    detail: dict[str, Any] = field(default_factory=dict)

    def row(self) -> str:
        verdict = "met" if self.met else "MISSED"
        return (
            f"{self.name:<44} {self.value:>10.1f} {self.unit:<8} baseline {self.baseline:>10.1f}"
            f"  ratio {self.ratio:>5.2f}  target {self.target:<8} {verdict}"
        )


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="a small, fast version")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    return p


def machine() -> dict[str, Any]:
    return {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def report(results: list[Result], json_path: str | None) -> None:
    """Print one line per result; also write them as JSON when asked."""
    print(f"# {machine()['cores']} cores, Python {machine()['python']}")
    for result in results:
        print(result.row())
    if json_path:
        write_json(results, json_path)


def write_json(results: list[Result], path: str) -> None:
    with open(path, "w") as out:
        payload = {"machine": machine(), "results": [asdict(r) for r in results]}
        json.dump(payload, out, indent=2)


@contextlib.contextmanager
def emulator_process(*args: str) -> Iterator[str]:
    """Run ``phoneconfirm emulator`` in its own process; yield its base URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "phoneconfirm_async.cli", "emulator", "--port", "0", *args],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        with selectors.DefaultSelector() as selector:
            selector.register(process.stderr, selectors.EVENT_READ)
            if not selector.select(timeout=30):
                raise RuntimeError("the emulator did not start")
        banner = process.stderr.readline()
        match = re.search(r"http://127\.0\.0\.1:\d+/services", banner)
        if not match:
            raise RuntimeError(f"unexpected emulator banner: {banner!r}")
        yield match.group(0)
    finally:
        process.send_signal(signal.SIGINT)
        reap(process, timeout=10)


def reap(process: subprocess.Popen[str], timeout: float) -> None:
    """Wait for a process told to stop (killed past ``timeout``); close its stderr pipe."""
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    if process.stderr is not None:
        process.stderr.close()


def rss_mb() -> float:
    """This process's resident set size, in MB (Linux)."""
    import resource

    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * resource.getpagesize() / 1e6


async def interleaved(
    library: Callable[[], Awaitable[float]],
    baseline: Callable[[], Awaitable[float]],
    rounds: int,
) -> tuple[list[float], list[float]]:
    """Warm both sides once, then alternate them ``rounds`` times; (library, baseline)."""
    await baseline()
    await library()
    mine: list[float] = []
    base: list[float] = []
    for _ in range(rounds):
        base.append(await baseline())
        mine.append(await library())
    return mine, base


def cost_result(
    name: str,
    unit: str,
    mine: list[float],
    base: list[float],
    scale: float,
    target: float,
    detail: dict[str, Any],
) -> Result:
    """A Result for a cost (time, CPU) where lower is better: median ratio <= target."""
    ratio = median_ratio(mine, base)
    return Result(
        name=name,
        unit=unit,
        value=statistics.median(mine) * scale,
        baseline=statistics.median(base) * scale,
        ratio=ratio,
        target=f"<= {target:.2f}x",
        met=ratio <= target,
        detail=detail,
    )


def rate_result(
    name: str,
    unit: str,
    mine: list[float],
    base: list[float],
    target: float,
    detail: dict[str, Any],
) -> Result:
    """A Result for a rate (rows/s) where higher is better: median ratio >= target."""
    ratio = median_ratio(mine, base)
    return Result(
        name=name,
        unit=unit,
        value=statistics.median(mine),
        baseline=statistics.median(base),
        ratio=ratio,
        target=f">= {target:.1f}x",
        met=ratio >= target,
        detail=detail,
    )


def median_ratio(library: list[float], baseline: list[float]) -> float:
    """Median of per-round ratios (rounds were interleaved)."""
    return statistics.median(a / b for a, b in zip(library, baseline, strict=True))


def place_params(i: int) -> dict[str, str]:
    return {
        "phone": f"555{i % 10_000_000:07d}",
        "country_code": "1",
        "code": "4821",
        "type": "json",
        "apikey": API_KEY,
        "domain": DOMAIN,
    }
