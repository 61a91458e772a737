"""The attempt bound around a transport object the client did not build."""

from __future__ import annotations

import anyio

from phoneconfirm_async._transports._seam import (
    Transport,
    TransportRequest,
    TransportResponse,
    attempt_timed_out,
)


class BoundedTransport:
    """Runs a transport the client did not build under the attempt bound.

    Built-in transports bound an attempt natively (aiohttp's total timeout, a cancel scope
    around httpx), at no extra cost; an object passed in may not, so the client wraps it.
    """

    __slots__ = ("inner",)

    def __init__(self, inner: Transport) -> None:
        self.inner = inner

    async def send(self, request: TransportRequest) -> TransportResponse:
        with anyio.move_on_after(request.attempt_timeout):
            return await self.inner.send(request)
        raise attempt_timed_out(request.attempt_timeout)
