"""The blocking face vs the async client it runs, on the same out-of-process emulator.

    python -m benchmarks.bench_sync [--quick] [--json FILE]

- ``SyncPhoneConfirmClient.place_call`` from one thread vs ``PhoneConfirmClient.place_call``
  awaited in a loop, sequential, both on the ``"auto"`` transport (aiohttp on asyncio):
  the thread hop is the only difference (target <= 1.3x the time).
- 8 threads x 250 ``place_call`` sharing one ``SyncPhoneConfirmClient`` vs the async
  ``place_many`` with concurrency 8 over the same 2,000 rows (target >= 0.7x the rows/s).

Rounds of the two sides alternate; the median of the per-round ratios is reported.
"""

from __future__ import annotations

import threading
import time

import anyio

from benchmarks._common import (
    API_KEY,
    DOMAIN,
    Result,
    cost_result,
    emulator_process,
    parser,
    rate_result,
    report,
)
from phoneconfirm_async import PhoneConfirmClient, SyncPhoneConfirmClient

ONE_THREAD_TARGET = 1.3
THREADS_TARGET = 0.7
THREADS = 8


def _phone(i: int) -> str:
    return f"555{i % 10_000_000:07d}"


async def _async_calls(base_url: str, calls: int) -> float:
    async with PhoneConfirmClient(API_KEY, DOMAIN, base_url=base_url) as client:
        await client.place_call(_phone(0), country_code="1", code="4821")  # connect first
        started = time.perf_counter()
        for i in range(calls):
            await client.place_call(_phone(i), country_code="1", code="4821")
        return time.perf_counter() - started


def _sync_calls(client: SyncPhoneConfirmClient, calls: int) -> float:
    started = time.perf_counter()
    for i in range(calls):
        client.place_call(_phone(i), country_code="1", code="4821")
    return time.perf_counter() - started


def one_thread(base_url: str, rounds: int, calls: int) -> Result:
    mine: list[float] = []
    base: list[float] = []
    with SyncPhoneConfirmClient(API_KEY, DOMAIN, base_url=base_url) as client:
        _sync_calls(client, 20)  # warm: the loop thread, the connection
        anyio.run(_async_calls, base_url, 20)
        for _ in range(rounds):
            base.append(anyio.run(_async_calls, base_url, calls))
            mine.append(_sync_calls(client, calls))
        transport = client.transport
    return cost_result(
        "sync place_call, 1 thread, vs async place_call",
        "us/call",
        mine,
        base,
        1e6 / calls,
        ONE_THREAD_TARGET,
        {"rounds": rounds, "calls_per_round": calls, "transport": transport},
    )


async def _async_many(base_url: str, rows: int) -> float:
    async with PhoneConfirmClient(API_KEY, DOMAIN, base_url=base_url) as client:
        await client.place_call(_phone(0), country_code="1", code="4821")
        batch = [{"phone": _phone(i), "country_code": "1", "code": "4821"} for i in range(rows)]
        started = time.perf_counter()
        async for item in client.place_many(batch, concurrency=THREADS):
            assert item.ok, item.error
        return rows / (time.perf_counter() - started)


def _threads(client: SyncPhoneConfirmClient, per_thread: int) -> float:
    def caller(worker: int) -> None:
        for i in range(per_thread):
            placed = client.place_call(
                _phone(worker * per_thread + i), country_code="1", code="4821"
            )
            assert placed.placed

    threads = [threading.Thread(target=caller, args=(w,)) for w in range(THREADS)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return THREADS * per_thread / (time.perf_counter() - started)


def many_threads(base_url: str, rounds: int, per_thread: int) -> Result:
    mine: list[float] = []
    base: list[float] = []
    with SyncPhoneConfirmClient(API_KEY, DOMAIN, base_url=base_url) as client:
        _threads(client, 10)
        for _ in range(rounds):
            base.append(anyio.run(_async_many, base_url, THREADS * per_thread))
            mine.append(_threads(client, per_thread))
    return rate_result(
        f"sync place_call, {THREADS} threads, vs async place_many c={THREADS}",
        "rows/s",
        mine,
        base,
        THREADS_TARGET,
        {"rounds": rounds, "threads": THREADS, "calls_per_thread": per_thread},
    )


def run(quick: bool) -> list[Result]:
    rounds, calls = (7, 400) if quick else (9, 1000)  # fewer calls: the hop's noise wins
    with emulator_process() as base_url:
        return [one_thread(base_url, rounds, calls), many_threads(base_url, rounds, 250)]


def main() -> None:
    args = parser(__doc__ or "").parse_args()
    report(run(args.quick), args.json)


if __name__ == "__main__":
    main()
