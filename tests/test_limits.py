"""Client-wide limits in virtual time: the rate limiter and the concurrency bound."""

from __future__ import annotations

import itertools

import anyio
import httpx
import pytest
from trio.testing import MockClock

from phoneconfirm_async import PhoneConfirmClient
from phoneconfirm_async._limits import RateLimiter

pytestmark = pytest.mark.anyio

OK = b'{"r": {"error": 0, "status": "valid", "message": "ok", "transaction_number": "1"}}'


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, object]]:
    return "trio", {"clock": MockClock(autojump_threshold=0)}


async def test_rate_limiter_spaces_starts_evenly() -> None:
    """50/s: 101 acquisitions take exactly 2 virtual seconds, evenly spaced."""
    limiter = RateLimiter(50)
    starts: list[float] = []
    async with anyio.create_task_group() as tg:
        for _ in range(101):

            async def one() -> None:
                await limiter.acquire()
                starts.append(anyio.current_time())

            tg.start_soon(one)
    starts.sort()
    assert starts[-1] - starts[0] == pytest.approx(2.0)
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert min(gaps) == pytest.approx(0.02)


async def test_rate_limiter_burst() -> None:
    """With burst=5, five starts go at once after idling, then the rate applies."""
    limiter = RateLimiter(10, burst=5)
    t0 = anyio.current_time()
    for _ in range(5):
        await limiter.acquire()
    assert anyio.current_time() == t0
    await limiter.acquire()
    assert anyio.current_time() - t0 == pytest.approx(0.1)


async def test_client_rate_limit_and_concurrency() -> None:
    """A client with rate_limit=20 and max_concurrency=3 honours both."""
    in_flight = 0
    peak = 0
    times: list[float] = []

    async def slow_handler(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        times.append(anyio.current_time())
        await anyio.sleep(1)
        in_flight -= 1
        return httpx.Response(200, content=OK)

    http = httpx.AsyncClient(transport=httpx.MockTransport(slow_handler))
    client = PhoneConfirmClient(
        "key",
        "example.com",
        base_url="http://service.test/services",
        http_client=http,
        rate_limit=20,
        max_concurrency=3,
    )
    async with client, anyio.create_task_group() as tg:
        for _ in range(12):
            tg.start_soon(client.verify_code, "1", "1")
    assert peak == 3
    times.sort()
    assert all(b - a >= 0.05 - 1e-9 for a, b in itertools.pairwise(times))
    assert times[-1] - times[0] >= 3.0  # 12 requests, 3 at a time, 1 s each


def test_rate_limiter_rejects_nonsense() -> None:
    """Zero, negative or infinite rates are refused."""
    for rate in (0, -1, float("inf")):
        with pytest.raises(ValueError, match="rate"):
            RateLimiter(rate)
