"""The event loop behind the blocking face: one asyncio loop in one thread of its own,
shared by every thread that calls it.

anyio's blocking portal runs the loop's life: it enters the client's and the schedulers'
async context managers there, leaves them, and stops. A call from another thread becomes
a task in the loop (one thread-safe callback that starts it, one wake-up each way); the
caller waits on a lock its task releases. The caller's timeout, or an exception in the caller
while it waits (a ``KeyboardInterrupt``), cancels the task.

The thread is a daemon, so a client nobody closed never holds the interpreter's exit; a
``weakref.finalize`` closes it at exit (or when it is collected), while the loop still
runs.
"""

from __future__ import annotations

import _thread
import asyncio
import contextlib
import itertools
import os
import sys
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from types import TracebackType
from typing import Any, Generic, Self, TypeVar

import anyio
from anyio.from_thread import BlockingPortal

T = TypeVar("T")

#: The name of every loop thread (``threading.enumerate()`` shows them).
THREAD_NAME = "phoneconfirm-loop"


def running_event_loop() -> str | None:
    """The event loop this thread runs (``"asyncio"``, ``"trio"``), or None."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        return "asyncio"
    trio: Any = sys.modules.get("trio")  # never imported here: only if already in use
    if trio is not None:
        try:
            trio.lowlevel.current_trio_token()
        except RuntimeError:
            pass
        else:
            return "trio"
    return None


class LoopThread:
    """One event loop in one thread, for one blocking client and what it opens.

    ``owner`` names the blocking class in the errors. Async context managers entered
    through ``enter`` stay open in the loop until ``leave`` or ``stop``, which leaves
    them in reverse order, stops the loop and joins its thread.
    """

    def __init__(self, owner: str) -> None:
        self._owner = owner
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._held: dict[int, AbstractContextManager[Any]] = {}
        self._tokens = itertools.count()
        self._stopped = False
        #: The calls submitted and not answered: released by ``stop`` if the loop is gone.
        self._calls: set[_Call[Any]] = set()
        ready: Future[tuple[BlockingPortal, asyncio.AbstractEventLoop]] = Future()
        self._thread = threading.Thread(
            target=_serve, args=(ready,), name=THREAD_NAME, daemon=True
        )
        self._thread.start()
        self._portal, self._loop = ready.result()

    @property
    def forked(self) -> bool:
        """This process was forked from the one that started the loop (which is not here)."""
        return os.getpid() != self._pid

    @property
    def stopped(self) -> bool:
        return self._stopped

    def check(self) -> BlockingPortal:
        """The portal, if this thread may block on it.

        Raises:
            RuntimeError: in a forked child, once stopped, or on a thread that runs an
                event loop (blocking it would stall that loop, or deadlock this one).
        """
        if self.forked:
            raise RuntimeError(
                f"this {self._owner} was created in process {self._pid}, which this process "
                "was forked from: its event loop thread did not come along. Create it after "
                "the fork (under gunicorn --preload: in the post_fork hook, or on first use "
                "in the worker)"
            )
        if self._stopped:
            raise RuntimeError(f"this {self._owner} is closed; create a new one")
        loop = running_event_loop()
        if loop is not None:
            raise RuntimeError(
                f"{self._owner} blocks, and this thread runs an event loop ({loop}): "
                "use PhoneConfirmClient there (async with PhoneConfirmClient() as client, "
                "then await its methods)"
            )
        return self._portal

    def call(
        self,
        func: Callable[[], Awaitable[T]],
        *,
        timeout: float | None = None,
        waiting_for: str = "the call",
    ) -> T:
        """Run ``func()`` in the loop and wait for its result (or its exception).

        Past ``timeout`` seconds the task is cancelled and ``TimeoutError`` raised (it
        names what was ``waiting_for``); an exception in this thread while it waits
        (``KeyboardInterrupt``) cancels the task too.
        """
        self.check()
        call = _Call(func)
        self._calls.add(call)
        try:
            self._loop.call_soon_threadsafe(call.start)
            if not call.done.acquire(timeout=-1 if timeout is None else timeout):
                call.cancel(self._loop)
                if not call.done.acquire(blocking=False):  # not done in the meantime
                    raise TimeoutError(f"{waiting_for}: not done after {timeout:g} s")
            return call.outcome(self._owner)
        except BaseException:  # a KeyboardInterrupt while waiting, say
            if call.pending:
                call.cancel(self._loop)
            raise
        finally:
            self._calls.discard(call)

    def enter(self, cm: AbstractAsyncContextManager[T]) -> tuple[T, int]:
        """Enter ``cm`` in the loop, where it stays open; its token is for ``leave``."""
        held = self.check().wrap_async_context_manager(cm)
        value = held.__enter__()
        with self._lock:
            token = next(self._tokens)
            self._held[token] = held
        return value, token

    def leave(self, token: int) -> None:
        """Leave what ``enter`` entered (once; again, or after ``stop``: nothing)."""
        with self._lock:
            held = self._held.pop(token, None)
        if held is not None and not self.forked:
            held.__exit__(None, None, None)

    def stop(self) -> None:
        """Leave everything entered, newest first; stop the loop and join its thread.

        In a forked child (no loop thread here) and on the loop thread itself it only
        refuses further calls.
        """
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            held = list(self._held.values())
            self._held.clear()
        if self.forked or threading.current_thread() is self._thread:
            return
        try:
            for entered in reversed(held):
                entered.__exit__(None, None, None)
        finally:
            # Calls still waiting in other threads are cancelled; they raise RuntimeError.
            self._portal.call(self._portal.stop, True)
            self._thread.join()
            for call in list(self._calls):
                call.abandon()  # submitted as the loop stopped: it never ran


def _loop_options() -> dict[str, Any]:
    """uvloop when it is installed (the ``emulator`` and ``speedups`` extras bring it): a
    wake-up from another thread costs about half of asyncio's own loop's, which keeps the
    thread hop within 1.3x of an awaited call (``benchmarks/bench_sync.py``). It is this
    thread's loop only: no event loop policy is set."""
    try:
        import uvloop
    except ImportError:
        return {}
    return {"loop_factory": uvloop.new_event_loop}


class Closable:
    """``with`` for the blocking objects: entering checks that this thread may block (a
    thread running an event loop may not); leaving calls ``close``."""

    _loop: LoopThread

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self._loop.check()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class _Call(Generic[T]):
    """One blocking call: a task the loop thread starts, and a lock the caller waits on.

    Leaner than ``asyncio.run_coroutine_threadsafe`` (no concurrent future, no state
    copied between two futures): half the cost of a hop on this project's machines
    (``benchmarks/bench_sync.py``). The lock is released when the task is done, or when
    the call is given up before it started.
    """

    __slots__ = ("_cancelled", "_error", "_func", "_task", "done")

    def __init__(self, func: Callable[[], Awaitable[T]]) -> None:
        self._func = func
        self._task: asyncio.Future[T] | None = None
        self._error: BaseException | None = None
        self._cancelled = False
        self.done = _thread.allocate_lock()
        self.done.acquire()

    @property
    def pending(self) -> bool:
        return self.done.locked()

    def start(self) -> None:
        """In the loop thread: start the task (unless the caller gave up already)."""
        if self._cancelled:
            self.done.release()
            return
        try:
            self._task = asyncio.ensure_future(self._func())
        except BaseException as exc:
            self._error = exc
            self.done.release()
            return
        self._task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Future[T]) -> None:
        self.done.release()

    def cancel(self, loop: asyncio.AbstractEventLoop) -> None:
        """From the caller's thread: cancel the task, or its start if still to come."""
        self._cancelled = True
        with contextlib.suppress(RuntimeError):  # the loop is closed: nothing runs there
            loop.call_soon_threadsafe(self._cancel)

    def _cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def abandon(self) -> None:
        """The loop stopped before the call ran: its caller stops waiting."""
        self._cancelled = True
        if self.done.locked():
            with contextlib.suppress(RuntimeError):  # released by the task meanwhile
                self.done.release()

    def outcome(self, owner: str) -> T:
        """The task's result, or its exception; RuntimeError if the loop stopped first."""
        if self._error is not None:
            raise self._error
        task = self._task
        if task is None or task.cancelled():
            raise RuntimeError(f"the {owner} was closed during the call")
        return task.result()


def _serve(ready: Future[tuple[BlockingPortal, asyncio.AbstractEventLoop]]) -> None:
    """The loop thread: a portal in an asyncio loop, until the portal is stopped."""

    async def serve() -> None:
        async with BlockingPortal() as portal:
            ready.set_result((portal, asyncio.get_running_loop()))
            await portal.sleep_until_stopped()

    try:
        anyio.run(serve, backend="asyncio", backend_options=_loop_options())
    except BaseException as exc:
        if not ready.done():
            ready.set_exception(exc)
            return
        raise
