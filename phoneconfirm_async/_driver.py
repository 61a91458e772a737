"""A scheduler's driver: claim the calls that are due, dial each under its claim, renew
the claims in flight, and write every answer back, for as long as the store takes.

One driver task per scheduler asks the store for the calls that are due, at most
``concurrency`` held at once, places each in the scheduler's task group under the client's
limits, and writes the answer back. The store records a call as made before it is
dialled, so a process that dies mid-call never causes a second call: another process
settles the claim when its lease ends.

On a durable store a claimed call is *fenced*: immediately before its request leaves, the
claim must still have a third of its lease left on this process's monotonic clock (counted
from the moment the store stamped it, under its lock, and moved on by each renewal), and
must have been seen still current within the last ``FRESH`` seconds (else the session is
read again). A process paused or cut off past its lease therefore sends nothing it held:
the claim is given back if it still holds, left to the peer that settled it if not.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Final, TypeVar

import anyio
from anyio.abc import TaskGroup

from phoneconfirm_async._engine import RequestEngine
from phoneconfirm_async._errors import CallOutcomeUnknownError, PhoneConfirmError, StoreError
from phoneconfirm_async._models import PlaceCallResult
from phoneconfirm_async._observe import OperationSpan
from phoneconfirm_async._redact import mask_phone
from phoneconfirm_async._retry import RetryPolicy
from phoneconfirm_async._session import SessionBook
from phoneconfirm_async._store_writes import Outage, StoreWrites, backoff
from phoneconfirm_async._stores._protocol import Claimed, SessionStore
from phoneconfirm_async._stores._rules import SessionRecord, SessionState, holds

logger = logging.getLogger("phoneconfirm_async")

#: Least time between two passes over a durable store while calls keep falling due: a call
#: is placed at most this much after its due time for the sake of batching.
_CLAIM_GAP: Final = 0.01
#: Seconds a claim stays known-current after the store last confirmed it (the claim itself,
#: a renewal, a look); past it the session is read again before its call is sent, so that a
#: cancel or verify in another process stops the call.
FRESH: Final = 0.5
#: Share of the lease kept in hand: a call is sent only while its claim has more than this
#: left (it covers connecting, and clocks that differ a little between hosts).
FENCE_MARGIN: Final = 1 / 3
_T = TypeVar("_T")


class NotSent(Exception):
    """A fenced call that must not leave: its lease is (nearly) over (``stalled``: this
    process was paused or cut off from its store), or its session moved on (settled by a
    peer, cancelled, verified). Raised by the fence, never retried."""

    def __init__(self, reason: str, *, stalled: bool) -> None:
        super().__init__(reason)
        self.stalled = stalled


def _stalled() -> NotSent:
    return NotSent("its lease is nearly over", stalled=True)


class Claim:
    """A call this process holds: its record as claimed, the scope that cancels it, and
    how long it may still be sent (``time.monotonic()``)."""

    __slots__ = ("checked", "record", "scope", "sent", "stale", "until")

    def __init__(self, record: SessionRecord, at: float) -> None:
        self.record = record
        self.scope = anyio.CancelScope()
        self.until = float("inf")
        #: When the store last confirmed the claim (``time.monotonic()``).
        self.checked = at
        #: Another process changed the session: read it again before sending.
        self.stale = False
        #: The fence let the request go: it may have reached the service.
        self.sent = False

    def held(self, at: float, lease: float) -> None:
        """The store confirmed the claim at ``at``, with a lease of ``lease`` from then."""
        self.checked = at
        self.stale = False
        self.until = at + lease * (1 - FENCE_MARGIN)

    def lost(self) -> None:
        """The claim no longer holds: its call must not be sent."""
        self.until = float("-inf")


class Driver:
    """Places a scheduler's due calls (see the module doc); the scheduler starts ``run``
    in its task group and tells ``stop_call`` and ``changed_elsewhere`` what sessions do."""

    def __init__(
        self,
        client: RequestEngine,
        store: SessionStore,
        book: SessionBook,
        writes: StoreWrites,
        *,
        retry: RetryPolicy | None,
        concurrency: int,
        calls_per_hour: int | None = None,
    ) -> None:
        self.client = client
        self.store = store
        self.book = book
        self.writes = writes
        self.retry = retry
        self.concurrency = concurrency
        #: The policy's spend cap: calls claimed on the whole store in the trailing hour.
        self.calls_per_hour = calls_per_hour
        #: Calls in flight here, by session id.
        self.in_flight: dict[str, Claim] = {}
        self._starved = False
        self._refill_below = concurrency - (max(1, concurrency // 4) if store.durable else 1)

    @property
    def outage(self) -> Outage:
        return self.writes.outage

    # -- what sessions tell the driver ------------------------------------------------------
    def stop_call(self, session_id: str, *, sent_too: bool) -> None:
        """The session ended here: its call in flight stops, unless it was sent already
        and ``sent_too`` is False (a verified session's answer is still written)."""
        claim = self.in_flight.get(session_id)
        if claim is not None and (sent_too or not claim.sent):
            claim.scope.cancel()

    def changed_elsewhere(self, session_id: str) -> None:
        claim = self.in_flight.get(session_id)
        if claim is not None:
            claim.stale = True  # settled, cancelled or verified there: look before dialling

    def cancel_all(self) -> None:
        """Closing a memory store's scheduler: every call in flight stops."""
        for claim in self.in_flight.values():
            claim.scope.cancel()

    # -- the loop ---------------------------------------------------------------------------
    async def run(self, tasks: TaskGroup) -> None:
        """Claim what is due (up to the free slots), start each call, sleep until the next
        due time, a wake, or (durable) ``poll_interval``. A failing store is retried with a
        bounded backoff for as long as it fails."""
        store = self.store
        in_flight = self.in_flight
        if store.lease is not None:
            tasks.start_soon(self._renew_claims, store.lease)
        failures = 0
        while True:
            free = self.concurrency - len(in_flight)
            until: float | None = None
            self._starved = free <= 0
            if free > 0:
                now = store.now()
                try:
                    claimed = await store.claim(
                        now, free, exclude=in_flight.keys(), calls_per_hour=self.calls_per_hour
                    )
                    if len(claimed.calls) < free:
                        until = await store.next_due()  # held-back calls: when the cap frees
                    else:
                        self._starved = True  # more may be due: claim again as slots free
                except StoreError as exc:
                    failures += 1
                    self.outage.failed(exc)
                    until = store.now() + backoff(failures)
                else:
                    failures = 0
                    self.outage.recovered()
                    self._start_calls(claimed, tasks)
                    if store.durable and until is not None:
                        if claimed.calls:
                            # Busy: gather what falls due in the next few milliseconds into
                            # one pass (each pass is a transaction, shared with the peers).
                            until = max(until, now + _CLAIM_GAP)
                        elif until <= now and not claimed.changed:
                            until = now + _CLAIM_GAP  # due rows locked by a peer's pass
            await store.wait(until)

    def _start_calls(self, claimed: Claimed, tasks: TaskGroup) -> None:
        """What a pass claimed: tell about the sessions it changed, start its calls."""
        book = self.book
        for record in claimed.changed:
            book.updated(record)
            if record.state.is_final:
                # EXPIRED follows EXHAUSTED (final already); the others end a pending one.
                was_final = record.state is SessionState.EXPIRED
                book.ended(record, was_final=was_final, event=False)
        if claimed.changed:
            book.observer.settled(claimed.changed)
        lease = self.store.lease
        # A store that does not say when it stamped its claims: now (not before the claim).
        at = claimed.at if claimed.at > 0 else time.monotonic()
        for record in claimed.calls:
            if record.id in self.in_flight:  # a store that ignored ``exclude``
                logger.warning("scheduler: %s claimed a call already in flight here", record.id)
                continue
            claim = Claim(record, at)
            if lease is not None:
                claim.held(at, lease)
            self.in_flight[record.id] = claim
            book.updated(record)
            tasks.start_soon(self._call, claim)

    def _forget(self, claim: Claim) -> None:
        """The claim's call is over here: free its slot. A starved driver claims again once
        a quarter of its slots are free (a durable store's claim is a transaction: one per
        freed slot would cost more than the calls); the memory store's claim is cheap, so
        at once."""
        if self.in_flight.get(claim.record.id) is claim:
            del self.in_flight[claim.record.id]
        if self._starved and len(self.in_flight) <= self._refill_below:
            self._starved = False
            self.store.wake()

    # -- one call -----------------------------------------------------------------------------
    async def _fence(self, claim: Claim) -> None:
        """Awaited by the client immediately before the call's request leaves: the claim
        must still be this process's, with a third of its lease left (see the module doc).
        A memory store's record is the live one: it only has to be still CALLING."""
        if not self.store.durable:
            if claim.record.state is not SessionState.CALLING:
                raise NotSent("its session ended", stalled=False)
            claim.sent = True
            return
        if time.monotonic() >= claim.until:
            raise _stalled()
        if claim.stale or time.monotonic() - claim.checked > FRESH:
            record = claim.record
            try:
                current = await self.store.load(record.id)
            except StoreError:
                pass  # no look possible: the lease alone decides (nobody can end it either)
            else:
                if current is None or not holds(current, record):
                    claim.lost()
                    raise NotSent("its session moved on", stalled=False)
                claim.checked = time.monotonic()
                claim.stale = False
            if time.monotonic() >= claim.until:
                raise _stalled()
        claim.sent = True

    async def _call(self, claim: Claim) -> None:
        """Place one claimed call and write down its answer (or its unknown outcome)."""
        with self.book.observer.operation("call", claim.record, call=True) as span:
            span.state(claim.record)
            await self._place(claim, span)

    async def _place(self, claim: Claim, span: OperationSpan) -> None:
        store = self.store
        record = claim.record
        request = record.request
        if request is None:  # cancelled after the claim, before this task ran: not sent
            self._forget(claim)
            return
        fence = functools.partial(self._fence, claim)
        result: PlaceCallResult | None = None
        error: PhoneConfirmError | None = None
        not_sent: NotSent | None = None
        try:
            with claim.scope:
                try:
                    result = await self.client.place(request, retry=self.retry, fence=fence)
                except CallOutcomeUnknownError:
                    pass  # a call may have gone out: it counts, and nothing is re-sent
                except NotSent as exc:
                    not_sent = exc
                except PhoneConfirmError as exc:
                    error = exc
        except anyio.get_cancelled_exc_class():
            self._forget(claim)
            if store.durable:  # closing: settle the claim now, not when its lease ends
                with anyio.CancelScope(shield=True):
                    if claim.sent:
                        await self._write(lambda: store.record_call(record, None, store.now()))
                    else:
                        await self._write(lambda: store.release(record, store.now()))
            raise
        self._forget(claim)
        if claim.scope.cancelled_caught:
            return  # the session was cancelled or verified: it is final already
        if not_sent is not None:
            await self._not_sent(claim, not_sent, span)
            return
        span.call(result, error)
        updated = await self._answer(record, result, error)
        if updated is not None:
            if updated.state.is_final:
                self.book.ended(updated, was_final=False)
            else:
                span.state(updated)
            self.book.updated(updated)
        elif store.durable:
            session = self.book.held(record.id)
            if session is not None:
                await self._write(lambda: session.refresh())

    def _answer(
        self,
        record: SessionRecord,
        result: PlaceCallResult | None,
        error: PhoneConfirmError | None,
    ) -> Awaitable[SessionRecord | None]:
        """Write a call's answer: FAILED by a permanent error, else the result (None: the
        outcome is unknown, the call counts)."""
        store = self.store
        if error is not None:
            return self._write(
                lambda: store.finish(
                    record.id,
                    SessionState.FAILED,
                    store.now(),
                    error=error,
                    claimed_at=record.claimed_at,
                )
            )
        if logger.isEnabledFor(logging.DEBUG) and record.request is not None:
            logger.debug(
                "session %s: call %d/%d to %s: %s",
                record.id,
                record.calls_made,
                record.calls_allowed,
                mask_phone(record.request.phone),
                "unknown outcome" if result is None else result.status,
            )
        return self._write(lambda: store.record_call(record, result, store.now()))

    async def _not_sent(self, claim: Claim, reason: NotSent, span: OperationSpan) -> None:
        """A fenced call that never left: give the claim back if it still holds (the
        session is due again, the call not counted); a peer's settlement is left as it is."""
        record = claim.record
        level = logging.WARNING if reason.stalled else logging.INFO
        logger.log(level, "session %s: call not sent: %s", record.id, reason)
        span.outcome("not_sent")
        store = self.store
        updated = await self._write(lambda: store.release(record, store.now()))
        if updated is not None:
            self.book.updated(updated)

    def _write(self, write: Callable[[], Awaitable[_T]]) -> Awaitable[_T | None]:
        return self.writes.write(write)

    async def _renew_claims(self, lease: float) -> None:
        """Keep this process's claims while their calls are in flight: every third of the
        lease, one statement for all of them. A claim the store no longer holds (a peer
        settled it after this process stalled, its session ended) is never sent."""
        store = self.store
        while True:
            await anyio.sleep(lease / 3)
            if not self.in_flight:
                continue
            claims = list(self.in_flight.values())
            try:
                renewed = await store.renew([claim.record for claim in claims], store.now())
            except StoreError as exc:
                self.outage.failed(exc)  # the fence stops the calls whose lease runs out
                continue
            self.outage.recovered()
            for claim in claims:
                if claim.record.id in renewed.ids:
                    claim.held(renewed.at, lease)
                else:
                    claim.lost()
