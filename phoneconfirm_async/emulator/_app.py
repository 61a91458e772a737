"""The emulator's Starlette application: the two endpoints, the call log and the faults."""

from __future__ import annotations

import time
from typing import Any, Final, Protocol

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from phoneconfirm_async.emulator._protocol import (
    Answer,
    Endpoint,
    ProtocolError,
    authorize,
    read_place_params,
    read_verify_params,
    render,
    requested_format,
    single_values,
)
from phoneconfirm_async.emulator._state import EmulatorState, Fault

#: The scope key under which the server puts the request's ``Connection``.
CONNECTION_KEY: Final = "phoneconfirm.connection"
_HTML_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>"
    b"<body><h1>Bad Gateway</h1><p>The upstream server is unavailable.</p></body></html>\n"
)


class Connection(Protocol):
    """What connection faults need of whatever carries the request: ASGI has no way to
    drop a connection, so the server (a socket, or ``phoneconfirm_async.testing``'s
    in-process transport) puts one of these in the scope under ``CONNECTION_KEY``."""

    async def hang(self, seconds: float) -> None:
        """Hold the request for ``seconds``, or until the server stops."""
        ...

    def drop(self) -> None:
        """Break the connection now: the client sees it closed, whatever was sent."""
        ...


def _connection(scope: Scope) -> Connection:
    connection = scope.get(CONNECTION_KEY)
    if connection is None:  # pragma: no cover - only on a server other than ours
        raise RuntimeError("connection faults need the emulator's own server or transport")
    return connection  # type: ignore[no-any-return]


class _ConnectionFault(Response):
    """A 'response' that breaks the connection: reset, hang, or a body cut short."""

    def __init__(self, kind: str, body: bytes, hang_seconds: float) -> None:
        super().__init__()
        self.kind = kind
        self.full_body = body
        self.hang_seconds = hang_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        connection = _connection(scope)
        if self.kind == "hang":
            await connection.hang(self.hang_seconds)
        elif self.kind == "truncated":
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(self.full_body)).encode()),
                    ],
                }
            )
            half = self.full_body[: len(self.full_body) // 2]
            await send({"type": "http.response.body", "body": half, "more_body": True})
        connection.drop()
        # Wait until the server has seen the connection go, so it does not try to answer.
        while (await receive())["type"] != "http.disconnect":
            pass


class EmulatorApp:
    """ASGI entry point: the Starlette app of the two endpoints and the call log."""

    def __init__(self, state: EmulatorState) -> None:
        self.state = state
        routes = []
        for path, endpoint in (("placecall", self.placecall), ("verifycode", self.verifycode)):
            routes.append(Route(f"/services/phoneconfirm/{path}/", endpoint))
            routes.append(Route(f"/services/phoneconfirm/{path}", endpoint))
        routes.append(Route("/_emulator/calls", self.call_log))
        self.starlette: ASGIApp = Starlette(routes=routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.starlette(scope, receive, send)

    async def call_log(self, request: Request) -> Response:
        calls = [
            {
                "phone": call.phone,
                "country_code": call.country_code,
                "transaction_number": call.transaction_number,
                "at": call.at,
            }
            for call in self.state.calls
        ]
        return JSONResponse({"calls": calls})

    async def placecall(self, request: Request) -> Response:
        return await self._handle(request, "placecall")

    async def verifycode(self, request: Request) -> Response:
        return await self._handle(request, "verifycode")

    async def _handle(self, request: Request, endpoint: Endpoint) -> Response:
        started = time.perf_counter()
        config = self.state.config
        fault = self.state.draw_fault(endpoint)
        if config.latency:
            await anyio.sleep(config.latency)
        params = request.query_params.multi_items()
        fmt, format_error = requested_format(params)
        if fault is not None and fault.phase == "before":
            return self._fault_response(fault, b"")
        try:
            if format_error is not None:
                raise format_error
            values = single_values(params, len(request.scope["query_string"]))
            authorize(values, config.api_keys, config.trusted_domains)
            answer = self._place(values) if endpoint == "placecall" else self._verify(values)
        except ProtocolError as exc:
            answer = Answer(exc.code, "invalid", exc.message, http_status=exc.http_status)
        body, content_type = render(endpoint, fmt, answer, time.perf_counter() - started)
        if fault is not None:  # struck after the work was done: the answer is lost
            return self._fault_response(fault, body)
        return Response(body, status_code=answer.http_status, media_type=content_type)

    def _place(self, values: dict[str, str]) -> Answer:
        config = self.state.config
        place = read_place_params(values, config.uncallable_numbers)
        record = self.state.record_call(place.phone, place.country_code, place.code, values)
        if place.phone in config.failing_numbers:
            return Answer(0, "invalid", "call failed", record.transaction_number)
        return Answer(0, "valid", "call placed", record.transaction_number)

    def _verify(self, values: dict[str, str]) -> Answer:
        transaction_number, code = read_verify_params(values)
        matched = self.state.verify(transaction_number, code)
        if matched is None:
            raise ProtocolError(5, "transaction number unknown")
        if matched:
            return Answer(0, "valid", "code verified", transaction_number)
        return Answer(0, "invalid", "code does not match", transaction_number)

    def _fault_response(self, fault: Fault, body: bytes) -> Response:
        kind = fault.kind
        if kind == "http_500":
            return Response(b"Internal Server Error", 500, media_type="text/plain")
        if kind == "http_503":
            return Response(b"Service Unavailable", 503, media_type="text/plain")
        if kind == "http_429":
            headers: dict[str, Any] = {"Retry-After": str(self.state.config.retry_after)}
            return Response(b"Too Many Requests", 429, headers, media_type="text/plain")
        if kind == "html":
            return Response(_HTML_PAGE, 502, media_type="text/html")
        # reset, hang, truncated: the connection itself breaks.
        body = (
            body or b'{"phoneconfirm": {"error": 0, "status": "valid", "message": "call placed"}}'
        )
        return _ConnectionFault(kind, body, self.state.config.hang_seconds)
