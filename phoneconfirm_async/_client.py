"""PhoneConfirmClient: the two operations, with limits, retries and redaction."""

from __future__ import annotations

import enum
import logging
import math
import os
from collections.abc import AsyncIterable, Iterable
from datetime import datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Literal, Self

import anyio
import httpx
from anyio.abc import TaskGroup

from phoneconfirm_async import _validation
from phoneconfirm_async._errors import (
    ConfigurationError,
    PhoneConfirmError,
)
from phoneconfirm_async._limits import RateLimiter
from phoneconfirm_async._models import (
    PlaceCallRequest,
    PlaceCallResult,
    VerifyRequest,
    VerifyResult,
)
from phoneconfirm_async._parsers import ParserRegistry
from phoneconfirm_async._redact import install_log_filters, mask_phone, redact_text
from phoneconfirm_async._request import RequestAttempt
from phoneconfirm_async._retry import (
    Operation,
    RetryBudget,
    RetryPolicy,
    call_with_retries,
)
from phoneconfirm_async._wire import (
    HttpxWire,
    ShardedHttpxWire,
    Wire,
)

if TYPE_CHECKING:
    from phoneconfirm_async._batch import BatchIterator, PlaceRow, VerifyRow
    from phoneconfirm_async._scheduler import ConfirmationScheduler

DEFAULT_BASE_URL: Final = "https://www.xverify.com/services"
ENV_API_KEY: Final = "PHONECONFIRM_API_KEY"
ENV_DOMAIN: Final = "PHONECONFIRM_DOMAIN"
ENV_BASE_URL: Final = "PHONECONFIRM_BASE_URL"
ENV_SECRET_KEY: Final = "PHONECONFIRM_SECRET_KEY"  # noqa: S105 - a variable name

TransportName = Literal["auto", "httpx", "aiohttp"]
ResponseFormat = Literal["json", "xml"]

logger = logging.getLogger("phoneconfirm_async")


class _State(enum.Enum):
    UNOPENED = "unopened"
    OPEN = "open"
    CLOSED = "closed"


def _setting(value: str | None, variable: str) -> str | None:
    if value is None:
        value = os.environ.get(variable) or None
    return value


def _running_on_asyncio() -> bool:
    import asyncio  # detection only: the client itself uses anyio primitives

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class PhoneConfirmClient:
    """An async client for the Phone Confirm service, on asyncio or trio.

    Use it as an async context manager; one client serves a whole application::

        async with PhoneConfirmClient() as client:
            placed = await client.place_call("5555550123", country_code="1", code="4821")
            result = await client.verify_code(placed.transaction_number, "4821")

    Args:
        api_key: the service key; default ``PHONECONFIRM_API_KEY``.
        domain: the domain the key is trusted for; default ``PHONECONFIRM_DOMAIN``.
        base_url: the service root; default ``PHONECONFIRM_BASE_URL``, then
            ``https://www.xverify.com/services``. ``http://`` only when given explicitly.
        response_format: ``"json"`` or ``"xml"``, the ``type`` asked of the service.
        secret_key: sent with call placements when set; default ``PHONECONFIRM_SECRET_KEY``.
        timeout: seconds for connect, pool, write and each read; None for no timeout.
        retry: the default :class:`RetryPolicy` (``RetryPolicy.none()`` turns retries off).
        retry_budget: retries the whole client may burst before successes earn them back
            (None: 100; 0: no retries at all).
        max_concurrency: requests in flight at once, across the whole client.
        rate_limit: request starts per second (token bucket), or None for no limit.
        transport: ``"auto"`` (aiohttp on asyncio when installed, else httpx), ``"httpx"`` or
            ``"aiohttp"`` (asyncio only).
        http_client: your own ``httpx.AsyncClient`` (not closed by this client).
        parsers: a :class:`ParserRegistry`; default ``ParserRegistry.default()``.

    Raises:
        ConfigurationError: a setting is missing or invalid (it names the argument or the
            environment variable).
    """

    def __init__(
        self,
        api_key: str | None = None,
        domain: str | None = None,
        *,
        base_url: str | None = None,
        response_format: ResponseFormat = "json",
        secret_key: str | None = None,
        timeout: float | None = 10.0,
        retry: RetryPolicy | None = None,
        retry_budget: int | None = None,
        max_concurrency: int = 100,
        rate_limit: float | None = None,
        transport: TransportName = "auto",
        http_client: httpx.AsyncClient | None = None,
        parsers: ParserRegistry | None = None,
    ) -> None:
        key = _setting(api_key, ENV_API_KEY)
        if not key:
            raise ConfigurationError(f"no API key: pass api_key= (--api-key) or set {ENV_API_KEY}")
        trusted_domain = _setting(domain, ENV_DOMAIN)
        if not trusted_domain:
            raise ConfigurationError(f"no domain: pass domain= (--domain) or set {ENV_DOMAIN}")
        self._api_key = key
        self._secret_key = _setting(secret_key, ENV_SECRET_KEY)
        self.domain = trusted_domain
        self.base_url = _check_base_url(_setting(base_url, ENV_BASE_URL) or DEFAULT_BASE_URL)
        if response_format not in ("json", "xml"):
            raise ConfigurationError("response_format must be 'json' or 'xml'")
        self.response_format: ResponseFormat = response_format
        if timeout is not None and not timeout > 0:
            raise ConfigurationError("timeout must be positive seconds, or None")
        self.timeout = timeout
        self.retry = retry if retry is not None else RetryPolicy()
        try:
            self._budget = RetryBudget(100 if retry_budget is None else retry_budget)
        except ValueError as exc:
            raise ConfigurationError(f"retry_budget: {exc}") from None
        if not isinstance(max_concurrency, int) or max_concurrency < 1:
            raise ConfigurationError("max_concurrency must be a whole number >= 1")
        self.max_concurrency = max_concurrency
        self.rate_limit = rate_limit
        try:
            self._rate = RateLimiter(rate_limit) if rate_limit is not None else None
        except ValueError as exc:
            raise ConfigurationError(f"rate_limit: {exc}") from None
        if transport not in ("auto", "httpx", "aiohttp"):
            raise ConfigurationError("transport must be 'auto', 'httpx' or 'aiohttp'")
        if transport == "aiohttp" and http_client is not None:
            raise ConfigurationError("http_client is an httpx client: use transport='httpx'")
        self._transport_choice: TransportName = transport
        self._http_client = http_client
        self.parsers = parsers if parsers is not None else ParserRegistry.default()
        if response_format not in self.parsers:
            raise ConfigurationError(f"parsers has no {response_format!r} parser")
        self._placecall_url = f"{self.base_url}/phoneconfirm/placecall/"
        self._verifycode_url = f"{self.base_url}/phoneconfirm/verifycode/"
        self._state = _State.UNOPENED
        self._wire: Wire | None = None
        self._background: TaskGroup | None = None
        self._slots = anyio.Semaphore(max_concurrency)
        install_log_filters()

    def __repr__(self) -> str:
        transport = self._wire.name if self._wire is not None else self._transport_choice
        return (
            f"<PhoneConfirmClient base_url={self.base_url!r} domain={self.domain!r} "
            f"transport={transport!r} {self._state.value}>"
        )

    @property
    def transport(self) -> str:
        """The wire layer in use (``"httpx"`` or ``"aiohttp"``), once the client is open."""
        if self._wire is None:
            return self._transport_choice
        return self._wire.name

    # -- lifecycle ------------------------------------------------------------------------
    async def __aenter__(self) -> Self:
        if self._state is not _State.UNOPENED:
            raise RuntimeError("a PhoneConfirmClient can be opened only once; create a new one")
        self._wire = self._open_wire()
        background = anyio.create_task_group()
        await background.__aenter__()
        self._background = background
        self._state = _State.OPEN
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self._background is not None:
                self._background.cancel_scope.cancel()
                # Exit without the block's exception: a task group would wrap it in an
                # ExceptionGroup. Batches still running are cancelled; the block's own
                # exception goes on unchanged.
                await self._background.__aexit__(None, None, None)
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        """Close the connections this client owns (a borrowed ``http_client`` stays open)."""
        if self._state is _State.CLOSED:
            return
        self._state = _State.CLOSED
        if self._wire is not None:
            with anyio.CancelScope(shield=True):
                await self._wire.aclose()

    def _open_wire(self) -> Wire:
        choice = self._transport_choice
        if self._http_client is not None:
            return HttpxWire(self._http_client)
        if choice in ("auto", "aiohttp") and _running_on_asyncio():
            try:
                from phoneconfirm_async._wire_aiohttp import AiohttpWire
            except ImportError:
                if choice == "aiohttp":
                    raise ConfigurationError(
                        "transport='aiohttp' needs the aiohttp extra: "
                        "pip install 'phoneconfirm-async[aiohttp]'"
                    ) from None
            else:
                return AiohttpWire(self.max_concurrency)
        elif choice == "aiohttp":
            raise ConfigurationError("transport='aiohttp' runs on asyncio only; use 'httpx'")
        return ShardedHttpxWire(self.max_concurrency, self.timeout)

    def _require_open(self) -> Wire:
        if self._state is _State.OPEN and self._wire is not None:
            return self._wire
        if self._state is _State.CLOSED:
            raise RuntimeError("this PhoneConfirmClient is closed; create a new one")
        raise RuntimeError(
            "this PhoneConfirmClient is not open: use 'async with PhoneConfirmClient(...) as c'"
        )

    def scheduler(
        self, *, retry: RetryPolicy | None = None, retain: float = 3600.0
    ) -> ConfirmationScheduler:
        """A local redial scheduler on this client (use it with ``async with``).

        See :class:`ConfirmationScheduler`: it places calls at ``call_place_time``, redials
        every ``redial_interval`` until verified or ``1 + redial_count`` calls were placed,
        and never sends redial arguments to the service.
        """
        from phoneconfirm_async._scheduler import ConfirmationScheduler

        return ConfirmationScheduler(self, retry=retry, retain=retain)

    def place_many(
        self,
        rows: Iterable[PlaceRow] | AsyncIterable[PlaceRow],
        *,
        concurrency: int | None = None,
        journal: str | os.PathLike[str] | None = None,
        resend_unknown: bool = False,
    ) -> BatchIterator[PlaceCallRequest, PlaceCallResult]:
        """Place a call for every row; yield one :class:`BatchItem` per row as it completes.

        Args:
            rows: a sync or async iterable of :class:`PlaceCallRequest` or mappings with
                ``phone``, ``country_code`` and ``code``; read lazily (flat memory).
            concurrency: rows in flight at once (default: the client's ``max_concurrency``).
            journal: a SQLite file recording each row; the same input with the same journal
                resumes a killed run without phoning anybody twice.
            resend_unknown: send again the rows whose placement may have gone out in an
                earlier run (off by default: they are reported with
                ``CallOutcomeUnknownError``).

        A failing row never stops the batch: its item carries the error. An error of the
        input itself (the iterable raised) or of the journal is raised by the loop.
        """
        return self._batch("place", rows, concurrency, journal, resend_unknown)

    def verify_many(
        self,
        pairs: Iterable[VerifyRow] | AsyncIterable[VerifyRow],
        *,
        concurrency: int | None = None,
        journal: str | os.PathLike[str] | None = None,
    ) -> BatchIterator[VerifyRequest, VerifyResult]:
        """Verify a code for every pair; yield one :class:`BatchItem` per pair.

        ``pairs`` holds :class:`VerifyRequest` or mappings with ``transaction_number`` and
        ``code``. Otherwise as :meth:`place_many`; verifications are safe to repeat, so a
        resumed run sends again whatever did not finish.
        """
        return self._batch("verify", pairs, concurrency, journal, False)

    def _batch(
        self,
        kind: Literal["place", "verify"],
        rows: Iterable[Any] | AsyncIterable[Any],
        concurrency: int | None,
        journal: str | os.PathLike[str] | None,
        resend_unknown: bool,
    ) -> BatchIterator[Any, Any]:
        from phoneconfirm_async._batch import run_batch

        self._require_open()
        assert self._background is not None
        if concurrency is not None and (not isinstance(concurrency, int) or concurrency < 1):
            raise ConfigurationError("concurrency must be a whole number >= 1")
        size = concurrency or self.max_concurrency
        return run_batch(kind, self, self._background, rows, size, journal, resend_unknown)

    # -- operations -----------------------------------------------------------------------
    async def place_call(
        self,
        phone: str,
        *,
        country_code: str,
        code: str,
        redial_count: int | None = None,
        redial_interval: float | timedelta | None = None,
        call_place_time: datetime | timedelta | float | None = None,
        retry: RetryPolicy | None = None,
    ) -> PlaceCallResult:
        """Ask the service to phone ``phone`` and speak ``code``: one request.

        Redial arguments given here are passed to the service, which then schedules the
        redials itself (server-side scheduling); for local scheduling use
        :meth:`scheduler`.

        Args:
            phone: the number, 4-15 digits (spaces, dashes, dots, parentheses allowed).
            country_code: 1-3 digits, a leading ``+`` allowed.
            code: the code to speak, 1-10 letters or digits.
            redial_count: redials by the service, 0-10.
            redial_interval: seconds (or a timedelta) between the service's redials.
            call_place_time: an aware datetime, or a delay (timedelta or seconds).
            retry: this call's retry policy instead of the client's.

        Returns:
            PlaceCallResult: ``placed`` is True when the call was submitted; an invalid
            status (the call failed) is a result, not an exception.

        Raises:
            ValidationError: an argument breaks its rule; nothing was sent.
            CallOutcomeUnknownError: the request failed after it was sent, so the call may
                have gone out; it is not retried unless ``retry_unsafe``.
            ApiError: the service refused (its subclasses say why).
            TransportError: the service could not be reached, after retries.
        """
        phone = _validation.phone(phone)
        country_code = _validation.country_code(country_code)
        code = _validation.code(code)
        scheduling: list[tuple[str, str]] = []
        if redial_count is not None:
            scheduling.append(("redial_count", str(_validation.redial_count(redial_count))))
        if redial_interval is not None:
            seconds = _validation.redial_interval(redial_interval)
            scheduling.append(("redial_interval", str(math.ceil(seconds))))
        if call_place_time is not None:
            when = _validation.place_time(call_place_time)
            scheduling.append(("call_place_time", _validation.place_time_wire(when)))
        return await self._place(phone, country_code, code, scheduling, retry)

    async def _place(
        self,
        phone: str,
        country_code: str,
        code: str,
        scheduling: list[tuple[str, str]],
        retry: RetryPolicy | None,
    ) -> PlaceCallResult:
        """place_call after validation (the batch engine's requests are validated already)."""
        params = [("phone", phone), ("country_code", country_code), ("code", code), *scheduling]
        if self._secret_key:
            params.append(("secret_key", self._secret_key))
        fields = await self._execute("placecall", params, code, retry, unsafe=True)
        result: PlaceCallResult = PlaceCallResult.from_fields(fields)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "placecall phone=%s status=%s transaction=%s",
                mask_phone(phone),
                result.status,
                result.transaction_number,
            )
        return result

    async def verify_code(
        self, transaction_number: str | None, code: str, *, retry: RetryPolicy | None = None
    ) -> VerifyResult:
        """Check the code the person typed against a placed call. Safe to retry.

        ``transaction_number`` is typically ``placed.transaction_number`` (typed optional
        because a refused placement has none; None is a ValidationError).

        Returns:
            VerifyResult: ``verified`` is True when the code matched; a wrong code is a
            result (status ``invalid``), not an exception.

        Raises:
            ValidationError: an argument breaks its rule; nothing was sent.
            InvalidRequestError: the transaction number is unknown (error 5), or malformed.
            ApiError: the service refused (its subclasses say why).
            TransportError: the service could not be reached, after retries.
        """
        return await self._verify(
            _validation.transaction_number(transaction_number), _validation.code(code), retry
        )

    async def _verify(
        self, transaction_number: str, code: str, retry: RetryPolicy | None
    ) -> VerifyResult:
        """verify_code after validation."""
        params = [("transaction_number", transaction_number), ("code", code)]
        fields = await self._execute("verifycode", params, code, retry, unsafe=False)
        result: VerifyResult = VerifyResult.from_fields(fields)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "verifycode transaction=%s status=%s", result.transaction_number, result.status
            )
        return result

    # -- the request path -----------------------------------------------------------------
    async def _execute(
        self,
        operation: Operation,
        params: list[tuple[str, str]],
        code: str,
        retry: RetryPolicy | None,
        *,
        unsafe: bool,
    ) -> dict[str, Any]:
        wire = self._require_open()
        params += [
            ("type", self.response_format),
            ("apikey", self._api_key),
            ("domain", self.domain),
        ]
        url = self._placecall_url if operation == "placecall" else self._verifycode_url
        request = RequestAttempt(self, wire, url, tuple(params), code, unsafe)
        policy = retry if retry is not None else self.retry
        try:
            return await call_with_retries(operation, request.attempt, policy, self._budget)
        except PhoneConfirmError as exc:
            # Whatever machinery re-raised it, no library exception rides along.
            exc.__context__ = None
            exc.__cause__ = None
            raise

    def _redact(self, text: str, code: str) -> str:
        return redact_text(text, (self._api_key, self._secret_key, code))


def _check_base_url(url: str) -> str:
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        parsed = None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
        raise ConfigurationError(
            f"base_url (or {ENV_BASE_URL}) must be an http:// or https:// URL with a host"
        )
    if parsed.query or parsed.fragment:
        raise ConfigurationError("base_url must not carry a query string or fragment")
    return url.rstrip("/")
