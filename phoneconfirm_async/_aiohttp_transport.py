"""The aiohttp transport: asyncio only, for throughput (imported only when chosen).

httpx 0.28's pool tops out near 450 requests/s on our 2-core machines (httpcore scans every
connection for every queued request); aiohttp on the same server does thousands per second.
An attempt is bounded by aiohttp's own ``total`` timeout, which covers connecting, sending,
the headers and the body, so the bound costs no extra timer.
"""

from __future__ import annotations

import asyncio
from typing import Final

import aiohttp
from yarl import URL

from phoneconfirm_async._errors import TransportError
from phoneconfirm_async._transport import (
    TransportRequest,
    TransportResponse,
    attempt_timed_out,
    exception_summary,
)

_NOT_SENT: tuple[tuple[type[Exception], str], ...] = (
    (aiohttp.ConnectionTimeoutError, "connect_timeout"),
    (aiohttp.ClientConnectorError, "connect"),
)
_SENT: tuple[tuple[type[Exception], str], ...] = (
    (aiohttp.ServerTimeoutError, "read_timeout"),
    (aiohttp.ServerDisconnectedError, "disconnected"),
    (aiohttp.ClientPayloadError, "disconnected"),
)
_TIMEOUT_CACHE_SIZE: Final = 16


def classify_aiohttp(exc: BaseException, attempt_timeout: float | None) -> TransportError:
    """The failure class of an aiohttp exception (anything unsure counts as sent)."""
    for cls, kind in _NOT_SENT:
        if isinstance(exc, cls):
            return TransportError(exception_summary(exc), sent=False, kind=kind)
    for cls, kind in _SENT:
        if isinstance(exc, cls):
            return TransportError(exception_summary(exc), sent=True, kind=kind)
    if type(exc) in (TimeoutError, asyncio.TimeoutError):
        # The connect and per-read timeouts have their own classes: a bare one is ``total``.
        return attempt_timed_out(attempt_timeout)
    return TransportError(exception_summary(exc), sent=True, kind="network")


class AiohttpTransport:
    """A transport over one ``aiohttp.ClientSession`` with a pool of ``max_concurrency``."""

    name: Final = "aiohttp"

    def __init__(self, max_concurrency: int) -> None:
        connector = aiohttp.TCPConnector(limit=max_concurrency, limit_per_host=0)
        self.session = aiohttp.ClientSession(
            connector=connector, auto_decompress=True, raise_for_status=False
        )
        # aiohttp silently re-sends an idempotent request once when the server drops the
        # connection (RFC 9112 section 9.3.1.1). A placecall GET is not idempotent in effect:
        # a re-send can phone the person twice, so the retry rules above the seam decide.
        # There is no public switch; the emulator test of "reset" faults guards this line.
        self.session._retry_connection = False
        self._timeouts: dict[tuple[float | None, float | None], aiohttp.ClientTimeout] = {}

    def _timeout(self, request: TransportRequest) -> aiohttp.ClientTimeout:
        key = (request.timeout, request.attempt_timeout)
        timeout = self._timeouts.get(key)
        if timeout is None:
            seconds = request.timeout
            timeout = aiohttp.ClientTimeout(
                total=request.attempt_timeout, connect=seconds, sock_read=seconds
            )
            # The bound shrinks near a retry deadline: cache only the common values.
            if len(self._timeouts) < _TIMEOUT_CACHE_SIZE:
                self._timeouts[key] = timeout
        return timeout

    async def send(self, request: TransportRequest) -> TransportResponse:
        try:
            async with self.session.request(
                request.method,
                URL(request.url, encoded=True),
                timeout=self._timeout(request),
                allow_redirects=False,
            ) as response:
                length = response.content_length
                headers = response.headers
                # Content-Length counts wire bytes: a compressed body may inflate past it.
                if (
                    length is not None
                    and length <= request.max_body
                    and "Content-Encoding" not in headers
                ):
                    body = await response.read()
                else:
                    body = await _read_capped(response.content, request.max_body)
                answer = TransportResponse(response.status, headers, body)
        except (TimeoutError, aiohttp.ClientError) as exc:
            failure = classify_aiohttp(exc, request.attempt_timeout)
        else:
            return answer
        raise failure  # outside the except block: the aiohttp exception is not chained

    async def aclose(self) -> None:
        """Close the session and its connections."""
        await self.session.close()


async def _read_capped(stream: aiohttp.StreamReader, cap: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in stream.iter_any():
        chunks.append(chunk)
        size += len(chunk)
        if size > cap:
            break
    return b"".join(chunks)[: cap + 1]
