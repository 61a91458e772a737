"""Requests and results: frozen values, safe to log (codes are left out of reprs)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from phoneconfirm_async import _validation

#: The two operations of the service, named as its endpoints are.
Operation = Literal["placecall", "verifycode"]


@dataclass(frozen=True, slots=True)
class PlaceCallRequest:
    """One call to place: validated and normalized on construction.

    Raises:
        ValidationError: a field breaks its rule (the error names the field).
    """

    phone: str
    country_code: str
    code: str = field(repr=False)

    def __init__(self, phone: str, country_code: str | None, code: str) -> None:
        # Each field validated and set once (the generated __init__ would set it twice).
        phone, country_code, code = _validation.place_fields(phone, country_code, code)
        object.__setattr__(self, "phone", phone)
        object.__setattr__(self, "country_code", country_code)
        object.__setattr__(self, "code", code)

    @classmethod
    def from_row(cls, row: PlaceCallRequest | Mapping[str, Any]) -> PlaceCallRequest:
        """Accept a request or a mapping with ``phone``, ``country_code`` and ``code``."""
        if isinstance(row, PlaceCallRequest):
            return row
        return cls(row.get("phone"), row.get("country_code"), row.get("code"))  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class VerifyRequest:
    """One code to check against a placed call's transaction number.

    Raises:
        ValidationError: a field breaks its rule (the error names the field).
    """

    transaction_number: str
    code: str = field(repr=False)

    def __init__(self, transaction_number: str, code: str) -> None:
        # Each field validated and set once (the generated __init__ would set it twice).
        object.__setattr__(
            self, "transaction_number", _validation.transaction_number(transaction_number)
        )
        object.__setattr__(self, "code", _validation.code(code))

    @classmethod
    def from_row(cls, row: VerifyRequest | Mapping[str, Any]) -> VerifyRequest:
        """Accept a request or a mapping with ``transaction_number`` and ``code``."""
        if isinstance(row, VerifyRequest):
            return row
        return cls(row.get("transaction_number"), row.get("code"))  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class _Result:
    status: str | None
    error: int
    message: str | None
    transaction_number: str | None
    duration: float | None
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_fields(cls, fields: Mapping[str, Any]) -> Any:
        get = fields.get
        message = get("message")
        if message.__class__ is not str and message is not None:
            message = str(message)
        number = get("transaction_number")
        if number.__class__ is not str and number is not None:
            number = str(number)
        duration = get("duration")
        if duration.__class__ is not float and not isinstance(duration, float):
            duration = None
        return cls(get("status"), get("error", 0), message, number, duration, fields)


@dataclass(frozen=True, slots=True)
class PlaceCallResult(_Result):
    """The service's answer to a call placement.

    ``status`` is ``"valid"`` when the call was submitted and ``"invalid"`` when it failed;
    an invalid status is a normal result, not an exception. ``raw`` is the normalized dict.
    """

    @property
    def placed(self) -> bool:
        """True when the service submitted the call."""
        return self.error == 0 and self.status == "valid"


@dataclass(frozen=True, slots=True)
class VerifyResult(_Result):
    """The service's answer to a code check: ``verified`` when the code matched."""

    @property
    def verified(self) -> bool:
        """True when the code matched the call's code."""
        return self.error == 0 and self.status == "valid"
