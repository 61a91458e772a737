"""The httpx transports: over a caller's ``httpx.AsyncClient``, or over pools the client owns.

Both run on any anyio backend. httpx has no timeout for a whole request, so an attempt runs
in a cancel scope of ``attempt_timeout``. The pools the client owns reuse an idle connection
for ``KEEPALIVE_EXPIRY`` seconds at most; before reusing one, httpcore also checks that the
server has not closed it.
"""

from __future__ import annotations

import contextlib
import ssl
import zlib
from collections.abc import AsyncIterator, Callable
from typing import Final

import anyio
import httpx

from phoneconfirm_async._transports._seam import (
    KEEPALIVE_EXPIRY,
    Classes,
    TransportRequest,
    TransportResponse,
    attempt_timed_out,
    classify,
)

#: Only the encodings ``_read_capped`` inflates in bounded memory (not br or zstd).
_HEADERS: Final = {"accept-encoding": "gzip, deflate"}
_NOT_SENT: Classes = (
    (httpx.ConnectTimeout, "connect_timeout"),
    (httpx.PoolTimeout, "pool_timeout"),
    (httpx.ConnectError, "connect"),
)
_SENT: Classes = (
    (httpx.ReadTimeout, "read_timeout"),
    (httpx.WriteTimeout, "write_timeout"),
    (httpx.RemoteProtocolError, "disconnected"),
)


async def _send(client: httpx.AsyncClient, request: TransportRequest) -> TransportResponse:
    with anyio.move_on_after(request.attempt_timeout):
        try:
            outgoing = client.build_request(
                request.method, request.url, headers=_HEADERS, timeout=request.timeout
            )
            # A borrowed client may follow redirects: never here (a redirect could send the
            # key and code to another host).
            response = await client.send(outgoing, stream=True, follow_redirects=False)
            try:
                body = await _read_capped(response, request.max_body)
            finally:
                await response.aclose()
        except httpx.HTTPError as exc:
            failure = classify(exc, _NOT_SENT, _SENT)
        else:
            return TransportResponse(response.status_code, response.headers, body)
        raise failure  # outside the except block: the httpx exception is not chained
    raise attempt_timed_out(request.attempt_timeout)


class HttpxTransport:
    """The httpx transport over a caller's ``httpx.AsyncClient`` (never closed here)."""

    name: Final = "httpx"

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def send(self, request: TransportRequest) -> TransportResponse:
        return await _send(self.client, request)


class PooledHttpxTransport:
    """The default transport on any anyio backend: many small httpx pools.

    httpcore's pool does work proportional to its connections for every request, which
    saturates a core at a few hundred requests per second with 100-200 connections. The
    same connections split into pools of two cost a fraction of that (measured: see the
    docs' explanation of the numbers). A request takes a free pool slot (LIFO, so sequential
    use keeps one warm connection); the client's concurrency limit guarantees one is free.
    Pools are created on first use and share one SSL context.
    """

    name: Final = "httpx"
    shard_size: Final = 2

    def __init__(
        self,
        max_concurrency: int,
        timeout: float | None,
        *,
        keepalive_expiry: float = KEEPALIVE_EXPIRY,
    ) -> None:
        shards = -(-max_concurrency // self.shard_size)
        self._timeout = timeout
        self.keepalive_expiry = keepalive_expiry
        self._clients: list[httpx.AsyncClient | None] = [None] * shards
        # Each pool appears once per connection it may hold; the last pool is used first.
        self._free = [i for i in reversed(range(shards)) for _ in range(self.shard_size)]
        self._ssl_context: ssl.SSLContext | None = None

    def _client(self, index: int) -> httpx.AsyncClient:
        client = self._clients[index]
        if client is None:
            if self._ssl_context is None:
                self._ssl_context = httpx.create_ssl_context()
            limits = httpx.Limits(
                max_connections=self.shard_size,
                max_keepalive_connections=self.shard_size,
                keepalive_expiry=self.keepalive_expiry,
            )
            client = httpx.AsyncClient(
                limits=limits, timeout=self._timeout, verify=self._ssl_context
            )
            self._clients[index] = client
        return client

    async def send(self, request: TransportRequest) -> TransportResponse:
        free = self._free
        index = free.pop() if free else -1  # none free: more callers than the limit
        try:
            return await _send(self._client(max(index, 0)), request)
        finally:
            if index >= 0:
                free.append(index)

    async def aclose(self) -> None:
        """Close every pool."""
        for client in self._clients:
            if client is not None:
                await client.aclose()


async def _read_capped(response: httpx.Response, cap: int) -> bytes:
    """The body, decompressed, cut at one byte past ``cap``, in bounded memory.

    httpx inflates each network chunk whole: a 64 KiB chunk of a gzip bomb becomes 64 MiB.
    So the raw bytes are read and inflated here with zlib's ``max_length``, which stops at
    the cap whatever the ratio.
    """
    headers = response.headers
    encoding = headers.get("content-encoding", "identity").strip().lower()
    length = headers.get("content-length", "")
    small = encoding == "identity" and length.isdigit() and int(length) <= cap
    if small or response.is_stream_consumed:  # consumed: an answer built in memory (mocks)
        return (await response.aread())[: cap + 1]
    inflate = _inflater(encoding)
    chunks: list[bytes] = []
    size = 0
    raw = response.aiter_raw()
    try:
        async for data in raw:
            chunk = inflate(data, cap + 1 - size) if inflate is not None else data
            chunks.append(chunk)
            size += len(chunk)
            if size > cap:
                break
    finally:
        await _finish(response, raw)
    return b"".join(chunks)[: cap + 1]


async def _finish(response: httpx.Response, raw: AsyncIterator[bytes]) -> None:
    """Close the response, then run its byte stream to its end.

    Leaving httpx's stream early leaves httpx's and httpcore's nested async generators
    suspended, and trio warns when they are collected (encode/httpx#3686). Once the
    connection is closed, the stream ends at once (or fails), and every generator with it.
    """
    await response.aclose()
    with contextlib.suppress(httpx.HTTPError, anyio.ClosedResourceError, StopAsyncIteration):
        async for _ in raw:
            pass


def _inflater(encoding: str) -> Callable[[bytes, int], bytes] | None:
    """A bounded decompressor for ``encoding`` (None: pass the bytes through).

    An encoding we did not ask for is passed through undecoded: the parser refuses it.
    """
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress
    if encoding == "deflate":
        return _Deflate().decompress
    return None


class _Deflate:
    """HTTP 'deflate': zlib-wrapped as the RFC says, or raw deflate as some servers send."""

    def __init__(self) -> None:
        self._inflate = zlib.decompressobj(zlib.MAX_WBITS)
        self._started = False

    def decompress(self, data: bytes, max_length: int) -> bytes:
        if not self._started:
            self._started = True
            try:
                return self._inflate.decompress(data, max_length)
            except zlib.error:
                self._inflate = zlib.decompressobj(-zlib.MAX_WBITS)
        return self._inflate.decompress(data, max_length)
