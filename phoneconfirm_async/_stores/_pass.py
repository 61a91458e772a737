"""One pass over a SQL store's due rows: the rules of ``_rules`` applied to each row read,
and what the pass's transaction then writes (updates, deletes, held-back calls)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from phoneconfirm_async._stores._protocol import Claimed
from phoneconfirm_async._stores._rules import SessionRecord, Settled, held_back, settle_due
from phoneconfirm_async._stores._schema import record_from_row, update_values


class DuePass:
    """One pass over due rows, read in due order: the calls claimed, the sessions changed,
    and the rows to update and delete (written in the pass's transaction)."""

    __slots__ = (
        "claimed",
        "deletes",
        "free",
        "held",
        "lease",
        "limit",
        "now",
        "retain",
        "updates",
    )

    def __init__(
        self,
        now: float,
        limit: int,
        *,
        lease: float | None,
        retain: float,
        free: float = float("inf"),
    ) -> None:
        self.now = now
        self.limit = limit
        self.lease = lease
        self.retain = retain
        #: Calls the spend cap still allows.
        self.free = free
        self.claimed = Claimed([], [])
        self.updates: list[tuple[object, ...]] = []
        self.deletes: list[tuple[str]] = []
        #: Sessions whose due call the spend cap held back: written once their new due
        #: (when the cap frees a call) is known.
        self.held: list[SessionRecord] = []

    @staticmethod
    def batch_for(limit: int) -> int:
        """Rows to read at a time: enough for the claims and the rows settled beside them."""
        return max(limit, 1) * 2 + 64

    @property
    def full(self) -> bool:
        return len(self.claimed.calls) >= self.limit

    def take(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Apply the due rules to rows until ``limit`` calls are claimed."""
        for row in rows:
            if self.full:
                return
            record = record_from_row(row)
            outcome = settle_due(
                record, self.now, lease=self.lease, retain=self.retain, may_call=self.free > 0
            )
            if outcome is Settled.DELETED:
                self.deletes.append((record.id,))
                continue
            if outcome is Settled.CALLED:
                self.free -= 1
                self.claimed.calls.append(record)
            elif outcome is Settled.CHANGED:
                self.claimed.changed.append(record)
            if held_back(record, outcome, self.now):
                self.held.append(record)
            else:
                self.updates.append(update_values(record))

    def hold(self, until: float) -> None:
        """The held-back calls fall due when the spend cap frees one, at ``until``."""
        for record in self.held:
            record.due = until
            self.updates.append(update_values(record))
