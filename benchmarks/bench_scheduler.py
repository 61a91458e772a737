"""Scheduler memory and wake-up lateness.

    python -m benchmarks.bench_scheduler [--quick] [--json FILE]

- Memory: extra RSS of N pending sessions (first call an hour away) beside N bare tasks
  sleeping for an hour, each measured in a fresh process (target: <= 60 MB for 100,000).
- Lateness: M sessions due at random times within one second; the lateness of each
  wake-up is when the scheduler starts the call attempt minus its due time (p50/p99,
  target p99 <= 20 ms). The attempt is stubbed out, so the figure is the timer's own, not
  the HTTP round trip's.
"""

from __future__ import annotations

import multiprocessing
import random
import statistics
from collections.abc import Awaitable, Callable

import anyio
import anyio.lowlevel

from benchmarks._common import Result, parser, report, rss_mb
from phoneconfirm_async import (
    ConfirmationScheduler,
    PhoneConfirmClient,
    PlaceCallRequest,
    PlaceCallResult,
    VerifyRequest,
    VerifyResult,
)

MEMORY_TARGET_MB = 60.0
LATENESS_TARGET_MS = 20.0


def _client() -> PhoneConfirmClient:
    # No request is ever sent: every first call is an hour away.
    return PhoneConfirmClient("key", "example.com", base_url="http://127.0.0.1:9/services")


async def _sessions_rss(count: int) -> float:
    async with _client() as client, client.scheduler() as scheduler:
        before = rss_mb()
        for i in range(count):
            await scheduler.schedule(
                f"555{i:07d}", country_code="1", code="4821", call_place_time=3600
            )
        after = rss_mb()
        assert len(scheduler) == count
    return after - before


async def _tasks_rss(count: int) -> float:
    async with anyio.create_task_group() as tg:
        before = rss_mb()
        for _ in range(count):
            tg.start_soon(anyio.sleep, 3600)
        await anyio.lowlevel.checkpoint()
        after = rss_mb()
        tg.cancel_scope.cancel()
    return after - before


def _in_fresh_process(kind: str, count: int) -> float:
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return float(pool.apply(_measure, (kind, count)))


def _measure(kind: str, count: int) -> float:
    return anyio.run(_sessions_rss if kind == "sessions" else _tasks_rss, count)


class _Stopwatch:
    """A stand-in for the client (the scheduler takes any object with ``place`` and
    ``verify``): records when each call would go out, by phone, instead of placing it."""

    def __init__(self, due: dict[str, float]) -> None:
        self.due = due
        self.lateness: list[float] = []
        self.all_fired = anyio.Event()

    async def place(
        self,
        request: PlaceCallRequest,
        *,
        retry: object = None,
        fence: Callable[[], Awaitable[None]] | None = None,
    ) -> PlaceCallResult:
        if fence is not None:
            await fence()
        self.lateness.append(anyio.current_time() - self.due[request.phone])
        if len(self.lateness) == len(self.due):
            self.all_fired.set()
        return _ANSWER

    async def verify(
        self, request: VerifyRequest, *, retry: object = None, fence: object = None
    ) -> VerifyResult:
        raise NotImplementedError


_ANSWER: PlaceCallResult = PlaceCallResult.from_fields(
    {"status": "valid", "error": 0, "transaction_number": "1"}
)


async def _lateness(count: int) -> list[float]:
    rng = random.Random(1)
    due: dict[str, float] = {}
    stopwatch = _Stopwatch(due)
    async with ConfirmationScheduler(stopwatch) as scheduler:
        for i in range(count):
            delay = 1 + rng.random()
            phone = f"555{i:07d}"
            due[phone] = anyio.current_time() + delay
            await scheduler.schedule(phone, country_code="1", code="4821", call_place_time=delay)
        with anyio.fail_after(30):
            await stopwatch.all_fired.wait()
    return stopwatch.lateness


def run(quick: bool) -> list[Result]:
    sessions, due = (20_000, 2_000) if quick else (100_000, 10_000)
    session_mb = _in_fresh_process("sessions", sessions)
    task_mb = _in_fresh_process("tasks", sessions)
    scale = 100_000 / sessions
    memory = Result(
        name="RSS of 100,000 pending sessions",
        unit="MB",
        value=session_mb * scale,
        baseline=task_mb * scale,
        ratio=session_mb / task_mb,
        target=f"<= {MEMORY_TARGET_MB:.0f} MB",
        met=session_mb * scale <= MEMORY_TARGET_MB,
        detail={
            "measured_sessions": sessions,
            "scaled_to": 100_000,
            "baseline": "bare tasks sleeping an hour",
        },
    )
    late = sorted(anyio.run(_lateness, due))
    p50 = statistics.median(late) * 1000
    p99 = late[int(len(late) * 0.99) - 1] * 1000
    lateness = Result(
        name="wake-up lateness p99, sessions due within 1 s",
        unit="ms",
        value=p99,
        baseline=p50,
        ratio=p99 / p50 if p50 else float("inf"),
        target=f"<= {LATENESS_TARGET_MS:.0f} ms",
        met=p99 <= LATENESS_TARGET_MS,
        detail={
            "sessions": due,
            "p50_ms": p50,
            "max_ms": late[-1] * 1000,
            "baseline": "p50 of the same run",
        },
    )
    return [memory, lateness]


def main() -> None:
    args = parser(__doc__ or "").parse_args()
    report(run(args.quick), args.json)


if __name__ == "__main__":
    main()
