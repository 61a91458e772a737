"""The fault suite: three ``phoneconfirm worker`` processes on a real store place the calls
of 150 sessions (two redials each, two seconds apart, three-second leases) on an emulator
that answers after a second, while one fault strikes:

- a worker paused with SIGSTOP past its lease while it holds claimed calls, then SIGCONT;
- another SQLite connection holding ``BEGIN EXCLUSIVE`` for four seconds;
- ``pg_terminate_backend`` on every worker connection, twice;
- PostgreSQL stopped for three seconds and started again on the same socket.

Meanwhile the test process is the web tier (``drive=False``): it verifies the sessions whose
person heard the code and cancels others, riding out the fault as a web tier would. Then the
emulator's call log and a fresh read of the store say what held: every session finished;
nobody called more than ``1 + redial_count`` times or twice within ``redial_interval``; no
call started after its session's cancel or verify returned; every worker exits 0 on SIGTERM
without a traceback.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import itertools
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import anyio.to_thread
import asyncpg
import pytest

from phoneconfirm_async import (
    ConfirmationScheduler,
    ConfirmationSession,
    PhoneConfirmClient,
    SessionState,
    StoreError,
    ValidationError,
    VerificationClosedError,
    store_from_url,
)
from phoneconfirm_async.emulator import Emulator
from tests.conftest import API_KEY, DOMAIN, EmulatorFactory
from tests.stores.conftest import worker_env, worker_store_url

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

SESSIONS = 150
WORKERS = 3
LEASE = 3.0
REDIAL_COUNT = 2
INTERVAL = 2.0
#: The emulator answers (and logs a call) this long after the request arrived.
LATENCY = 1.0
#: Sessions start over this many seconds, so that claims and calls go on all the time.
SPREAD = 3.0
#: ``application_name`` of the workers' PostgreSQL connections, to terminate only theirs.
WORKER_APP = "phoneconfirm-fault-worker"
#: Longest a run may take once the fault is over.
FINISH_WITHIN = 90.0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the web tier here runs on asyncio (PostgreSQL's asyncpg)


@dataclass
class Run:
    """One fault run: its emulator, store, worker processes, and what the web tier did."""

    emulator: Emulator
    url: str
    web: ConfirmationScheduler
    tmp: Path
    sessions: dict[str, ConfirmationSession] = field(default_factory=dict)
    #: phone -> time.time() when its verify or cancel returned (the session ended there).
    ended: dict[str, float] = field(default_factory=dict)
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)
    store_errors: int = 0

    def start_worker(self, *options: str) -> subprocess.Popen[bytes]:
        env = worker_env(worker_url(self.url), self.emulator.base_url)
        log = self.tmp / f"worker-{len(self.workers)}.log"
        with log.open("wb") as stderr:  # a file, not a pipe: a chatty worker never blocks
            process = subprocess.Popen(
                [sys.executable, "-m", "phoneconfirm_async.cli", "worker", *options],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        self.workers.append(process)
        self.logs.append(log)
        return process

    async def calls_reach(self, count: int, timeout: float = 30.0) -> None:
        assert await anyio.to_thread.run_sync(self.emulator.wait_for_calls, count, timeout)

    async def end(self, phone: str, action: Callable[[], Awaitable[object]]) -> bool:
        """Verify or cancel a session as a web tier would: a store failure is an error
        page (try again later), not a crash. True when the session ended here."""
        try:
            await action()
        except StoreError:
            self.store_errors += 1
            return False
        except ValidationError:
            return False  # no answered call recorded yet
        except VerificationClosedError:
            pass  # cancelled, or verified already: its state says which
        state = self.sessions[phone].state
        if state in (SessionState.VERIFIED, SessionState.CANCELLED):
            self.ended.setdefault(phone, time.time())
            return True
        return False

    async def cancel_calling(self, share: int) -> int:
        """Cancel one in ``share`` of the sessions now in CALLING (calls claimed by a
        worker, maybe not sent yet)."""
        cancelled = 0
        for index, (phone, session) in enumerate(self.sessions.items()):
            if phone in self.ended or index % share:
                continue
            try:
                await session.refresh()
            except StoreError:
                self.store_errors += 1
                continue
            if session.state is SessionState.CALLING:
                cancelled += await self.end(phone, session.cancel)
        return cancelled


def worker_url(url: str) -> str:
    if url.startswith("postgresql"):
        return f"{url}&application_name={WORKER_APP}"
    return url


async def verify_heard(run: Run) -> None:
    """The people who pick up type their code: one in three sessions, after its second call
    (the emulator's person answers the second call), each as soon as they heard it."""
    waiting = [phone for index, phone in enumerate(run.sessions) if index % 3 == 0]
    async with anyio.create_task_group() as people:
        while True:
            for phone in list(waiting):
                heard = run.emulator.heard_code(phone)
                if heard is not None:
                    waiting.remove(phone)
                    people.start_soon(type_code, run, phone, heard)
            seen = len(run.emulator.calls)
            await anyio.to_thread.run_sync(run.emulator.wait_for_calls, seen + 1, 0.25)


async def type_code(run: Run, phone: str, heard: str) -> None:
    """One person typing the code they heard, again while the web tier answers an error
    (the store away, or the call's answer not recorded yet)."""
    session = run.sessions[phone]
    while not await run.end(phone, functools.partial(session.verify, heard)):
        if session.state in (SessionState.VERIFIED, SessionState.CANCELLED):
            return
        await anyio.sleep(0.2)  # the person presses the button again


async def all_final(run: Run) -> None:
    """Until every session is final (read again from the store)."""
    with anyio.fail_after(FINISH_WITHIN):
        pending = list(run.sessions.values())
        while pending:
            try:
                await pending[-1].refresh()
            except StoreError:
                run.store_errors += 1
            else:
                if pending[-1].state.is_final:
                    pending.pop()
                    continue
            seen = len(run.emulator.calls)
            await anyio.to_thread.run_sync(run.emulator.wait_for_calls, seen + 1, 0.25)


@dataclass
class Figures:
    """What the call log and the store say after a run."""

    calls: int
    unfinished: int
    too_many: int
    too_close: int
    after_end: int
    exit_codes: list[int | None]
    tracebacks: int
    closest: float

    def __str__(self) -> str:
        return (
            f"calls={self.calls} unfinished={self.unfinished} over_limit={self.too_many} "
            f"closer_than_interval={self.too_close} (closest {self.closest:.3f} s) "
            f"after_end={self.after_end} exit_codes={self.exit_codes} "
            f"tracebacks={self.tracebacks}"
        )


async def stop_workers(run: Run) -> None:
    for process in run.workers:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in run.workers:
        try:
            await anyio.to_thread.run_sync(process.wait, 30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def figures(run: Run) -> Figures:
    unfinished = 0
    client = PhoneConfirmClient(API_KEY, DOMAIN, base_url=run.emulator.base_url)
    async with client, client.scheduler(store=store_from_url(run.url), drive=False) as fresh:
        for session in run.sessions.values():
            again = await fresh.get(session.id)
            if again is None or not again.state.is_final:
                unfinished += 1
    calls = collections.defaultdict(list)
    for call in run.emulator.calls:
        calls[call.phone].append(call.at)
    gaps = [
        later - earlier
        for times in calls.values()
        for earlier, later in itertools.pairwise(sorted(times))
    ]
    late = [
        phone
        for phone, times in calls.items()
        for at in times
        # a call starts a latency before the emulator logs it; allow one more latency
        if phone in run.ended and at - LATENCY > run.ended[phone] + LATENCY
    ]
    logs = [log.read_text(errors="replace") for log in run.logs]
    return Figures(
        calls=len(run.emulator.calls),
        unfinished=unfinished,
        too_many=sum(len(times) > 1 + REDIAL_COUNT for times in calls.values()),
        too_close=sum(gap < INTERVAL for gap in gaps),
        after_end=len(late),
        exit_codes=[process.returncode for process in run.workers],
        tracebacks=sum("Traceback" in log for log in logs),
        closest=min(gaps, default=float("inf")),
    )


def check(run: Run, seen: Figures) -> None:
    # The figures the closing note of the faults issue quotes (and how often the web tier
    # met a StoreError: an error page to retry, never a crash).
    print(f"\n{seen} web_store_errors={run.store_errors}")
    assert seen.exit_codes == [0] * len(run.workers), "\n".join(
        log.read_text(errors="replace")[-3000:] for log in run.logs
    )
    assert seen.tracebacks == 0
    assert seen.unfinished == 0
    assert seen.too_many == 0
    assert seen.too_close == 0, seen.closest
    assert seen.after_end == 0


@contextlib.asynccontextmanager
async def fault_run(url: str, make_emulator: EmulatorFactory, tmp: Path) -> AsyncIterator[Run]:
    """Schedule the sessions from a web tier, yield the run (start the workers, strike),
    verify the sessions whose person heard the code meanwhile; kill what is left."""
    emulator = make_emulator(latency=LATENCY, answer_on_attempt=2)
    client = PhoneConfirmClient(API_KEY, DOMAIN, base_url=emulator.base_url)
    async with client, client.scheduler(store=store_from_url(url), drive=False) as web:
        run = Run(emulator, url, web, tmp)
        for index in range(SESSIONS):
            phone = f"555{index:07d}"
            run.sessions[phone] = await web.schedule(
                phone,
                country_code="1",
                code=f"{index:06d}",
                redial_count=REDIAL_COUNT,
                redial_interval=INTERVAL,
                call_place_time=index * SPREAD / SESSIONS,
            )
        try:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(verify_heard, run)
                yield run
                await all_final(run)
                tasks.cancel_scope.cancel()
            await stop_workers(run)
        finally:
            for process in run.workers:
                if process.poll() is None:
                    process.kill()
                    process.wait()


# -- the stores --------------------------------------------------------------------------------
@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return worker_store_url(request.param, tmp_path, request, table="faults", lease=LEASE)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/sessions.sqlite?lease={LEASE}&poll_interval=0.05"


@pytest.fixture
def postgres_url(postgres_dsn: str) -> str:
    return f"{postgres_dsn}&table=faults_terminated&lease={LEASE}&poll_interval=0.05"


@dataclass
class Postgres:
    """A PostgreSQL server of one test's own, to stop and start again."""

    data: Path
    user: str | None
    dsn: str

    def stop(self) -> None:
        self.pg_ctl("-m", "fast", "stop")

    def start(self) -> None:
        # As pgserver starts it: no TCP, the socket in the data directory.
        self.pg_ctl("-o", '-h ""', "-o", f"-k {self.data}", "-l", str(self.data / "log"), "start")

    def pg_ctl(self, *args: str) -> None:
        """pgserver's own ``pg_ctl``, as the user its server runs as (output to files: a
        pipe can keep pg_ctl waiting)."""
        from pgserver._commands import POSTGRES_BIN_PATH

        subprocess.run(
            [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(self.data), "-w", *args],
            user=self.user,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=60,
        )


@pytest.fixture
def own_postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Postgres]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs: XDG_RUNTIME_DIR unset in CI
        from pgserver.postgres_server import get_server

        data = tmp_path_factory.mktemp("restarted") / "data"
        server = get_server(data, cleanup_mode="delete")
    try:
        yield Postgres(data, server.system_user, server.get_uri())
    finally:
        server.cleanup()


# -- the faults --------------------------------------------------------------------------------
async def test_a_worker_paused_past_its_lease_dials_nothing_it_lost(
    store_url: str, make_emulator: EmulatorFactory, tmp_path: Path
) -> None:
    """SIGSTOP a worker holding claimed calls (a rate limit queues them) for longer than its
    lease; peers settle them, the web tier cancels some; after SIGCONT it dials none."""
    async with fault_run(store_url, make_emulator, tmp_path) as run:
        # First on the store, and slow to dial: it holds up to 20 claims, 2 sent a second.
        paused = run.start_worker("--concurrency", "20", "--rate", "2")
        assert await anyio.to_thread.run_sync(run.emulator.wait_for_requests, 2, 30.0)
        for _ in range(WORKERS - 1):
            run.start_worker()
        await run.calls_reach(10)
        paused.send_signal(signal.SIGSTOP)
        # Some of the calls claimed now are the paused worker's, not sent yet.
        assert await run.cancel_calling(2) > 0
        await anyio.sleep(LEASE + 1.0)  # the fault: paused past its lease
        paused.send_signal(signal.SIGCONT)
    check(run, await figures(run))
    fenced = run.logs[0].read_text().count("call not sent")
    print(f"calls held by the paused worker and not sent after it resumed: {fenced}")
    assert fenced > 0  # the fault struck while it held claimed calls


async def test_a_lock_held_elsewhere_never_makes_a_call_twice(
    sqlite_url: str, make_emulator: EmulatorFactory, tmp_path: Path
) -> None:
    """Another connection holds ``BEGIN EXCLUSIVE`` on the file for longer than a lease:
    once as the workers start (their first claims wait for it, with many calls due), once
    mid-run (renewals and answers wait too). No claim comes out of a wait already expired,
    so nobody is called twice."""
    path = tmp_path / "sessions.sqlite"
    async with fault_run(sqlite_url, make_emulator, tmp_path) as run:
        async with anyio.create_task_group() as tasks:
            locked = threading.Event()
            tasks.start_soon(anyio.to_thread.run_sync, hold_the_lock, path, locked)
            assert await anyio.to_thread.run_sync(locked.wait, 10.0)
            for _ in range(WORKERS):
                run.start_worker()
        await run.calls_reach(120)
        await anyio.to_thread.run_sync(hold_the_lock, path, threading.Event())
        await run.cancel_calling(3)
    check(run, await figures(run))


def hold_the_lock(path: Path, locked: threading.Event) -> None:
    """The fault: the database's write lock held past a lease by another connection."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("BEGIN EXCLUSIVE")
        locked.set()
        time.sleep(LEASE + 1.0)
        db.execute("ROLLBACK")
    finally:
        db.close()


async def test_terminated_connections_are_replaced(
    postgres_url: str, make_emulator: EmulatorFactory, tmp_path: Path
) -> None:
    """``pg_terminate_backend`` on every worker connection, twice, mid-run."""
    dsn = postgres_url.partition("&table=")[0]
    async with fault_run(postgres_url, make_emulator, tmp_path) as run:
        for _ in range(WORKERS):
            run.start_worker()
        for reached in (40, 120):
            await run.calls_reach(reached)
            # At least each worker's listening connection.
            assert await terminate(dsn, WORKER_APP) >= WORKERS
            await run.cancel_calling(4)
    check(run, await figures(run))


async def test_a_restarted_database_leaves_nothing_unfinished(
    own_postgres: Postgres, make_emulator: EmulatorFactory, tmp_path: Path
) -> None:
    """PostgreSQL stopped for three seconds mid-run, then started on the same socket."""
    url = f"{own_postgres.dsn}&table=faults_restarted&lease={LEASE}&poll_interval=0.05"
    async with fault_run(url, make_emulator, tmp_path) as run:
        for _ in range(WORKERS):
            run.start_worker()
        await run.calls_reach(40)
        await anyio.to_thread.run_sync(own_postgres.stop)
        await anyio.sleep(LEASE)  # the fault: the database away for a lease
        await anyio.to_thread.run_sync(own_postgres.start)
        await run.cancel_calling(3)
    check(run, await figures(run))
    for log in run.logs:  # an outage is one warning when it starts, one line when it ends
        text = log.read_text()
        assert text.count("retrying until it answers") == text.count("answers again after")
        assert "answers again after" in text
        assert "listening for notifications again" in text


async def test_every_public_call_says_store_error_when_its_connections_die(
    postgres_dsn: str, emulator: Emulator
) -> None:
    """With every connection of the web tier terminated before each call, ``schedule``,
    ``get``, ``verify``, ``cancel`` and ``wait`` answer or raise ``StoreError``, nothing
    else; the next call works again, and leaving the block raises nothing."""
    app = "phoneconfirm-fault-web"
    url = f"{postgres_dsn}&table=faults_public&application_name={app}&poll_interval=0.05"
    client = PhoneConfirmClient(API_KEY, DOMAIN, base_url=emulator.base_url)
    async with client, client.scheduler(store=store_from_url(url), drive=False) as web:
        session = await web.schedule("5555550100", country_code="1", code="2468")
        calls: list[Callable[[], Awaitable[object]]] = [
            functools.partial(web.schedule, "5555550101", country_code="1", code="2468"),
            functools.partial(web.get, session.id),
            functools.partial(session.verify, "2468"),
            session.cancel,
            session.wait,
        ]
        failed = 0
        assert await terminate(postgres_dsn, app) > 0
        for call in calls:
            await terminate(postgres_dsn, app)  # and those the last call opened
            for attempt in range(2):  # the second one works again
                try:
                    await call()
                except StoreError:
                    assert attempt == 0
                    failed += 1
                except ValidationError:
                    pass  # verify: no call was answered yet (the store was read: it works)
        assert await web.get(session.id) is not None
        assert session.state is SessionState.CANCELLED
    print(f"\npublic calls that raised StoreError after their connections died: {failed}/5")


async def terminate(dsn: str, application_name: str) -> int:
    """``pg_terminate_backend`` on every connection of ``application_name``; how many."""
    connection = await asyncpg.connect(dsn)
    try:
        # In the select list: evaluated for the matching rows only.
        rows = await connection.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
            application_name,
        )
    finally:
        await connection.close()
    return len(rows)
