"""MockTransport: a transport that answers with a function of yours (core install only)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final

import anyio.lowlevel

from phoneconfirm_async._client import PhoneConfirmClient
from phoneconfirm_async._errors import ConfigurationError
from phoneconfirm_async._transports._seam import TransportRequest, TransportResponse

#: What a handler may be: a function, or an async function, of the request.
Handler = Callable[[TransportRequest], TransportResponse | Awaitable[TransportResponse]]


class MockTransport:
    """A ``Transport`` whose answers come from ``handler``: no server, no socket, no extra.

    ``handler(request)`` returns a ``TransportResponse`` (or an awaitable of one), or
    raises ``TransportError`` (``sent=False`` for a request that never left). Every request
    is kept in ``requests``, in order. ``request.url`` holds the query string, key and code
    included: assert on it in a test, never print it where logs are kept.

        def handler(request):
            return TransportResponse(200, {"content-type": "application/json"},
                                     b'{"status": "valid", "transaction_number": "t1", ...}')

        transport = MockTransport(handler)
        async with PhoneConfirmClient("key", "example.com", transport=transport) as client:
            ...
        assert len(transport.requests) == 1
    """

    name: Final = "mock"

    def __init__(self, handler: Handler) -> None:
        if not callable(handler):
            raise ConfigurationError("handler must be a function of the request")
        self.handler = handler
        #: Every request sent, in order.
        self.requests: list[TransportRequest] = []

    def __repr__(self) -> str:
        return f"<MockTransport requests={len(self.requests)}>"

    async def send(self, request: TransportRequest) -> TransportResponse:
        self.requests.append(request)
        answer = self.handler(request)
        if isinstance(answer, TransportResponse):
            await anyio.lowlevel.checkpoint()  # as a real request would: a task switch
            return answer
        return await answer

    def client(
        self, api_key: str = "test-key", domain: str = "example.com", **options: Any
    ) -> PhoneConfirmClient:
        """A client on this transport (open it with ``async with``); ``options`` are further
        ``PhoneConfirmClient`` arguments."""
        return PhoneConfirmClient(api_key, domain, transport=self, **options)
