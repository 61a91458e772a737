"""The transport seam: one GET in, status, headers and a capped body out.

A transport is any object with an async ``send(request)`` method (the shape of httpx's
``AsyncBaseTransport``). The strings ``"httpx"`` and ``"aiohttp"`` given to
``PhoneConfirmClient(transport=...)`` are shortcuts to the built-in ones; an object is used
as given (``phoneconfirm_async.testing.EmulatorTransport`` is one).

A failure is a ``TransportError`` whose ``sent`` says whether the request may have
reached the service: that is what keeps a call placement from being sent twice. Everything
above the seam (redaction, classification of answers, retries, limits) is shared.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, NamedTuple, Protocol, runtime_checkable

from phoneconfirm_async._errors import TransportError
from phoneconfirm_async._parsers import MAX_BODY_BYTES

#: ``TransportError.kind`` of an attempt that outlasted ``attempt_timeout`` or the deadline.
ATTEMPT_TIMEOUT: Final = "attempt_timeout"
#: ``TransportError.kind`` of a request that failed before its headers were written whole:
#: the service cannot have acted on it (``sent=False``).
NOT_WRITTEN: Final = "not_written"
#: Seconds a pooled connection may sit idle and still be reused by the built-in transports.
#: Servers close idle connections on their own clock: uvicorn, hypercorn, Node.js and
#: Apache httpd after 5 s, gunicorn's threaded and async workers after 2 s. A request
#: written just as the server closes is lost before the server read it, yet the client
#: cannot tell it from one the server received: for a placement, an unknown outcome and a
#: redial spent for nothing. Below every such default, with room for the network's delay,
#: the client is the one that closes first. (httpx's own default is 5 s, aiohttp's 15 s.)
KEEPALIVE_EXPIRY: Final = 1.5


class TransportRequest(NamedTuple):
    """One GET to send (an immutable record: made for every attempt, so made cheaply).

    Attributes:
        url: the whole URL, its query string already encoded. It carries the API key and
            the code: never log it or put it in an exception unredacted (the ``repr``
            leaves it out).
        timeout: seconds for connecting and for each read or write; None for none.
        attempt_timeout: seconds the whole attempt (connect, send, headers, body) may take;
            None for no bound. Past it, end with ``TransportError(kind="attempt_timeout",
            sent=True)``. The client also enforces it around transports it did not build.
        max_body: the body cap in bytes. Return at most ``max_body + 1`` bytes; the parser
            refuses a body longer than the cap, so reading on is wasted (and a compressed
            body may inflate without end).
        method: always ``"GET"`` for this service.
    """

    url: str
    timeout: float | None
    attempt_timeout: float | None
    max_body: int = MAX_BODY_BYTES
    method: str = "GET"

    def __repr__(self) -> str:
        return (
            f"TransportRequest(method={self.method!r}, timeout={self.timeout!r}, "
            f"attempt_timeout={self.attempt_timeout!r}, max_body={self.max_body!r})"
        )


class TransportResponse(NamedTuple):
    """An answer: the HTTP status, the headers and the body (decompressed, capped).

    ``headers`` is looked up with lower-case names (``"content-type"``,
    ``"retry-after"``): a case-insensitive mapping (``httpx.Headers``, aiohttp's
    ``CIMultiDictProxy``) or a dict with lower-case keys.
    """

    status: int
    headers: Mapping[str, str]
    body: bytes

    def __repr__(self) -> str:
        return f"TransportResponse(status={self.status!r}, body=<{len(self.body)} bytes>)"


@runtime_checkable
class Transport(Protocol):
    """What the client needs from an HTTP library: send one GET, get the answer back.

    ``send`` returns the answer, whatever its status, or raises ``TransportError``
    when no usable answer came back: ``sent=False`` only when the request certainly never
    left (the connection was never made), ``sent=True`` otherwise, since a placement that
    may have reached the service must not be sent again. Any other exception is taken as
    ``sent=True`` with kind ``"network"``.

    The client never closes a transport object it was given (as with ``http_client``).
    """

    async def send(self, request: TransportRequest) -> TransportResponse:
        """Send ``request``; return the answer or raise ``TransportError``."""
        ...


#: Exception classes of an HTTP library and the ``TransportError.kind`` each stands for.
Classes = tuple[tuple[type[BaseException], str], ...]


def classify(exc: BaseException, not_sent: Classes, sent: Classes) -> TransportError:
    """The TransportError for an HTTP library's exception: ``not_sent`` lists the classes
    that prove the request never left; anything else, listed in ``sent`` or unsure, counts
    as sent (kind ``"network"`` when unlisted)."""
    for cls, kind in not_sent:
        if isinstance(exc, cls):
            return TransportError(exception_summary(exc), sent=False, kind=kind)
    for cls, kind in sent:
        if isinstance(exc, cls):
            return TransportError(exception_summary(exc), sent=True, kind=kind)
    return TransportError(exception_summary(exc), sent=True, kind="network")


def exception_summary(exc: BaseException) -> str:
    """``"Type: text"`` of a library exception (its text may hold the URL: redact it)."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def attempt_timed_out(seconds: float | None) -> TransportError:
    """The error of an attempt that was still running after ``seconds``."""
    return TransportError(
        f"the attempt did not finish within {seconds or 0:.3g} s (attempt_timeout or the "
        "retry deadline)",
        sent=True,
        kind=ATTEMPT_TIMEOUT,
    )
