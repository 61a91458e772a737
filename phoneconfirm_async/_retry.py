"""Retries: which failures are retried, how long to wait, and when to give up.

Built on tenacity's ``AsyncRetrying`` with ``sleep=anyio.sleep`` (so it runs on asyncio and
trio alike): exponential backoff with full jitter, ``Retry-After`` honoured up to a cap,
bounded by attempts and by a total deadline, and by a retry budget shared by the whole
client so an outage cannot turn a large batch into a retry storm.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final, TypeVar

import anyio
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type
from tenacity.stop import stop_after_attempt, stop_base
from tenacity.wait import wait_random_exponential

from phoneconfirm_async._errors import (
    CallOutcomeUnknownError,
    ConfigurationError,
    PhoneConfirmError,
    RateLimitedError,
    ServerError,
    TransportError,
)
from phoneconfirm_async._models import Operation
from phoneconfirm_async._settings import seconds, whole

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RetryEvent:
    """What ``on_retry`` receives: metadata only, never URLs, numbers or secrets."""

    operation: str
    attempt: int
    wait: float
    error_type: str


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How transient failures are retried.

    Args:
        max_attempts: attempts in all, the first included (1 = no retries).
        initial_wait: the first backoff's upper bound in seconds; it doubles per attempt.
        max_wait: the cap of one backoff, in seconds.
        deadline: total seconds one call may spend, waits included; no retry starts
            whose wait would end past it.
        max_retry_after: the longest ``Retry-After`` the client waits for; a longer
            demand raises ``RateLimitedError`` at once.
        retry_unsafe: also retry call placements that failed after they were sent (may
            phone the person twice).
        on_retry: called with a ``RetryEvent`` before each wait.
    """

    max_attempts: int = 4
    initial_wait: float = 0.5
    max_wait: float = 8.0
    deadline: float = 60.0
    max_retry_after: float = 60.0
    retry_unsafe: bool = False
    on_retry: Callable[[RetryEvent], None] | None = None

    def __post_init__(self) -> None:
        whole("RetryPolicy.max_attempts", self.max_attempts, 1)
        for name in ("initial_wait", "max_wait", "deadline", "max_retry_after"):
            seconds(f"RetryPolicy.{name}", getattr(self, name), zero=True, finite=False)
        if not isinstance(self.retry_unsafe, bool):
            raise ConfigurationError("RetryPolicy.retry_unsafe must be True or False")
        if self.on_retry is not None and not callable(self.on_retry):
            raise ConfigurationError("RetryPolicy.on_retry must be callable, or None")

    @classmethod
    def none(cls) -> RetryPolicy:
        """A single attempt: retries off."""
        return cls(max_attempts=1)


class RetryBudget:
    """A token bucket shared by one client, in the manner of botocore's standard mode.

    Each retry spends ``retry_cost`` tokens (``timeout_cost`` after a timeout) and each
    success refunds one, up to the capacity; with too few tokens left, the failure is raised
    without retrying. ``retries`` is the burst allowance in retries: the default 100 means
    500 tokens, so a healthy service earns back one retry per five successes.
    """

    retry_cost: Final = 5
    timeout_cost: Final = 10

    def __init__(self, retries: int = 100) -> None:
        if retries < 0:
            raise ValueError("the retry budget must not be negative")
        self.capacity = retries * self.retry_cost
        self.tokens = self.capacity

    def spend(self, error: BaseException) -> bool:
        """Take the tokens for one retry after ``error``; False when the budget is empty."""
        timeout = isinstance(error, TransportError) and error.is_timeout
        cost = self.timeout_cost if timeout else self.retry_cost
        if self.tokens < cost:
            return False
        self.tokens -= cost
        return True

    def refund(self) -> None:
        """Give back one token after a success."""
        if self.tokens < self.capacity:
            self.tokens += 1


def is_retryable(error: BaseException, policy: RetryPolicy) -> bool:
    """Whether a failure may be retried at all under this policy.

    Placements that may have reached the service come here already wrapped in
    ``CallOutcomeUnknownError``, so the other rules are safe for both operations.
    """
    if isinstance(error, CallOutcomeUnknownError):
        return policy.retry_unsafe
    if isinstance(error, RateLimitedError):
        return error.retry_after is None or error.retry_after <= policy.max_retry_after
    return isinstance(error, TransportError | ServerError)


async def retry_after_failure(
    operation: Operation,
    attempt: Callable[[float, float], Awaitable[T]],
    policy: RetryPolicy,
    budget: RetryBudget,
    deadline: float,
    failure: PhoneConfirmError,
    clock: Callable[[], float] = anyio.current_time,
    observe: Callable[[int, float, BaseException], None] | None = None,
) -> T:
    """Go on after a first attempt failed with ``failure``: retry ``attempt`` until it
    succeeds or the policy, the deadline or the budget says stop; else raise.

    The caller runs the first attempt itself, outside tenacity, so a call that succeeds at
    once (nearly all of them) pays nothing for the retry machinery. ``attempt(deadline,
    now)`` receives the deadline, which also bounds an attempt in flight, and the time the
    loop read just before calling it (on ``clock``, anyio's clock or the running loop's
    own). The last real exception is raised, never a wrapper. ``observe(attempt, wait,
    error)`` is told of each retry before its wait, after ``policy.on_retry`` (telemetry).
    """
    if policy.max_attempts == 1 or not is_retryable(failure, policy):
        raise failure
    first_failure: PhoneConfirmError | None = failure

    async def replay_then_attempt() -> T:
        # tenacity starts counting from the first attempt, which already failed: replay it.
        nonlocal first_failure
        if first_failure is not None:
            failure, first_failure = first_failure, None
            raise failure
        return await attempt(deadline, clock())

    backoff = wait_random_exponential(multiplier=policy.initial_wait, max=policy.max_wait)

    def wait(state: RetryCallState) -> float:
        error = _error_of(state)
        if isinstance(error, RateLimitedError) and error.retry_after is not None:
            return error.retry_after
        return float(backoff(state))

    # Evaluated in order, each only if the previous said "go on": the budget is spent last,
    # so only a retry that happens pays.
    stop = (
        stop_after_attempt(policy.max_attempts)
        | _StopUnlessRetryable(policy)
        | _StopBeforeDeadline(deadline)
        | _StopWhenBudgetEmpty(budget)
    )

    def before_sleep(state: RetryCallState) -> None:
        error = _error_of(state)
        if policy.on_retry is not None:
            policy.on_retry(
                RetryEvent(
                    operation=operation,
                    attempt=state.attempt_number,
                    wait=state.upcoming_sleep,
                    error_type=type(error).__name__,
                )
            )
        if observe is not None:
            observe(state.attempt_number, state.upcoming_sleep, error)

    retrying = AsyncRetrying(
        sleep=anyio.sleep,
        stop=stop,
        wait=wait,
        retry=retry_if_exception_type(PhoneConfirmError),
        before_sleep=before_sleep,
        reraise=True,
    )
    result: T = await retrying(replay_then_attempt)
    budget.refund()
    return result


class _StopUnlessRetryable(stop_base):
    """Stop when the failure is not one the policy retries."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy

    def __call__(self, retry_state: RetryCallState) -> bool:
        return not is_retryable(_error_of(retry_state), self.policy)


class _StopBeforeDeadline(stop_base):
    """Stop when the next wait would end past the deadline.

    tenacity's ``stop_before_delay`` reads ``time.monotonic``; this reads anyio's clock, so
    trio's ``MockClock`` drives deadlines in tests as it drives the waits.
    """

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline

    def __call__(self, retry_state: RetryCallState) -> bool:
        upcoming = retry_state.upcoming_sleep or 0.0
        return anyio.current_time() + upcoming > self.deadline


class _StopWhenBudgetEmpty(stop_base):
    """Stop when the client's retry budget cannot pay for this retry (else spend it)."""

    def __init__(self, budget: RetryBudget) -> None:
        self.budget = budget

    def __call__(self, retry_state: RetryCallState) -> bool:
        return not self.budget.spend(_error_of(retry_state))


def _error_of(state: RetryCallState) -> BaseException:
    outcome = state.outcome
    assert outcome is not None
    error = outcome.exception()
    assert error is not None
    return error


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None
        seconds = when.timestamp() - now
    if not math.isfinite(seconds):
        return None
    return max(seconds, 0.0)
