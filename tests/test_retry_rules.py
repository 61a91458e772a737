"""Retry rules in virtual time: trio's MockClock and httpx.MockTransport, no sleeping."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import anyio
import httpx
import pytest
from trio.testing import MockClock

from phoneconfirm_async import (
    CallOutcomeUnknownError,
    ParseError,
    PhoneConfirmClient,
    RateLimitedError,
    RetryPolicy,
    ServerError,
    TransportError,
)
from phoneconfirm_async._retry import RetryBudget, RetryEvent, parse_retry_after

pytestmark = pytest.mark.anyio

OK = b'{"r": {"error": 0, "status": "valid", "message": "ok", "transaction_number": "1"}}'


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, object]]:
    return "trio", {"clock": MockClock(autojump_threshold=0)}


Handler = Callable[[httpx.Request], httpx.Response]


def scripted(*answers: httpx.Response | Exception) -> tuple[Handler, list[float]]:
    """A handler that plays the answers in order, noting the (virtual) time of each request."""
    times: list[float] = []
    queue = list(answers)

    def handler(request: httpx.Request) -> httpx.Response:
        times.append(anyio.current_time())
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(answer, Exception):
            raise answer
        # A fresh response each time: a response's stream can be read only once.
        return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)

    return handler, times


def client_for(handler: Handler, **options: object) -> PhoneConfirmClient:
    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return PhoneConfirmClient(
        "key",
        "example.com",
        base_url="http://service.test/services",
        http_client=http,
        **options,  # type: ignore[arg-type]
    )


async def test_retry_after_seconds_is_slept_exactly() -> None:
    """A 429 with Retry-After: 7 is retried exactly 7 (virtual) seconds later."""
    handler, times = scripted(
        httpx.Response(429, headers={"Retry-After": "7"}), httpx.Response(200, content=OK)
    )
    async with client_for(handler) as client:
        assert (await client.place_call("5555550123", country_code="1", code="1")).placed
    assert times[1] - times[0] == pytest.approx(7.0)


async def test_retry_after_http_date() -> None:
    """Retry-After as an HTTP date is honoured too."""
    when = datetime.now(UTC) + timedelta(seconds=30)
    assert parse_retry_after(
        format_datetime(when, usegmt=True), datetime.now(UTC).timestamp()
    ) == (pytest.approx(30, abs=1.5))
    assert parse_retry_after("soon", 0.0) is None
    assert parse_retry_after("-3", 0.0) == 0.0


async def test_backoff_is_jittered_exponential_and_capped() -> None:
    """Waits stay within the full-jitter bounds: [0, min(max_wait, initial * 2^n)]."""
    events: list[RetryEvent] = []
    handler, _ = scripted(httpx.Response(503))
    policy = RetryPolicy(
        max_attempts=8, initial_wait=1, max_wait=5, deadline=1e9, on_retry=events.append
    )
    async with client_for(handler, retry=policy) as client:
        with pytest.raises(ServerError):
            await client.verify_code("1", "1")
    assert [e.attempt for e in events] == [1, 2, 3, 4, 5, 6, 7]
    for event in events:
        assert 0 <= event.wait <= min(5, 2 ** (event.attempt - 1))
        assert event.operation == "verifycode"
        assert event.error_type == "ServerError"


async def test_deadline_bounds_the_total_time() -> None:
    """No retry starts whose wait would end past the deadline."""
    handler, times = scripted(httpx.Response(429, headers={"Retry-After": "20"}))
    policy = RetryPolicy(max_attempts=10, deadline=50)
    async with client_for(handler, retry=policy) as client:
        with pytest.raises(RateLimitedError):
            await client.verify_code("1", "1")
    assert len(times) == 3  # at 0, 20, 40; a third wait would end at 60 > 50
    assert times[-1] - times[0] == pytest.approx(40)


async def test_budget_is_refunded_by_successes() -> None:
    """Retries spend the budget, successes earn it back one token at a time."""
    budget = RetryBudget(retries=2)
    assert budget.spend(ServerError("x", status_code=500))
    assert budget.spend(ServerError("x", status_code=500))
    assert not budget.spend(ServerError("x", status_code=500))
    for _ in range(5):
        budget.refund()
    assert budget.spend(ServerError("x", status_code=500))
    timeout = TransportError("t", sent=True, kind="read_timeout")
    assert not budget.spend(timeout)  # timeouts cost double
    for _ in range(100):
        budget.refund()
    assert budget.tokens == budget.capacity


async def test_garbage_200_on_placecall_is_outcome_unknown() -> None:
    """An unreadable 200 to a placement may hide a placed call: CallOutcomeUnknownError."""
    handler, times = scripted(httpx.Response(200, content=b"<html>oops</html"))
    async with client_for(handler) as client:
        with pytest.raises(CallOutcomeUnknownError) as caught:
            await client.place_call("5555550123", country_code="1", code="1")
        assert isinstance(caught.value.cause, ParseError)
        with pytest.raises(ParseError):
            await client.verify_code("1", "1")
    assert len(times) == 2  # neither was retried


async def test_unexpected_status_is_not_retried() -> None:
    """A 404 (a wrong base_url) is an ApiError with no code, raised at once."""
    handler, times = scripted(httpx.Response(404, content=b"Not Found"))
    async with client_for(handler) as client:
        with pytest.raises(Exception, match="unexpected HTTP 404") as caught:
            await client.verify_code("1", "1")
    assert caught.value.code is None  # type: ignore[attr-defined]
    assert len(times) == 1


async def test_connect_errors_retry_placements() -> None:
    """httpx.ConnectError is 'never sent': placements retry it and then succeed."""
    handler, times = scripted(httpx.ConnectError("refused"), httpx.Response(200, content=OK))
    async with client_for(handler, retry=RetryPolicy(initial_wait=0)) as client:
        assert (await client.place_call("5555550123", country_code="1", code="1")).placed
    assert len(times) == 2


async def test_oversized_body_is_refused() -> None:
    """A body over 1 MiB is read no further than the limit and refused."""
    big = b'{"r": {"error": 0, "message": "' + b"x" * (2 * 1024 * 1024) + b'"}}'
    handler, _ = scripted(httpx.Response(200, content=big))
    async with client_for(handler) as client:
        with pytest.raises(ParseError, match="larger than"):
            await client.verify_code("1", "1")


def test_policy_validation() -> None:
    """Nonsense policies are refused; none() is a single attempt."""
    assert RetryPolicy.none().max_attempts == 1
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError, match="deadline"):
        RetryPolicy(deadline=-1)
