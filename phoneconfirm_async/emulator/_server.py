"""Serving the emulator: uvicorn in its own thread and event loop, on a loopback socket."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import AsyncIterator

import anyio
import anyio.to_thread
import uvicorn

from phoneconfirm_async.emulator._app import EmulatorApp
from phoneconfirm_async.emulator._config import CallRecord, EmulatorConfig
from phoneconfirm_async.emulator._state import EmulatorState, Fault


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


class Emulator:
    """A running emulator: where it listens, and what it has seen.

    Start one with :func:`run_emulator` (async code) or :meth:`start` / :meth:`stop`
    (blocking code, such as the ``phoneconfirm emulator`` command).
    """

    def __init__(self, config: EmulatorConfig | None = None) -> None:
        self.config = config or EmulatorConfig()
        self._state = EmulatorState(self.config)
        self._app = EmulatorApp(self._state)
        self._sock: socket.socket | None = None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._error: BaseException | None = None
        self.host = self.config.host
        self.port = self.config.port

    def __repr__(self) -> str:
        return f"<Emulator {self.base_url} calls={len(self._state.calls)}>"

    @property
    def base_url(self) -> str:
        """The base URL to give a client, e.g. ``http://127.0.0.1:8099/services``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/services"

    @property
    def calls(self) -> list[CallRecord]:
        """Every call dialed so far, in dialing order (a snapshot)."""
        return self._state.calls

    @property
    def faults(self) -> list[Fault]:
        """Every fault injected so far, in order: endpoint, kind, and phase."""
        return self._state.faults

    @property
    def request_count(self) -> int:
        """How many requests reached the two service endpoints, rejected ones included."""
        return self._state.request_count

    def wait_for_requests(self, count: int, timeout: float | None = None) -> bool:
        """Block until ``count`` requests have arrived (for tests: no polling, no sleeps)."""
        return self._state.wait_for_requests(count, timeout)

    def wait_for_calls(self, count: int, timeout: float | None = None) -> bool:
        """Block until ``count`` calls were dialed (for tests: no polling, no sleeps)."""
        return self._state.wait_for_calls(count, timeout)

    def heard_code(self, phone: str) -> str | None:
        """The code the simulated person heard, or None if they picked up no call yet."""
        return self._state.heard_code(phone)

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        """Bind the socket and serve from a background thread; return once listening."""
        if self._thread is not None:
            raise RuntimeError("this emulator was already started")
        self._sock = _bind(self.config.host, self.config.port)
        self.port = self._sock.getsockname()[1]
        ready = threading.Event()
        config = uvicorn.Config(
            self._app,
            http="httptools",
            lifespan="off",
            log_config=None,
            log_level="warning",
            access_log=False,
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
        self._app.stop.set()
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
