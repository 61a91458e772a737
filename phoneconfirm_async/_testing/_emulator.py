"""EmulatorTransport: the emulator as a transport, in process (the ``emulator`` extra)."""

from __future__ import annotations

from typing import Any, Final
from urllib.parse import unquote, urlsplit

import anyio
from starlette.types import Message

from phoneconfirm_async import (
    PhoneConfirmClient,
    TransportError,
    TransportRequest,
    TransportResponse,
)
from phoneconfirm_async.emulator import EmulatorBase, EmulatorConfig
from phoneconfirm_async.emulator._app import CONNECTION_KEY


class EmulatorTransport(EmulatorBase):
    """The emulator as a transport: requests go to its ASGI app in process, not over TCP.

    Pass it as ``PhoneConfirmClient(..., transport=EmulatorTransport(config))``, or let
    ``client`` do that with the emulator's own key and domain. ``calls``,
    ``heard_code``, ``faults`` and ``request_count`` are those of the served
    ``Emulator``.
    """

    name: Final = "emulator"
    #: The base URL ``client`` gives (``.test`` is reserved: it never resolves).
    base_url: Final = "http://phoneconfirm-emulator.test/services"

    def __init__(self, config: EmulatorConfig | None = None) -> None:
        super().__init__(config)

    def __repr__(self) -> str:
        return f"<EmulatorTransport calls={len(self.calls)}>"

    def client(self, **options: Any) -> PhoneConfirmClient:
        """A client on this transport with the emulator's first key and trusted domain.

        ``options`` are further ``PhoneConfirmClient`` arguments
        (``retry``, ``response_format``, ...). Open it with ``async with``.
        """
        options.setdefault("base_url", self.base_url)
        return PhoneConfirmClient(
            self.config.api_keys[0], self.config.trusted_domains[0], transport=self, **options
        )

    async def send(self, request: TransportRequest) -> TransportResponse:
        """Hand ``request`` to the emulator's app; a dropped connection is a
        ``TransportError(sent=True, kind="disconnected")``, as over a socket."""
        exchange = _Exchange()
        await self.app(_scope(request, exchange), exchange.receive, exchange.send)
        if exchange.dropped or not exchange.complete:
            raise TransportError(
                "the emulator dropped the connection", sent=True, kind="disconnected"
            )
        body = b"".join(exchange.body)[: request.max_body + 1]
        return TransportResponse(exchange.status, exchange.headers, body)


class _Exchange:
    """One request's ASGI conversation, and the connection faults can drop."""

    def __init__(self) -> None:
        self.status = 0
        self.headers: dict[str, str] = {}
        self.body: list[bytes] = []
        self.complete = False
        self.dropped = False
        self._request_read = False
        self._over = anyio.Event()

    async def receive(self) -> Message:
        if not self._request_read:
            self._request_read = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await self._over.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        if self.dropped:
            return
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.headers = {
                name.decode("latin-1").lower(): value.decode("latin-1")
                for name, value in message.get("headers", ())
            }
        elif message["type"] == "http.response.body":
            self.body.append(message.get("body", b""))
            if not message.get("more_body", False):
                self.complete = True
                self._over.set()

    async def hang(self, seconds: float) -> None:
        await anyio.sleep(seconds)

    def drop(self) -> None:
        self.dropped = True
        self._over.set()


def _scope(request: TransportRequest, exchange: _Exchange) -> dict[str, Any]:
    parts = urlsplit(request.url)
    host = parts.hostname or "emulator"
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": request.method,
        "scheme": parts.scheme or "http",
        "path": unquote(parts.path),
        "raw_path": parts.path.encode("ascii"),
        "query_string": parts.query.encode("ascii"),
        "root_path": "",
        "headers": [(b"host", parts.netloc.encode("ascii"))],
        "client": None,
        "server": (host, port),
        CONNECTION_KEY: exchange,
    }
