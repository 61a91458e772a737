"""The batch engine behind ``client.place_many`` and ``client.verify_many``.

Rows are pulled from the input only when a slot is free, so memory stays flat for any input
length; items come out in completion order, exactly one per input row. With a journal, rows
finished by an earlier run are replayed from it without a request, and a placement that may
have gone out (marked ``sending`` by a run that was killed, or ``unknown``) is reported,
never re-sent, unless the caller asks.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Self, TypeVar

import anyio
import anyio.lowlevel
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from phoneconfirm_async._batch_input import RowReader
from phoneconfirm_async._engine import RequestEngine
from phoneconfirm_async._errors import (
    CallOutcomeUnknownError,
    ConfigurationError,
    PhoneConfirmError,
    TransportError,
    ValidationError,
)
from phoneconfirm_async._journal import Journal, Record
from phoneconfirm_async._models import (
    Operation,
    PlaceCallRequest,
    PlaceCallResult,
    VerifyRequest,
    VerifyResult,
)
from phoneconfirm_async._observe import BatchObserver

RequestT = TypeVar("RequestT", PlaceCallRequest, VerifyRequest)
ResultT = TypeVar("ResultT", PlaceCallResult, VerifyResult)

PlaceRow = PlaceCallRequest | Mapping[str, Any]
VerifyRow = VerifyRequest | Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class BatchItem(Generic[RequestT, ResultT]):
    """The outcome of one input row.

    ``index`` is the row's 0-based position in the input; exactly one of ``result`` and
    ``error`` is set. ``request`` is None when the row itself was invalid (``error`` is then
    a ValidationError). ``from_journal`` is True when the item was replayed from the journal
    of an earlier run instead of being sent now.
    """

    index: int
    request: RequestT | None
    result: ResultT | None
    error: PhoneConfirmError | None
    from_journal: bool = False

    @property
    def ok(self) -> bool:
        """True when the row got an answer from the service (a result, not an error)."""
        return self.error is None


class _Batch(Generic[RequestT, ResultT]):
    """One run of a batch: reads rows, sends requests, journals, emits items."""

    def __init__(
        self,
        operation: Operation,
        engine: RequestEngine,
        rows: Iterable[Any] | AsyncIterable[Any],
        *,
        concurrency: int,
        journal_path: str | os.PathLike[str] | None,
        journal_key: str,
        resend_unknown: bool,
    ) -> None:
        self.operation = operation
        self.engine = engine
        self.rows = rows
        self.concurrency = concurrency
        self.journal_path = journal_path
        self.journal_key = journal_key
        self.resend_unknown = resend_unknown
        self.journal: Journal | None = None
        self.error: BaseException | None = None
        #: Items emitted: answered (a result), failed (an error), replayed from the journal.
        self.answered = 0
        self.failed = 0
        self.replayed = 0

    # -- per kind ---------------------------------------------------------------------------
    def _request(self, row: Any) -> RequestT:
        place = self.operation == "placecall"
        cls: Any = PlaceCallRequest if place else VerifyRequest
        if row.__class__ is dict:  # the common row: no ABC check
            return cls.from_row(row)  # type: ignore[no-any-return]
        if not isinstance(row, cls | Mapping):
            fields = "phone, country_code, code" if place else "transaction_number, code"
            raise ValidationError("row", f"must be a {cls.__name__} or a mapping with {fields}")
        request: RequestT = cls.from_row(row)
        return request

    def _fields(self, request: RequestT) -> tuple[str, ...]:
        if isinstance(request, PlaceCallRequest):
            return (request.phone, request.country_code, request.code)
        return (request.transaction_number, request.code)

    def _send(self, request: RequestT) -> Awaitable[ResultT]:
        if request.__class__ is PlaceCallRequest:
            return self.engine.place(request)  # type: ignore[return-value]
        return self.engine.verify(request)  # type: ignore[arg-type, return-value]

    def _result(self, raw: Mapping[str, Any]) -> ResultT:
        cls: Any = PlaceCallResult if self.operation == "placecall" else VerifyResult
        return cls.from_fields(dict(raw))  # type: ignore[no-any-return]

    # -- the run ----------------------------------------------------------------------------
    async def run(self, send: MemoryObjectSendStream[BatchItem[RequestT, ResultT]]) -> None:
        """Produce every item into ``send``; keep a failure for the consumer to raise."""
        journal = self.journal_path is not None
        with _observer(self.engine).batch(self.operation, self.concurrency, journal) as span:
            try:
                await self._run(send)
            finally:
                span.done(
                    answered=self.answered,
                    failed=self.failed,
                    replayed=self.replayed,
                    error=self.error,
                )

    async def _run(self, send: MemoryObjectSendStream[BatchItem[RequestT, ResultT]]) -> None:
        try:
            async with send:
                if self.journal_path is not None:
                    self.journal = await Journal.open(
                        self.journal_path, self.operation, self.journal_key
                    )
                reader = RowReader(self.rows, self.journal)
                try:
                    async with anyio.create_task_group() as tg:
                        for _ in range(self.concurrency):
                            tg.start_soon(self._work, reader, send)
                    self.error = reader.error
                finally:
                    if self.journal is not None:
                        await self.journal.aclose()
        except anyio.BrokenResourceError:
            pass  # the consumer stopped listening: nothing left to do
        except Exception as exc:  # the journal failed: the consumer raises it
            self.error = exc

    async def _work(
        self, reader: RowReader, send: MemoryObjectSendStream[BatchItem[RequestT, ResultT]]
    ) -> None:
        """A worker: take the next row, emit its item, until the input ends.

        Each worker reads a row only when it is free, so at most ``concurrency`` rows are
        in memory, whatever the input's length.
        """
        plain = reader.plain  # read without a task switch (a plain input, no journal)
        while True:
            job = reader.take() if plain else await reader.next()
            if job is None:
                return
            index, row, record = job
            item: BatchItem[RequestT, ResultT]
            try:
                request = self._request(row)
            except ValidationError as exc:
                item = BatchItem(index, None, None, exc)
            else:
                if plain:  # no journal: send it, here (one coroutine less per row)
                    try:
                        result = await self._send(request)
                    except PhoneConfirmError as exc:
                        item = BatchItem(index, request, None, exc)
                    else:
                        item = BatchItem(index, request, result, None)
                else:
                    item = await self._process(index, request, record)
            if item.error is None:
                self.answered += 1
            else:
                self.failed += 1
            if item.from_journal:
                self.replayed += 1
            try:
                send.send_nowait(item)  # room in the channel: the common case, no task switch
            except anyio.WouldBlock:
                await send.send(item)  # a loop that leaves cancels this before it closes
            except anyio.BrokenResourceError:
                # The loop left just as this row was answered: on trio, a task woken before
                # the batch's cancel runs on to its next checkpoint. The batch is stopping.
                return

    async def _process(
        self, index: int, request: RequestT, record: Record | None
    ) -> BatchItem[RequestT, ResultT]:
        journal = self.journal
        fingerprint = journal.fingerprint(*self._fields(request)) if journal else ""
        if record is not None:
            replayed = self._replay(index, request, record, fingerprint)
            if replayed is not None:
                return replayed
        if journal is not None:
            await journal.mark_sending(index, fingerprint)
        try:
            result = await self._send(request)
        except CallOutcomeUnknownError as exc:
            if journal is not None:
                await journal.mark(index, fingerprint, "unknown", exc.cause.as_dict())
            return BatchItem(index, request, None, exc)
        except PhoneConfirmError as exc:
            if journal is not None:
                await journal.mark(index, fingerprint, "failed", exc.as_dict())
            return BatchItem(index, request, None, exc)
        if journal is not None:
            await journal.mark(index, fingerprint, "done", {"raw": result.raw})
        return BatchItem(index, request, result, None)

    def _replay(
        self, index: int, request: RequestT, record: Record, fingerprint: str
    ) -> BatchItem[RequestT, ResultT] | None:
        """The item for a row an earlier run handled, or None if it is to be sent now."""
        if record.fingerprint != fingerprint:
            error = ConfigurationError(
                f"row {index + 1} differs from the journal's (another input file, or another "
                "API key): not sent"
            )
            return BatchItem(index, request, None, error, from_journal=True)
        if record.state == "done" and record.payload is not None:
            return BatchItem(
                index, request, self._result(record.payload["raw"]), None, from_journal=True
            )
        placement = self.operation == "placecall"
        may_have_gone_out = placement and record.state in ("sending", "unknown")
        if may_have_gone_out and not self.resend_unknown:
            cause = TransportError(_interruption(record), sent=True, kind="interrupted")
            return BatchItem(
                index, request, None, CallOutcomeUnknownError(cause), from_journal=True
            )
        return None  # failed rows (nothing was phoned) and verifications are sent again


_T = TypeVar("_T")


async def _take(receive: MemoryObjectReceiveStream[_T]) -> _T:
    """Receive, without a task switch when something is waiting."""
    try:
        return receive.receive_nowait()
    except anyio.WouldBlock:
        return await receive.receive()


def _interruption(record: Record) -> str:
    """Why a placement that an earlier run handled may have gone out."""
    if record.state == "sending":
        return "an earlier run sent this placement and ended before its answer was recorded"
    payload = record.payload or {}
    return f"an earlier run lost the answer: {payload.get('type')}: {payload.get('message')}"


class BatchIterator(anyio.AsyncContextManagerMixin, Generic[RequestT, ResultT]):
    """The items of a batch, as they complete (``async for item in ...``).

    The batch starts with the loop (or the ``async with`` block) and runs in its client's
    task group; this object reads its items from a channel. Stopping is structural: leaving
    ``async with client.place_many(...) as items`` (or ``await items.aclose()``) cancels the
    batch, rows in flight included, and returns once it has stopped; leaving the client's
    block cancels every batch still running. A loop left early without either keeps at most
    the rows in flight running until the client closes: use ``async with`` when you may
    ``break``. An error of the input or of the journal is raised by the loop after the
    items that were done.
    """

    def __init__(self, batch: _Batch[RequestT, ResultT], tasks: TaskGroup) -> None:
        self._batch: _Batch[RequestT, ResultT] = batch
        self._tasks = tasks
        send: MemoryObjectSendStream[BatchItem[RequestT, ResultT]]
        receive: MemoryObjectReceiveStream[BatchItem[RequestT, ResultT]]
        send, receive = anyio.create_memory_object_stream(batch.concurrency)
        self._send: MemoryObjectSendStream[BatchItem[RequestT, ResultT]] = send
        self._receive: MemoryObjectReceiveStream[BatchItem[RequestT, ResultT]] = receive
        self._scope = anyio.CancelScope()
        self._stopped = anyio.Event()
        self._started = False

    def _start(self) -> None:
        if not self._started:
            self._started = True
            self._tasks.start_soon(self._run)

    async def _run(self) -> None:
        try:
            with self._scope:
                await self._batch.run(self._send)
        except anyio.get_cancelled_exc_class():
            # Cancelled by the client's exit: nobody reads the items any more.
            self._receive.close()
            raise
        finally:
            self._send.close()  # also when cancelled before the batch began
            self._stopped.set()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> BatchItem[RequestT, ResultT]:
        self._start()
        try:
            item: BatchItem[RequestT, ResultT] = await _take(self._receive)
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            self._receive.close()
            error, self._batch.error = self._batch.error, None
            if error is not None:
                raise error from None
            raise StopAsyncIteration from None
        return item

    async def aclose(self) -> None:
        """Stop the batch (rows in flight are cancelled); return once it has stopped."""
        self._scope.cancel()
        self._receive.close()
        if self._started:
            with anyio.CancelScope(shield=True):
                await self._stopped.wait()
        else:
            self._started = True  # never to start now
            self._send.close()
            await anyio.lowlevel.checkpoint()

    @contextlib.asynccontextmanager
    async def __asynccontextmanager__(self) -> AsyncIterator[Self]:
        self._start()
        try:
            yield self
        finally:
            await self.aclose()


def run_batch(
    operation: Operation,
    engine: RequestEngine,
    tasks: TaskGroup,
    rows: Iterable[Any] | AsyncIterable[Any],
    *,
    concurrency: int,
    journal: str | os.PathLike[str] | None,
    journal_key: str,
    resend_unknown: bool,
) -> BatchIterator[Any, Any]:
    """A batch that will run in ``tasks``; return the iterator of its items.

    ``journal_key`` keys the journal's row hashes (the client's API key, so that the same
    rows sent with another key do not match).
    """
    batch: _Batch[Any, Any] = _Batch(
        operation,
        engine,
        rows,
        concurrency=concurrency,
        journal_path=journal,
        journal_key=journal_key,
        resend_unknown=resend_unknown,
    )
    return BatchIterator(batch, tasks)


def _observer(engine: object) -> BatchObserver:
    """The batch's telemetry: spans and counts when the client's is on, else nothing."""
    telemetry = getattr(engine, "telemetry", None)
    if telemetry is None:
        return BatchObserver()
    from phoneconfirm_async._telemetry_sessions import TracedBatches

    return TracedBatches(telemetry)
