"""Phone numbers through libphonenumber (the ``numbers`` extra), when it is installed.

With ``phonenumbers`` importable, a phone may be international (``+15555550123``) or
national with its country code, and is checked as *possible* (libphonenumber's lengths for
its country) before anything is sent. It goes on the wire as the service expects it: the
national significant number (no trunk prefix) and the country calling code. Without the
extra, the rules of SPEC section 4 apply and an international number is refused with a
word on the extra. The library is imported on first use, not with the package.
"""

from __future__ import annotations

import functools
import re
from types import ModuleType
from typing import Any, Final

from phoneconfirm_async._errors import ConfigurationError, ValidationError

#: libphonenumber's number types, by the names a policy uses (``PhoneNumberType``'s
#: constants, lower-cased). ``unknown`` is a number valid for no real line.
NUMBER_TYPES: Final = (
    "fixed_line",
    "mobile",
    "fixed_line_or_mobile",
    "toll_free",
    "premium_rate",
    "shared_cost",
    "voip",
    "personal_number",
    "pager",
    "uan",
    "voicemail",
    "unknown",
)

EXTRA_HINT: Final = "pip install 'phoneconfirm-async[numbers]'"

_WHY_NOT_POSSIBLE: Final = {
    "TOO_SHORT": "is too short for +{code}",
    "TOO_LONG": "is too long for +{code}",
    "INVALID_LENGTH": "has a length that no number of +{code} has",
    "IS_POSSIBLE_LOCAL_ONLY": "is too short for +{code}: a local number, without its area code",
}


@functools.cache
def library() -> ModuleType | None:
    """The ``phonenumbers`` module, or None when the extra is not installed."""
    try:
        import phonenumbers
    except ImportError:
        return None
    return phonenumbers


def require(what: str) -> ModuleType:
    """The library, or a ConfigurationError saying that ``what`` needs the extra."""
    lib = library()
    if lib is None:
        raise ConfigurationError(f"{what} needs the 'numbers' extra ({EXTRA_HINT})")
    return lib


def international(text: str, country_code: str | None) -> tuple[str, str]:
    """An international number (``+`` and digits, separators removed) in wire form:
    (national significant number, country code). A ``country_code`` given too must agree."""
    lib = library()
    if lib is None:
        raise ValidationError(
            "phone",
            "an international number (+...) needs the 'numbers' extra "
            f"({EXTRA_HINT}); or give the national number and country_code",
        )
    digits = text[1:]
    # Country calling codes are a prefix code: the first of the 1-3 digit prefixes that is
    # one is the number's.
    for size in (1, 2, 3):
        found = digits[:size]
        if lib.region_code_for_country_code(int(found)) != "ZZ":
            break
    else:
        raise ValidationError("phone", "starts with no country calling code (libphonenumber)")
    if country_code is not None and country_code != found:
        raise ValidationError(
            "country_code", f"+{country_code} differs from the number's own (+{found})"
        )
    rest = digits[len(found) :]
    if _rewritten(found).match(rest) is None:
        return _possible(rest, found)
    return _checked(lib, _parse(lib, text, None))


def national(digits: str, country_code: str) -> tuple[str, str]:
    """A national number (digits) with its country code, in wire form (the library is
    installed)."""
    lib = library()
    assert lib is not None
    region = lib.region_code_for_country_code(int(country_code))
    if region == "ZZ":
        raise ValidationError(
            "country_code", f"+{country_code} is not a country calling code (libphonenumber)"
        )
    if _rewritten(country_code).match(digits) is None:
        return _possible(digits, country_code)
    # A region parses the trunk prefix ("020 ..." in the UK, a leading 1 in the US);
    # a non-geographic code (+800) has none, and parses in international form.
    if region == "001":
        number = _parse(lib, f"+{country_code}{digits}", None)
    else:
        number = _parse(lib, digits, region)
    return _checked(lib, number)


def number_type(phone: str, country_code: str) -> str:
    """The libphonenumber type of a number in wire form, by its ``NUMBER_TYPES`` name."""
    lib = require("blocked_number_types")
    # The wire form is the number's parts: no parse() (it could read a trunk prefix into
    # a national significant number that starts like one).
    number = lib.PhoneNumber(country_code=int(country_code), national_number=int(phone))
    if len(phone) > 1 and phone[0] == "0":  # significant leading zeros (Italy's)
        number.italian_leading_zero = True
        zeros = min(len(phone) - len(phone.lstrip("0")), len(phone) - 1)
        if zeros != 1:
            number.number_of_leading_zeros = zeros
    kind = lib.number_type(number)
    for name in NUMBER_TYPES:
        if getattr(lib.PhoneNumberType, name.upper()) == kind:
            return name
    return "unknown"


def _possible(digits: str, country_code: str) -> tuple[str, str]:
    """Digits that are the national significant number as they stand (``parse()``, at 17
    us a number, has nothing to rewrite in them), checked by their length alone: what
    libphonenumber's possible-number test looks at."""
    why = _why_not_possible(country_code, len(digits))
    if why is not None:
        raise ValidationError("phone", why)
    return digits, country_code


@functools.cache
def _why_not_possible(country_code: str, length: int) -> str | None:
    lib = library()
    assert lib is not None
    sample = lib.PhoneNumber(country_code=int(country_code), national_number=int("9" * length))
    try:
        _checked(lib, sample)
    except ValidationError as error:
        return error.rule
    return None


@functools.cache
def _rewritten(country_code: str) -> re.Pattern[str]:
    """What ``parse()`` may rewrite at the start of a national number of this country: its
    international (IDD) prefix, its national (trunk) prefix or carrier codes, and the
    country code itself. A pattern that can match nothing at all (Argentina's) sends
    every number through ``parse()``. ``tests/test_numbers.py`` checks the shortcut against
    ``parse()`` on generated numbers of many countries."""
    lib = library()
    assert lib is not None
    region = lib.region_code_for_country_code(int(country_code))
    metadata = lib.PhoneMetadata.metadata_for_region_or_calling_code(int(country_code), region)
    patterns = [re.escape(country_code)]
    if metadata is not None:
        if metadata.international_prefix:
            patterns.append(metadata.international_prefix)
        if metadata.national_prefix_for_parsing:
            patterns.append(metadata.national_prefix_for_parsing)
        elif metadata.national_prefix:
            patterns.append(re.escape(metadata.national_prefix))
    return re.compile("|".join(f"(?:{pattern})" for pattern in patterns))


def _parse(lib: ModuleType, text: str, region: str | None) -> Any:
    try:
        return lib.parse(text, region)
    except lib.NumberParseException as error:
        if error.error_type == lib.NumberParseException.INVALID_COUNTRY_CODE:
            raise ValidationError(
                "country_code" if region else "phone",
                "starts with no country calling code (libphonenumber)",
            ) from None
        raise ValidationError("phone", "is not a phone number (libphonenumber)") from None


def _checked(lib: ModuleType, number: Any) -> tuple[str, str]:
    code = str(number.country_code)
    reason = lib.is_possible_number_with_reason(number)
    if reason != lib.ValidationResult.IS_POSSIBLE:
        names = {getattr(lib.ValidationResult, name): name for name in _WHY_NOT_POSSIBLE}
        if reason not in names:
            raise ValidationError(
                "country_code", f"+{code} is not a country calling code (libphonenumber)"
            )
        why = _WHY_NOT_POSSIBLE[names[reason]].format(code=code)
        raise ValidationError("phone", f"{why} (libphonenumber's lengths)")
    return lib.national_significant_number(number), code
