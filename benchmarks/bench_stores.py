"""Durable session stores (the durable-sessions issue's numbers).

    python -m benchmarks.bench_stores [--quick] [--json FILE]

- SQLite, scheduling: ``await scheduler.schedule(...)`` one after another on an SQLiteStore
  (one transaction each, as a web request does), against the same rows inserted with
  plain ``sqlite3`` in the same run (target >= 2,000 sessions/s).
- SQLite, memory: extra RSS of a driving worker whose store holds 100,000 pending sessions
  (first call an hour away), against the same sessions in a MemoryStore; each in a fresh
  process (target <= 20 MB: they live on disk).
- PostgreSQL (a pgserver server started here), two ``phoneconfirm worker`` processes, an
  emulator served by this process:
  * throughput: N sessions all due at one instant; calls placed per second from that
    instant to the last call's arrival at the emulator (target >= 1,000/s), against a
    raw aiohttp loop placing the same N calls with no store (its ceiling on this machine);
  * lateness: N sessions due uniformly within 10 s; when a worker claimed each call (the
    row's ``claimed_at``) minus its due time, p99 (target <= 100 ms), against the p50 of
    the same run, as the memory store's row measures when an attempt starts. The arrival
    of each call at the emulator is in the detail: on 2 cores shared by PostgreSQL, the
    emulator and both workers it adds the HTTP round trip under load.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import anyio

from benchmarks._common import (
    API_KEY,
    DOMAIN,
    Result,
    parser,
    place_params,
    reap,
    report,
    rss_mb,
)
from phoneconfirm_async import (
    MemoryStore,
    PhoneConfirmClient,
    PostgresStore,
    SessionStore,
    SQLiteStore,
)
from phoneconfirm_async.emulator import Emulator, EmulatorConfig

SCHEDULE_TARGET = 2000.0
RSS_TARGET_MB = 20.0
PG_RATE_TARGET = 1000.0
PG_LATENESS_TARGET_MS = 100.0
WORKERS = 2


def _offline_client() -> PhoneConfirmClient:
    # No request is sent: every call is an hour away.
    return PhoneConfirmClient("key", "example.com", base_url="http://127.0.0.1:9/services")


# -- SQLite: scheduling rate ------------------------------------------------------------------
async def _schedule_rate(path: Path, count: int) -> float:
    async with (
        _offline_client() as client,
        client.scheduler(store=SQLiteStore(path), drive=False) as scheduler,
    ):
        started = time.perf_counter()
        for i in range(count):
            await scheduler.schedule(
                f"555{i:07d}", country_code="1", code="4821", call_place_time=3600
            )
        return count / (time.perf_counter() - started)


def _plain_insert_rate(path: Path, count: int) -> float:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = NORMAL")
    db.execute("CREATE TABLE t (id TEXT PRIMARY KEY, phone TEXT, due REAL)")
    started = time.perf_counter()
    for i in range(count):
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT INTO t VALUES (?, ?, ?)", (f"id{i}", f"555{i:07d}", time.time()))
        db.execute("COMMIT")
    rate = count / (time.perf_counter() - started)
    db.close()
    return rate


# -- SQLite: RSS of pending sessions in a worker ----------------------------------------------
def _fill_sqlite(path: Path, count: int) -> None:
    async def fill() -> None:
        async with (
            _offline_client() as client,
            client.scheduler(store=SQLiteStore(path), drive=False) as scheduler,
        ):
            for i in range(count):
                await scheduler.schedule(
                    f"555{i:07d}", country_code="1", code="4821", call_place_time=3600
                )

    anyio.run(fill)


def _worker_rss(kind: str, path: str, count: int) -> float:
    """Extra RSS of a driving scheduler holding ``count`` pending sessions (fresh process)."""

    async def measure() -> float:
        async with _offline_client() as client:
            store: SessionStore = SQLiteStore(path) if kind == "sqlite" else MemoryStore()
            before = rss_mb()
            async with client.scheduler(store=store) as scheduler:
                if kind == "memory":
                    for i in range(count):
                        await scheduler.schedule(
                            f"555{i:07d}", country_code="1", code="4821", call_place_time=3600
                        )
                for _ in range(3):  # let the driver make its passes over the store
                    await anyio.sleep(0.3)
                return rss_mb() - before

    return anyio.run(measure)


def _in_fresh_process(kind: str, path: str, count: int) -> float:
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return float(pool.apply(_worker_rss, (kind, path, count)))


# -- PostgreSQL -------------------------------------------------------------------------------
@contextmanager
def _postgres(directory: Path) -> Iterator[str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs: XDG_RUNTIME_DIR unset
        from pgserver.postgres_server import get_server

        server = get_server(directory / "pgdata", cleanup_mode="delete")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


@contextmanager
def _workers(store_url: str, base_url: str, logs: Path) -> Iterator[None]:
    """The worker processes, each with its log in ``logs`` (a file, not a pipe that nobody
    reads during the run: a worker that logs much would block on a full pipe)."""
    env = dict(os.environ)
    env.update(
        PHONECONFIRM_API_KEY=API_KEY,
        PHONECONFIRM_DOMAIN=DOMAIN,
        PHONECONFIRM_BASE_URL=base_url,
        PHONECONFIRM_STORE=store_url,
    )
    paths = [logs / f"worker-{n}.log" for n in range(WORKERS)]
    processes = []
    for path in paths:
        with path.open("w") as log:
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "phoneconfirm_async.cli", "worker"],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                    text=True,
                )
            )
    try:
        for process, path in zip(processes, paths, strict=True):
            _wait_for_start(process, path)
        yield
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            reap(process, timeout=30)


def _wait_for_start(process: subprocess.Popen[str], log: Path) -> None:
    """Until the worker says it opened the store (it exits, or 60 s pass: an error)."""
    deadline = time.monotonic() + 60
    while "placing the due calls" not in log.read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"worker did not start: {log.read_text()[-2000:]!r}")
        time.sleep(0.05)


async def _schedule_due(
    store: SessionStore, base_url: str, dues: list[float], prefix: str
) -> dict[str, float]:
    """Sessions due at the given Unix times (no calls from here); phone -> due."""
    due_by_phone: dict[str, float] = {}
    client = PhoneConfirmClient(API_KEY, DOMAIN, base_url=base_url)
    async with client, client.scheduler(store=store, drive=False) as scheduler:
        for i, due in enumerate(dues):
            phone = f"{prefix}{i:07d}"  # ten digits: a possible +1 number
            await scheduler.schedule(
                phone,
                country_code="1",
                code="4821",
                redial_interval=600,
                call_place_time=datetime.fromtimestamp(due, UTC),
            )
            due_by_phone[phone] = due
    return due_by_phone


def _arrivals(
    emulator: Emulator, phones: dict[str, float], before: int, timeout: float
) -> dict[str, float]:
    """When each phone's call reached the emulator (``before`` calls were there already)."""
    emulator.wait_for_calls(before + len(phones), timeout)
    return {call.phone: call.at for call in emulator.calls if call.phone in phones}


async def _claim_times(dsn: str, table: str, prefix: str) -> dict[str, float]:
    """phone -> when a worker claimed its call (the row's ``claimed_at``)."""
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            f'SELECT phone, claimed_at FROM "{table}" WHERE phone LIKE $1', prefix + "%"
        )
    finally:
        await conn.close()
    return {row["phone"]: row["claimed_at"] for row in rows if row["claimed_at"] is not None}


async def _raw_aiohttp_rate(base_url: str, count: int) -> float:
    import aiohttp

    url = f"{base_url}/phoneconfirm/placecall/"
    queue = iter(range(count))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100)) as session:

        async def worker() -> None:
            for i in queue:
                async with session.get(url, params=place_params(i)) as response:
                    await response.read()

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(100)))
        return count / (time.perf_counter() - started)


def _postgres_results(quick: bool) -> list[Result]:
    count = 2_000 if quick else 10_000
    with (
        tempfile.TemporaryDirectory(prefix="phoneconfirm-bench-") as tmp,
        _postgres(Path(tmp)) as dsn,
    ):
        emulator = Emulator(EmulatorConfig())
        emulator.start()
        try:
            url = f"{dsn}&table=bench_sessions"
            ceiling = asyncio.run(_raw_aiohttp_rate(emulator.base_url, count))
            with _workers(url, emulator.base_url, Path(tmp)):
                # Throughput: every session due at one instant, a few seconds ahead.
                lead = count / 400 + 2  # scheduling them all must end before the first is due
                before = len(emulator.calls)
                instant = time.time() + lead
                phones = asyncio.run(
                    _schedule_due(
                        PostgresStore(dsn, table="bench_sessions"),
                        emulator.base_url,
                        [instant] * count,
                        "556",
                    )
                )
                arrived = _arrivals(emulator, phones, before, 120)
                rate = len(arrived) / (max(arrived.values()) - instant)

                # Lateness: due uniformly within 10 s, a few seconds ahead.
                before = len(emulator.calls)
                start = time.time() + lead
                dues = [start + 10 * i / count for i in range(count)]
                phones = asyncio.run(
                    _schedule_due(
                        PostgresStore(dsn, table="bench_sessions"), emulator.base_url, dues, "557"
                    )
                )
                arrived = _arrivals(emulator, phones, before, 120)
                claimed = asyncio.run(_claim_times(dsn, "bench_sessions", "557"))
            late = sorted((claimed[p] - due) * 1000 for p, due in phones.items() if p in claimed)
            reached = sorted(
                (arrived[p] - due) * 1000 for p, due in phones.items() if p in arrived
            )
        finally:
            emulator.stop()
    p50 = statistics.median(late)
    p99 = late[int(len(late) * 0.99) - 1]
    return [
        Result(
            name=f"PostgreSQL, {WORKERS} workers: due calls placed/s",
            unit="calls/s",
            value=rate,
            baseline=ceiling,
            ratio=rate / ceiling,
            target=f">= {PG_RATE_TARGET:.0f}/s",
            met=rate >= PG_RATE_TARGET,
            detail={
                "sessions": count,
                "placed": len(arrived),
                "baseline": "raw aiohttp loop, 100 connections, no store",
            },
        ),
        Result(
            name="PostgreSQL wake-up lateness p99, due within 10 s",
            unit="ms",
            value=p99,
            baseline=p50,
            ratio=p99 / p50 if p50 else float("inf"),
            target=f"<= {PG_LATENESS_TARGET_MS:.0f} ms",
            met=p99 <= PG_LATENESS_TARGET_MS and len(late) == len(reached) == count,
            detail={
                "sessions": count,
                "claimed": len(late),
                "placed": len(reached),
                "p50_ms": p50,
                "max_ms": late[-1],
                "baseline": "p50 of the same run",
                "measured": "claim time (recorded by the worker) minus the due time",
                "arrival_p50_ms": statistics.median(reached),
                "arrival_p99_ms": reached[int(len(reached) * 0.99) - 1],
            },
        ),
    ]


def run(quick: bool) -> list[Result]:
    schedules = 2_000 if quick else 10_000
    pending = 20_000 if quick else 100_000
    with tempfile.TemporaryDirectory(prefix="phoneconfirm-bench-") as tmp:
        folder = Path(tmp)
        rate = anyio.run(_schedule_rate, folder / "rate.sqlite", schedules)
        plain = _plain_insert_rate(folder / "plain.sqlite", schedules)
        _fill_sqlite(folder / "pending.sqlite", pending)
        sqlite_mb = _in_fresh_process("sqlite", str(folder / "pending.sqlite"), pending)
        memory_mb = _in_fresh_process("memory", "", pending)
    scale = 100_000 / pending
    results = [
        Result(
            name="SQLite: sessions scheduled/s",
            unit="/s",
            value=rate,
            baseline=plain,
            ratio=rate / plain,
            target=f">= {SCHEDULE_TARGET:.0f}/s",
            met=rate >= SCHEDULE_TARGET,
            detail={"sessions": schedules, "baseline": "plain sqlite3 INSERT, a commit each"},
        ),
        Result(
            name="SQLite: worker RSS, 100,000 pending sessions",
            unit="MB",
            value=sqlite_mb * scale,
            baseline=memory_mb * scale,
            ratio=sqlite_mb / memory_mb,
            target=f"<= {RSS_TARGET_MB:.0f} MB",
            met=sqlite_mb * scale <= RSS_TARGET_MB,
            detail={
                "measured_sessions": pending,
                "scaled_to": 100_000,
                "baseline": "the same sessions in a MemoryStore",
            },
        ),
    ]
    return results + _postgres_results(quick)


def main() -> None:
    args = parser(__doc__ or "").parse_args()
    report(run(args.quick), args.json)


if __name__ == "__main__":
    main()
