"""The input rules: every rule names its field, and good input is normalized."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from phoneconfirm_async import PlaceCallRequest, ValidationError, VerifyRequest
from phoneconfirm_async import _validation as v


@pytest.mark.parametrize(
    ("raw", "digits"),
    [
        ("5555550123", "5555550123"),
        ("(555) 555-0123", "5555550123"),
        ("555.555.0123", "5555550123"),
        ("1234", "1234"),
        ("123456789012345", "123456789012345"),
    ],
)
def test_phone_accepts_and_strips(raw: str, digits: str) -> None:
    """Spaces, dashes, dots and parentheses are stripped; 4-15 digits pass."""
    assert v.phone(raw) == digits


@pytest.mark.parametrize("raw", ["123", "1234567890123456", "555-CALL", "+15555550123", "", None])
def test_phone_rejects(raw: object) -> None:
    """Too short, too long, letters, '+' or nothing: ValidationError on 'phone'."""
    with pytest.raises(ValidationError) as caught:
        v.phone(raw)
    assert caught.value.field == "phone"
    assert "4 to 15 digits" in caught.value.rule


@pytest.mark.parametrize(("raw", "wire"), [("1", "1"), ("+44", "44"), ("351", "351"), (49, "49")])
def test_country_code_accepts(raw: object, wire: str) -> None:
    """1-3 digits, a leading '+' stripped."""
    assert v.country_code(raw) == wire


@pytest.mark.parametrize("raw", ["", "+", "1234", "4a", "++1", None, True])
def test_country_code_rejects(raw: object) -> None:
    """Anything but 1-3 digits is refused, naming country_code."""
    with pytest.raises(ValidationError, match="country_code"):
        v.country_code(raw)


@pytest.mark.parametrize(
    "raw", ["", "12345678901", "12.34", "12 34 56 78 90 1", " - ", "ñ1", 1234]
)
def test_code_rejects(raw: object) -> None:
    """Codes are 1-10 letters or digits, once spaces and dashes are removed."""
    with pytest.raises(ValidationError, match="code: must be 1 to 10 letters or digits"):
        v.code(raw)


@pytest.mark.parametrize("raw", ["123456", "123 456", "123-456", " 12 34 56\t", "12-34-56"])
def test_code_as_people_type_it(raw: str) -> None:
    """Spaces and dashes, as a person types a code they heard, are removed."""
    assert v.code(raw) == "123456"
    assert VerifyRequest("7", raw).code == "123456"


@pytest.mark.parametrize("raw", [-1, 11, 2.0, True, "2"])
def test_redial_count_rejects(raw: object) -> None:
    """redial_count is a whole number 0-10."""
    with pytest.raises(ValidationError, match="redial_count"):
        v.redial_count(raw)


@pytest.mark.parametrize("raw", [0, -5, 86400.5, timedelta(days=2), float("nan"), "60", None])
def test_redial_interval_rejects(raw: object) -> None:
    """redial_interval is positive and at most one day."""
    with pytest.raises(ValidationError, match="redial_interval"):
        v.redial_interval(raw)


def test_redial_interval_accepts_numbers_and_timedeltas() -> None:
    """Seconds as numbers or timedeltas."""
    assert v.redial_interval(60) == 60.0
    assert v.redial_interval(timedelta(minutes=2)) == 120.0
    assert v.redial_interval(86400) == 86400.0


def test_place_time_rules() -> None:
    """Aware datetimes stay absolute, relative delays become seconds, the past is now."""
    when = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    assert v.place_time(when) is when
    assert v.place_time(timedelta(seconds=30)) == 30.0
    assert v.place_time(-10) == 0.0
    with pytest.raises(
        ValidationError, match="call_place_time: a datetime must be timezone-aware"
    ):
        v.place_time(datetime(2026, 12, 1, 9, 0))
    with pytest.raises(ValidationError, match="call_place_time"):
        v.place_time("tomorrow")


def test_place_time_wire_form() -> None:
    """On the wire: UTC 'YYYY-MM-DD HH:MM:SS', or whole seconds."""
    cet = timezone(timedelta(hours=1))
    assert v.place_time_wire(datetime(2026, 12, 1, 10, 0, tzinfo=cet)) == "2026-12-01 09:00:00"
    assert v.place_time_wire(29.2) == "30"


def test_requests_validate_and_normalize() -> None:
    """PlaceCallRequest/VerifyRequest normalize on construction and are frozen."""
    request = PlaceCallRequest("(555) 555-0123", "+1", "4821")
    assert (request.phone, request.country_code) == ("5555550123", "1")
    with pytest.raises(AttributeError):
        request.phone = "1"  # type: ignore[misc]
    with pytest.raises(ValidationError, match="country_code"):
        PlaceCallRequest("5555550123", "", "4821")
    assert VerifyRequest(" 12345 ", "4821").transaction_number == "12345"
    with pytest.raises(ValidationError, match="transaction_number"):
        VerifyRequest("", "4821")
    assert PlaceCallRequest.from_row({"phone": "5555550123", "country_code": "1", "code": "1"})
    with pytest.raises(ValidationError, match="phone"):
        PlaceCallRequest.from_row({"country_code": "1", "code": "1"})
