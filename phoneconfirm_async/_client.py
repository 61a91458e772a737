"""PhoneConfirmClient: settings, lifetime, and the doors to the operations, the scheduler
and batches. Requests themselves run in the engine (``_engine``)."""

from __future__ import annotations

import contextlib
import enum
import math
import os
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar, Final, Literal, Self
from urllib.parse import urlsplit

import anyio
from anyio.abc import TaskGroup

from phoneconfirm_async import _validation
from phoneconfirm_async._batch import BatchIterator, PlaceRow, VerifyRow, run_batch
from phoneconfirm_async._client_settings import ENV_VARS, engine_settings, open_telemetry
from phoneconfirm_async._engine import Engine, Fence, Params
from phoneconfirm_async._errors import ConfigurationError
from phoneconfirm_async._lifetime import background_tasks
from phoneconfirm_async._models import (
    Operation,
    PlaceCallRequest,
    PlaceCallResult,
    VerifyRequest,
    VerifyResult,
)
from phoneconfirm_async._parsers import ParserRegistry
from phoneconfirm_async._policy import ConfirmationPolicy
from phoneconfirm_async._redact import install_log_filters
from phoneconfirm_async._retry import RetryPolicy
from phoneconfirm_async._scheduler import DEFAULT_POLICY, DEFAULT_RETAIN, ConfirmationScheduler
from phoneconfirm_async._stores._protocol import SessionStore
from phoneconfirm_async._transports._choice import (
    Closable,
    TransportName,
    check_transport,
    open_transport,
)
from phoneconfirm_async._transports._seam import Transport

if TYPE_CHECKING:
    import httpx  # imported when the httpx transport is used: a slow import
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider

    from phoneconfirm_async._telemetry import Telemetry


DEFAULT_ATTEMPT_TIMEOUT: Final = 30.0

ResponseFormat = Literal["json", "xml"]


class _State(enum.Enum):
    UNOPENED = "unopened"
    OPEN = "open"
    CLOSED = "closed"


class PhoneConfirmClient(anyio.AsyncContextManagerMixin):
    """An async client for the Phone Confirm service, on asyncio or trio.

    Use it as an async context manager; one client serves a whole application:

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
        attempt_timeout: seconds one whole attempt (connect, send, headers, body) may take;
            None for no bound. Past it the attempt is a ``TransportError`` with
            ``kind="attempt_timeout"``, counted as sent. The retry policy's ``deadline``
            also bounds an attempt in flight.
        retry: the default ``RetryPolicy`` (``RetryPolicy.none()`` turns retries off).
        retry_budget: retries the whole client may burst before successes earn them back
            (None: 100; 0: no retries at all).
        max_concurrency: requests in flight at once, across the whole client.
        rate_limit: request starts per second (token bucket), or None for no limit.
        transport: ``"auto"`` (aiohttp on asyncio when installed, else httpx), ``"httpx"``,
            ``"aiohttp"`` (asyncio only), or an object implementing ``Transport``
            (used as given, never closed by the client).
        http_client: your own ``httpx.AsyncClient`` (not closed by this client).
        parsers: a ``ParserRegistry``; default ``ParserRegistry.default()``.
        telemetry: OpenTelemetry traces and metrics: True on (needs the ``otel`` extra),
            False off, None (default) on exactly when ``opentelemetry-api`` is installed.
            Without an SDK configured the API records nothing, at a cost of microseconds.
        tracer_provider: the ``TracerProvider`` spans go to; default OpenTelemetry's
            global one (looked up at each span, so one set later is used).
        meter_provider: the ``MeterProvider`` of the metrics; default the global one.

    Raises:
        ConfigurationError: a setting is missing or invalid (it names the argument or the
            environment variable).
    """

    #: The environment variable each setting falls back to when it is not given.
    env_vars: ClassVar[Mapping[str, str]] = MappingProxyType(ENV_VARS)

    def __init__(
        self,
        api_key: str | None = None,
        domain: str | None = None,
        *,
        base_url: str | None = None,
        response_format: ResponseFormat = "json",
        secret_key: str | None = None,
        timeout: float | None = 10.0,
        attempt_timeout: float | None = DEFAULT_ATTEMPT_TIMEOUT,
        retry: RetryPolicy | None = None,
        retry_budget: int | None = None,
        max_concurrency: int = 100,
        rate_limit: float | None = None,
        transport: TransportName | Transport = "auto",
        http_client: httpx.AsyncClient | None = None,
        parsers: ParserRegistry | None = None,
        telemetry: bool | None = None,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        self._settings = engine_settings(
            {name: os.environ.get(variable) or None for name, variable in self.env_vars.items()},
            api_key=api_key,
            domain=domain,
            base_url=base_url,
            response_format=response_format,
            secret_key=secret_key,
            timeout=timeout,
            attempt_timeout=attempt_timeout,
            retry=retry,
            retry_budget=retry_budget,
            max_concurrency=max_concurrency,
            rate_limit=rate_limit,
            parsers=parsers,
        )
        self._api_key = self._settings.api_key
        self.domain = self._settings.domain
        self.base_url = self._settings.base_url
        self.response_format: ResponseFormat = response_format
        self.timeout = self._settings.timeout
        self.attempt_timeout = self._settings.attempt_timeout
        self.retry = self._settings.retry
        self.max_concurrency = self._settings.max_concurrency
        self.rate_limit = self._settings.rate_limit
        self.parsers = self._settings.parsers
        self._transport_choice = check_transport(transport, http_client)
        self._http_client = http_client
        self._telemetry = open_telemetry(
            telemetry, tracer_provider, meter_provider, urlsplit(self.base_url).hostname or ""
        )
        self._state = _State.UNOPENED
        self._engine: Engine | None = None
        self._tasks: TaskGroup | None = None
        self._owned: Closable | None = None
        self._transport_name = (
            transport if isinstance(transport, str) else getattr(transport, "name", None)
        ) or type(transport).__name__
        install_log_filters()

    def __repr__(self) -> str:
        return (
            f"<PhoneConfirmClient base_url={self.base_url!r} domain={self.domain!r} "
            f"transport={self.transport!r} {self._state.value}>"
        )

    @property
    def telemetry(self) -> Telemetry | None:
        """The OpenTelemetry tracer and instruments this client, its schedulers and its
        batches report through; None when telemetry is off."""
        return self._telemetry

    @property
    def transport(self) -> str:
        """The transport's name: ``"httpx"`` or ``"aiohttp"`` once open (``"auto"`` before),
        or the ``name`` (else the class name) of a transport object."""
        return self._transport_name

    # -- lifetime -------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def __asynccontextmanager__(self) -> AsyncIterator[Self]:
        if self._state is not _State.UNOPENED:
            raise RuntimeError("a PhoneConfirmClient can be opened only once; create a new one")
        opened = open_transport(
            self._transport_choice, self._http_client, self.max_concurrency, self.timeout
        )
        transport, self._owned = opened.transport, opened.owned
        if opened.name is not None:
            self._transport_name = opened.name
        self._engine = Engine(
            self._settings,
            transport,
            telemetry=self._telemetry,
            transport_name=self._transport_name,
        )
        self._state = _State.OPEN
        try:
            # Batches run here: leaving the block cancels the ones still running.
            async with background_tasks() as tasks:
                self._tasks = tasks
                yield self
        finally:
            self._tasks = None
            await self.aclose()

    async def aclose(self) -> None:
        """Refuse further requests and close the connections this client owns (a borrowed
        ``http_client`` or a transport object stays open). Leaving the block does this."""
        self._state = _State.CLOSED
        if self._engine is not None:
            self._engine.close()
        owned, self._owned = self._owned, None
        if owned is not None:
            with anyio.CancelScope(shield=True):
                await owned.aclose()

    def _require_open(self) -> Engine:
        if self._state is _State.OPEN and self._engine is not None:
            return self._engine
        if self._state is _State.CLOSED:
            raise RuntimeError("this PhoneConfirmClient is closed; create a new one")
        raise RuntimeError(
            "this PhoneConfirmClient is not open: use 'async with PhoneConfirmClient(...) as c'"
        )

    # -- doors ----------------------------------------------------------------------------
    def scheduler(
        self,
        *,
        store: SessionStore | None = None,
        retry: RetryPolicy | None = None,
        retain: float = DEFAULT_RETAIN,
        drive: bool = True,
        policy: ConfirmationPolicy | None = DEFAULT_POLICY,
    ) -> ConfirmationScheduler:
        """A local redial scheduler on this client (use it with ``async with``).

        See ``ConfirmationScheduler``: it places calls at ``call_place_time``, redials
        every ``redial_interval`` until verified or ``1 + redial_count`` calls were placed,
        and never sends redial arguments to the service. ``store`` is where its sessions
        live (default: this process's memory); it holds at most ``max_concurrency`` calls.
        ``policy`` limits checks, code lifetime and throttles (default: every limit on).
        """
        return ConfirmationScheduler(
            self,
            store=store,
            retry=retry,
            retain=retain,
            concurrency=self.max_concurrency,
            drive=drive,
            policy=policy,
        )

    def place_many(
        self,
        rows: Iterable[PlaceRow] | AsyncIterable[PlaceRow],
        *,
        concurrency: int | None = None,
        journal: str | os.PathLike[str] | None = None,
        resend_unknown: bool = False,
    ) -> BatchIterator[PlaceCallRequest, PlaceCallResult]:
        """Place a call for every row; yield one ``BatchItem`` per row as it completes.

        Args:
            rows: a sync or async iterable of ``PlaceCallRequest`` or mappings with
                ``phone``, ``country_code`` and ``code``; read lazily (flat memory).
            concurrency: rows in flight at once (default: the client's ``max_concurrency``).
            journal: a SQLite file recording each row; the same input with the same journal
                resumes a killed run without phoning anybody twice.
            resend_unknown: send again the rows whose placement may have gone out in an
                earlier run (off by default: they are reported with
                ``CallOutcomeUnknownError``).

        The batch starts when the loop (or ``async with``) does and runs in the client's
        task group. Leaving an ``async with`` block around it cancels it, rows in flight
        included; so does leaving the client's block. A failing row never stops the batch:
        its item carries the error. An error of the input itself (the iterable raised) or
        of the journal is raised by the loop.
        """
        return self._batch("placecall", rows, concurrency, journal, resend_unknown)

    def verify_many(
        self,
        pairs: Iterable[VerifyRow] | AsyncIterable[VerifyRow],
        *,
        concurrency: int | None = None,
        journal: str | os.PathLike[str] | None = None,
    ) -> BatchIterator[VerifyRequest, VerifyResult]:
        """Verify a code for every pair; yield one ``BatchItem`` per pair.

        ``pairs`` holds ``VerifyRequest`` or mappings with ``transaction_number`` and
        ``code``. Otherwise as ``place_many``; verifications are safe to repeat, so a
        resumed run sends again whatever did not finish.
        """
        return self._batch("verifycode", pairs, concurrency, journal, False)

    def _batch(
        self,
        operation: Operation,
        rows: Iterable[Any] | AsyncIterable[Any],
        concurrency: int | None,
        journal: str | os.PathLike[str] | None,
        resend_unknown: bool,
    ) -> BatchIterator[Any, Any]:
        engine = self._require_open()
        assert self._tasks is not None
        if concurrency is not None and (not isinstance(concurrency, int) or concurrency < 1):
            raise ConfigurationError("concurrency must be a whole number >= 1")
        return run_batch(
            operation,
            engine,
            self._tasks,
            rows,
            concurrency=concurrency or self.max_concurrency,
            journal=journal,
            journal_key=self._api_key,
            resend_unknown=resend_unknown,
        )

    # -- operations -----------------------------------------------------------------------
    async def place_call(
        self,
        phone: str,
        *,
        country_code: str | None = None,
        code: str,
        redial_count: int | None = None,
        redial_interval: float | timedelta | None = None,
        call_place_time: datetime | timedelta | float | None = None,
        retry: RetryPolicy | None = None,
    ) -> PlaceCallResult:
        """Ask the service to phone ``phone`` and speak ``code``: one request.

        Redial arguments given here are passed to the service, which then schedules the
        redials itself (server-side scheduling); for local scheduling use
        ``scheduler``.

        Args:
            phone: the national number, 4-15 digits (spaces, dashes, dots, parentheses
                allowed), or with the ``numbers`` extra an international one
                (``+15555550123``), checked as possible for its country.
            country_code: 1-3 digits, a leading ``+`` allowed; optional for an
                international ``phone``.
            code: the code to speak, 1-10 letters or digits (spaces and dashes removed).
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
        request = PlaceCallRequest(phone, country_code, code)
        scheduling: Params = ()
        if redial_count is not None or redial_interval is not None or call_place_time is not None:
            scheduling = _server_side_redials(redial_count, redial_interval, call_place_time)
        return await self._require_open().place(request, retry=retry, scheduling=scheduling)

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
        request = VerifyRequest(transaction_number, code)  # type: ignore[arg-type]
        return await self._require_open().verify(request, retry=retry)

    async def place(
        self,
        request: PlaceCallRequest,
        *,
        retry: RetryPolicy | None = None,
        fence: Fence | None = None,
    ) -> PlaceCallResult:
        """``place_call`` for a request built already (validated when it was made).

        ``fence``: an async callable awaited immediately before each attempt's request
        leaves (after the concurrency and rate limits let it go); whatever it raises stops
        the placement with nothing sent and goes out unchanged. The scheduler fences a
        claimed call with its lease.
        """
        return await self._require_open().place(request, retry=retry, fence=fence)

    async def verify(
        self,
        request: VerifyRequest,
        *,
        retry: RetryPolicy | None = None,
        fence: Fence | None = None,
    ) -> VerifyResult:
        """``verify_code`` for a request built already (validated when it was made);
        ``fence`` as for ``place``. The scheduler fences a check to know whether its
        verification attempt was used."""
        return await self._require_open().verify(request, retry=retry, fence=fence)


def _server_side_redials(
    redial_count: int | None,
    redial_interval: float | timedelta | None,
    call_place_time: datetime | timedelta | float | None,
) -> Params:
    """The redial arguments ``place_call`` passes to the service, in wire form."""
    params: list[tuple[str, str]] = []
    if redial_count is not None:
        params.append(("redial_count", str(_validation.redial_count(redial_count))))
    if redial_interval is not None:
        seconds = _validation.redial_interval(redial_interval)
        params.append(("redial_interval", str(math.ceil(seconds))))
    if call_place_time is not None:
        when = _validation.place_time(call_place_time)
        params.append(("call_place_time", _validation.place_time_wire(when)))
    return tuple(params)
