"""Serving the emulator: uvicorn in its own thread and event loop, on a loopback socket."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import AsyncIterator
from typing import Any

import anyio
import anyio.to_thread
import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send

from phoneconfirm_async.emulator._app import CONNECTION_KEY
from phoneconfirm_async.emulator._base import EmulatorBase
from phoneconfirm_async.emulator._config import EmulatorConfig


class _SocketConnection:
    """A request's connection on uvicorn: dropping it closes the socket."""

    __slots__ = ("send", "stopping")

    def __init__(self, send: Send, stopping: asyncio.Event) -> None:
        self.send = send
        self.stopping = stopping

    async def hang(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), seconds)

    def drop(self) -> None:
        # uvicorn's ``send`` is a bound method of the request cycle, which holds the socket.
        transport: Any = getattr(getattr(self.send, "__self__", None), "transport", None)
        if transport is None:  # pragma: no cover - only on a server other than uvicorn
            raise RuntimeError("connection faults need the emulator's uvicorn server")
        transport.close()


class _Served:
    """The emulator's app as uvicorn runs it: each request gets its socket connection."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        #: Set when the server stops, to release hanging requests.
        self.stopping = asyncio.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope[CONNECTION_KEY] = _SocketConnection(send, self.stopping)
        await self.app(scope, receive, send)


class _Server(uvicorn.Server):
    """uvicorn, telling the starting thread when it listens (or that it failed)."""

    def __init__(self, config: uvicorn.Config, ready: threading.Event) -> None:
        super().__init__(config)
        self.ready = ready

    async def main_loop(self) -> None:
        # uvicorn polls should_exit every 0.1 s; waking on an event makes stop() immediate,
        # which keeps a test suite that starts many emulators fast.
        self.wake = asyncio.Event()
        counter = 0
        while not await self.on_tick(counter):
            counter = (counter + 1) % 864000
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), 0.1)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().startup(sockets)
        finally:
            self.ready.set()


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop  # the emulator must not be the bottleneck of a benchmark
    except ImportError:  # pragma: no cover - uvloop is part of the emulator extra
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


class Emulator(EmulatorBase):
    """A running emulator: where it listens, and what it has seen.

    Start one with ``run_emulator`` (async code) or ``start`` / ``stop``
    (blocking code, such as the ``phoneconfirm emulator`` command).
    """

    def __init__(self, config: EmulatorConfig | None = None) -> None:
        super().__init__(config)
        self._served = _Served(self.app)
        self._sock: socket.socket | None = None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._error: BaseException | None = None
        self.host = self.config.host
        self.port = self.config.port

    def __repr__(self) -> str:
        return f"<Emulator {self.base_url} calls={len(self.calls)}>"

    @property
    def base_url(self) -> str:
        """The base URL to give a client, e.g. ``http://127.0.0.1:8099/services``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/services"

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        """Bind the socket and serve from a background thread; return once listening."""
        if self._thread is not None:
            raise RuntimeError("this emulator was already started")
        self._sock = _bind(self.config.host, self.config.port)
        self.port = self._sock.getsockname()[1]
        ready = threading.Event()
        config = uvicorn.Config(
            self._served,
            http="httptools",
            lifespan="off",
            log_config=None,
            log_level="warning",
            access_log=False,
            # Loopback only: no proxies to trust, and no headers a client needs.
            proxy_headers=False,
            server_header=False,
            date_header=False,
            timeout_graceful_shutdown=2,
            backlog=4096,
        )
        self._server = _Server(config, ready)
        self._thread = threading.Thread(target=self._serve, name="phoneconfirm-emulator")
        self._thread.daemon = True
        self._thread.start()
        ready.wait()
        if self._error is not None or not self._server.started:
            self.stop()
            raise RuntimeError(f"the emulator failed to start: {self._error!r}")

    def _serve(self) -> None:
        assert self._server is not None
        assert self._sock is not None
        loop = _new_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._server.serve(sockets=[self._sock]))
        except BaseException as exc:  # reported by start(); the thread must not die silently
            self._error = exc
            self._server.ready.set()
        finally:
            loop.close()

    def stop(self) -> None:
        """Stop serving, release hanging requests, and free the port."""
        server, thread, loop = self._server, self._thread, self._loop
        if server is not None:
            server.should_exit = True
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop may close meanwhile
                loop.call_soon_threadsafe(self._wake)
        if thread is not None:
            thread.join()
        if self._sock is not None:
            self._sock.close()

    def _wake(self) -> None:
        self._served.stopping.set()
        wake = getattr(self._server, "wake", None)
        if wake is not None:
            wake.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the server thread ends (for foreground use); True if it ended."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()


@contextlib.asynccontextmanager
async def run_emulator(config: EmulatorConfig | None = None) -> AsyncIterator[Emulator]:
    """Serve an emulator for the duration of the block, under asyncio or trio.

    The server runs in its own thread and event loop, so it serves a client on either
    backend; leaving the block stops it (even when the block is cancelled) and frees the
    port.
    """
    emulator = Emulator(config)
    await anyio.to_thread.run_sync(emulator.start)
    try:
        yield emulator
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(emulator.stop)
