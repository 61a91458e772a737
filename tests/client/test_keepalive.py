"""Pooled connections and servers that close them: a connection idle for longer than the
client's bound is never written to again (the server may be closing it at that very
moment), and a request refused by a connection already closing counts as not sent."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import anyio
import pytest
from anyio.abc import SocketAttribute, SocketStream

from phoneconfirm_async import PhoneConfirmClient
from phoneconfirm_async._transports._aiohttp import classify_failure
from phoneconfirm_async._transports._seam import KEEPALIVE_EXPIRY
from tests.conftest import API_KEY, DOMAIN

pytestmark = pytest.mark.anyio

OK_BODY = b'{"r": {"error": 0, "status": "valid", "message": "ok", "transaction_number": "1"}}'
ANSWER = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
    b"Content-Length: %d\r\n\r\n" % len(OK_BODY) + OK_BODY
)


@asynccontextmanager
async def keep_alive_server() -> AsyncIterator[tuple[str, list[int]]]:
    """An HTTP/1.1 server on loopback that keeps every connection open for as long as the
    client does; yields its base URL and the number of requests on each connection."""
    connections: list[int] = []

    async def serve(stream: SocketStream) -> None:
        index = len(connections)
        connections.append(0)
        async with stream:
            buffered = b""
            try:
                while True:
                    while b"\r\n\r\n" not in buffered:
                        buffered += await stream.receive()
                    _, _, buffered = buffered.partition(b"\r\n\r\n")
                    connections[index] += 1
                    await stream.send(ANSWER)
            except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                pass

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, serve)
        yield f"http://127.0.0.1:{port}/services", connections
        tg.cancel_scope.cancel()


def test_the_bound_is_below_the_servers_own() -> None:
    """Below gunicorn's 2 s and the 5 s of uvicorn, Node.js and Apache httpd."""
    assert 0 < KEEPALIVE_EXPIRY < 2.0


async def test_a_connection_idle_past_the_bound_is_not_written_to_again(transport: str) -> None:
    """Back-to-back requests share a connection; after an idle spell longer than the bound
    the next request opens a new one (the server keeps the old one open: only the client's
    bound decides)."""
    async with keep_alive_server() as (base_url, connections):
        options: dict[str, Any] = {"transport": transport}
        client = PhoneConfirmClient(API_KEY, DOMAIN, base_url=base_url, **options)
        async with client:
            for _ in range(3):
                assert (await client.place_call("5555550123", country_code="1", code="1")).placed
            assert connections == [3]
            await anyio.sleep(KEEPALIVE_EXPIRY + 0.3)  # idle past the bound
            assert (await client.place_call("5555550123", country_code="1", code="1")).placed
    assert connections == [3, 1]


def test_a_write_refused_by_a_closing_connection_was_not_sent() -> None:
    """aiohttp refuses to write on a connection whose closing it has already seen: the
    request never left, so a placement may be sent again (on another connection). httpx
    checks a pooled connection before it writes to it instead."""
    refused = classify_failure(
        aiohttp.ClientConnectionResetError("Cannot write to closing transport")
    )
    assert (refused.sent, refused.kind) == (False, "not_written")
    lost = classify_failure(aiohttp.ClientConnectionResetError("Connection lost"))
    assert lost.sent  # after writing: it may have been received
