"""Retry rules against the emulator's injected faults, on every transport."""

from __future__ import annotations

import anyio
import pytest

from phoneconfirm_async import (
    CallOutcomeUnknownError,
    DomainNotAuthorizedError,
    RateLimitedError,
    RetryPolicy,
    ServerError,
    TransportError,
)
from phoneconfirm_async._retry import RetryEvent
from tests.client.conftest import ClientFactory
from tests.conftest import EmulatorFactory

pytestmark = pytest.mark.anyio

AFTER_SENT_FAULTS = ("http_500", "http_503", "reset", "truncated", "html")


async def test_untrusted_domain_503_is_not_retried(
    make_client: ClientFactory, make_emulator: EmulatorFactory
) -> None:
    """A 503 with an error body (error 3) is permanent: one request, no retry."""
    emulator = make_emulator(trusted_domains=("other.example",))
    async with make_client(emulator) as client:
        with pytest.raises(DomainNotAuthorizedError):
            await client.verify_code("123", "4821")
    assert emulator.request_count == 1


async def test_429_retry_after_is_waited_for(
    make_client: ClientFactory, make_emulator: EmulatorFactory
) -> None:
    """A 429 is retried (even for place_call) after waiting its Retry-After."""
    emulator = make_emulator(fault_rate=1.0, faults=("http_429",), retry_after=1)
    events: list[RetryEvent] = []
    policy = RetryPolicy(max_attempts=2, on_retry=events.append)
    async with make_client(emulator, retry=policy) as client:
        with pytest.raises(RateLimitedError) as caught:
            await client.place_call("5555550123", country_code="1", code="4821")
    assert caught.value.retry_after == 1.0
    assert emulator.request_count == 2
    assert events == [RetryEvent("placecall", 1, 1.0, "RateLimitedError")]
    assert emulator.calls == []


async def test_429_above_the_cap_raises_at_once(
    make_client: ClientFactory, make_emulator: EmulatorFactory
) -> None:
    """A Retry-After longer than max_retry_after raises RateLimitedError without waiting."""
    emulator = make_emulator(fault_rate=1.0, faults=("http_429",), retry_after=120)
    async with make_client(emulator, retry=RetryPolicy(max_retry_after=60)) as client:
        with anyio.fail_after(5), pytest.raises(RateLimitedError) as caught:
            await client.verify_code("123", "4821")
    assert caught.value.retry_after == 120.0
    assert emulator.request_count == 1


async def test_verify_code_survives_transient_faults(
    make_client: ClientFactory, make_emulator: EmulatorFactory
) -> None:
    """With half the requests failing in every transient way, every verification succeeds."""
    emulator = make_emulator()
    async with make_client(emulator) as client:
        placed = await client.place_call("5555550123", country_code="1", code="4821")
    faulty = make_emulator(fault_rate=0.5, faults=AFTER_SENT_FAULTS, seed=11)
    faulty._state._transactions = emulator._state._transactions  # same service memory
    async with make_client(faulty, retry=RetryPolicy(max_attempts=10, initial_wait=0)) as client:
        for _ in range(20):
            result = await client.verify_code(placed.transaction_number, "4821")
            assert result.verified
    assert faulty.request_count > 20  # faults struck and were retried
    assert {f.kind for f in faulty.faults} == set(AFTER_SENT_FAULTS)


@pytest.mark.parametrize("kind", AFTER_SENT_FAULTS)
async def test_place_call_is_not_repeated_after_it_was_sent(
    make_client: ClientFactory, make_emulator: EmulatorFactory, kind: str
) -> None:
    """A failure after sending raises CallOutcomeUnknownError and never phones again."""
    emulator = make_emulator(fault_rate=1.0, faults=(kind,), seed=3)
    seen_after = False
    async with make_client(emulator) as client:
        for i in range(6):
            phone = f"555555{i:04d}"
            with pytest.raises(CallOutcomeUnknownError) as caught:
                await client.place_call(phone, country_code="1", code="4821")
            assert isinstance(caught.value.cause, TransportError | ServerError)
            assert emulator.request_count == i + 1  # exactly one request: no retry
            recorded = [c for c in emulator.calls if c.phone == phone]
            after = emulator.faults[-1].phase == "after"
            assert len(recorded) == (1 if after else 0)
            seen_after |= after
    assert seen_after


async def test_retry_unsafe_opts_in(
    make_client: ClientFactory, make_emulator: EmulatorFactory
) -> None:
    """retry_unsafe=True retries a placement after a 5xx, at the risk of a second call."""
    emulator = make_emulator(fault_rate=1.0, faults=("http_500",), seed=3)
    policy = RetryPolicy(max_attempts=3, initial_wait=0, retry_unsafe=True)
    async with make_client(emulator, retry=policy) as client:
        with pytest.raises(CallOutcomeUnknownError):
            await client.place_call("5555550123", country_code="1", code="4821")
    assert emulator.request_count == 3


async def test_connect_errors_are_retried_for_place_call(
    make_client: ClientFactory, make_emulator: EmulatorFactory
) -> None:
    """A connection never made is safe to retry, even for a placement."""
    emulator = make_emulator()
    emulator.stop()  # nothing listens on its port any more
    events: list[RetryEvent] = []
    policy = RetryPolicy(max_attempts=3, initial_wait=0, on_retry=events.append)
    async with make_client(emulator, retry=policy) as client:
        with pytest.raises(TransportError) as caught:
            await client.place_call("5555550123", country_code="1", code="4821")
    assert caught.value.sent is False
    assert caught.value.kind == "connect"
    assert [e.attempt for e in events] == [1, 2]


async def test_retry_budget_stops_a_storm(
    make_client: ClientFactory, make_emulator: EmulatorFactory
) -> None:
    """At fault_rate 1.0, 200 concurrent verifications spend the budget and stop there."""
    emulator = make_emulator(fault_rate=1.0, faults=("http_500",))
    errors: list[BaseException] = []
    async with make_client(emulator, retry_budget=20, max_concurrency=50) as client:

        async def one() -> None:
            try:
                await client.verify_code("123", "4821")
            except ServerError as exc:
                errors.append(exc)

        async with anyio.create_task_group() as tg:
            for _ in range(200):
                tg.start_soon(one)
    assert len(errors) == 200
    assert emulator.request_count == 200 + 20  # every call once, plus the budget's 20


async def test_per_call_retry_override(
    make_client: ClientFactory, make_emulator: EmulatorFactory
) -> None:
    """retry= on a call replaces the client's policy for that call only."""
    emulator = make_emulator(fault_rate=1.0, faults=("http_503",))
    async with make_client(emulator, retry=RetryPolicy(max_attempts=3, initial_wait=0)) as client:
        with pytest.raises(ServerError):
            await client.verify_code("123", "4821", retry=RetryPolicy.none())
        assert emulator.request_count == 1
        with pytest.raises(ServerError):
            await client.verify_code("123", "4821")
        assert emulator.request_count == 4


async def test_place_call_read_timeout_is_outcome_unknown(
    make_client: ClientFactory, make_emulator: EmulatorFactory
) -> None:
    """A placement whose answer never comes (read timeout) is unknown, not retried."""
    emulator = make_emulator(fault_rate=1.0, faults=("hang",))
    async with make_client(emulator, timeout=0.3) as client:
        with pytest.raises(CallOutcomeUnknownError) as caught:
            await client.place_call("5555550123", country_code="1", code="4821")
    cause = caught.value.cause
    assert isinstance(cause, TransportError)
    assert (cause.sent, cause.kind) == (True, "read_timeout")
    assert emulator.request_count == 1
