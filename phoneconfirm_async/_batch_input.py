"""A batch's input, read by its workers one row at a time (with the row's journal record)."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from typing import Any

import anyio

from phoneconfirm_async._journal import Journal, Record


class RowReader:
    """The input, shared by the workers: each ``next()`` takes one row and its index.

    Rows are read in order, and so are their journal records (the journal streams them by
    index). A plain iterable without a journal is read without a task switch, so no lock is
    needed: no other worker can run between two steps of one read. An async input, or the
    journal reading its next chunk, may switch tasks: then reads take a lock.
    """

    def __init__(self, rows: Iterable[Any] | AsyncIterable[Any], journal: Journal | None) -> None:
        self.journal = journal
        self.rows: Iterator[Any] | None = None
        self.source: AsyncIterator[Any] | None = None
        if isinstance(rows, AsyncIterable):
            self.source = aiter(rows)
        else:
            self.rows = iter(rows)
        self.index = 0
        self.done = False
        self.error: BaseException | None = None
        self.lock = anyio.Lock()

    @property
    def plain(self) -> bool:
        """A plain iterable without a journal: ``take`` reads it, no task switch."""
        return self.rows is not None and self.journal is None

    async def next(self) -> tuple[int, Any, Record | None] | None:
        if self.plain:
            return self.take()
        try:
            self.lock.acquire_nowait()  # uncontended for a sync input: no task switch
        except anyio.WouldBlock:
            await self.lock.acquire()
        try:
            if self.done:
                return None
            try:
                if self.source is not None:
                    row = await anext(self.source)
                else:
                    assert self.rows is not None
                    row = next(self.rows)
            except (StopAsyncIteration, StopIteration):
                self.done = True
                return None
            except Exception as exc:  # the input failed: finish the rows in flight, then
                self.done = True  # the consumer raises it
                self.error = exc
                return None
            index = self.index
            self.index += 1
            record = await self.journal.lookup(index) if self.journal is not None else None
            return index, row, record
        finally:
            self.lock.release()

    def take(self) -> tuple[int, Any, None] | None:
        """The next row of a plain input (no journal)."""
        if self.done:
            return None
        try:
            row = next(self.rows)  # type: ignore[arg-type]
        except StopIteration:
            self.done = True
            return None
        except Exception as exc:
            self.done = True
            self.error = exc
            return None
        index = self.index
        self.index += 1
        return index, row, None
