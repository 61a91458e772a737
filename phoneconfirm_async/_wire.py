"""The wire-layer seam: send one GET, get status, headers and body back.

Each wire layer maps its HTTP library's exceptions onto one classification, the one the retry
rules need: the request was never sent (the connection was never made), or it was sent and
no usable answer came back. Everything above this seam (errors, redaction, retries) is shared.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Protocol, cast

import httpx

from phoneconfirm_async._parsers import MAX_BODY_BYTES

Params = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class WireResponse:
    """An answer: status, the two headers the client reads, and the body.

    A body longer than the parser's limit is cut at one byte past it; the parser refuses it.
    """

    status: int
    content_type: str | None
    retry_after: str | None
    body: bytes


class WireFailure(Exception):
    """A request that got no answer. Internal: the client turns it into a TransportError.

    ``detail`` is the library's exception type and text (the client redacts it); the library
    exception itself is not chained, since its text may hold the full URL.
    """

    def __init__(self, detail: str, *, sent: bool, kind: str) -> None:
        super().__init__(detail)
        self.detail = detail
        self.sent = sent
        self.kind = kind


class Wire(Protocol):
    """What the client needs from an HTTP library."""

    name: str

    async def get(self, url: str, params: Params, timeout: float | None) -> WireResponse:
        """Send a GET; raise WireFailure when no answer came back."""
        ...

    async def aclose(self) -> None:
        """Release connections the layer owns."""
        ...


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


_HTTPX_NOT_SENT: tuple[tuple[type[Exception], str], ...] = (
    (httpx.ConnectTimeout, "connect_timeout"),
    (httpx.PoolTimeout, "pool_timeout"),
    (httpx.ConnectError, "connect"),
)
_HTTPX_SENT: tuple[tuple[type[Exception], str], ...] = (
    (httpx.ReadTimeout, "read_timeout"),
    (httpx.WriteTimeout, "write_timeout"),
    (httpx.RemoteProtocolError, "disconnected"),
)


def classify_httpx(exc: httpx.HTTPError) -> WireFailure:
    """The failure class of an httpx exception (anything unsure counts as sent)."""
    for cls, kind in _HTTPX_NOT_SENT:
        if isinstance(exc, cls):
            return WireFailure(_describe(exc), sent=False, kind=kind)
    for cls, kind in _HTTPX_SENT:
        if isinstance(exc, cls):
            return WireFailure(_describe(exc), sent=True, kind=kind)
    return WireFailure(_describe(exc), sent=True, kind="network")


class HttpxWire:
    """The default wire layer, on any anyio backend."""

    name = "httpx"

    def __init__(self, client: httpx.AsyncClient, *, owned: bool) -> None:
        self.client = client
        self.owned = owned

    async def get(self, url: str, params: Params, timeout: float | None) -> WireResponse:
        try:
            request = self.client.build_request("GET", url, params=params, timeout=timeout)
            response = await self.client.send(request, stream=True)
            try:
                body = await _read_capped(response)
            finally:
                await response.aclose()
        except httpx.HTTPError as exc:
            failure = classify_httpx(exc)
        else:
            headers = response.headers
            return WireResponse(
                response.status_code,
                headers.get("content-type"),
                headers.get("retry-after"),
                body,
            )
        raise failure  # outside the except block: the httpx exception is not chained

    async def aclose(self) -> None:
        if self.owned:
            await self.client.aclose()


async def _read_capped(response: httpx.Response) -> bytes:
    length = response.headers.get("content-length", "")
    if length.isdigit() and int(length) <= MAX_BODY_BYTES:
        return await response.aread()
    chunks: list[bytes] = []
    size = 0
    # aiter_bytes is an async generator: close it when we stop early.
    chunk_stream = cast("AsyncGenerator[bytes, None]", response.aiter_bytes())
    async with contextlib.aclosing(chunk_stream) as stream:
        async for chunk in stream:
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                break
    return b"".join(chunks)[: MAX_BODY_BYTES + 1]


def owned_httpx_client(max_concurrency: int, timeout: float | None) -> httpx.AsyncClient:
    """An httpx client whose pool is sized to the client's concurrency limit."""
    limits = httpx.Limits(
        max_connections=max_concurrency, max_keepalive_connections=max_concurrency
    )
    return httpx.AsyncClient(limits=limits, timeout=timeout)
