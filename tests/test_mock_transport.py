"""``phoneconfirm_async.testing.MockTransport``: answers from a function, core install only."""

from __future__ import annotations

import json
import subprocess
import sys
from urllib.parse import parse_qs, urlsplit

import pytest

from phoneconfirm_async import (
    CallOutcomeUnknownError,
    InvalidRequestError,
    RetryPolicy,
    TransportError,
    TransportRequest,
    TransportResponse,
)
from phoneconfirm_async.testing import MockTransport

pytestmark = pytest.mark.anyio
JSON = {"content-type": "application/json"}


def answer(**fields: object) -> TransportResponse:
    body = {"status": "valid", "error": 0, "message": None, "transaction_number": "t-1"}
    body.update(fields)
    return TransportResponse(200, JSON, json.dumps(body).encode())


async def test_a_client_runs_on_the_handler_and_every_request_is_kept() -> None:
    def handler(request: TransportRequest) -> TransportResponse:
        query = parse_qs(urlsplit(request.url).query)
        if "phone" not in query:
            return answer(transaction_number=query["transaction_number"][0])
        return answer(transaction_number=f"t-{query['phone'][0]}")

    transport = MockTransport(handler)
    async with transport.client() as client:
        placed = await client.place_call("5555550123", country_code="1", code="4821")
        verified = await client.verify_code(placed.transaction_number or "", "4821")
    assert placed.transaction_number == "t-5555550123"
    assert verified.transaction_number == "t-5555550123"
    paths = [urlsplit(request.url).path for request in transport.requests]
    assert [path.rstrip("/").rsplit("/", 1)[-1] for path in paths] == ["placecall", "verifycode"]


async def test_an_async_handler_and_the_services_errors_work_as_on_the_wire() -> None:
    async def handler(request: TransportRequest) -> TransportResponse:
        return answer(status="invalid", error=4, message="bad number")

    async with MockTransport(handler).client() as client:
        with pytest.raises(InvalidRequestError, match="bad number"):
            await client.place_call("5555550123", country_code="1", code="4821")


async def test_a_request_that_never_left_is_retried_and_one_that_may_have_is_not() -> None:
    failures = [TransportError("refused", sent=False, kind="connect")]

    def handler(request: TransportRequest) -> TransportResponse:
        if failures:
            raise failures.pop()
        return answer()

    transport = MockTransport(handler)
    retry = RetryPolicy(initial_wait=0, max_wait=0)
    async with transport.client(retry=retry) as client:
        await client.place_call("5555550123", country_code="1", code="4821")
    assert len(transport.requests) == 2  # the unsent one, then its retry

    def sent_then_lost(request: TransportRequest) -> TransportResponse:
        raise TransportError("reset", sent=True, kind="disconnected")

    lost = MockTransport(sent_then_lost)
    async with lost.client(retry=retry) as client:
        with pytest.raises(CallOutcomeUnknownError):
            await client.place_call("5555550123", country_code="1", code="4821")
    assert len(lost.requests) == 1  # a placement that may have gone out is never re-sent


def test_it_needs_neither_starlette_nor_pytest() -> None:
    code = (
        "import sys, phoneconfirm_async.testing as t; t.MockTransport(lambda r: None); "
        "print(sorted(m for m in ('starlette', 'pytest', 'uvicorn') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
