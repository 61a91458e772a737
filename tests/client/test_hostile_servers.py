"""Hostile servers over raw TCP (the reliability bar): each ends in a library error, within
``attempt_timeout``, in bounded memory, on both transports and both backends."""

from __future__ import annotations

import functools
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest
from anyio.abc import SocketAttribute, SocketStream

from phoneconfirm_async import (
    ApiError,
    CallOutcomeUnknownError,
    ParseError,
    PhoneConfirmClient,
    RetryPolicy,
    TransportError,
)
from tests.conftest import API_KEY, DOMAIN

pytestmark = pytest.mark.anyio

Handler = Callable[[SocketStream], Awaitable[None]]
DRIP_EVERY = 0.3
OK_BODY = b'{"r": {"error": 0, "status": "valid", "message": "ok", "transaction_number": "1"}}'


async def read_request(stream: SocketStream) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        data += await stream.receive()
    return data


@asynccontextmanager
async def raw_server(handler: Handler) -> AsyncIterator[str]:
    """A TCP server on loopback that answers each connection with ``handler``; yields the
    base URL. Leaving the block stops it."""

    async def serve(stream: SocketStream) -> None:
        async with stream:
            try:
                await read_request(stream)
                await handler(stream)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                pass  # the client gave up: that is the point

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, serve)
        yield f"http://127.0.0.1:{port}/services"
        tg.cancel_scope.cancel()


def client_on(base_url: str, transport: str, **options: Any) -> PhoneConfirmClient:
    options.setdefault("retry", RetryPolicy.none())
    return PhoneConfirmClient(
        API_KEY,
        DOMAIN,
        base_url=base_url,
        transport=transport,  # type: ignore[arg-type]
        **options,
    )


async def drip(stream: SocketStream, data: bytes) -> None:
    for byte in data:
        await stream.send(bytes([byte]))
        await anyio.sleep(DRIP_EVERY)


async def drip_headers(stream: SocketStream) -> None:
    await drip(stream, b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" + b"X: y" * 99)


async def drip_body(stream: SocketStream) -> None:
    await stream.send(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
    await stream.send(b"Content-Length: %d\r\n\r\n" % len(OK_BODY))
    await drip(stream, OK_BODY)


@pytest.mark.parametrize("handler", [drip_headers, drip_body], ids=["headers", "body"])
@pytest.mark.parametrize("operation", ["place", "verify"])
async def test_a_dripping_server_cannot_hold_an_attempt(
    transport: str, handler: Handler, operation: str
) -> None:
    """Bytes dripped every 0.3 s (each read is quick): attempt_timeout=2 ends it within 3 s.

    A verification fails with TransportError(kind="attempt_timeout"); a placement, counted
    as sent, with CallOutcomeUnknownError.
    """
    async with (
        raw_server(handler) as base_url,
        client_on(base_url, transport, timeout=1, attempt_timeout=2) as client,
    ):

        async def attempt() -> object:
            if operation == "place":
                return await client.place_call("5555550123", country_code="1", code="4821")
            return await client.verify_code("123", "4821")

        started = anyio.current_time()
        with pytest.raises((TransportError, CallOutcomeUnknownError)) as caught:
            await attempt()
        elapsed = anyio.current_time() - started
    error = caught.value
    if operation == "place":
        assert isinstance(error, CallOutcomeUnknownError)
        error = error.cause
    assert isinstance(error, TransportError)
    assert (error.kind, error.sent) == ("attempt_timeout", True)
    assert 1.5 < elapsed < 3.0


async def test_the_retry_deadline_bounds_an_attempt_in_flight(transport: str) -> None:
    """A deadline shorter than attempt_timeout ends the attempt at the deadline."""
    policy = RetryPolicy(max_attempts=3, deadline=1.0, initial_wait=0)
    async with (
        raw_server(drip_body) as base_url,
        client_on(base_url, transport, timeout=1, attempt_timeout=30, retry=policy) as client,
    ):
        started = anyio.current_time()
        with pytest.raises(TransportError) as caught:
            await client.verify_code("123", "4821")
        elapsed = anyio.current_time() - started
    assert caught.value.kind == "attempt_timeout"
    assert elapsed < 2.0


@functools.cache
def bomb(encoding: str) -> bytes:
    """400 MB of zeros, compressed (about 400 KB)."""
    wbits = 16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS
    compressor = zlib.compressobj(9, zlib.DEFLATED, wbits)
    zeros = bytes(1 << 20)
    return b"".join([compressor.compress(zeros) for _ in range(400)] + [compressor.flush()])


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_a_decompression_bomb_is_refused_in_bounded_memory(
    transport: str, encoding: str
) -> None:
    """A body that inflates to 400 MB is cut at the 1 MiB cap: ParseError, memory flat."""
    body = bomb(encoding)

    async def answer(stream: SocketStream) -> None:
        await stream.send(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            + f"Content-Encoding: {encoding}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )

    async with raw_server(answer) as base_url, client_on(base_url, transport) as client:
        tracemalloc.start()
        try:
            with pytest.raises(ParseError, match="larger than"):
                await client.verify_code("123", "4821")
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert peak < 40e6


async def huge_headers(stream: SocketStream) -> None:
    await stream.send(b"HTTP/1.1 200 OK\r\n")
    for _ in range(2048):  # 2 MiB of headers
        await stream.send(b"X-Filler: " + b"a" * 1014 + b"\r\n")


async def garbage_status(stream: SocketStream) -> None:
    await stream.send(b"\x16\x03\x01 this is not HTTP at all\r\n\r\n")


async def lying_length(stream: SocketStream) -> None:
    await stream.send(b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n" + OK_BODY[:10])


@pytest.mark.parametrize(
    "handler", [huge_headers, garbage_status, lying_length], ids=["huge", "garbage", "length"]
)
async def test_a_broken_answer_is_a_transport_error(transport: str, handler: Handler) -> None:
    """Huge headers, a garbage status line or a lying Content-Length: TransportError, sent."""
    async with (
        raw_server(handler) as base_url,
        client_on(base_url, transport, attempt_timeout=5) as client,
    ):
        with pytest.raises(TransportError) as caught:
            await client.verify_code("123", "4821")
    assert caught.value.sent
    assert caught.value.kind != "attempt_timeout"  # failed on its own, not by the bound


async def test_a_redirect_is_never_followed(transport: str) -> None:
    """A redirect to another host is an ApiError; nothing reaches the other host."""
    reached_elsewhere: list[bytes] = []

    async def elsewhere(stream: SocketStream) -> None:
        reached_elsewhere.append(b"request")
        await stream.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(OK_BODY))
        await stream.send(OK_BODY)

    async with raw_server(elsewhere) as other_url:

        async def redirect(stream: SocketStream) -> None:
            location = f"{other_url}/phoneconfirm/placecall/".encode()
            await stream.send(
                b"HTTP/1.1 302 Found\r\nLocation: " + location + b"\r\nContent-Length: 0\r\n\r\n"
            )

        async with raw_server(redirect) as base_url, client_on(base_url, transport) as client:
            with pytest.raises(ApiError) as caught:
                await client.place_call("5555550123", country_code="1", code="4821")
    assert caught.value.status_code == 302
    assert reached_elsewhere == []


async def test_a_borrowed_client_does_not_follow_redirects_either() -> None:
    """An http_client built with follow_redirects=True is still not let follow one."""

    async def redirect(stream: SocketStream) -> None:
        await stream.send(
            b"HTTP/1.1 307 Temporary Redirect\r\nLocation: http://127.0.0.1:9/elsewhere\r\n"
            b"Content-Length: 0\r\n\r\n"
        )

    async with (
        raw_server(redirect) as base_url,
        httpx.AsyncClient(follow_redirects=True) as http,
        PhoneConfirmClient(
            API_KEY, DOMAIN, base_url=base_url, http_client=http, retry=RetryPolicy.none()
        ) as client,
    ):
        with pytest.raises(ApiError) as caught:
            await client.verify_code("123", "4821")
    assert caught.value.status_code == 307


async def test_a_shorter_bound_behind_a_longer_one_ends_on_time(transport: str) -> None:
    """Attempts in flight with different bounds each end at their own (the aiohttp
    transport keeps bounds in start order, so a shorter one behind a longer one counts)."""
    short = RetryPolicy(max_attempts=1, deadline=1.0)
    async with (
        raw_server(drip_body) as base_url,
        client_on(base_url, transport, timeout=1, attempt_timeout=3) as client,
    ):
        ended: dict[str, float] = {}
        started = anyio.current_time()

        async def verify(name: str, policy: RetryPolicy) -> None:
            with pytest.raises(TransportError):
                await client.verify_code("123", "4821", retry=policy)
            ended[name] = anyio.current_time() - started

        async with anyio.create_task_group() as tg:
            tg.start_soon(verify, "long", RetryPolicy.none())
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(verify, "short", short)
    assert ended["short"] < 2.0 < ended["long"] < 4.0
