"""Client-wide limits: a smooth token bucket for the request start rate."""

from __future__ import annotations

import math

import anyio


class RateLimiter:
    """Spaces request starts at ``rate`` per second (GCRA, the virtual-scheduling form).

    ``burst`` requests may start back to back after an idle period; the default 1 spaces
    every start evenly, which keeps a measured rate within a few percent of the setting.
    Time comes from ``anyio.current_time()`` so tests can drive it with a mock clock.
    """

    def __init__(self, rate: float, burst: int = 1) -> None:
        if not rate > 0 or math.isinf(rate):
            raise ValueError("rate must be a positive, finite number of requests per second")
        if burst < 1:
            raise ValueError("burst must be at least 1")
        self.rate = rate
        self._interval = 1.0 / rate
        self._tolerance = (burst - 1) * self._interval
        self._theoretical_arrival = -math.inf

    async def acquire(self) -> None:
        """Wait for this request's slot (reserved at once, so callers are served in order)."""
        now = anyio.current_time()
        arrival = max(self._theoretical_arrival, now)
        self._theoretical_arrival = arrival + self._interval
        start = arrival - self._tolerance
        if start > now:
            await anyio.sleep_until(start)
        else:
            await anyio.lowlevel.checkpoint()
