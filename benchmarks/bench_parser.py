"""Parse + normalize a placecall body against the bare decoder (SPEC section 7).

    python -m benchmarks.bench_parser [--quick] [--json FILE]

``ParserRegistry.parse`` (format choice, UTF-8 check, decoding, normalization) against
``json.loads`` alone (target <= 1.5x) and against ``xmltodict.parse`` alone
(target <= 1.25x), on the emulator's own placecall bodies, rounds interleaved.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import xmltodict

from benchmarks._common import Result, parser, report
from phoneconfirm_async import ParserRegistry

JSON_BODY = (
    b'{"phoneconfirm": {"error": 0, "status": "valid", "message": "call placed", '
    b'"transaction_number": "121000000001", "duration": 0.000106}}'
)
XML_BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<response><error>0</error><status>valid'
    b"</status><message>call placed</message><transaction_number>121000000001"
    b"</transaction_number><duration>0.000106</duration></response>\n"
)


def _time(func: Callable[[], Any], loops: int) -> float:
    started = time.perf_counter()
    for _ in range(loops):
        func()
    return (time.perf_counter() - started) / loops


def compare(
    name: str,
    ours: Callable[[], Any],
    theirs: Callable[[], Any],
    loops: int,
    rounds: int,
    target: float,
) -> Result:
    mine: list[float] = []
    base: list[float] = []
    _time(ours, loops // 10)
    _time(theirs, loops // 10)
    for _ in range(rounds):
        base.append(_time(theirs, loops))
        mine.append(_time(ours, loops))
    ratio = statistics.median(m / b for m, b in zip(mine, base, strict=True))
    return Result(
        name=name,
        unit="us",
        value=statistics.median(mine) * 1e6,
        baseline=statistics.median(base) * 1e6,
        ratio=ratio,
        target=f"<= {target:.2f}x",
        met=ratio <= target,
        detail={"loops": loops, "rounds": rounds},
    )


def run(quick: bool) -> list[Result]:
    loops, rounds = (20_000, 5) if quick else (100_000, 9)
    registry = ParserRegistry.default()
    expected = registry.parse(JSON_BODY, "application/json")
    assert registry.parse(XML_BODY, "application/xml") == expected
    return [
        compare(
            "parse+normalize JSON vs json.loads",
            lambda: registry.parse(JSON_BODY, "application/json"),
            lambda: json.loads(JSON_BODY),
            loops,
            rounds,
            1.5,
        ),
        compare(
            "parse+normalize XML vs xmltodict.parse",
            lambda: registry.parse(XML_BODY, "application/xml"),
            lambda: xmltodict.parse(XML_BODY),
            loops // 4,
            rounds,
            1.25,
        ),
    ]


def main() -> None:
    args = parser(__doc__ or "").parse_args()
    report(run(args.quick), args.json)


if __name__ == "__main__":
    main()
