"""One request's attempts: limits, the wire call, and what the answer means.

An attempt takes a slot of the client's concurrency limit, then a rate-limiter slot, calls
the wire layer, and turns the outcome into the normalized fields or the exception the retry
rules act on: a failure after a placement was sent becomes ``CallOutcomeUnknownError``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import anyio

from phoneconfirm_async._errors import (
    ApiError,
    CallOutcomeUnknownError,
    ParseError,
    PhoneConfirmError,
    RateLimitedError,
    ServerError,
    TransportError,
    api_error_for,
)
from phoneconfirm_async._retry import parse_retry_after
from phoneconfirm_async._wire import Params, Wire, WireFailure, WireResponse

if TYPE_CHECKING:
    from phoneconfirm_async._client import PhoneConfirmClient


class RequestAttempt:
    """One operation's request, attempted once or more by the retry loop."""

    __slots__ = ("client", "code", "params", "unsafe", "url", "wire")

    def __init__(
        self,
        client: PhoneConfirmClient,
        wire: Wire,
        url: str,
        params: Params,
        code: str,
        unsafe: bool,
    ) -> None:
        self.client = client
        self.wire = wire
        self.url = url
        self.params = params
        self.code = code
        self.unsafe = unsafe

    async def attempt(self) -> dict[str, Any]:
        client = self.client
        slots = client._slots
        try:
            slots.acquire_nowait()  # the request itself is the checkpoint: no task switch
        except anyio.WouldBlock:
            await slots.acquire()
        try:
            if client._rate is not None:
                await client._rate.acquire()
            try:
                response = await self.wire.get(self.url, self.params, client.timeout)
            except WireFailure as failure:
                detail = client._redact(failure.detail, self.code)
                error: PhoneConfirmError = TransportError(
                    f"request failed ({detail})", sent=failure.sent, kind=failure.kind
                )
                if failure.sent and self.unsafe:
                    error = CallOutcomeUnknownError(error)
            else:
                return self.interpret(response)
        finally:
            slots.release()
        raise error

    def interpret(self, response: WireResponse) -> dict[str, Any]:
        """The answer's fields, or the exception it stands for."""
        status = response.status
        if status == 429:
            retry_after = parse_retry_after(response.retry_after, time.time())
            raise RateLimitedError("the service asked to slow down", retry_after=retry_after)
        parse_error: ParseError | None = None
        try:
            fields: dict[str, Any] | None = self.client.parsers.parse(
                response.body,
                response.content_type,
                status_code=status,
                redact=lambda text: self.client._redact(text, self.code),
            )
        except ParseError as exc:
            fields, parse_error = None, exc
        if fields is not None and "error" in fields:
            code = fields["error"]
            if code != 0:
                message = self.client._redact(
                    str(fields.get("message") or "no message"), self.code
                )
                raise api_error_for(code, message, status)
            if 200 <= status < 300:
                return fields
        error: PhoneConfirmError
        if status >= 500:
            error = ServerError("server trouble, no error body", status_code=status)
        elif not 200 <= status < 300:
            error = ApiError(f"unexpected HTTP {status} answer", code=None, status_code=status)
            raise error  # not the service speaking (a wrong base_url?): nothing to retry
        else:
            error = parse_error or ParseError(
                "the answer has no 'error' field", status_code=status
            )
        if self.unsafe:
            error = CallOutcomeUnknownError(error)
        raise error
