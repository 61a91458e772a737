"""The emulator's memory: call log, transactions and the seeded fault generator.

Everything here is mutated only from the emulator's own event loop thread; readers in other
threads (the test's side) take ``lock`` to get a consistent snapshot.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass
from typing import Literal

from phoneconfirm_async.emulator._config import CallRecord, EmulatorConfig

Phase = Literal["before", "after"]


@dataclass(frozen=True, slots=True)
class Fault:
    """A fault drawn for one request: the endpoint, its kind, and whether it struck before
    the work was done (nothing happened) or after (a call was dialed, the answer lost)."""

    endpoint: str
    kind: str
    phase: Phase


@dataclass(slots=True)
class _Transaction:
    code: str
    verified: bool = False


class EmulatorState:
    """Call log, transactions and fault draws of one emulator instance."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.lock = threading.Lock()
        self._arrived = threading.Condition(self.lock)
        self._rng = random.Random(config.seed)
        self._calls: list[CallRecord] = []
        self._transactions: dict[str, _Transaction] = {}
        self._requests = 0
        self._verifications = 0
        self._faults: list[Fault] = []
        self._next_tx = 0
        # The prefix makes transaction numbers of two emulator runs differ, yet stay digits.
        self._tx_prefix = str(self._rng.randrange(100, 1000))

    # -- faults ---------------------------------------------------------------------------
    def draw_fault(self, endpoint: str) -> Fault | None:
        """Draw the fault for the next request, deterministically from the seed.

        Three numbers are drawn for every request, fault or not, so that the sequence of
        faults depends only on the seed and the order of requests.
        """
        with self.lock:
            self._requests += 1
            self._arrived.notify_all()
            roll = self._rng.random()
            kind_roll = self._rng.random()
            phase_roll = self._rng.random()
        faults = self.config.faults
        if not faults or roll >= self.config.fault_rate:
            return None
        kind = faults[int(kind_roll * len(faults))]
        # A 429 is a refusal: the service did nothing, so it can only come "before".
        phase: Phase = "before" if kind == "http_429" or phase_roll < 0.5 else "after"
        fault = Fault(endpoint, kind, phase)
        with self.lock:
            self._faults.append(fault)
        return fault

    # -- calls ----------------------------------------------------------------------------
    def record_call(
        self, phone: str, country_code: str, code: str, params: dict[str, str]
    ) -> CallRecord:
        """Dial a call: give it a transaction number and append it to the call log."""
        with self.lock:
            self._next_tx += 1
            tx = f"{self._tx_prefix}{self._next_tx:09d}"
            record = CallRecord(phone, country_code, code, tx, time.time(), params)
            self._calls.append(record)
            self._transactions[tx] = _Transaction(code)
            self._arrived.notify_all()
        return record

    def verify(self, transaction_number: str, code: str) -> bool | None:
        """Check a code: True if it matches, False if not, None if the transaction is unknown."""
        with self.lock:
            self._verifications += 1
            tx = self._transactions.get(transaction_number)
            if tx is None:
                return None
            if tx.code == code:
                tx.verified = True
                return True
            return False

    @property
    def calls(self) -> list[CallRecord]:
        with self.lock:
            return list(self._calls)

    @property
    def faults(self) -> list[Fault]:
        with self.lock:
            return list(self._faults)

    @property
    def request_count(self) -> int:
        with self.lock:
            return self._requests

    @property
    def verification_count(self) -> int:
        with self.lock:
            return self._verifications

    def wait_for_requests(self, count: int, timeout: float | None) -> bool:
        """Block until ``count`` requests have arrived; False if the timeout struck first."""
        with self._arrived:
            return self._arrived.wait_for(lambda: self._requests >= count, timeout)

    def wait_for_calls(self, count: int, timeout: float | None) -> bool:
        """Block until ``count`` calls were dialed; False if the timeout struck first."""
        with self._arrived:
            return self._arrived.wait_for(lambda: len(self._calls) >= count, timeout)

    def heard_code(self, phone: str) -> str | None:
        """The code the simulated person heard on the latest call they picked up, if any."""
        digits = "".join(ch for ch in phone if ch.isdigit())
        heard: str | None = None
        attempt = 0
        for call in self.calls:
            if call.phone != digits:
                continue
            attempt += 1
            if attempt >= self.config.answer_on_attempt and digits not in (
                self.config.failing_numbers
            ):
                heard = call.code
        return heard
