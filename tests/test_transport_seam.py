"""The public transport seam: an object passed as ``transport=`` and the rules it keeps."""

from __future__ import annotations

from collections.abc import Callable

import anyio
import httpx
import pytest
from trio.testing import MockClock

from phoneconfirm_async import (
    CallOutcomeUnknownError,
    ConfigurationError,
    PhoneConfirmClient,
    RetryPolicy,
    TransportError,
    TransportRequest,
    TransportResponse,
)
from phoneconfirm_async.emulator import EmulatorConfig
from phoneconfirm_async.testing import EmulatorTransport
from tests.conftest import API_KEY, DOMAIN

pytestmark = pytest.mark.anyio

MOCK_CLOCK = [("trio", {"clock": MockClock(autojump_threshold=0)})]
FAST_RETRY = RetryPolicy(initial_wait=0, max_wait=0)


class ScriptedTransport:
    """Records every request; each send runs the next step of the script, then answers
    from an in-process emulator."""

    name = "scripted"

    def __init__(self, *steps: Callable[[TransportRequest], None]) -> None:
        self.steps = list(steps)
        self.requests: list[TransportRequest] = []
        self.emulator = EmulatorTransport(EmulatorConfig(api_keys=(API_KEY,)))
        self.closed = False

    async def send(self, request: TransportRequest) -> TransportResponse:
        self.requests.append(request)
        if self.steps:
            self.steps.pop(0)(request)
        return await self.emulator.send(request)

    async def aclose(self) -> None:
        self.closed = True


def client_on(transport: object, **options: object) -> PhoneConfirmClient:
    return PhoneConfirmClient(API_KEY, DOMAIN, transport=transport, **options)  # type: ignore[arg-type]


def refuse(request: TransportRequest) -> None:
    raise TransportError("connection refused", sent=False, kind="connect")


def lose(request: TransportRequest) -> None:
    raise TransportError("connection reset by peer", sent=True, kind="disconnected")


def crash_with_url(request: TransportRequest) -> None:
    raise ValueError(f"cannot handle {request.url}")


async def test_a_transport_object_is_used_as_given() -> None:
    """The client sends through the object, names it, and leaves it open."""
    transport = ScriptedTransport()
    async with client_on(transport, timeout=4.0) as client:
        assert client.transport == "scripted"
        placed = await client.place_call("5555550123", country_code="1", code="4821")
        assert (await client.verify_code(placed.transaction_number, "4821")).verified
    place, verify = transport.requests
    assert place.method == "GET"
    assert "/phoneconfirm/placecall/?" in place.url
    assert "/phoneconfirm/verifycode/?" in verify.url
    assert (place.timeout, place.attempt_timeout) == (4.0, 30.0)
    assert place.max_body == 1024 * 1024
    assert "4821" not in repr(place)  # the URL (with the key and the code) is not in reprs
    assert not transport.closed


async def test_not_sent_is_retried_for_a_placement() -> None:
    """sent=False: the service cannot have acted, so a placement is tried again."""
    transport = ScriptedTransport(refuse)
    async with client_on(transport, retry=FAST_RETRY) as client:
        assert (await client.place_call("5555550123", country_code="1", code="4821")).placed
    assert len(transport.requests) == 2
    assert len(transport.emulator.calls) == 1


async def test_sent_is_an_unknown_outcome_for_a_placement() -> None:
    """sent=True: the call may have gone out; the client says so and does not resend."""
    transport = ScriptedTransport(lose)
    async with client_on(transport, retry=FAST_RETRY) as client:
        with pytest.raises(CallOutcomeUnknownError) as caught:
            await client.place_call("5555550123", country_code="1", code="4821")
    cause = caught.value.cause
    assert isinstance(cause, TransportError)
    assert (cause.sent, cause.kind) == (True, "disconnected")
    assert len(transport.requests) == 1


async def test_a_transport_that_breaks_the_contract_counts_as_sent() -> None:
    """Any other exception is a TransportError(sent=True), redacted, with nothing chained."""
    transport = ScriptedTransport(crash_with_url)
    async with client_on(transport, retry=FAST_RETRY, secret_key="SECRETxyz") as client:
        with pytest.raises(CallOutcomeUnknownError) as caught:
            await client.place_call("5555550123", country_code="1", code="Zq7Kx9")
    cause = caught.value.cause
    assert isinstance(cause, TransportError)
    assert (cause.sent, cause.kind) == (True, "network")
    assert "ValueError" in str(cause)
    for secret in (API_KEY, "SECRETxyz", "Zq7Kx9"):
        assert secret not in str(caught.value)
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None


async def test_a_verification_is_retried_after_a_sent_failure() -> None:
    """Verifications are safe to repeat: a lost answer is retried."""
    transport = ScriptedTransport()
    async with client_on(transport, retry=FAST_RETRY) as client:
        placed = await client.place_call("5555550123", country_code="1", code="4821")
        transport.steps.append(lose)
        assert (await client.verify_code(placed.transaction_number, "4821")).verified
    assert len(transport.requests) == 3


class SilentTransport:
    """Never answers, and ignores the attempt bound it is given."""

    def __init__(self) -> None:
        self.requests: list[TransportRequest] = []

    async def send(self, request: TransportRequest) -> TransportResponse:
        self.requests.append(request)
        await anyio.sleep_forever()
        raise AssertionError("unreachable")


@pytest.mark.parametrize("anyio_backend", MOCK_CLOCK)
async def test_the_client_bounds_a_transport_it_did_not_build() -> None:
    """A foreign transport that ignores attempt_timeout is ended by the client at it."""
    transport = SilentTransport()
    async with client_on(transport, attempt_timeout=5, retry=RetryPolicy.none()) as client:
        start = anyio.current_time()
        with pytest.raises(TransportError) as caught:
            await client.verify_code("123", "4821")
        assert anyio.current_time() - start == pytest.approx(5)
    assert (caught.value.kind, caught.value.sent) == ("attempt_timeout", True)


@pytest.mark.parametrize("anyio_backend", MOCK_CLOCK)
async def test_the_deadline_shrinks_the_bound_of_each_attempt() -> None:
    """Each attempt gets what is left of the retry deadline when that is shorter."""
    transport = SilentTransport()
    policy = RetryPolicy(max_attempts=5, initial_wait=1, max_wait=1, deadline=8)
    async with client_on(transport, attempt_timeout=3, retry=policy) as client:
        with pytest.raises(TransportError):
            await client.verify_code("123", "4821")
    bounds = [request.attempt_timeout for request in transport.requests]
    assert bounds[0] == pytest.approx(3)
    assert bounds[-1] is not None
    assert bounds[-1] < 3
    assert sum(b for b in bounds if b is not None) <= 8


async def test_attempt_timeout_none_leaves_the_deadline() -> None:
    """attempt_timeout=None: only the retry deadline bounds an attempt."""
    transport = ScriptedTransport()
    async with client_on(transport, attempt_timeout=None, retry=RetryPolicy(deadline=1e9)) as c:
        await c.place_call("5555550123", country_code="1", code="4821")
    assert transport.requests[0].attempt_timeout == pytest.approx(1e9)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"transport": object()}, "send"),
        ({"transport": "carrier-pigeon"}, "transport must be"),
        ({"transport": ScriptedTransport(), "http_client": httpx.AsyncClient()}, "not both"),
        ({"attempt_timeout": 0}, "attempt_timeout"),
    ],
)
def test_bad_transport_settings_are_refused(options: dict[str, object], message: str) -> None:
    """A transport that is neither a name nor an object with send() is a ConfigurationError."""
    with pytest.raises(ConfigurationError, match=message):
        PhoneConfirmClient(API_KEY, DOMAIN, **options)  # type: ignore[arg-type]
