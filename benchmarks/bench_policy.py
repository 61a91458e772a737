"""The confirmation policy's cost (the confirmation-policy issue's numbers).

    python -m benchmarks.bench_policy [--quick] [--json FILE]

- ``session.verify`` with the attempt counted first (one conditional UPDATE in the store
  before the request leaves) against the same verify without a policy (a read of the
  session, the path before the policy), on SQLite and on PostgreSQL (a pgserver server
  started here); the service is the emulator on loopback (a real HTTP round trip, the
  cheapest a deployment sees). Target: <= 1.5x. The two run in alternating rounds; the
  figure is the median round of each.
- ``scheduler.schedule`` on SQLite with the three throttles on (per phone, per
  ``throttle_key``, the spend cap), one after another as web requests do, against the same
  schedules without a policy in the same run. Target: >= 1,500 sessions/s.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import anyio

from benchmarks._common import API_KEY, DOMAIN, Result, parser, report
from benchmarks.bench_stores import _postgres
from phoneconfirm_async import (
    ConfirmationPolicy,
    PhoneConfirmClient,
    PostgresStore,
    SessionStore,
    SQLiteStore,
)
from phoneconfirm_async.emulator import Emulator
from phoneconfirm_async.testing import EmulatorTransport

VERIFY_TARGET = 1.5
SCHEDULE_TARGET = 1500.0
#: Attempts counted, never exhausted: the benchmark measures the count, not the lock.
COUNTING = ConfirmationPolicy(max_verify_attempts=10**9)
THROTTLED = ConfirmationPolicy(
    max_sessions_per_phone=10**6, max_sessions_per_key=10**6, max_calls_per_hour=10**6
)


async def _verify_rounds(
    store: SessionStore, base_url: str, rounds: int, per_round: int
) -> tuple[float, float]:
    """Median seconds per verify: (with the attempt counted, without a policy)."""
    timings: dict[bool, list[float]] = {True: [], False: []}
    async with PhoneConfirmClient(API_KEY, DOMAIN, base_url=base_url) as client:
        async with client.scheduler(store=store, policy=COUNTING) as scheduler:
            session = await scheduler.schedule("5555550123", country_code="1", redial_count=0)
            assert await session.wait_called()
        for n in range(rounds * 2):
            counted = n % 2 == 0
            policy = COUNTING if counted else None
            async with client.scheduler(store=store, policy=policy, drive=False) as web:
                found = await web.get(session.id)
                assert found is not None
                started = time.perf_counter()
                for _ in range(per_round):
                    await found.verify("000000")
                timings[counted].append((time.perf_counter() - started) / per_round)
    return statistics.median(timings[True]), statistics.median(timings[False])


async def _schedule_rate(path: Path, count: int, policy: ConfirmationPolicy | None) -> float:
    transport = EmulatorTransport()
    async with (
        transport.client() as client,
        client.scheduler(store=SQLiteStore(path), policy=policy, drive=False) as scheduler,
    ):
        started = time.perf_counter()
        for i in range(count):
            await scheduler.schedule(
                f"555{i:07d}",
                country_code="1",
                call_place_time=3600,
                throttle_key=f"ip:10.0.{i // 250 % 250}.{i % 250}",
            )
        return count / (time.perf_counter() - started)


def _verify_result(name: str, counted: float, plain: float, detail: dict[str, object]) -> Result:
    ratio = counted / plain
    return Result(
        name=name,
        unit="ms",
        value=counted * 1000,
        baseline=plain * 1000,
        ratio=ratio,
        target=f"<= {VERIFY_TARGET}x",
        met=ratio <= VERIFY_TARGET,
        detail={"baseline": "the same verify without a policy (a read first)", **detail},
    )


def run(quick: bool) -> list[Result]:
    rounds, per_round = (5, 100) if quick else (9, 300)
    schedules = 2_000 if quick else 10_000
    shape = {"rounds": rounds, "verifies_per_round": per_round, "service": "loopback"}
    emulator = Emulator()
    emulator.start()
    try:
        with tempfile.TemporaryDirectory(prefix="phoneconfirm-bench-") as tmp:
            folder = Path(tmp)
            store = SQLiteStore(folder / "verify.sqlite")
            url = emulator.base_url
            sqlite = anyio.run(_verify_rounds, store, url, rounds, per_round)
            throttled = anyio.run(
                _schedule_rate, folder / "throttled.sqlite", schedules, THROTTLED
            )
            plain = anyio.run(_schedule_rate, folder / "plain.sqlite", schedules, None)
            with _postgres(folder) as dsn:
                postgres = anyio.run(_verify_rounds, PostgresStore(dsn), url, rounds, per_round)
    finally:
        emulator.stop()
    return [
        _verify_result("SQLite: verify, attempt counted", *sqlite, shape),
        _verify_result("PostgreSQL: verify, attempt counted", *postgres, shape),
        Result(
            name="SQLite: schedule/s, three throttles on",
            unit="/s",
            value=throttled,
            baseline=plain,
            ratio=throttled / plain,
            target=f">= {SCHEDULE_TARGET:.0f}/s",
            met=throttled >= SCHEDULE_TARGET,
            detail={"sessions": schedules, "baseline": "the same schedules without a policy"},
        ),
    ]


def main() -> None:
    args = parser(__doc__ or "").parse_args()
    report(run(args.quick), args.json)


if __name__ == "__main__":
    main()
