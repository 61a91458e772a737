"""Configuration and records of the Phone Confirm emulator."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

#: Every fault the emulator can inject, in the order ``faults`` defaults to.
FAULT_KINDS: Final = ("http_500", "http_503", "http_429", "reset", "hang", "truncated", "html")

DEFAULT_API_KEY: Final = "emulator-key"
DEFAULT_DOMAIN: Final = "example.com"


def _frozen(values: Iterable[str]) -> tuple[str, ...]:
    if isinstance(values, str):
        return (values,)
    return tuple(values)


def _digit_set(phones: Iterable[str]) -> frozenset[str]:
    return frozenset("".join(ch for ch in phone if ch.isdigit()) for phone in _frozen(phones))


@dataclass(frozen=True, kw_only=True)
class EmulatorConfig:
    """How the emulator behaves.

    Args:
        api_keys: keys the emulator accepts (error 2 for any other).
        trusted_domains: domains allowed to use the keys (HTTP 503 with error 3 otherwise).
        latency: seconds to wait before answering each request.
        fault_rate: probability (0-1) that a request suffers a fault.
        faults: the fault kinds to draw from (see ``FAULT_KINDS``).
        hang_seconds: how long a ``"hang"`` fault holds the request before dropping it.
        retry_after: the ``Retry-After`` header (whole seconds) of a ``"http_429"`` fault.
        failing_numbers: phones whose calls fail (``error 0, status invalid``).
        uncallable_numbers: phones that are refused as not callable (error 4).
        answer_on_attempt: the simulated person picks up the Nth call to a number.
        seed: seed of the fault generator; the same seed gives the same faults.
        host: interface to bind, loopback by default.
        port: port to bind; 0 picks a free one.
    """

    api_keys: tuple[str, ...] = (DEFAULT_API_KEY,)
    trusted_domains: tuple[str, ...] = (DEFAULT_DOMAIN,)
    latency: float = 0.0
    fault_rate: float = 0.0
    faults: tuple[str, ...] = FAULT_KINDS
    hang_seconds: float = 30.0
    retry_after: int = 1
    failing_numbers: frozenset[str] = frozenset()
    uncallable_numbers: frozenset[str] = frozenset()
    answer_on_attempt: int = 1
    seed: int | None = None
    host: str = "127.0.0.1"
    port: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "api_keys", _frozen(self.api_keys))
        object.__setattr__(self, "trusted_domains", _frozen(self.trusted_domains))
        object.__setattr__(self, "faults", _frozen(self.faults))
        object.__setattr__(self, "failing_numbers", _digit_set(self.failing_numbers))
        object.__setattr__(self, "uncallable_numbers", _digit_set(self.uncallable_numbers))
        if not (0.0 <= self.fault_rate <= 1.0) or math.isnan(self.fault_rate):
            raise ValueError("fault_rate must be between 0 and 1")
        unknown = set(self.faults) - set(FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}; known: {FAULT_KINDS}")
        if self.fault_rate > 0 and not self.faults:
            raise ValueError("faults must name at least one kind when fault_rate > 0")
        if self.latency < 0 or self.hang_seconds < 0 or self.retry_after < 0:
            raise ValueError("latency, hang_seconds and retry_after must not be negative")
        if self.answer_on_attempt < 1:
            raise ValueError("answer_on_attempt must be at least 1")
        if not 0 <= self.port <= 65535:
            raise ValueError("port must be between 0 and 65535")


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One call the emulator dialed, in dialing order.

    ``at`` is the unix time the call was dialed; ``params`` are the query parameters of the
    request that placed it (so tests can check what a client sent).
    """

    phone: str
    country_code: str
    code: str = field(repr=False)
    transaction_number: str
    at: float
    params: Mapping[str, str] = field(repr=False, compare=False)
