"""A scheduler's writes after a call, retried while the store is away, and the store's
outages told once each (a warning when they start, one line when they end)."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Final, TypeVar

import anyio
import tenacity

from phoneconfirm_async._errors import StoreError
from phoneconfirm_async._stores._protocol import SessionStore

logger = logging.getLogger("phoneconfirm_async")

#: Backoff while the store fails: the first wait, doubling to the longest.
BACKOFF_FIRST: Final = 0.05
BACKOFF_MAX: Final = 2.0
#: Longest a write may take while the scheduler closes (the lease settles what is left).
CLOSING_PATIENCE: Final = 10.0
_T = TypeVar("_T")


def backoff(failures: int) -> float:
    """Seconds to wait after ``failures`` store failures in a row (jittered, bounded)."""
    return min(BACKOFF_FIRST * 2.0 ** (failures - 1), BACKOFF_MAX) * random.uniform(0.5, 1.0)


class Outage:
    """Store failures as one period: a warning when they start, one line when they end
    (a worker retries for as long as the store is away; no line per retry)."""

    __slots__ = ("name", "since")

    def __init__(self, name: str) -> None:
        self.name = name
        self.since: float | None = None

    def failed(self, error: StoreError) -> None:
        if self.since is None:
            self.since = time.monotonic()
            logger.warning(
                "scheduler: the session store failed (%s); retrying until it answers", error
            )

    def recovered(self) -> None:
        if self.since is not None:
            logger.warning(
                "scheduler: %s answers again after %.1f s",
                self.name,
                time.monotonic() - self.since,
            )
            self.since = None


class StoreWrites:
    """The writes after a call (its answer, a release, a FAILED state): on a durable store
    retried (tenacity, jittered backoff up to 2 s) for as long as the store fails, since
    the answer holds the transaction number a verify needs. Each attempt is shielded; once
    the scheduler is closing (``open`` False), one attempt more, then the claim is left to
    its lease (the call counts, outcome unknown)."""

    __slots__ = ("durable", "open", "outage")

    def __init__(self, store: SessionStore) -> None:
        self.durable = store.durable
        self.outage = Outage(store.name)
        self.open = False

    async def write(self, write: Callable[[], Awaitable[_T]]) -> _T | None:
        if not self.durable:
            return await write()

        async def attempt() -> _T:
            with anyio.CancelScope(shield=True) as scope:
                if not self.open:
                    scope.deadline = anyio.current_time() + CLOSING_PATIENCE
                try:
                    value = await write()
                except StoreError as exc:
                    self.outage.failed(exc)
                    raise
                self.outage.recovered()
                return value
            raise StoreError("no answer while closing", store=self.outage.name)

        retrying = tenacity.AsyncRetrying(
            stop=lambda _: not self.open,
            wait=tenacity.wait_random_exponential(multiplier=BACKOFF_FIRST, max=BACKOFF_MAX),
            retry=tenacity.retry_if_exception_type(StoreError),
            sleep=anyio.sleep,
            reraise=True,
        )
        try:
            return await retrying(attempt)
        except StoreError:
            logger.warning("scheduler: closing with a write undone (its lease settles it)")
            return None
