"""The store protocol: what a scheduler asks of the place its sessions live, and what a
pass over due rows returns. Implement ``SessionStore`` to keep sessions anywhere; the rules
it applies are in ``phoneconfirm_async.stores`` (``settle_due``, ``may_finish``, ...) and
``phoneconfirm_async.testing.StoreContract`` checks an implementation.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Collection, Sequence
from typing import NamedTuple, Protocol, runtime_checkable

from phoneconfirm_async._errors import PhoneConfirmError
from phoneconfirm_async._models import PlaceCallResult
from phoneconfirm_async._stores._rules import Quota, SessionRecord, SessionState, Throttled


class Claimed(NamedTuple):
    """What one pass over the due rows did: calls to dial now, sessions that changed."""

    calls: list[SessionRecord]
    changed: list[SessionRecord]
    #: ``time.monotonic()`` read with the claims' ``claimed_at``, under the store's lock:
    #: where their leases start on this process's clock.
    at: float = 0.0
    #: The spend cap held calls back: when (store clock) its window frees a call.
    capped: float | None = None


class Renewed(NamedTuple):
    """What ``SessionStore.renew`` did: the claims this process still holds, whose leases
    now run from ``at`` (``time.monotonic()``, read with the new lease end)."""

    at: float
    ids: frozenset[str]


#: Called with a session id when another process changed that session (a store that can
#: tell, such as PostgreSQL with LISTEN/NOTIFY).
ChangeHook = Callable[[str], None]


@runtime_checkable
class SessionStore(Protocol):
    """What a scheduler needs from the place its sessions live.

    The three stores are ``MemoryStore`` (one process, anyio's clock),
    ``SQLiteStore`` (one host) and ``PostgresStore`` (several hosts). Every method
    but ``open``, ``now`` and ``wake`` is used only while open. Conditional
    updates (``claimed_at`` must match, VERIFIED is final) are what make several processes
    on one store safe: each returns None when the condition failed.

    A durable store's failures are ``StoreError``; it must never lose a claim. To write
    one, apply the rules of ``phoneconfirm_async.stores`` (``settle_due``, ``may_finish``,
    ``end``, ``holds``, ``release``, ``answered``) each under one lock or in one
    conditional update, return snapshots (never a record the store keeps changing), and
    check it with ``phoneconfirm_async.testing.StoreContract``.
    """

    #: For messages: "memory", "sqlite:<path>", "postgresql://host/db" (no password).
    name: str
    #: True when sessions outlive the scheduler and are shared between processes.
    durable: bool
    #: Seconds a claim holds a call before another process may settle it; None: never.
    lease: float | None
    #: Seconds between looks for work other processes made due; None: nothing to look for.
    poll_interval: float | None

    def now(self) -> float:
        """The store's clock: anyio's for memory, Unix time (UTC) for durable stores."""
        ...

    def open(
        self, *, retain: float, on_change: ChangeHook
    ) -> contextlib.AbstractAsyncContextManager[None]:
        """Connect (and create the schema) for the length of a scheduler's block.

        Raises:
            ConfigurationError: the store cannot be reached or used (names the store).
        """
        ...

    async def add(
        self, record: SessionRecord, *, quotas: Sequence[Quota] = ()
    ) -> Throttled | None:
        """Store a new session, unless a quota is full: then store nothing and say which
        (the first full one, in order). Checking the quotas, counting the session in each
        (keyed hashes, never ``value`` in clear) and adding it are one atomic step: two
        processes never both take a quota's last place."""
        ...

    async def load(self, session_id: str) -> SessionRecord | None:
        """The session, or None when unknown or deleted."""
        ...

    async def claim(
        self,
        now: float,
        limit: int,
        *,
        exclude: Collection[str] = (),
        calls_per_hour: int | None = None,
    ) -> Claimed:
        """Settle every row due at ``now`` and claim at most ``limit`` calls, leaving the
        sessions in ``exclude`` (this process's calls in flight) alone.

        With ``calls_per_hour``, the calls claimed on the whole store in the trailing hour
        (every process's, counted as they are claimed, given back by ``release``) never
        exceed it: the calls held back stay due, and ``Claimed.capped`` says when the cap
        frees one.

        A durable store reads its clock again once it holds its lock, stamps ``claimed_at``
        and the lease with that reading, and returns ``time.monotonic()`` read with it.
        """
        ...

    async def renew(self, records: Collection[SessionRecord], now: float) -> Renewed:
        """Extend the leases of the calls this process has in flight; say which claims
        still hold (the others were settled elsewhere, or their session ended)."""
        ...

    async def release(self, record: SessionRecord, now: float) -> SessionRecord | None:
        """Give back a claimed call that was never sent, if the claim still holds: the
        session is due again at ``now`` and the call is not counted."""
        ...

    async def record_call(
        self, record: SessionRecord, result: PlaceCallResult | None, now: float
    ) -> SessionRecord | None:
        """A claimed call's answer (None: outcome unknown). Appends it to ``attempts``;
        when the claim still holds, AWAITING_CODE with the next ``due = now + interval``."""
        ...

    async def take_attempt(self, session_id: str, now: float) -> SessionRecord | None:
        """Take one verification attempt, in one conditional update, if ``may_check``
        allows it; return the session with it counted, or None (refused, or unknown)."""
        ...

    async def return_attempt(self, session_id: str) -> None:
        """Give back an attempt whose verification request was never sent."""
        ...

    async def finish(
        self,
        session_id: str,
        state: SessionState,
        now: float,
        *,
        error: PhoneConfirmError | None = None,
        claimed_at: float | None = None,
    ) -> SessionRecord | None:
        """Move a session to a final state, if its state allows (see the module doc)."""
        ...

    async def next_due(self) -> float | None:
        """The earliest ``due`` of any row, or None."""
        ...

    async def wait(self, until: float | None) -> None:
        """Sleep until ``until`` (store clock), ``wake``, or work another process made."""
        ...

    def wake(self) -> None:
        """End the current ``wait`` early (this process added or freed something)."""
        ...
