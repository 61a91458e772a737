"""The confirmation policy through the scheduler: attempt limits, single use, codes, the
code's lifetime, throttles, allowed countries and the spend cap, time-exact on trio's
MockClock against a scripted service (the emulator runs in ``test_policy_emulator``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import anyio
import httpx
import pytest
from trio.testing import MockClock

from phoneconfirm_async import (
    ConfigurationError,
    ConfirmationPolicy,
    ConfirmationScheduler,
    ConfirmationSession,
    PhoneConfirmClient,
    RetryPolicy,
    SessionState,
    ThrottledError,
    TransportError,
    ValidationError,
    VerificationClosedError,
)
from tests.test_scheduler import WALL_NOW, FakeService

pytestmark = pytest.mark.anyio
PHONE = "5555550123"
DEFAULT = ConfirmationPolicy()


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, object]]:
    return "trio", {"clock": MockClock(autojump_threshold=0)}


@dataclass
class Service(FakeService):
    """The scripted service, whose verifycode endpoint can also be unreachable."""

    unreachable_verifications: int = 0

    def handler(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/verifycode/") and self.unreachable_verifications:
            self.unreachable_verifications -= 1
            raise httpx.ConnectError("refused")  # never reached the service
        return super().handler(request)


@pytest.fixture
def service() -> Service:
    return Service()


Open = Callable[..., Any]


@pytest.fixture
async def open_scheduler(service: Service) -> AsyncIterator[Open]:
    """``open_scheduler(policy)``: a scheduler with that policy on the scripted service."""
    http = httpx.AsyncClient(transport=httpx.MockTransport(service.handler))
    client = PhoneConfirmClient(
        "key",
        "example.com",
        base_url="http://service.test/services",
        http_client=http,
        retry=RetryPolicy(max_attempts=1),
    )
    async with http, client, anyio.create_task_group() as tasks:

        async def start(policy: ConfirmationPolicy | None = DEFAULT) -> Any:
            scheduler = ConfirmationScheduler(client, wall_clock=WALL_NOW.timestamp, policy=policy)
            opened = anyio.Event()

            async def hold() -> None:
                async with scheduler:
                    opened.set()
                    await anyio.sleep_forever()

            tasks.start_soon(hold)
            await opened.wait()
            return scheduler

        yield start
        tasks.cancel_scope.cancel()


async def called(
    scheduler: ConfirmationScheduler, phone: str = PHONE, **options: Any
) -> ConfirmationSession:
    session = await scheduler.schedule(phone, country_code="1", code="4821", **options)
    assert await session.wait_called()
    return session


# -- attempts and single use ----------------------------------------------------------------
async def test_the_last_wrong_code_locks_the_session(
    open_scheduler: Open, service: Service
) -> None:
    scheduler = await open_scheduler(ConfirmationPolicy(max_verify_attempts=3))
    session = await called(scheduler, redial_count=2)
    assert (session.verify_attempts, session.verify_attempts_left) == (0, 3)
    for left in (2, 1):
        assert not (await session.verify("0000")).verified
        assert session.verify_attempts_left == left
        assert session.state is SessionState.AWAITING_CODE
    assert not (await session.verify("0000")).verified
    assert session.state is SessionState.LOCKED
    assert session.verify_attempts_left == 0
    assert session.request is None  # phone and code erased
    with pytest.raises(VerificationClosedError) as closed:
        await session.verify("4821")  # the right code, too late
    assert closed.value.state is SessionState.LOCKED
    assert "4821" not in str(closed.value)
    assert len(service.verifications) == 3  # nothing sent after the lock
    await anyio.sleep(3600)
    assert len(service.calls) == 1  # LOCKED places no more calls


async def test_concurrent_guesses_never_exceed_the_limit(
    open_scheduler: Open, service: Service
) -> None:
    scheduler = await open_scheduler(ConfirmationPolicy(max_verify_attempts=5))
    session = await called(scheduler)
    outcomes: list[str] = []

    async def guess(code: str) -> None:
        try:
            outcomes.append(str((await session.verify(code)).verified))
        except VerificationClosedError as exc:
            outcomes.append(exc.state.value)

    async with anyio.create_task_group() as tasks:
        for n in range(16):
            tasks.start_soon(guess, f"{n:04d}")
    assert len(service.verifications) == 5
    assert outcomes.count("False") == 5
    assert session.state is SessionState.LOCKED


async def test_a_verified_session_takes_no_further_check(
    open_scheduler: Open, service: Service
) -> None:
    scheduler = await open_scheduler()
    session = await called(scheduler)
    assert (await session.verify("4821")).verified
    with pytest.raises(VerificationClosedError) as closed:
        await session.verify("4821")  # a double-submitted form
    assert closed.value.state is SessionState.VERIFIED
    assert len(service.verifications) == 1


async def test_a_check_that_never_left_gives_its_attempt_back(
    open_scheduler: Open, service: Service
) -> None:
    scheduler = await open_scheduler(ConfirmationPolicy(max_verify_attempts=1))
    session = await called(scheduler)
    service.unreachable_verifications = 2
    for _ in range(2):
        with pytest.raises(TransportError) as failed:
            await session.verify("4821")
        assert failed.value.sent is False
        assert session.verify_attempts == 0
    assert (await session.verify("4821")).verified  # the one attempt was never used


async def test_no_call_answered_yet_uses_no_attempt(open_scheduler: Open) -> None:
    scheduler = await open_scheduler(ConfirmationPolicy(max_verify_attempts=1))
    session = await scheduler.schedule(PHONE, country_code="1", code="4821", call_place_time=60)
    with pytest.raises(ValidationError, match="no call"):
        await session.verify("4821")
    assert session.verify_attempts == 0


async def test_without_a_policy_checks_are_unlimited_but_single_use(
    open_scheduler: Open, service: Service
) -> None:
    scheduler = await open_scheduler(None)
    session = await called(scheduler)
    for _ in range(8):
        assert not (await session.verify("0000")).verified
    assert session.verify_attempts_left is None
    assert (await session.verify("4821")).verified
    with pytest.raises(VerificationClosedError):
        await session.verify("4821")
    assert len(service.verifications) == 9


# -- codes ----------------------------------------------------------------------------------
async def test_the_library_draws_the_code(open_scheduler: Open, service: Service) -> None:
    scheduler = await open_scheduler(ConfirmationPolicy(code_length=8))
    drawn = set()
    for n in range(3):
        session = await scheduler.schedule(f"55555501{n:02d}", country_code="1")
        assert await session.wait_called()
        spoken = service.calls[-1][1]["code"]
        assert len(spoken) == 8
        assert spoken.isdigit()
        assert spoken not in repr(session)
        drawn.add(spoken)
    assert len(drawn) == 3


async def test_a_short_code_is_refused(open_scheduler: Open, service: Service) -> None:
    scheduler = await open_scheduler()
    with pytest.raises(ValidationError) as refused:
        await scheduler.schedule(PHONE, country_code="1", code="123")
    assert refused.value.field == "code"
    assert "at least 4" in refused.value.rule
    await anyio.sleep(60)
    assert service.calls == []


# -- the code's lifetime --------------------------------------------------------------------
async def test_a_code_lives_code_ttl_after_the_latest_call(
    open_scheduler: Open, service: Service
) -> None:
    """Calls at 0 and 60; EXHAUSTED at 120, still verifiable; EXPIRED at 160 (60 + 100)."""
    scheduler = await open_scheduler(ConfirmationPolicy(code_ttl=timedelta(seconds=100)))
    start = anyio.current_time()
    session = await called(scheduler, redial_count=1, redial_interval=60)
    assert await session.wait() is SessionState.EXHAUSTED
    assert anyio.current_time() - start == pytest.approx(120)
    await anyio.sleep(159 - (anyio.current_time() - start))
    assert not (await session.verify("0000")).verified  # still alive at 159
    await anyio.sleep(2)
    assert session.state is SessionState.EXPIRED  # settled by the driver at 160
    with pytest.raises(VerificationClosedError) as closed:
        await session.verify("4821")
    assert closed.value.state is SessionState.EXPIRED
    assert len(service.verifications) == 1
    assert service.call_times(start) == [0, 60]


async def test_a_redial_interval_past_the_code_lifetime_is_refused(open_scheduler: Open) -> None:
    scheduler = await open_scheduler(ConfirmationPolicy(code_ttl=120))
    with pytest.raises(ValidationError) as refused:
        await scheduler.schedule(PHONE, country_code="1", redial_count=1, redial_interval=121)
    assert refused.value.field == "redial_interval"


# -- throttles and countries ----------------------------------------------------------------
async def test_the_fourth_session_for_one_phone_within_the_hour_is_throttled(
    open_scheduler: Open, service: Service
) -> None:
    scheduler = await open_scheduler()
    start = anyio.current_time()
    for _ in range(3):
        await scheduler.schedule(PHONE, country_code="1")
    await anyio.sleep(600)
    with pytest.raises(ThrottledError) as throttled:
        await scheduler.schedule("555-555-0123", country_code="+1")  # the same number
    assert throttled.value.limit == "phone"
    assert throttled.value.retry_after == pytest.approx(3000)
    assert PHONE not in str(throttled.value)
    await scheduler.schedule("5555550124", country_code="1")  # another phone is fine
    await anyio.sleep(3000 - (anyio.current_time() - start - 600))
    await scheduler.schedule(PHONE, country_code="1")  # the window moved on
    await anyio.sleep(1)
    assert len(service.calls) == 5


async def test_sessions_per_throttle_key(open_scheduler: Open) -> None:
    scheduler = await open_scheduler(ConfirmationPolicy(max_sessions_per_key=2, key_window=60))
    for n in range(2):
        await scheduler.schedule(f"55555501{n:02d}", country_code="1", throttle_key="ip:192.0.2.1")
    with pytest.raises(ThrottledError) as throttled:
        await scheduler.schedule("5555550199", country_code="1", throttle_key="ip:192.0.2.1")
    assert throttled.value.limit == "key"
    assert throttled.value.retry_after == pytest.approx(60)
    await scheduler.schedule("5555550199", country_code="1", throttle_key="ip:192.0.2.2")
    with pytest.raises(ValidationError) as bad:
        await scheduler.schedule("5555550198", country_code="1", throttle_key="")
    assert bad.value.field == "throttle_key"


async def test_a_country_outside_the_allow_list_is_refused_before_anything(
    open_scheduler: Open, service: Service
) -> None:
    scheduler = await open_scheduler(ConfirmationPolicy(allowed_countries={"1", "+44"}))
    await scheduler.schedule("2079460000", country_code="44")
    with pytest.raises(ValidationError) as refused:
        await scheduler.schedule("301234567", country_code="+49")
    assert refused.value.field == "country_code"
    assert "+49" in refused.value.rule
    await anyio.sleep(1)
    assert [params["country_code"] for _, params in service.calls] == ["44"]


# -- the spend cap --------------------------------------------------------------------------
async def test_the_spend_cap_holds_redials_until_the_hour_frees(
    open_scheduler: Open, service: Service
) -> None:
    """Cap 2: two first calls at 0; a third session is refused; the redials due at 60 wait
    until the first calls leave the trailing hour, and go out then, none dropped."""
    scheduler = await open_scheduler(ConfirmationPolicy(max_calls_per_hour=2))
    start = anyio.current_time()
    sessions = [
        await scheduler.schedule(f"55555501{n:02d}", country_code="1", redial_count=1)
        for n in range(2)
    ]
    await anyio.sleep(1)
    with pytest.raises(ThrottledError) as throttled:
        await scheduler.schedule("5555550199", country_code="1")
    assert throttled.value.limit == "calls_per_hour"
    assert throttled.value.retry_after == pytest.approx(3599)
    await anyio.sleep(3000)
    assert [s.calls_made for s in sessions] == [1, 1]  # due at 60, held, not counted
    for session in sessions:
        assert await session.wait() is SessionState.EXHAUSTED
    assert service.call_times(start) == [0, 0, 3600, 3600]


def test_bad_policy_values_name_their_field() -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"max_verify_attempts": 0}, "max_verify_attempts"),
        ({"code_ttl": -1}, "code_ttl"),
        ({"phone_window": "1h"}, "phone_window"),
        ({"max_sessions_per_key": 1.5}, "max_sessions_per_key"),
        ({"allowed_countries": "44"}, "allowed_countries"),
        ({"allowed_countries": ["1", "abc"]}, "allowed_countries"),
        ({"code_length": 3}, "code_length"),
        ({"code_length": 11}, "code_length"),
        ({"max_calls_per_hour": True}, "max_calls_per_hour"),
    ]
    for fields, name in cases:
        with pytest.raises(ConfigurationError, match=name):
            ConfirmationPolicy(**fields)
    with pytest.raises(ConfigurationError, match="policy"):
        ConfirmationScheduler(object(), policy={"max_verify_attempts": 5})  # type: ignore[arg-type]
    assert ConfirmationPolicy(code_ttl=timedelta(minutes=5)).code_ttl == 300
