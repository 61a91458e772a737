"""Phone numbers as people type them (the ``numbers`` extra, libphonenumber's metadata),
the policy's blocked number types, and today's rules where the extra is not installed."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Callable
from types import ModuleType

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phoneconfirm_async import (
    ConfigurationError,
    ConfirmationPolicy,
    PhoneConfirmClient,
    PlaceCallRequest,
    ValidationError,
    _numbers,
)
from phoneconfirm_async.emulator import Emulator
from tests.conftest import API_KEY, DOMAIN


@pytest.mark.parametrize(
    ("phone", "country_code", "wire"),
    [
        ("+15555550123", None, ("5555550123", "1")),
        ("+1 (555) 555-0123", None, ("5555550123", "1")),
        (" +1.555.555.0123 ", "", ("5555550123", "1")),
        ("+15555550123", "+1", ("5555550123", "1")),
        ("+44 20 7946 0018", None, ("2079460018", "44")),
        ("020 7946 0018", "44", ("2079460018", "44")),  # the trunk 0 is not dialled abroad
        ("+39 06 1234 5678", None, ("0612345678", "39")),  # Italy keeps its leading 0
        ("+800 1234 5678", None, ("12345678", "800")),  # a non-geographic code
        # Fictional numbers are possible, not valid: they keep working as they did.
        ("5555550123", "1", ("5555550123", "1")),
        ("(555) 555-0123", "+1", ("5555550123", "1")),
        ("1 555 555 0123", "1", ("5555550123", "1")),  # the national prefix, as dialled
    ],
)
def test_numbers_in_every_form_people_type(
    phone: str, country_code: str | None, wire: tuple[str, str]
) -> None:
    request = PlaceCallRequest(phone, country_code, "1234")
    assert (request.phone, request.country_code) == wire


@pytest.mark.parametrize(
    ("phone", "country_code", "field", "says"),
    [
        ("+1 555 0123", None, "phone", "too short for +1: a local number"),
        ("+1 555 555 01234", None, "phone", "too long for +1"),
        ("+44 20 79", None, "phone", "too short for +44"),
        ("+15555550123x12", None, "phone", "'+' and 4 to 15 digits"),  # an extension
        ("+999 1234 5678", None, "phone", "no country calling code"),
        ("12345678", "999", "country_code", "not a country calling code"),
        ("+15555550123", "44", "country_code", "differs from the number's own (+1)"),
        ("5555550123", None, "country_code", "international form"),
        ("+1 555-CALL-NOW", None, "phone", "'+' and 4 to 15 digits"),
        ("+12", None, "phone", "'+' and 4 to 15 digits"),
        ("12", "1", "phone", "4 to 15 digits"),
    ],
)
def test_impossible_numbers_say_why(
    phone: str, country_code: str | None, field: str, says: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        PlaceCallRequest(phone, country_code, "1234")
    assert caught.value.field == field
    assert says in caught.value.rule
    assert "0123" not in str(caught.value)  # the number itself is never in the error


def _outcome(check: Callable[..., tuple[str, str]], *args: str | None) -> object:
    """What a check returns, or the field and rule it refuses with."""
    try:
        return check(*args)
    except ValidationError as error:
        return (error.field, error.rule)


def _library() -> ModuleType:
    lib = _numbers.library()
    assert lib is not None
    return lib


def _parsed(text: str, region: str | None) -> object:
    """What libphonenumber's own ``parse()`` makes of a number: the slow path, always."""
    lib = _library()
    return _outcome(lambda: _numbers._checked(lib, _numbers._parse(lib, text, region)))


_CODES = sorted(str(code) for code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE)
_TRICKY_STARTS = ["", "", "0", "00", "1", "8", "9", "011", "0011", "15", "90", "44", "810"]


@settings(max_examples=3000, deadline=None)
@given(
    country_code=st.sampled_from(_CODES),
    start=st.sampled_from(_TRICKY_STARTS),
    rest=st.text(alphabet="0123456789", min_size=1, max_size=15),
)
def test_the_shortcut_agrees_with_parse(country_code: str, start: str, rest: str) -> None:
    """Numbers that ``parse()`` would not rewrite skip it (17 us a number); for every
    country and for starts that look like trunk, international or country prefixes, the
    wire form (or the refusal) is the one ``parse()`` gives."""
    digits = (start + rest)[:15]
    if len(digits) < 4:
        return
    region = phonenumbers.region_code_for_country_code(int(country_code))
    if region == "001":  # a non-geographic code parses in international form
        expected = _parsed(f"+{country_code}{digits}", None)
    else:
        expected = _parsed(digits, region)
    assert _outcome(_numbers.national, digits, country_code) == expected
    international = f"+{country_code}{digits}"[:16]
    expected = _parsed(international, None)
    assert _outcome(_numbers.international, international, None) == expected


@pytest.mark.parametrize("region", ["US", "GB", "IT", "RU", "DE", "FR", "AU", "JP", "BR", "AR"])
def test_number_types_from_the_wire_form(region: str) -> None:
    """libphonenumber's example number of each type, typed in international form, keeps
    its type through the wire form (Italy's leading zero, Russia's 8 included)."""
    checked = 0
    for name in _numbers.NUMBER_TYPES:
        kind = getattr(phonenumbers.PhoneNumberType, name.upper())
        example = phonenumbers.example_number_for_type(region, kind)
        if example is None or name == "unknown":
            continue
        typed = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)
        try:
            request = PlaceCallRequest(typed, None, "1234")
        except ValidationError:
            continue  # a type whose example is not callable as a whole number (local only)
        expected = _numbers.NUMBER_TYPES[
            [
                getattr(phonenumbers.PhoneNumberType, n.upper()) for n in _numbers.NUMBER_TYPES
            ].index(phonenumbers.number_type(example))
        ]
        assert _numbers.number_type(request.phone, request.country_code) == expected, typed
        checked += 1
    assert checked >= 2


@pytest.mark.anyio
async def test_blocked_number_types_are_refused_at_schedule(emulator: Emulator) -> None:
    """Premium-rate and shared-cost numbers are refused before anything is stored or
    dialled; other lines, and fictional numbers, are called."""
    policy = ConfirmationPolicy(blocked_number_types={"premium_rate", "shared_cost"})
    client = PhoneConfirmClient(API_KEY, DOMAIN, base_url=emulator.base_url)
    async with client, client.scheduler(policy=policy) as scheduler:
        for phone in ("+1 900 234 5678", "+44 901 234 5678", "+33 8 84 01 23 45"):
            with pytest.raises(ValidationError) as caught:
                await scheduler.schedule(phone)
            assert caught.value.field == "phone"
            assert ("premium rate" in caught.value.rule) or ("shared cost" in caught.value.rule)
        for phone in ("+44 20 7946 0018", "+15555550123"):
            session = await scheduler.schedule(phone)
            assert await session.wait_called()
    assert [call.country_code for call in emulator.calls] == ["44", "1"]


@pytest.mark.anyio
async def test_unknown_refuses_numbers_no_real_line_has(emulator: Emulator) -> None:
    policy = ConfirmationPolicy(blocked_number_types={"unknown"})
    client = PhoneConfirmClient(API_KEY, DOMAIN, base_url=emulator.base_url)
    async with client, client.scheduler(policy=policy) as scheduler:
        with pytest.raises(ValidationError, match="unknown number"):
            await scheduler.schedule("+15555550123")  # fictional: possible, not valid
        session = await scheduler.schedule("+44 20 7946 0018")
        assert await session.wait_called()
    assert len(emulator.calls) == 1


def test_a_type_libphonenumber_does_not_have_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="'premium' is not a libphonenumber"):
        ConfirmationPolicy(blocked_number_types={"premium"})
    with pytest.raises(ConfigurationError, match="collection of number types"):
        ConfirmationPolicy(blocked_number_types="premium_rate")
    policy = ConfirmationPolicy(blocked_number_types=["voip", "toll_free"])
    assert policy.blocked_number_types == frozenset({"voip", "toll_free"})
    assert hash(policy)  # still a frozen, hashable value


#: Run where ``phonenumbers`` cannot be imported (``sys.modules`` says so before the
#: package is imported): today's rules, and the extra named wherever it is needed.
WITHOUT_THE_EXTRA = textwrap.dedent(
    """
    import json, sys
    sys.modules["phonenumbers"] = None
    from phoneconfirm_async import (
        ConfigurationError, ConfirmationPolicy, PlaceCallRequest, ValidationError,
    )

    def attempt(*args):
        try:
            request = PlaceCallRequest(*args)
        except ValidationError as error:
            return [error.field, error.rule]
        return [request.phone, request.country_code, request.code]

    out = {
        "national": attempt("(555) 555-0123", "+1", "12 34"),
        "trunk": attempt("020 7946 0018", "44", "1234"),
        "short": attempt("1234", "1", "1234"),
        "international": attempt("+15555550123", None, "1234"),
        "no_country": attempt("5555550123", None, "1234"),
    }
    try:
        ConfirmationPolicy(blocked_number_types={"premium_rate"})
    except ConfigurationError as error:
        out["policy"] = str(error)
    out["default_policy"] = repr(ConfirmationPolicy().blocked_number_types)
    print(json.dumps(out))
    """
)


def test_without_the_extra_todays_rules_stand() -> None:
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_THE_EXTRA],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    out = json.loads(done.stdout)
    assert out["national"] == ["5555550123", "1", "1234"]
    assert out["trunk"] == ["02079460018", "44", "1234"]  # as given: no metadata to parse it
    assert out["short"] == ["1234", "1", "1234"]  # 4 digits: today's shortest
    field, rule = out["international"]
    assert field == "phone"
    assert "'numbers' extra" in rule
    assert "pip install 'phoneconfirm-async[numbers]'" in rule
    assert out["no_country"][0] == "country_code"
    assert "needs the 'numbers' extra" in out["policy"]
    assert out["default_policy"] == "frozenset()"
