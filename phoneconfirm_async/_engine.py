"""The request engine: validated requests in, results or classified errors out.

Everything between a validated request and its result lives here: the query, the
concurrency and rate limits, the attempt bound, the transport call, what an answer means,
redaction, and retries with the retry budget. The client is a front that owns settings and
lifetime; the batch engine and the scheduler depend on ``RequestEngine``, a Protocol
that the engine and the client both satisfy.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote, urlsplit

import anyio

from phoneconfirm_async._errors import (
    ApiError,
    CallOutcomeUnknownError,
    ParseError,
    PhoneConfirmError,
    RateLimitedError,
    ServerError,
    TransportError,
    api_error_for,
)
from phoneconfirm_async._lifetime import running_clock
from phoneconfirm_async._limits import RateLimiter
from phoneconfirm_async._models import (
    Operation,
    PlaceCallRequest,
    PlaceCallResult,
    VerifyRequest,
    VerifyResult,
)
from phoneconfirm_async._parsers import MAX_BODY_BYTES, ParserRegistry
from phoneconfirm_async._redact import mask_phone, redact_text
from phoneconfirm_async._retry import (
    RetryBudget,
    RetryPolicy,
    parse_retry_after,
    retry_after_failure,
)
from phoneconfirm_async._transports._seam import (
    Transport,
    TransportRequest,
    TransportResponse,
    exception_summary,
)

if TYPE_CHECKING:
    from phoneconfirm_async._telemetry import RequestObservation, Telemetry

logger = logging.getLogger("phoneconfirm_async")

#: Query parameters in wire form, e.g. ``(("redial_count", "2"),)``.
Params = Sequence[tuple[str, str]]
#: Awaited immediately before each attempt's request leaves (after the concurrency and rate
#: limits let it go); raising stops the placement with nothing sent, and the exception
#: goes out as it is, never retried.
Fence = Callable[[], Awaitable[None]]


class RequestEngine(Protocol):
    """What the scheduler and the batch engine need: the two operations on built requests."""

    async def place(
        self,
        request: PlaceCallRequest,
        *,
        retry: RetryPolicy | None = None,
        fence: Fence | None = None,
    ) -> PlaceCallResult:
        """Place the call ``request`` describes (one request, retried only when safe);
        ``fence``, if given, is awaited right before each attempt is sent."""
        ...

    async def verify(
        self,
        request: VerifyRequest,
        *,
        retry: RetryPolicy | None = None,
        fence: Fence | None = None,
    ) -> VerifyResult:
        """Check the code ``request`` carries against its transaction; ``fence``, if
        given, is awaited right before each attempt is sent."""
        ...


@dataclass(frozen=True, slots=True)
class EngineSettings:
    """What the engine needs of the client's settings (already validated)."""

    api_key: str
    secret_key: str | None
    domain: str
    base_url: str
    response_format: str
    timeout: float | None
    attempt_timeout: float | None
    retry: RetryPolicy
    retry_budget: int
    max_concurrency: int
    rate_limit: float | None
    parsers: ParserRegistry


class Engine:
    """Runs the service's two operations over one transport, for one client.

    Made inside the client's event loop, whose clock it keeps. ``telemetry`` (None: off)
    observes each request; ``transport_name`` is what its spans call the transport.
    """

    def __init__(
        self,
        settings: EngineSettings,
        transport: Transport,
        *,
        telemetry: Telemetry | None = None,
        transport_name: str = "",
    ) -> None:
        self.clock = running_clock()
        self.telemetry = telemetry
        self.transport_name = transport_name
        self.settings = settings
        self.transport = transport
        self.retry = settings.retry
        self.budget = RetryBudget(settings.retry_budget)
        self.slots = anyio.Semaphore(settings.max_concurrency)
        self.rate = RateLimiter(settings.rate_limit) if settings.rate_limit else None
        self.parsers = settings.parsers
        self.closed = False
        # The part of every query that never changes, encoded once.
        secret = settings.secret_key
        static = (
            ("type", settings.response_format),
            ("apikey", settings.api_key),
            ("domain", settings.domain),
        )
        self._place_tail = "&" + _encode(((("secret_key", secret),) if secret else ()) + static)
        self._verify_tail = "&" + _encode(static)
        self._placecall_url = f"{settings.base_url}/phoneconfirm/placecall/?"
        self._verifycode_url = f"{settings.base_url}/phoneconfirm/verifycode/?"
        self._secrets = (settings.api_key, secret)

    def close(self) -> None:
        """Refuse further requests (the client closed its transport)."""
        self.closed = True

    # -- the operations ---------------------------------------------------------------------
    async def place(
        self,
        request: PlaceCallRequest,
        *,
        retry: RetryPolicy | None = None,
        scheduling: Params = (),
        fence: Fence | None = None,
    ) -> PlaceCallResult:
        """Place a call; ``scheduling`` holds server-side redial parameters in wire form,
        ``fence`` is awaited right before each attempt is sent."""
        # phone, country_code and code were validated to digits and letters: nothing to quote.
        query = f"phone={request.phone}&country_code={request.country_code}&code={request.code}"
        if scheduling:
            query += "&" + _encode(scheduling)
        url = self._placecall_url + query + self._place_tail
        attempt = _Attempt(self, url, request.code, unsafe=True, fence=fence)
        result: PlaceCallResult
        telemetry = self.telemetry
        if telemetry is None or not telemetry.live():
            result = PlaceCallResult.from_fields(await self._run("placecall", attempt, retry))
        else:
            seen = telemetry.request("placecall", self.transport_name, self.clock)
            seen.attempt = attempt
            with seen:
                fields = await self._run("placecall", attempt, retry, seen)
                result = seen.result = PlaceCallResult.from_fields(fields)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "placecall phone=%s status=%s transaction=%s",
                mask_phone(request.phone),
                result.status,
                result.transaction_number,
            )
        return result

    async def verify(
        self,
        request: VerifyRequest,
        *,
        retry: RetryPolicy | None = None,
        fence: Fence | None = None,
    ) -> VerifyResult:
        """Check a code against a placed call (safe to retry on any transient failure);
        ``fence`` is awaited right before each attempt is sent."""
        query = (
            f"transaction_number={quote(request.transaction_number, safe='')}&code={request.code}"
        )
        url = self._verifycode_url + query + self._verify_tail
        attempt = _Attempt(self, url, request.code, unsafe=False, fence=fence)
        result: VerifyResult
        telemetry = self.telemetry
        if telemetry is None or not telemetry.live():
            result = VerifyResult.from_fields(await self._run("verifycode", attempt, retry))
        else:
            seen = telemetry.request("verifycode", self.transport_name, self.clock)
            seen.attempt = attempt
            with seen:
                fields = await self._run("verifycode", attempt, retry, seen)
                result = seen.result = VerifyResult.from_fields(fields)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "verifycode transaction=%s status=%s", result.transaction_number, result.status
            )
        return result

    # -- one request, attempted once or more -------------------------------------------------
    async def _run(
        self,
        operation: Operation,
        attempt: _Attempt,
        retry: RetryPolicy | None,
        seen: RequestObservation | None = None,
    ) -> dict[str, Any]:
        if self.closed:
            raise RuntimeError("this PhoneConfirmClient is closed; create a new one")
        policy = retry if retry is not None else self.retry
        started = self.clock()
        deadline = started + policy.deadline
        try:
            # The first attempt runs here, the retries in the retry module: one coroutine
            # less on every request that succeeds at once.
            try:
                result = await attempt(deadline, started)
            except PhoneConfirmError as exc:
                return await retry_after_failure(
                    operation,
                    attempt,
                    policy,
                    self.budget,
                    deadline,
                    exc,
                    self.clock,
                    None if seen is None else seen.retried,
                )
            self.budget.refund()
            return result
        except PhoneConfirmError as exc:
            # Whatever machinery re-raised it, no library exception rides along.
            exc.__context__ = None
            exc.__cause__ = None
            raise

    def redact(self, text: str, code: str) -> str:
        """``text`` without the API key, the secret key, ``code`` or secret query values."""
        return redact_text(text, (*self._secrets, code))


class _Attempt:
    """One request, as the retry loop attempts it: limits, the transport, the answer.

    ``count`` is the attempts made so far and ``status`` the last one's HTTP status (0 when
    it got no answer), for telemetry.
    """

    __slots__ = ("code", "count", "engine", "fence", "status", "unsafe", "url")

    def __init__(
        self, engine: Engine, url: str, code: str, *, unsafe: bool, fence: Fence | None = None
    ) -> None:
        self.engine = engine
        self.url = url
        self.code = code
        self.unsafe = unsafe
        self.fence = fence
        self.count = 0
        self.status = 0

    async def __call__(self, deadline: float, now: float) -> dict[str, Any]:
        engine = self.engine
        self.count += 1
        self.status = 0
        slots = engine.slots
        try:
            slots.acquire_nowait()  # the request itself is the checkpoint: no task switch
        except anyio.WouldBlock:
            await slots.acquire()
            now = engine.clock()
        try:
            if engine.rate is not None:
                await engine.rate.acquire()
                now = engine.clock()
            if self.fence is not None:
                await self.fence()
                now = engine.clock()
            # The attempt is bounded by attempt_timeout or by the time left before the retry
            # deadline, whichever is shorter.
            settings = engine.settings
            bound = settings.attempt_timeout
            left = deadline - now
            if bound is None or left < bound:
                bound = max(left, 0.0)
            # tuple.__new__: the named tuple's __new__ is a Python function (once per attempt)
            request = tuple.__new__(
                TransportRequest, (self.url, settings.timeout, bound, MAX_BODY_BYTES, "GET")
            )
            try:
                response = await engine.transport.send(request)
            except TransportError as failure:
                error = self._failed(failure.sent, failure.kind, str(failure))
            except Exception as exc:  # a transport that broke its contract: assume sent
                error = self._failed(True, "network", exception_summary(exc))
            else:
                return self.interpret(response)
        finally:
            slots.release()
        raise error  # outside the except blocks: the transport's exception is not chained

    def _failed(self, sent: bool, kind: str, detail: str) -> PhoneConfirmError:
        text = self.engine.redact(detail, self.code)
        error: PhoneConfirmError = TransportError(f"request failed ({text})", sent=sent, kind=kind)
        if sent and self.unsafe:
            error = CallOutcomeUnknownError(error)
        return error

    def interpret(self, response: TransportResponse) -> dict[str, Any]:
        """The answer's fields, or the exception it stands for."""
        status = self.status = response.status
        headers = response.headers
        if status == 429:
            retry_after = parse_retry_after(headers.get("retry-after"), time.time())
            raise RateLimitedError("the service asked to slow down", retry_after=retry_after)
        parse_error: ParseError | None = None
        try:
            fields: dict[str, Any] | None = self.engine.parsers.parse(
                response.body,
                headers.get("content-type"),
                status_code=status,
                redact=self._redact,
            )
        except ParseError as exc:
            fields, parse_error = None, exc
        if fields is not None and "error" in fields:
            code = fields["error"]
            if code != 0:
                message = self._redact(str(fields.get("message") or "no message"))
                raise api_error_for(code, message, status)
            if 200 <= status < 300:
                return fields
        error: PhoneConfirmError
        if status >= 500:
            error = ServerError("server trouble, no error body", status_code=status)
        elif not 200 <= status < 300:
            # Not the service speaking (a wrong base_url?): nothing to retry.
            raise ApiError(self._unexpected(status), code=None, status_code=status)
        else:
            error = parse_error or ParseError(
                "the answer has no 'error' field", status_code=status
            )
        if self.unsafe:
            error = CallOutcomeUnknownError(error)
        raise error

    def _redact(self, text: str) -> str:
        return self.engine.redact(text, self.code)

    def _unexpected(self, status: int) -> str:
        """An HTTP error no Phone Confirm endpoint answers: name the path asked (never the
        query, which holds the key) and, for a 404, where the endpoints live."""
        path = urlsplit(self.url).path
        text = f"unexpected HTTP {status} answer from {path}"
        if status == 404:
            text += (
                ": no Phone Confirm endpoint there; the base URL ends in /services "
                "(https://www.xverify.com/services)"
            )
        return text


def _encode(params: Params) -> str:
    return "&".join(f"{name}={quote(value, safe='')}" for name, value in params)
