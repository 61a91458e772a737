"""Secrets sweep: the key, the secret key and the code never leak, whatever happens."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from phoneconfirm_async import PhoneConfirmError, RetryPolicy
from tests.client.conftest import ClientFactory
from tests.conftest import EmulatorFactory

pytestmark = pytest.mark.anyio

API_KEY = "sk-LEAKCHECK-7f3a9"
SECRET_KEY = "SECRETb81cQ"
CODE = "Zq7Kx9"
SECRETS = (API_KEY, SECRET_KEY, CODE)

SCENARIOS = [
    pytest.param({}, id="success"),
    pytest.param({"api_keys": ("another-key",)}, id="error-2"),
    pytest.param({"trusted_domains": ("other.example",)}, id="error-3"),
    pytest.param({"uncallable_numbers": {"5555550123"}}, id="error-4"),
    pytest.param({"fault_rate": 1.0, "faults": ("http_429",), "retry_after": 999}, id="429"),
    pytest.param({"fault_rate": 1.0, "faults": ("http_500",)}, id="500"),
    pytest.param({"fault_rate": 1.0, "faults": ("html",)}, id="html"),
    pytest.param({"fault_rate": 1.0, "faults": ("reset",)}, id="reset"),
    pytest.param({"fault_rate": 1.0, "faults": ("truncated",)}, id="truncated"),
    pytest.param({"fault_rate": 1.0, "faults": ("hang",)}, id="hang"),
    pytest.param("stopped", id="connect-refused"),
]


def chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception, its causes, contexts and .cause attributes, transitively."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        for linked in (current.__cause__, current.__context__, getattr(current, "cause", None)):
            if isinstance(linked, BaseException):
                todo.append(linked)


def assert_clean(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text


@pytest.mark.parametrize("scenario", SCENARIOS)
async def test_no_secret_anywhere(
    make_client: ClientFactory,
    make_emulator: EmulatorFactory,
    caplog: pytest.LogCaptureFixture,
    scenario: dict[str, object] | str,
) -> None:
    """On success and every failure kind: exceptions, reprs and DEBUG logs hold no secret."""
    config = {} if scenario == "stopped" else dict(scenario)  # type: ignore[arg-type]
    emulator = make_emulator(api_keys=config.pop("api_keys", (API_KEY,)), **config)
    if scenario == "stopped":
        emulator.stop()
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    policy = RetryPolicy(max_attempts=2, initial_wait=0)
    async with make_client(
        emulator, api_key=API_KEY, secret_key=SECRET_KEY, retry=policy, timeout=0.3
    ) as client:
        texts.append(repr(client))
        for operation in ("place", "verify"):
            try:
                if operation == "place":
                    result = await client.place_call("5555550123", country_code="1", code=CODE)
                    texts.append(repr(result))
                else:
                    tx = emulator.calls[0].transaction_number if emulator.calls else "12345"
                    texts.append(repr(await client.verify_code(tx, CODE)))
            except PhoneConfirmError as exc:
                for linked in chain(exc):
                    texts += [str(linked), repr(linked), repr(linked.args)]
    assert emulator.request_count > 0 or scenario == "stopped"
    texts += [record.getMessage() for record in caplog.records]
    texts += [str(record.args) for record in caplog.records]
    if not scenario and client.transport == "httpx":  # httpx logged URLs: were they cleaned?
        assert any("apikey=***" in r.getMessage() for r in caplog.records)
    for text in texts:
        assert_clean(text)


async def test_request_reprs_hide_the_code() -> None:
    """Request values print without their code."""
    from phoneconfirm_async import PlaceCallRequest, VerifyRequest

    assert_clean(repr(PlaceCallRequest("5555550123", "1", CODE)))
    assert_clean(repr(VerifyRequest("123", CODE)))


async def test_phone_numbers_are_masked_in_our_logs(
    make_client: ClientFactory, make_emulator: EmulatorFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """Our own log lines show only the last four digits of a phone number."""
    emulator = make_emulator()
    caplog.set_level(logging.DEBUG, logger="phoneconfirm_async")
    async with make_client(emulator) as client:
        await client.place_call("5555550123", country_code="1", code="4821")
    ours = [r.getMessage() for r in caplog.records if r.name == "phoneconfirm_async"]
    assert any("***0123" in line for line in ours)
    assert not any("5555550123" in line for line in ours)
