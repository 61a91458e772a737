"""The aiohttp wire layer: asyncio only, for throughput (imported only when chosen).

httpx 0.28's pool tops out near 450 requests/s on our 2-core machines (httpcore scans every
connection for every queued request); aiohttp on the same server does thousands per second.
"""

from __future__ import annotations

import asyncio

import aiohttp

from phoneconfirm_async._parsers import MAX_BODY_BYTES
from phoneconfirm_async._wire import Params, WireFailure, WireResponse, _describe

_NOT_SENT: tuple[tuple[type[Exception], str], ...] = (
    (aiohttp.ConnectionTimeoutError, "connect_timeout"),
    (aiohttp.ClientConnectorError, "connect"),
)
_SENT: tuple[tuple[type[Exception], str], ...] = (
    (aiohttp.ServerTimeoutError, "read_timeout"),
    (asyncio.TimeoutError, "read_timeout"),
    (aiohttp.ServerDisconnectedError, "disconnected"),
    (aiohttp.ClientPayloadError, "disconnected"),
)


def classify_aiohttp(exc: BaseException) -> WireFailure:
    """The failure class of an aiohttp exception (anything unsure counts as sent)."""
    for cls, kind in _NOT_SENT:
        if isinstance(exc, cls):
            return WireFailure(_describe(exc), sent=False, kind=kind)
    for cls, kind in _SENT:
        if isinstance(exc, cls):
            return WireFailure(_describe(exc), sent=True, kind=kind)
    return WireFailure(_describe(exc), sent=True, kind="network")


class AiohttpWire:
    """A wire layer over one ``aiohttp.ClientSession`` with a pool of ``max_concurrency``."""

    name = "aiohttp"

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
        self._timeouts: dict[float | None, aiohttp.ClientTimeout] = {}

    def _timeout(self, seconds: float | None) -> aiohttp.ClientTimeout:
        timeout = self._timeouts.get(seconds)
        if timeout is None:
            timeout = aiohttp.ClientTimeout(total=None, connect=seconds, sock_read=seconds)
            self._timeouts[seconds] = timeout
        return timeout

    async def get(self, url: str, params: Params, timeout: float | None) -> WireResponse:
        try:
            async with self.session.get(
                url, params=params, timeout=self._timeout(timeout), allow_redirects=False
            ) as response:
                length = response.content_length
                if length is not None and length <= MAX_BODY_BYTES:
                    body = await response.read()
                else:
                    body = await _read_capped(response.content)
                headers = response.headers
                answer = WireResponse(
                    response.status,
                    headers.get("Content-Type"),
                    headers.get("Retry-After"),
                    body,
                )
        except (TimeoutError, aiohttp.ClientError) as exc:
            failure = classify_aiohttp(exc)
        else:
            return answer
        raise failure  # outside the except block: the aiohttp exception is not chained

    async def aclose(self) -> None:
        await self.session.close()


async def _read_capped(stream: aiohttp.StreamReader) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in stream.iter_any():
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            break
    return b"".join(chunks)[: MAX_BODY_BYTES + 1]
