"""Batch throughput, rate-limit accuracy and memory over a long input.

    python -m benchmarks.bench_batch [--quick] [--json FILE] [--only NAME]

The emulator runs in its own process. Throughput is rows per second of ``place_many``
against a hand-written loop a user would otherwise write, rounds interleaved:

- ``transport="httpx"`` vs ``httpx.AsyncClient`` + semaphore + ``gather`` (target >= 1.0x);
- ``transport="auto"`` (aiohttp on asyncio) vs a raw ``aiohttp`` loop (target >= 0.9x;
  the first release's was 0.7x);
- ``rate_limit=50``: the arrival rate on the emulator's call log (target within 5%);
- a long generated input: RSS sampled as rows complete, growth after warm-up (<= +50 MB).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Iterator

import aiohttp
import anyio
import httpx

from benchmarks._common import (
    API_KEY,
    DOMAIN,
    Result,
    emulator_process,
    parser,
    place_params,
    rate_result,
    report,
    rss_mb,
)
from phoneconfirm_async import PhoneConfirmClient

CONCURRENCY = 200


def rows(count: int) -> Iterator[dict[str, str]]:
    for i in range(count):
        yield {"phone": f"555{i % 10_000_000:07d}", "country_code": "1", "code": "4821"}


async def library(
    base_url: str, count: int, transport: str, concurrency: int = CONCURRENCY
) -> float:
    async with PhoneConfirmClient(
        API_KEY,
        DOMAIN,
        base_url=base_url,
        transport=transport,  # type: ignore[arg-type]
        max_concurrency=concurrency,
    ) as client:
        started = time.perf_counter()
        done = 0
        async for item in client.place_many(rows(count), concurrency=concurrency):
            done += item.result is not None
        elapsed = time.perf_counter() - started
    assert done == count, f"only {done} of {count} rows were placed"
    return count / elapsed


async def httpx_loop(base_url: str, count: int, concurrency: int = CONCURRENCY) -> float:
    url = base_url + "/phoneconfirm/placecall/"
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=10) as client:
        semaphore = asyncio.Semaphore(concurrency)

        async def one(i: int) -> None:
            async with semaphore:
                response = await client.get(url, params=place_params(i))
                json.loads(response.content)

        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(count)))
        return count / (time.perf_counter() - started)


async def aiohttp_loop(base_url: str, count: int, concurrency: int = CONCURRENCY) -> float:
    url = base_url + "/phoneconfirm/placecall/"
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        semaphore = asyncio.Semaphore(concurrency)

        async def one(i: int) -> None:
            async with semaphore, session.get(url, params=place_params(i)) as response:
                json.loads(await response.read())

        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(count)))
        return count / (time.perf_counter() - started)


def throughput(
    base_url: str,
    name: str,
    ours: Callable[[str, int], Awaitable[float]],
    theirs: Callable[[str, int], Awaitable[float]],
    count: int,
    rounds: int,
    target: float,
) -> Result:
    mine: list[float] = []
    base: list[float] = []
    anyio.run(ours, base_url, min(count, 500))  # warm up both
    anyio.run(theirs, base_url, min(count, 500))
    for _ in range(rounds):
        base.append(anyio.run(theirs, base_url, count))
        mine.append(anyio.run(ours, base_url, count))
    detail = {"rows": count, "rounds": rounds, "concurrency": CONCURRENCY}
    return rate_result(name, "rows/s", mine, base, target, detail)


async def _rate(base_url: str, seconds: float, rate: float) -> float:
    count = int(seconds * rate) + 1
    async with (
        PhoneConfirmClient(API_KEY, DOMAIN, base_url=base_url, rate_limit=rate) as client,
        httpx.AsyncClient() as http,
    ):
        root = base_url.removesuffix("/services")
        before = len((await http.get(root + "/_emulator/calls")).json()["calls"])
        async for _ in client.place_many(rows(count), concurrency=50):
            pass
        calls = (await http.get(root + "/_emulator/calls")).json()["calls"][before:]
    arrivals: list[float] = sorted(float(call["at"]) for call in calls)
    return (len(arrivals) - 1) / (arrivals[-1] - arrivals[0])


def rate_accuracy(base_url: str, seconds: float) -> Result:
    measured = anyio.run(_rate, base_url, seconds, 50.0)
    error = abs(measured - 50.0) / 50.0
    return Result(
        name="rate_limit=50 accuracy",
        unit="req/s",
        value=measured,
        baseline=50.0,
        ratio=measured / 50.0,
        target="+-5%",
        met=error <= 0.05,
        detail={"seconds": seconds, "measured_on": "the emulator's call log"},
    )


async def _memory(base_url: str, count: int) -> tuple[float, float, list[float]]:
    samples: list[float] = []
    every = max(count // 50, 1)
    async with PhoneConfirmClient(
        API_KEY, DOMAIN, base_url=base_url, max_concurrency=CONCURRENCY
    ) as client:
        done = 0
        async for _ in client.place_many(rows(count), concurrency=CONCURRENCY):
            done += 1
            if done % every == 0:
                samples.append(rss_mb())
    warm = samples[len(samples) // 10]  # after the first tenth: pools, caches, buffers
    return warm, max(samples), samples


def memory(base_url: str, count: int) -> Result:
    warm, peak, samples = anyio.run(_memory, base_url, count)
    growth = peak - warm
    return Result(
        name="RSS growth over a long batch",
        unit="MB",
        value=growth,
        baseline=warm,
        ratio=peak / warm,
        target="<= +50 MB",
        met=growth <= 50,
        detail={"rows": count, "samples_mb": [round(s, 1) for s in samples]},
    )


BENCHES = ("httpx", "aiohttp", "rate", "memory")


def run(quick: bool, only: tuple[str, ...] = BENCHES) -> list[Result]:
    count, rounds = (2_000, 1) if quick else (10_000, 3)
    results: list[Result] = []
    with emulator_process() as base_url:
        if "httpx" in only:
            results.append(
                throughput(
                    base_url,
                    f"place_many httpx vs httpx+gather, c={CONCURRENCY}",
                    lambda url, n: library(url, n, "httpx"),
                    httpx_loop,
                    count,
                    rounds,
                    1.0,
                )
            )
        if "aiohttp" in only:
            results.append(
                throughput(
                    base_url,
                    f"place_many auto vs raw aiohttp, c={CONCURRENCY}",
                    lambda url, n: library(url, n, "auto"),
                    aiohttp_loop,
                    count * 2,
                    rounds,
                    0.9,
                )
            )
        if "rate" in only:
            results.append(rate_accuracy(base_url, 4.0 if quick else 10.0))
        if "memory" in only:
            results.append(memory(base_url, 20_000 if quick else 1_000_000))
    return results


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--only", choices=BENCHES, action="append", help="run only these")
    args = p.parse_args()
    report(run(args.quick, tuple(args.only or BENCHES)), args.json)


if __name__ == "__main__":
    main()
