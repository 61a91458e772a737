"""Client CPU per ``place_call`` on asyncio against a raw aiohttp GET.

    python -m benchmarks.bench_cpu [--quick] [--json FILE]

Sequential calls against an out-of-process emulator; the figure is this process's CPU time
(``time.process_time``) per call, so the emulator's work and the network wait do not count.
Baseline: ``aiohttp.ClientSession.get`` + ``json.loads`` on the same emulator. Target <= 1.10x
(the first release's was 1.3x).
"""

from __future__ import annotations

import json
import time

import aiohttp
import anyio

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
        aiohttp.ClientSession() as session,
        PhoneConfirmClient(API_KEY, DOMAIN, base_url=base_url, transport="aiohttp") as client,
    ):

        async def baseline() -> float:
            started = time.process_time()
            for i in range(calls):
                async with session.get(url, params=place_params(i)) as response:
                    json.loads(await response.read())
            return time.process_time() - started

        async def library() -> float:
            started = time.process_time()
            for i in range(calls):
                await client.place_call(f"555{i:07d}", country_code="1", code="4821")
            return time.process_time() - started

        mine, base = await interleaved(library, baseline, rounds)
    return cost_result(
        "CPU per place_call vs aiohttp get+json.loads",
        "us/call",
        mine,
        base,
        1e6 / calls,
        TARGET,
        {"rounds": rounds, "calls_per_round": calls, "clock": "process_time"},
    )


def run(quick: bool) -> list[Result]:
    rounds, calls = (5, 500) if quick else (9, 2000)
    with emulator_process() as base_url:
        return [anyio.run(measure, base_url, rounds, calls)]


def main() -> None:
    args = parser(__doc__ or "").parse_args()
    report(run(args.quick), args.json)


if __name__ == "__main__":
    main()
