"""Which transport a client runs on: the ``transport=`` argument checked, then opened.

``"auto"`` is aiohttp on asyncio when it is installed (its pool keeps up where httpx's
spends a core on bookkeeping; see the docs' explanation of the numbers), else httpx. A
borrowed ``http_client`` always means httpx; an object is used as given, under the
attempt bound.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, NamedTuple, Protocol

from phoneconfirm_async._errors import ConfigurationError
from phoneconfirm_async._lifetime import running_on_asyncio
from phoneconfirm_async._transports._bounded import BoundedTransport
from phoneconfirm_async._transports._seam import Transport

if TYPE_CHECKING:
    import httpx

TransportName = Literal["auto", "httpx", "aiohttp"]


class Closable(Protocol):
    async def aclose(self) -> None: ...


class Opened(NamedTuple):
    """A client's transport for one run: what it sends through, the part of it the client
    must close (None: nothing it owns), and its name once known (None: keep the given)."""

    transport: Transport
    owned: Closable | None
    name: str | None


def check_transport(
    transport: TransportName | Transport, http_client: httpx.AsyncClient | None
) -> TransportName | Transport:
    """``transport=`` and ``http_client=`` as given, or a ``ConfigurationError``."""
    if http_client is not None and not callable(getattr(http_client, "send", None)):
        raise ConfigurationError(
            f"http_client must be an httpx.AsyncClient, not {type(http_client).__name__}"
        )
    if isinstance(transport, str):
        if transport not in ("auto", "httpx", "aiohttp"):
            raise ConfigurationError(
                "transport must be 'auto', 'httpx', 'aiohttp' or a Transport object"
            )
        if transport == "aiohttp" and http_client is not None:
            raise ConfigurationError("http_client is an httpx client: use transport='httpx'")
        return transport
    if not isinstance(transport, Transport):
        raise ConfigurationError(
            "transport must be 'auto', 'httpx', 'aiohttp' or an object with an async "
            "send(request) method (see phoneconfirm_async.Transport)"
        )
    if http_client is not None:
        raise ConfigurationError("give either a transport object or http_client, not both")
    return transport


def open_transport(
    choice: TransportName | Transport,
    http_client: httpx.AsyncClient | None,
    max_concurrency: int,
    timeout: float | None,
) -> Opened:
    """The transport for this run (on the backend running now)."""
    if not isinstance(choice, str):
        return Opened(BoundedTransport(choice), None, None)
    if http_client is not None:
        from phoneconfirm_async._transports._httpx import HttpxTransport

        return Opened(HttpxTransport(http_client), None, "httpx")
    if choice in ("auto", "aiohttp") and running_on_asyncio():
        try:
            from phoneconfirm_async._transports._aiohttp import AiohttpTransport
        except ImportError:
            if choice == "aiohttp":
                raise ConfigurationError(
                    "transport='aiohttp' needs the aiohttp extra: "
                    "pip install 'phoneconfirm-async[aiohttp]'"
                ) from None
        else:
            aiohttp_transport = AiohttpTransport(max_concurrency)
            return Opened(aiohttp_transport, aiohttp_transport, aiohttp_transport.name)
    elif choice == "aiohttp":
        raise ConfigurationError("transport='aiohttp' runs on asyncio only; use 'httpx'")
    from phoneconfirm_async._transports._httpx import PooledHttpxTransport

    pooled = PooledHttpxTransport(max_concurrency, timeout)
    return Opened(pooled, pooled, pooled.name)
