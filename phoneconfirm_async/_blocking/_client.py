"""``SyncPhoneConfirmClient``: the client for code that does not ``await`` (Django, Flask,
Celery, scripts), over the same async core."""

from __future__ import annotations

import functools
import os
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, ClassVar

from phoneconfirm_async._batch import (
    BatchItem,
    BatchIterator,
    PlaceRow,
    RequestT,
    ResultT,
    VerifyRow,
)
from phoneconfirm_async._blocking._loop import Closable, LoopThread
from phoneconfirm_async._blocking._scheduler import SyncConfirmationScheduler
from phoneconfirm_async._client import DEFAULT_ATTEMPT_TIMEOUT, PhoneConfirmClient, ResponseFormat
from phoneconfirm_async._models import (
    PlaceCallRequest,
    PlaceCallResult,
    VerifyRequest,
    VerifyResult,
)
from phoneconfirm_async._parsers import ParserRegistry
from phoneconfirm_async._policy import ConfirmationPolicy
from phoneconfirm_async._retry import RetryPolicy
from phoneconfirm_async._scheduler import DEFAULT_POLICY, DEFAULT_RETAIN
from phoneconfirm_async._stores._protocol import SessionStore
from phoneconfirm_async._transports._choice import TransportName
from phoneconfirm_async._transports._seam import Transport

if TYPE_CHECKING:
    import httpx
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider


class SyncPhoneConfirmClient(Closable):
    """The blocking client: ``PhoneConfirmClient`` for code that does not ``await``.

    Django views, Flask, Celery tasks and scripts call it directly; every thread of a
    process may share one (gunicorn ``--threads``, Django's request threads):

        with SyncPhoneConfirmClient() as client:
            placed = client.place_call("5555550123", country_code="1", code="4821")
            result = client.verify_code(placed.transaction_number, "4821")

    It takes ``PhoneConfirmClient``'s arguments and gives its results and errors: it runs
    one ``PhoneConfirmClient`` on one asyncio event loop in a background thread of its
    own (started here, stopped by ``close``), through anyio's blocking portal. The
    connection pool, limits and retries are that client's, shared by every thread.

    - Open from construction; ``close()`` (or leaving ``with``) closes it, stops the loop
      and joins its thread. One never closed is closed when the interpreter exits.
    - Called from a thread that runs an event loop it raises ``RuntimeError``: use
      ``PhoneConfirmClient`` there.
    - Created before a fork, it raises ``RuntimeError`` in the child: create it in the
      process that uses it (under ``gunicorn --preload``, in ``post_fork`` or lazily).
    - A ``KeyboardInterrupt`` (or any exception) in a waiting thread cancels its request
      in the loop.

    Args:
        api_key: as for ``PhoneConfirmClient``, and every other argument too.

    Raises:
        ConfigurationError: a setting is missing or invalid; no thread was started.
    """

    #: The environment variable each setting falls back to when it is not given.
    env_vars: ClassVar = PhoneConfirmClient.env_vars

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
        client = PhoneConfirmClient(  # its checks run here, before any thread starts
            api_key,
            domain,
            base_url=base_url,
            response_format=response_format,
            secret_key=secret_key,
            timeout=timeout,
            attempt_timeout=attempt_timeout,
            retry=retry,
            retry_budget=retry_budget,
            max_concurrency=max_concurrency,
            rate_limit=rate_limit,
            transport=transport,
            http_client=http_client,
            parsers=parsers,
            telemetry=telemetry,
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
        )
        self.domain = client.domain
        self.base_url = client.base_url
        self._loop = LoopThread(type(self).__name__)
        try:
            self._client, _ = self._loop.enter(client)
        except BaseException:
            self._loop.stop()
            raise
        # At exit, or once nothing refers to the client: the loop never outlives it.
        self._closer = weakref.finalize(self, self._loop.stop)

    def __repr__(self) -> str:
        state = "closed" if self._loop.stopped else "open"
        return (
            f"<SyncPhoneConfirmClient base_url={self.base_url!r} domain={self.domain!r} "
            f"transport={self.transport!r} {state}>"
        )

    @property
    def transport(self) -> str:
        """The transport's name, as ``PhoneConfirmClient.transport``."""
        return self._client.transport

    # -- lifetime -------------------------------------------------------------------------
    def close(self) -> None:
        """Close the schedulers opened here and the client, stop the event loop and join
        its thread. Calls still waiting in other threads raise ``RuntimeError``. In a
        process forked after the client was created it only refuses further calls."""
        self._closer()

    # -- operations -----------------------------------------------------------------------
    def place_call(
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
        """``PhoneConfirmClient.place_call``, blocking: its arguments, result and errors."""
        return self._loop.call(
            functools.partial(
                self._client.place_call,
                phone,
                country_code=country_code,
                code=code,
                redial_count=redial_count,
                redial_interval=redial_interval,
                call_place_time=call_place_time,
                retry=retry,
            )
        )

    def verify_code(
        self, transaction_number: str | None, code: str, *, retry: RetryPolicy | None = None
    ) -> VerifyResult:
        """``PhoneConfirmClient.verify_code``, blocking: its arguments, result and errors."""
        return self._loop.call(
            functools.partial(self._client.verify_code, transaction_number, code, retry=retry)
        )

    def place_many(
        self,
        rows: Iterable[PlaceRow],
        *,
        concurrency: int | None = None,
        journal: str | os.PathLike[str] | None = None,
        resend_unknown: bool = False,
    ) -> Generator[BatchItem[PlaceCallRequest, PlaceCallResult], None, None]:
        """``PhoneConfirmClient.place_many``, blocking: an iterator of ``BatchItem``.

        The batch runs in the loop thread, ``concurrency`` rows at once, while this thread
        reads the items as they complete. ``rows`` is read in the loop thread, lazily.
        Leaving the loop early: close the iterator (``contextlib.closing``, or drop it),
        which cancels the rows still in flight.
        """
        return self._items(
            functools.partial(
                self._client.place_many,
                rows,
                concurrency=concurrency,
                journal=journal,
                resend_unknown=resend_unknown,
            )
        )

    def verify_many(
        self,
        pairs: Iterable[VerifyRow],
        *,
        concurrency: int | None = None,
        journal: str | os.PathLike[str] | None = None,
    ) -> Generator[BatchItem[VerifyRequest, VerifyResult], None, None]:
        """``PhoneConfirmClient.verify_many``, blocking: an iterator of ``BatchItem``, as
        ``place_many``."""
        return self._items(
            functools.partial(
                self._client.verify_many, pairs, concurrency=concurrency, journal=journal
            )
        )

    def _items(
        self, start: Callable[[], BatchIterator[RequestT, ResultT]]
    ) -> Generator[BatchItem[RequestT, ResultT], None, None]:
        # The batch is made in the loop (its channel and events belong there), now: a bad
        # argument is raised here, not at the first item.
        batch = self._loop.call(_in_loop(start))
        return _read(self._loop, batch)

    def scheduler(
        self,
        *,
        store: SessionStore | None = None,
        retry: RetryPolicy | None = None,
        retain: float = DEFAULT_RETAIN,
        drive: bool = True,
        policy: ConfirmationPolicy | None = DEFAULT_POLICY,
    ) -> SyncConfirmationScheduler:
        """``PhoneConfirmClient.scheduler``, blocking and open: see
        ``SyncConfirmationScheduler``. Use it with ``with``, or keep it for the process's
        life (``close()``, or the client's, closes it)."""
        scheduler = self._client.scheduler(
            store=store, retry=retry, retain=retain, drive=drive, policy=policy
        )
        return SyncConfirmationScheduler(self._loop, scheduler, self)


def _in_loop(
    start: Callable[[], BatchIterator[RequestT, ResultT]],
) -> Callable[[], Awaitable[BatchIterator[RequestT, ResultT]]]:
    async def made() -> BatchIterator[RequestT, ResultT]:
        return start()

    return made


def _read(
    loop: LoopThread, batch: BatchIterator[RequestT, ResultT]
) -> Generator[BatchItem[RequestT, ResultT], None, None]:
    """The batch's items, each fetched from the loop; closing stops the batch."""
    items: AsyncIterator[BatchItem[RequestT, ResultT]] = batch.__aiter__()
    done = False
    try:
        while True:
            try:
                item = loop.call(items.__anext__)
            except StopAsyncIteration:
                done = True
                return
            yield item
    finally:
        if not done and not loop.stopped and not loop.forked:
            loop.call(batch.aclose)
