"""The script a user would write instead of ``phoneconfirm batch place`` (the baseline of
``benchmarks.bench_cli``): read the CSV, one ``aiohttp.ClientSession``, N workers,
``session.get(url, params=...)``, one JSON line per row on stdout.

    python -m benchmarks.handwritten_batch INPUT.csv BASE_URL [CONCURRENCY]

It has none of the library's guarantees (no validation, retries, timeouts per attempt,
journal or redaction); it is the speed a user could reach by dropping the library.
"""

from __future__ import annotations

import asyncio
import csv
import json
import sys

import aiohttp

API_KEY = "emulator-key"
DOMAIN = "example.com"


async def main(path: str, base_url: str, concurrency: int) -> None:
    url = base_url + "/phoneconfirm/placecall/"
    connector = aiohttp.TCPConnector(limit=concurrency)
    with open(path, newline="", encoding="utf-8") as handle:  # noqa: ASYNC230 (as users write it)
        rows = enumerate(csv.DictReader(handle), start=1)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def worker() -> None:
                for number, row in rows:
                    params = {
                        "phone": row["phone"],
                        "country_code": row["country_code"],
                        "code": row["code"],
                        "type": "json",
                        "apikey": API_KEY,
                        "domain": DOMAIN,
                    }
                    try:
                        async with session.get(url, params=params) as response:
                            answer = json.loads(await response.read())
                        out = {"row": number, "phone": row["phone"], **answer["phoneconfirm"]}
                    except (aiohttp.ClientError, ValueError, KeyError) as exc:
                        out = {"row": number, "phone": row["phone"], "error": repr(exc)}
                    print(json.dumps(out))

            await asyncio.gather(*(worker() for _ in range(concurrency)))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 200))
