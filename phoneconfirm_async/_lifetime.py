"""Task groups for objects that live as long as an ``async with`` block."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable

import anyio
from anyio.abc import TaskGroup


@contextlib.asynccontextmanager
async def background_tasks() -> AsyncIterator[TaskGroup]:
    """A task group for an object's background work, for the length of its block.

    Leaving the block cancels the tasks and waits for them. An exception of the block itself
    goes out as it is: a task group would wrap it in an ``ExceptionGroup`` (anyio on both
    backends), which would make ``except ValueError`` around ``async with client`` miss.
    Cancellation and other ``BaseException`` pass through the group untouched.
    """
    error: Exception | None = None
    async with anyio.create_task_group() as tg:
        try:
            yield tg
        except Exception as exc:
            error = exc
        finally:
            tg.cancel_scope.cancel()
    if error is not None:
        raise error


def running_on_asyncio() -> bool:
    """True inside an asyncio event loop (trio has none)."""
    import asyncio  # detection only: the library itself uses anyio primitives

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def running_clock() -> Callable[[], float]:
    """The running loop's clock, as ``anyio.current_time`` reads it, without finding the
    backend on every reading (an object that lives in one loop calls it per request)."""
    if running_on_asyncio():
        import asyncio

        return asyncio.get_running_loop().time
    return anyio.current_time  # trio's own lookup is cheap; a MockClock drives it in tests
