"""place_call round trip vs bare httpx ``get`` + ``json.loads``, sequential.

    python -m benchmarks.bench_overhead [--quick] [--json FILE]

Both sides use httpx on asyncio against the same out-of-process emulator, one request at a
time; rounds are interleaved and the median per-round ratio is reported (target <= 1.10).
"""

from __future__ import annotations

import json
import time

import anyio
import httpx

from benchmarks._common import (
    API_KEY,
    DOMAIN,
    Result,
    cost_result,
    emulator_process,
    interleaved,
    parser,
    place_params,
    report,
)
from phoneconfirm_async import PhoneConfirmClient

TARGET = 1.10


async def measure(base_url: str, rounds: int, calls: int) -> Result:
    url = base_url + "/phoneconfirm/placecall/"
    async with (
        httpx.AsyncClient() as http,
        PhoneConfirmClient(API_KEY, DOMAIN, base_url=base_url, transport="httpx") as client,
    ):

        async def baseline() -> float:
            started = time.perf_counter()
            for i in range(calls):
                response = await http.get(url, params=place_params(i))
                json.loads(response.content)
            return time.perf_counter() - started

        async def library() -> float:
            started = time.perf_counter()
            for i in range(calls):
                await client.place_call(f"555{i:07d}", country_code="1", code="4821")
            return time.perf_counter() - started

        mine, base = await interleaved(library, baseline, rounds)
    return cost_result(
        "place_call overhead vs httpx.get+json.loads",
        "us/call",
        mine,
        base,
        1e6 / calls,
        TARGET,
        {"rounds": rounds, "calls_per_round": calls},
    )


def run(quick: bool) -> list[Result]:
    rounds, calls = (5, 200) if quick else (9, 1000)
    with emulator_process() as base_url:
        return [anyio.run(measure, base_url, rounds, calls)]


def main() -> None:
    args = parser(__doc__ or "").parse_args()
    report(run(args.quick), args.json)


if __name__ == "__main__":
    main()
