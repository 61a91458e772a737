"""place_call and verify_code against the emulator, over real loopback sockets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from phoneconfirm_async import (
    ApiError,
    AuthenticationError,
    ConfigurationError,
    DomainNotAuthorizedError,
    InvalidRequestError,
    PhoneConfirmClient,
    PlaceCallResult,
    ValidationError,
    VerifyResult,
)
from phoneconfirm_async.emulator import Emulator
from tests.client.conftest import ClientFactory
from tests.conftest import API_KEY, DOMAIN, EmulatorFactory

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("fmt", ["json", "xml"])
async def test_place_and_verify(make_client: ClientFactory, emulator: Emulator, fmt: str) -> None:
    """A call is placed, the heard code verifies, a wrong code does not."""
    async with make_client(emulator, response_format=fmt) as client:
        placed = await client.place_call("(555) 555-0123", country_code="+1", code="4821")
        assert isinstance(placed, PlaceCallResult)
        assert placed.placed
        assert (placed.status, placed.error) == ("valid", 0)
        assert placed.transaction_number == emulator.calls[0].transaction_number
        assert emulator.calls[0].phone == "5555550123"  # digits only on the wire
        assert emulator.calls[0].params["type"] == fmt
        heard = emulator.heard_code("5555550123")
        assert heard == "4821"
        wrong = await client.verify_code(placed.transaction_number, "0000")
        assert isinstance(wrong, VerifyResult)
        assert not wrong.verified
        assert wrong.status == "invalid"
        right = await client.verify_code(placed.transaction_number, heard)
        assert right.verified


async def test_json_and_xml_give_equal_results(
    make_client: ClientFactory, emulator: Emulator
) -> None:
    """The same answer in JSON and XML normalizes to the same fields."""
    results = []
    for fmt in ("json", "xml"):
        async with make_client(emulator, response_format=fmt) as client:
            placed = await client.place_call("5555550123", country_code="1", code="4821")
            verified = await client.verify_code(placed.transaction_number, "4821")
            results.append((placed, verified))

    def comparable(result: PlaceCallResult | VerifyResult) -> dict[str, object]:
        raw = dict(result.raw)
        raw.pop("transaction_number")
        raw.pop("duration")
        return raw

    (p_json, v_json), (p_xml, v_xml) = results
    assert comparable(p_json) == comparable(p_xml)
    assert comparable(v_json) == comparable(v_xml)
    for result in (p_json, v_json, p_xml, v_xml):
        assert isinstance(result.duration, float)
        assert isinstance(result.transaction_number, str)
        assert result.error == 0


async def test_invalid_status_is_a_result(
    make_client: ClientFactory, make_emulator: EmulatorFactory
) -> None:
    """A failed call (status invalid) comes back as a result, not an exception."""
    emulator = make_emulator(failing_numbers={"5555550100"})
    async with make_client(emulator) as client:
        result = await client.place_call("5555550100", country_code="1", code="4821")
    assert not result.placed
    assert result.status == "invalid"
    assert len(emulator.calls) == 1


@pytest.mark.parametrize(
    ("kwargs", "error", "code"),
    [
        pytest.param({"api_key": "wrong-key"}, AuthenticationError, 2, id="error-2"),
        pytest.param({"domain": "evil.example"}, DomainNotAuthorizedError, 3, id="error-3"),
        pytest.param({"phone": "5555550199"}, InvalidRequestError, 4, id="error-4"),
    ],
)
async def test_error_codes_map_to_exceptions(
    transport: str,
    make_emulator: EmulatorFactory,
    kwargs: dict[str, str],
    error: type[Exception],
    code: int,
) -> None:
    """Each error code of the service raises its exception, with code and HTTP status."""
    emulator = make_emulator(uncallable_numbers={"5555550199"})
    settings = {"api_key": API_KEY, "domain": DOMAIN}
    settings.update({k: v for k, v in kwargs.items() if k in settings})
    phone = kwargs.get("phone", "5555550123")
    async with PhoneConfirmClient(
        settings["api_key"],
        settings["domain"],
        base_url=emulator.base_url,
        transport=transport,  # type: ignore[arg-type]
    ) as client:
        with pytest.raises(error) as caught:
            await client.place_call(phone, country_code="1", code="4821")
    assert caught.value.code == code  # type: ignore[attr-defined]
    assert caught.value.status_code == (503 if code == 3 else 200)  # type: ignore[attr-defined]
    assert emulator.request_count == 1  # none of these is retried


async def test_unknown_transaction_is_error_5(
    make_client: ClientFactory, emulator: Emulator
) -> None:
    """Verifying a transaction the service never issued raises InvalidRequestError (5)."""
    async with make_client(emulator) as client:
        with pytest.raises(InvalidRequestError) as caught:
            await client.verify_code("123456789", "4821")
    assert caught.value.code == 5


async def test_a_country_code_nobody_has_is_refused_before_sending(
    make_client: ClientFactory, emulator: Emulator
) -> None:
    """+999 is no country's code (libphonenumber): refused here, not by the service."""
    async with make_client(emulator) as client:
        with pytest.raises(ValidationError) as caught:
            await client.place_call("5555501990123", country_code="999", code="4821")
        assert caught.value.field == "country_code"
        with pytest.raises(ValidationError) as caught:
            await client.place_call("+999 5555501990", code="4821")
        assert caught.value.field == "phone"
    assert emulator.request_count == 0


async def test_server_side_redial_arguments_are_sent(
    make_client: ClientFactory, emulator: Emulator
) -> None:
    """Redial arguments given to place_call go to the service, in its wire forms."""
    when = datetime(2026, 12, 1, 10, 0, tzinfo=UTC) + timedelta(hours=1)
    async with make_client(emulator, secret_key="s3cret-value") as client:
        await client.place_call(
            "5555550123",
            country_code="1",
            code="4821",
            redial_count=2,
            redial_interval=timedelta(seconds=90.5),
            call_place_time=when,
        )
        await client.place_call(
            "5555550124", country_code="1", code="4821", call_place_time=timedelta(minutes=5)
        )
    first, second = (c.params for c in emulator.calls)
    assert first["redial_count"] == "2"
    assert first["redial_interval"] == "91"
    assert first["call_place_time"] == "2026-12-01 11:00:00"
    assert first["secret_key"] == "s3cret-value"
    assert second["call_place_time"] == "300"
    assert "redial_count" not in second


async def test_lifecycle_errors(make_client: ClientFactory, emulator: Emulator) -> None:
    """Using a client before opening or after closing is a clear error; no reuse."""
    client = PhoneConfirmClient(API_KEY, DOMAIN, base_url=emulator.base_url)
    with pytest.raises(RuntimeError, match="not open"):
        await client.place_call("5555550123", country_code="1", code="4821")
    async with client:
        pass
    with pytest.raises(RuntimeError, match="closed"):
        await client.verify_code("1", "4821")
    with pytest.raises(RuntimeError, match="only once"):
        await client.__aenter__()


async def test_a_base_url_without_services_says_where_the_endpoints_are(
    transport: str, emulator: Emulator
) -> None:
    """The emulator's root instead of its ``/services``: a 404 that names the path asked
    (not the query, which holds the key) and hints at ``/services``."""
    root = emulator.base_url.removesuffix("/services")
    async with PhoneConfirmClient(
        API_KEY,
        DOMAIN,
        base_url=root,
        transport=transport,  # type: ignore[arg-type]
    ) as client:
        with pytest.raises(ApiError) as caught:
            await client.place_call("5555550123", country_code="1", code="4821")
    message = str(caught.value)
    assert "unexpected HTTP 404 answer from /phoneconfirm/placecall/" in message
    assert "the base URL ends in /services" in message
    assert API_KEY not in message
    assert "4821" not in message
    assert emulator.calls == []


async def test_validation_failure_sends_nothing(
    make_client: ClientFactory, emulator: Emulator
) -> None:
    """Bad input raises ValidationError and the emulator sees no request."""
    async with make_client(emulator) as client:
        with pytest.raises(ValidationError, match="phone"):
            await client.place_call("12", country_code="1", code="4821")
        with pytest.raises(ValidationError, match="redial_count"):
            await client.place_call("5555550123", country_code="1", code="1", redial_count=11)
        with pytest.raises(ValidationError, match="call_place_time"):
            await client.place_call(
                "5555550123", country_code="1", code="1", call_place_time=datetime(2026, 1, 1)
            )
        with pytest.raises(ValidationError, match="code"):
            await client.verify_code("123", "12.34")
    assert emulator.request_count == 0


def test_configuration_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """A missing key or domain is a ConfigurationError naming the environment variable."""
    for name in ("PHONECONFIRM_API_KEY", "PHONECONFIRM_DOMAIN", "PHONECONFIRM_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigurationError, match="PHONECONFIRM_API_KEY"):
        PhoneConfirmClient(domain="example.com")
    with pytest.raises(ConfigurationError, match="PHONECONFIRM_DOMAIN"):
        PhoneConfirmClient("key")
    monkeypatch.setenv("PHONECONFIRM_API_KEY", "env-key")
    monkeypatch.setenv("PHONECONFIRM_DOMAIN", "env.example")
    monkeypatch.setenv("PHONECONFIRM_BASE_URL", "http://127.0.0.1:9/services/")
    client = PhoneConfirmClient()
    assert client.domain == "env.example"
    assert client.base_url == "http://127.0.0.1:9/services"
    assert "env-key" not in repr(client)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"base_url": "ftp://example.com"}, "base_url"),
        ({"base_url": "not a url"}, "base_url"),
        ({"response_format": "yaml"}, "response_format"),
        ({"max_concurrency": 0}, "max_concurrency"),
        ({"rate_limit": 0}, "rate_limit"),
        ({"timeout": -1}, "timeout"),
        ({"transport": "carrier-pigeon"}, "transport"),
        ({"retry_budget": -1}, "retry_budget"),
    ],
)
def test_bad_settings(options: dict[str, object], match: str) -> None:
    """Invalid settings are refused at construction, naming the setting."""
    with pytest.raises(ConfigurationError, match=match):
        PhoneConfirmClient("key", "example.com", **options)  # type: ignore[arg-type]


def test_default_base_url_is_https(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a base URL the client talks to the real service over HTTPS."""
    monkeypatch.delenv("PHONECONFIRM_BASE_URL", raising=False)
    client = PhoneConfirmClient("key", "example.com")
    assert client.base_url == "https://www.xverify.com/services"
