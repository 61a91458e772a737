"""The local redial scheduler, time-exact on trio's MockClock against a scripted service."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import anyio
import httpx
import pytest
from trio.testing import MockClock

from phoneconfirm_async import (
    AuthenticationError,
    ConfirmationScheduler,
    PhoneConfirmClient,
    RetryPolicy,
    SessionState,
    ValidationError,
)

pytestmark = pytest.mark.anyio

WALL_NOW = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, object]]:
    return "trio", {"clock": MockClock(autojump_threshold=0)}


@dataclass
class FakeService:
    """A Phone Confirm service in virtual time: records when each call was placed.

    ``script`` maps a placement's 1-based number to what happens to it: ``"invalid"``
    (the call failed), ``"lost"`` (placed, but the answer is a 500), ``"refused"`` (a connect
    error: never reached the service), ``"auth"`` (error 2).
    """

    script: dict[int, str] = field(default_factory=dict)
    calls: list[tuple[float, dict[str, str]]] = field(default_factory=list)
    placements: int = 0
    verifications: list[tuple[str, str]] = field(default_factory=list)
    codes: dict[str, str] = field(default_factory=dict)

    def handler(self, request: httpx.Request) -> httpx.Response:
        params = dict(request.url.params)
        if request.url.path.endswith("/verifycode/"):
            tx, code = params["transaction_number"], params["code"]
            self.verifications.append((tx, code))
            status = "valid" if self.codes.get(tx) == code else "invalid"
            return self.answer(0, status, tx)
        self.placements += 1
        what = self.script.get(self.placements, "ok")
        if what == "refused":
            raise httpx.ConnectError("refused")
        if what == "auth":
            return self.answer(2, "invalid", "")
        self.calls.append((anyio.current_time(), params))
        tx = f"tx{len(self.calls)}"
        self.codes[tx] = params["code"]
        if what == "lost":
            return httpx.Response(500, content=b"oops")
        return self.answer(0, "invalid" if what == "invalid" else "valid", tx)

    @staticmethod
    def answer(error: int, status: str, tx: str) -> httpx.Response:
        body = {"r": {"error": error, "status": status, "message": "", "transaction_number": tx}}
        return httpx.Response(200, content=json.dumps(body).encode())

    def call_times(self, start: float) -> list[float]:
        return [round(at - start, 6) for at, _ in self.calls]


@pytest.fixture
def service() -> FakeService:
    return FakeService()


@pytest.fixture
async def scheduler(service: FakeService) -> AsyncIterator[ConfirmationScheduler]:
    http = httpx.AsyncClient(transport=httpx.MockTransport(service.handler))
    client = PhoneConfirmClient(
        "key",
        "example.com",
        base_url="http://service.test/services",
        http_client=http,
        retry=RetryPolicy(initial_wait=1, max_wait=1),
    )
    async with (
        http,
        client,
        ConfirmationScheduler(client, wall_clock=WALL_NOW.timestamp) as scheduler,
    ):
        yield scheduler


async def settle() -> None:
    """Let every task that can run, run (the mock clock does not move)."""
    await anyio.wait_all_tasks_blocked()


async def test_first_call_now_by_default(
    scheduler: ConfirmationScheduler, service: FakeService
) -> None:
    """Without call_place_time the first call goes out at once, without redial params."""
    start = anyio.current_time()
    session = await scheduler.schedule("5555550123", country_code="1", code="4821")
    await settle()
    assert service.call_times(start) == [0.0]
    assert session.state is SessionState.AWAITING_CODE
    params = service.calls[0][1]
    for name in ("redial_count", "redial_interval", "call_place_time"):
        assert name not in params


@pytest.mark.parametrize(
    "when",
    [
        WALL_NOW + timedelta(minutes=90),
        (WALL_NOW + timedelta(minutes=90)).astimezone(UTC).replace(tzinfo=UTC),
        timedelta(minutes=90),
        5400,
        5400.0,
    ],
    ids=["aware-datetime", "utc-datetime", "timedelta", "int-seconds", "float-seconds"],
)
async def test_call_place_time_forms(
    scheduler: ConfirmationScheduler, service: FakeService, when: object
) -> None:
    """An aware datetime, a timedelta or seconds all hold the call until then, exactly."""
    start = anyio.current_time()
    session = await scheduler.schedule(
        "5555550123",
        country_code="1",
        code="4821",
        call_place_time=when,  # type: ignore[arg-type]
    )
    await anyio.sleep(5399.9)
    assert service.calls == []
    assert session.state is SessionState.SCHEDULED
    await anyio.sleep(0.2)
    assert service.call_times(start) == [5400.0]


async def test_past_time_means_now(scheduler: ConfirmationScheduler, service: FakeService) -> None:
    """A call_place_time in the past places the call at once."""
    start = anyio.current_time()
    await scheduler.schedule(
        "5555550123", country_code="1", code="4821", call_place_time=WALL_NOW - timedelta(days=1)
    )
    await settle()
    assert service.call_times(start) == [0.0]


async def test_naive_datetime_refused(
    scheduler: ConfirmationScheduler, service: FakeService
) -> None:
    """A naive datetime is a ValidationError and nothing is scheduled."""
    with pytest.raises(ValidationError, match="call_place_time"):
        await scheduler.schedule(
            "5555550123", country_code="1", code="4821", call_place_time=datetime(2026, 12, 1)
        )
    with pytest.raises(ValidationError, match="redial_count"):
        await scheduler.schedule("5555550123", country_code="1", code="4821", redial_count=11)
    assert len(scheduler) == 0


async def test_exact_redial_times_then_exhausted(
    scheduler: ConfirmationScheduler, service: FakeService
) -> None:
    """1 + redial_count calls, redial_interval apart; EXHAUSTED one interval after the last."""
    start = anyio.current_time()
    session = await scheduler.schedule(
        "5555550123", country_code="1", code="4821", redial_count=2, redial_interval=60
    )
    assert await session.wait() is SessionState.EXHAUSTED
    assert anyio.current_time() - start == pytest.approx(180)
    assert service.call_times(start) == [0.0, 60.0, 120.0]
    assert len(session.attempts) == 3
    assert session.calls_made == 3


@pytest.mark.parametrize("after_call", [1, 2, 3])
async def test_verify_after_call_k_stops_redials(
    scheduler: ConfirmationScheduler, service: FakeService, after_call: int
) -> None:
    """A verify after call k makes the session VERIFIED and no further call is placed."""
    start = anyio.current_time()
    session = await scheduler.schedule(
        "5555550123", country_code="1", code="4821", redial_count=2, redial_interval=60
    )
    await anyio.sleep(60 * (after_call - 1) + 30)
    assert len(service.calls) == after_call
    result = await session.verify("4821")
    assert result.verified
    assert session.state is SessionState.VERIFIED
    assert service.verifications[-1] == (f"tx{after_call}", "4821")  # the latest call
    await anyio.sleep(3600)
    assert len(service.calls) == after_call
    assert await session.wait() is SessionState.VERIFIED
    assert anyio.current_time() - start == pytest.approx(60 * (after_call - 1) + 30 + 3600)


async def test_verify_after_exhausted(
    scheduler: ConfirmationScheduler, service: FakeService
) -> None:
    """A right code after EXHAUSTED still makes the session VERIFIED."""
    session = await scheduler.schedule("5555550123", country_code="1", code="4821")
    assert await session.wait() is SessionState.EXHAUSTED
    assert await scheduler.get(session.id) is session
    assert (await session.verify("4821")).verified
    assert session.state is SessionState.VERIFIED


async def test_wrong_codes_do_not_stop_redials(
    scheduler: ConfirmationScheduler, service: FakeService
) -> None:
    """A wrong code is a result; redials go on at their times."""
    start = anyio.current_time()
    session = await scheduler.schedule(
        "5555550123", country_code="1", code="4821", redial_count=1, redial_interval=60
    )
    await anyio.sleep(10)
    result = await session.verify("0000")
    assert not result.verified
    assert session.state is SessionState.AWAITING_CODE
    assert await session.wait() is SessionState.EXHAUSTED
    assert service.call_times(start) == [0.0, 60.0]


async def test_invalid_status_counts_as_an_attempt(
    scheduler: ConfirmationScheduler, service: FakeService
) -> None:
    """A call answered status=invalid (it failed) counts; the redial follows on time."""
    service.script = {1: "invalid"}
    start = anyio.current_time()
    session = await scheduler.schedule(
        "5555550123", country_code="1", code="4821", redial_count=1, redial_interval=45
    )
    assert await session.wait() is SessionState.EXHAUSTED
    assert service.call_times(start) == [0.0, 45.0]
    assert [a.status for a in session.attempts] == ["invalid", "valid"]


async def test_unknown_outcome_counts_and_is_not_resent(
    scheduler: ConfirmationScheduler, service: FakeService
) -> None:
    """A placement lost after sending counts as a call; the next comes at redial_interval."""
    service.script = {1: "lost"}
    start = anyio.current_time()
    session = await scheduler.schedule(
        "5555550123", country_code="1", code="4821", redial_count=1, redial_interval=60
    )
    assert await session.wait() is SessionState.EXHAUSTED
    assert service.call_times(start) == [0.0, 60.0]
    assert session.calls_made == 2
    assert len(session.attempts) == 1  # only the answered one


async def test_transient_failure_retried_without_a_redial(
    scheduler: ConfirmationScheduler, service: FakeService
) -> None:
    """A connect error is retried inside the attempt (backoff) and uses no redial."""
    service.script = {1: "refused", 2: "refused"}
    start = anyio.current_time()
    session = await scheduler.schedule(
        "5555550123", country_code="1", code="4821", redial_count=1, redial_interval=60
    )
    assert await session.wait() is SessionState.EXHAUSTED
    times = service.call_times(start)
    assert len(times) == 2  # two calls placed, redial_count honoured
    assert 0 < times[0] <= 2  # after two jittered waits of at most 1 s
    assert times[1] == pytest.approx(times[0] + 60)


async def test_permanent_failure(scheduler: ConfirmationScheduler, service: FakeService) -> None:
    """A permanent error makes the session FAILED with the exception kept; no redial."""
    service.script = {1: "auth"}
    session = await scheduler.schedule(
        "5555550123", country_code="1", code="4821", redial_count=3, redial_interval=60
    )
    assert await session.wait() is SessionState.FAILED
    assert isinstance(session.error, AuthenticationError)
    await anyio.sleep(600)
    assert service.placements == 1


async def test_cancel(scheduler: ConfirmationScheduler, service: FakeService) -> None:
    """cancel() drops pending calls."""
    session = await scheduler.schedule(
        "5555550123", country_code="1", code="4821", redial_count=3, redial_interval=60
    )
    await anyio.sleep(30)
    await session.cancel()
    assert session.state is SessionState.CANCELLED
    await anyio.sleep(600)
    assert len(service.calls) == 1
    assert await session.wait() is SessionState.CANCELLED


async def test_cancel_right_after_schedule(
    scheduler: ConfirmationScheduler, service: FakeService
) -> None:
    """Sessions cancelled at once, twenty times: trio runs ready tasks in random order, so
    some cancels land between the driver's claim and the start of its call task (the
    memory store's record is the live one: the cancel erases its phone). The scheduler goes
    on, and a session cancelled that early sends nothing; it used to fail its task group."""
    cancelled = []
    for i in range(20):
        session = await scheduler.schedule(f"55555501{i:02d}", country_code="1", code="4821")
        await session.cancel()
        cancelled.append(session)
    later = await scheduler.schedule("5555550199", country_code="1", code="4821")
    with anyio.fail_after(60):  # virtual time: a broken scheduler never calls
        assert await later.wait_called()
    assert all(session.state is SessionState.CANCELLED for session in cancelled)
    phones = [params["phone"] for _, params in service.calls]
    assert phones[-1] == "5555550199"
    assert len(phones) < 21  # some cancels came before their call's task ran


async def test_verify_before_any_call(scheduler: ConfirmationScheduler) -> None:
    """Verifying a session that has not called yet is a clear ValidationError."""
    session = await scheduler.schedule(
        "5555550123", country_code="1", code="4821", call_place_time=60
    )
    with pytest.raises(ValidationError, match="no call has been placed"):
        await session.verify("4821")


async def test_get_finds_live_sessions_and_forgets_after_retain(service: FakeService) -> None:
    """get(id) finds a session; a finished one is forgotten after `retain` seconds."""
    http = httpx.AsyncClient(transport=httpx.MockTransport(service.handler))
    client = PhoneConfirmClient(
        "k", "d.example", base_url="http://s.test/services", http_client=http
    )
    async with http, client, client.scheduler(retain=100) as scheduler:
        session = await scheduler.schedule("5555550123", country_code="1", code="4821")
        assert await scheduler.get(session.id) is session
        assert await scheduler.get("no-such-id") is None
        await settle()
        await session.verify("4821")
        await anyio.sleep(99)
        assert await scheduler.get(session.id) is session
        await anyio.sleep(2)
        assert await scheduler.get(session.id) is None
        assert len(session.id) >= 20
        assert "4821" not in repr(session)
        assert "5555550123" not in repr(session)


async def test_leaving_the_block_cancels_everything(service: FakeService) -> None:
    """Closing the scheduler cancels pending sessions and leaves no task behind."""
    http = httpx.AsyncClient(transport=httpx.MockTransport(service.handler))
    client = PhoneConfirmClient(
        "k", "d.example", base_url="http://s.test/services", http_client=http
    )
    async with http, client:
        async with client.scheduler() as scheduler:
            later = await scheduler.schedule(
                "5555550123", country_code="1", code="4821", call_place_time=3600
            )
            redialing = await scheduler.schedule(
                "5555550124", country_code="1", code="4821", redial_count=5, redial_interval=10
            )
            await settle()
        assert later.state is SessionState.CANCELLED
        assert redialing.state is SessionState.CANCELLED
        await anyio.sleep(7200)
        assert len(service.calls) == 1  # only the one placed before closing
        with pytest.raises(RuntimeError, match="not open"):
            await scheduler.schedule("5555550123", country_code="1", code="4821")


async def test_many_sessions_share_one_timer_task(
    scheduler: ConfirmationScheduler, service: FakeService
) -> None:
    """1,000 sessions due at different times each fire once, at their time."""
    start = anyio.current_time()
    for i in range(1000):
        await scheduler.schedule(
            f"55555{i:05d}", country_code="1", code="4821", call_place_time=float(1000 - i)
        )
    await anyio.sleep(1001)
    times = sorted(service.call_times(start))
    assert times == [float(t) for t in range(1, 1001)]


async def test_retain_counts_from_the_last_finish(service: FakeService) -> None:
    """A session verified after EXHAUSTED is retained from its verification."""
    http = httpx.AsyncClient(transport=httpx.MockTransport(service.handler))
    client = PhoneConfirmClient(
        "k", "d.example", base_url="http://s.test/services", http_client=http
    )
    async with http, client, client.scheduler(retain=100) as scheduler:
        session = await scheduler.schedule(
            "5555550123", country_code="1", code="4821", redial_interval=10
        )
        assert await session.wait() is SessionState.EXHAUSTED
        await anyio.sleep(50)
        assert (await session.verify("4821")).verified
        await anyio.sleep(70)  # 120 s after EXHAUSTED, 70 s after VERIFIED
        assert await scheduler.get(session.id) is session
        await anyio.sleep(31)
        assert await scheduler.get(session.id) is None


async def test_verify_while_a_redial_is_in_flight(service: FakeService) -> None:
    """A verify during a slow redial: the call is recorded, nothing is scheduled after it."""
    slow = FakeService()

    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/placecall/") and slow.placements == 1:
            await anyio.sleep(10)  # the second placement takes 10 s to answer
        return slow.handler(request)

    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    client = PhoneConfirmClient(
        "k", "d.example", base_url="http://s.test/services", http_client=http
    )
    async with http, client, client.scheduler() as scheduler:
        start = anyio.current_time()
        session = await scheduler.schedule(
            "5555550123", country_code="1", code="4821", redial_count=2, redial_interval=60
        )
        await anyio.sleep(65)
        assert session.state is SessionState.CALLING
        assert (await session.verify("4821")).verified
        await anyio.sleep(1000)
        assert await session.wait() is SessionState.VERIFIED
        assert slow.call_times(start) == [0.0, 70.0]
        assert session.calls_made == 2
        assert len(session.attempts) == 2


async def test_wait_called(scheduler: ConfirmationScheduler, service: FakeService) -> None:
    """wait_called returns once the first call is in, or False if it never happens."""
    start = anyio.current_time()
    session = await scheduler.schedule(
        "5555550123", country_code="1", code="4821", call_place_time=30
    )
    assert await session.wait_called() is True
    assert anyio.current_time() - start == pytest.approx(30)
    never = await scheduler.schedule(
        "5555550124", country_code="1", code="4821", call_place_time=60
    )
    async with anyio.create_task_group() as tg:
        tg.start_soon(never.cancel)
        assert await never.wait_called() is False
