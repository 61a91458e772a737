"""The aiohttp transport: asyncio only, for throughput (imported only when chosen).

httpx's pool saturates a core at a few hundred requests a second (httpcore scans every
connection for every queued request); aiohttp's keeps up far beyond (the measured figures
are in the docs' explanation, "Where the numbers come from").
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Mapping
from typing import Final

import aiohttp
from yarl import URL

from phoneconfirm_async._errors import TransportError
from phoneconfirm_async._parsers import MAX_BODY_BYTES
from phoneconfirm_async._transports._seam import (
    KEEPALIVE_EXPIRY,
    NOT_WRITTEN,
    Classes,
    TransportRequest,
    TransportResponse,
    attempt_timed_out,
    classify,
    exception_summary,
)

_MAX_PREFIXES: Final = 64
_CAP_DIGITS: Final = len(str(MAX_BODY_BYTES))
_NOT_SENT: Classes = (
    (aiohttp.ConnectionTimeoutError, "connect_timeout"),
    (aiohttp.ClientConnectorError, "connect"),
)
_SENT: Classes = (
    (aiohttp.ServerTimeoutError, "read_timeout"),
    (aiohttp.ServerDisconnectedError, "disconnected"),
    (aiohttp.ClientPayloadError, "disconnected"),
)


def _under(length: str, cap: int) -> bool:
    """Whether a Content-Length (digits: aiohttp's parser checked it) is at most ``cap``."""
    if cap == MAX_BODY_BYTES and len(length) < _CAP_DIGITS:
        return True  # fewer digits than the default cap: under it, without int()
    return int(length) <= cap


def _response(fields: tuple[int, Mapping[str, str], bytes]) -> TransportResponse:
    """A TransportResponse made by ``tuple.__new__``: the named tuple's own ``__new__`` is a
    Python function, and one response is made per request."""
    return tuple.__new__(TransportResponse, fields)


class _Watch:
    """One attempt in flight, as the deadline keeper sees it."""

    __slots__ = ("deadline", "done", "fired", "task")

    def __init__(self, deadline: float, task: asyncio.Task[object]) -> None:
        self.deadline = deadline
        self.task = task
        self.done = False
        self.fired = False


class _Deadlines:
    """The attempt bound of every request in flight, on one loop timer.

    aiohttp's ``total`` timeout (or ``asyncio.timeout``) arms a timer per request and
    aiohttp wraps each read in a timer context: a large share of what the library adds to a
    bare aiohttp GET (measured: see the docs' explanation of the numbers). Attempts start
    in order and nearly all share one bound, so their deadlines come in order: they wait in
    a queue, one timer is armed at the oldest one's deadline and re-armed when it fires. An attempt
    still running at its deadline has its task cancelled, as ``asyncio.timeout`` does; an
    attempt whose deadline would come before the newest one's (a bound shrunk by the retry
    deadline) uses ``asyncio.timeout`` instead.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._queue: deque[_Watch] = deque()
        self._timer: asyncio.TimerHandle | None = None

    def watch(self, seconds: float) -> _Watch | None:
        """Start watching the current task's attempt; None when it must use its own timer."""
        loop = self._loop
        deadline = loop.time() + seconds
        queue = self._queue
        if queue and deadline < queue[-1].deadline:
            return None
        task = asyncio.current_task(loop)
        assert task is not None
        watch = _Watch(deadline, task)
        queue.append(watch)
        if self._timer is None:
            self._timer = loop.call_at(deadline, self._fire, loop)
        return watch

    def drop_finished(self) -> None:
        """Forget the attempts at the head of the queue that are over (``done``)."""
        queue = self._queue
        while queue and queue[0].done:
            queue.popleft()

    def _fire(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        now = loop.time()
        queue = self._queue
        while queue and (queue[0].done or queue[0].deadline <= now):
            watch = queue.popleft()
            if not watch.done:
                watch.fired = True
                watch.task.cancel()
        if queue:
            self._timer = loop.call_at(queue[0].deadline, self._fire, loop)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class AiohttpTransport:
    """A transport over one ``aiohttp.ClientSession`` with a pool of ``max_concurrency``."""

    name: Final = "aiohttp"

    def __init__(
        self, max_concurrency: int, *, keepalive_expiry: float = KEEPALIVE_EXPIRY
    ) -> None:
        connector = aiohttp.TCPConnector(
            limit=max_concurrency, limit_per_host=0, keepalive_timeout=keepalive_expiry
        )
        self.session = aiohttp.ClientSession(
            connector=connector, auto_decompress=True, raise_for_status=False
        )
        # aiohttp silently re-sends an idempotent request once when the server drops the
        # connection (RFC 9112 section 9.3.1.1). A placecall GET is not idempotent in effect:
        # a re-send can phone the person twice, so the retry rules above the seam decide.
        # There is no public switch; the emulator test of "reset" faults guards this line.
        self.session._retry_connection = False
        self._timeouts: dict[float | None, aiohttp.ClientTimeout] = {}
        # Made in the running loop (the client opens it there), whose clock and tasks it uses.
        self._deadlines = _Deadlines(asyncio.get_running_loop())
        self._prefixes: dict[str, tuple[str, str, str]] = {}

    def _url(self, url: str) -> URL:
        """``url`` as a yarl URL, cheaply: the part before the query (scheme, authority,
        path) is split once per endpoint, and the query is used as already encoded.

        ``URL(url, encoded=True)`` splits the whole string on every request (and caches
        each distinct one, and every query is distinct): several times the cost of this.
        """
        prefix, _, query = url.partition("?")
        parts = self._prefixes.get(prefix)
        if parts is None:
            parsed = URL(prefix, encoded=True)
            parts = (parsed.scheme, parsed.raw_authority, parsed.raw_path)
            if len(self._prefixes) < _MAX_PREFIXES:
                self._prefixes[prefix] = parts
        scheme, authority, path = parts
        return URL.build(
            scheme=scheme, authority=authority, path=path, query_string=query, encoded=True
        )

    def _timeout(self, seconds: float | None) -> aiohttp.ClientTimeout:
        timeout = self._timeouts.get(seconds)
        if timeout is None:
            timeout = aiohttp.ClientTimeout(total=None, connect=seconds, sock_read=seconds)
            self._timeouts[seconds] = timeout
        return timeout

    async def send(self, request: TransportRequest) -> TransportResponse:
        bound = request.attempt_timeout
        watch = None
        if bound is not None:
            watch = self._deadlines.watch(bound)
            if watch is None:
                return await self._send_on_own_timer(request, bound)
        timeout = self._timeouts.get(request.timeout) or self._timeout(request.timeout)
        try:
            async with self.session.request(
                request.method, self._url(request.url), timeout=timeout, allow_redirects=False
            ) as response:
                headers = response.headers
                length = headers.get("Content-Length")
                # Content-Length counts wire bytes: a compressed body may inflate past it. A
                # length with fewer digits than the cap is under it (no int() per answer).
                if (
                    length is not None
                    and (
                        len(length) < len(str(request.max_body)) or int(length) <= request.max_body
                    )
                    and "Content-Encoding" not in headers
                ):
                    body = await response.read()
                else:
                    body = await _read_capped(response.content, request.max_body)
                answer = _response((response.status, headers, body))
        except (TimeoutError, aiohttp.ClientError) as exc:
            failure = classify_failure(exc)
        except asyncio.CancelledError:
            # Ours and nobody else's: the attempt outlived its bound.
            if watch is not None and watch.fired and watch.task.uncancel() == 0:
                raise attempt_timed_out(bound) from None
            raise
        else:
            return answer
        finally:
            if watch is not None:
                watch.done = True
                self._deadlines.drop_finished()
        raise failure  # outside the except block: the aiohttp exception is not chained

    async def _send_on_own_timer(
        self, request: TransportRequest, bound: float
    ) -> TransportResponse:
        try:
            async with asyncio.timeout(bound):
                return await self.send(request._replace(attempt_timeout=None))
        except TimeoutError:
            raise attempt_timed_out(bound) from None

    async def aclose(self) -> None:
        """Close the session and its connections."""
        self._deadlines.close()
        await self.session.close()


#: What aiohttp says when the connection closed before a byte of the request was written
#: (its writer checks the transport first); any other text is taken as sent.
_CLOSED_BEFORE_WRITING: Final = "Cannot write to closing transport"


def classify_failure(exc: BaseException) -> TransportError:
    """aiohttp's failure as a TransportError; a request that was refused by a connection
    already closing (a pooled one the server had just closed) was never sent."""
    if isinstance(exc, aiohttp.ClientConnectionResetError) and str(exc) == (
        _CLOSED_BEFORE_WRITING
    ):
        return TransportError(exception_summary(exc), sent=False, kind=NOT_WRITTEN)
    return classify(exc, _NOT_SENT, _SENT)


async def _read_capped(stream: aiohttp.StreamReader, cap: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in stream.iter_any():
        chunks.append(chunk)
        size += len(chunk)
        if size > cap:
            break
    return b"".join(chunks)[: cap + 1]
