"""Parse + normalize an answer against the bare decoder.

    python -m benchmarks.bench_parser [--quick] [--json FILE]

``ParserRegistry.parse`` (format choice, UTF-8 check, decoding, normalization) against
``json.loads`` alone and ``xmltodict.parse`` alone, rounds interleaved, on:

- the placecall body as the emulator sends it (numbers, ``application/json``): <= 1.5x;
- the real answer shape of both endpoints: every JSON field a string, labelled
  ``text/html`` (<= 1.3x with the default decoder, orjson when the ``speedups`` extra is
  installed; <= 1.5x with the stdlib decoder forced), and XML with an ``<?xml ...?>``
  declaration as the emulator sends it (<= 1.15x ``xmltodict.parse``).

The baseline is always the stdlib's ``json.loads`` (or ``xmltodict.parse``) of the same bytes.
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
from phoneconfirm_async.emulator._protocol import Answer, Endpoint, render

DURATION = 0.000123
HTML = "text/html; charset=UTF-8"


def _answer(endpoint: Endpoint) -> Answer:
    message = "call placed" if endpoint == "placecall" else "code verified"
    return Answer(0, "valid", message, "121000000001")


def emulator_body(endpoint: Endpoint, fmt: str) -> tuple[bytes, str]:
    """The body and Content-Type the emulator sends (placecall JSON has numbers)."""
    return render(endpoint, fmt, _answer(endpoint), DURATION)  # type: ignore[arg-type]


def string_json_body(endpoint: Endpoint) -> bytes:
    """The real service's JSON: every field a string (the emulator's verifycode shape)."""
    answer = _answer(endpoint)
    root = "phoneconfirm" if endpoint == "placecall" else "verifycode"
    fields = {
        "error": str(answer.error),
        "status": answer.status,
        "message": answer.message,
        "transaction_number": answer.transaction_number,
        "duration": f"{DURATION:.6f}",
    }
    return json.dumps({root: fields}).encode()


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
    detail: dict[str, Any],
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
        detail={"loops": loops, "rounds": rounds} | detail,
    )


def _json_row(
    label: str,
    registry: ParserRegistry,
    body: bytes,
    content_type: str,
    loops: int,
    rounds: int,
    target: float,
) -> Result:
    expected = json.loads(body)
    assert registry.parse(body, content_type)["transaction_number"] == "121000000001", expected
    return compare(
        f"parse JSON {label} ({registry.json_decoder}) vs json.loads",
        lambda: registry.parse(body, content_type),
        lambda: json.loads(body),
        loops,
        rounds,
        target,
        {"content_type": content_type, "bytes": len(body), "decoder": registry.json_decoder},
    )


def _xml_row(endpoint: Endpoint, registry: ParserRegistry, loops: int, rounds: int) -> Result:
    body, content_type = emulator_body(endpoint, "xml")
    assert body.startswith(b"<?xml")
    return compare(
        f"parse XML {endpoint} (declaration) vs xmltodict",
        lambda: registry.parse(body, content_type),
        lambda: xmltodict.parse(body),
        loops,
        rounds,
        1.15,
        {"content_type": content_type, "bytes": len(body)},
    )


def run(quick: bool) -> list[Result]:
    loops, rounds = (20_000, 5) if quick else (100_000, 9)
    default = ParserRegistry.default()
    stdlib = ParserRegistry.default(json_decoder="json")
    endpoints: tuple[Endpoint, ...] = ("placecall", "verifycode")
    numbers, numbers_type = emulator_body("placecall", "json")
    for endpoint in endpoints:  # every shape of one answer gives the same fields
        expected = stdlib.parse(*emulator_body(endpoint, "json"))
        assert stdlib.parse(string_json_body(endpoint), HTML) == expected
        assert default.parse(string_json_body(endpoint), HTML) == expected
        assert default.parse(*emulator_body(endpoint, "xml")) == expected
    results = [
        _json_row("placecall, numbers", default, numbers, numbers_type, loops, rounds, target=1.5)
    ]
    for registry, target in ((default, 1.3), (stdlib, 1.5)):
        for endpoint in endpoints:
            results.append(
                _json_row(
                    f"{endpoint}, strings as text/html",
                    registry,
                    string_json_body(endpoint),
                    HTML,
                    loops,
                    rounds,
                    target,
                )
            )
    results.extend(_xml_row(endpoint, default, loops // 4, rounds) for endpoint in endpoints)
    return results


def main() -> None:
    args = parser(__doc__ or "").parse_args()
    report(run(args.quick), args.json)


if __name__ == "__main__":
    main()
