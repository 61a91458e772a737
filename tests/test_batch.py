"""place_many / verify_many against the emulator, with and without a journal."""

from __future__ import annotations

import contextlib
import sqlite3
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from phoneconfirm_async import (
    BatchItem,
    CallOutcomeUnknownError,
    ConfigurationError,
    PhoneConfirmClient,
    PlaceCallRequest,
    RetryPolicy,
    ValidationError,
    VerifyRequest,
)
from phoneconfirm_async.emulator import Emulator
from tests.conftest import API_KEY, DOMAIN, EmulatorFactory

pytestmark = pytest.mark.anyio

FAST = RetryPolicy(initial_wait=0, max_wait=0.01)


def client_for(emulator: Emulator, **options: Any) -> PhoneConfirmClient:
    options.setdefault("retry", FAST)
    return PhoneConfirmClient(API_KEY, DOMAIN, base_url=emulator.base_url, **options)


def rows(count: int, code: str = "4821", start: int = 0) -> Iterator[dict[str, str]]:
    for i in range(start, start + count):
        yield {"phone": f"555{i:07d}", "country_code": "1", "code": code}


async def collect(items: AsyncIterator[BatchItem[Any, Any]]) -> list[BatchItem[Any, Any]]:
    return [item async for item in items]


async def test_faulty_service_every_row_once_and_nobody_twice(
    anyio_backend: str, make_emulator: EmulatorFactory
) -> None:
    """At fault_rate 0.2: one item per row, no number phoned twice, verify_many checks codes."""
    count = 10_000 if anyio_backend == "asyncio" else 2_000  # httpx's pool is slow on trio
    emulator = make_emulator(fault_rate=0.2, hang_seconds=1, seed=2)
    async with client_for(emulator, timeout=0.5, max_concurrency=200) as client:
        items = await collect(client.place_many(rows(count), concurrency=200))
        assert sorted(item.index for item in items) == list(range(count))
        assert all((item.result is None) != (item.error is None) for item in items)
        calls = Counter(call.phone for call in emulator.calls)
        assert max(calls.values()) == 1  # retry_unsafe is off: nobody is phoned twice
        outcomes = Counter(type(item.error).__name__ for item in items if item.error)
        assert set(outcomes) <= {"CallOutcomeUnknownError", "RateLimitedError", "TransportError"}
        unknown = sum(isinstance(item.error, CallOutcomeUnknownError) for item in items)
        assert 0 < unknown < count * 0.2
        placed = [item for item in items if item.result is not None and item.result.placed]
        assert len(placed) > count * 0.7
        assert all(item.request and calls[item.request.phone] == 1 for item in placed)

    pairs: list[VerifyRequest | dict[str, str]] = []
    for n, item in enumerate(placed[:600]):
        assert item.result is not None
        code = "4821" if n % 2 == 0 else "0000"
        pairs.append({"transaction_number": item.result.transaction_number, "code": code})
    patient = RetryPolicy(max_attempts=12, initial_wait=0, max_wait=0.01)
    async with client_for(emulator, timeout=0.5, retry=patient, retry_budget=10_000) as client:
        checked = await collect(client.verify_many(pairs, concurrency=50))
    assert len(checked) == len(pairs)
    for item in checked:
        assert item.error is None, item.error  # verifications survive transient faults
        assert item.result is not None
        assert item.request is not None
        assert item.result.verified == (item.request.code == "4821")


async def test_bad_rows_are_reported_not_dropped(emulator: Emulator) -> None:
    """Invalid rows yield items with a ValidationError; the others are sent."""
    mixed: list[Any] = [
        PlaceCallRequest("5555550001", "1", "1"),
        {"phone": "12", "country_code": "1", "code": "1"},
        {"phone": "5555550003", "country_code": "1"},
        "not a row",
        {"phone": "5555550005", "country_code": "+1", "code": "9"},
    ]
    async with client_for(emulator) as client:
        items = sorted(await collect(client.place_many(mixed)), key=lambda i: i.index)
    assert [i.index for i in items] == [0, 1, 2, 3, 4]
    assert [type(i.error).__name__ if i.error else "ok" for i in items] == [
        "ok",
        "ValidationError",
        "ValidationError",
        "ValidationError",
        "ok",
    ]
    assert isinstance(items[2].error, ValidationError)
    assert items[2].error.field == "code"
    assert items[3].request is None
    assert sorted(c.phone for c in emulator.calls) == ["5555550001", "5555550005"]


async def test_input_is_read_lazily(emulator: Emulator) -> None:
    """An endless async input is pulled only as fast as rows complete."""
    pulled = 0

    async def endless() -> AsyncGenerator[dict[str, str], None]:
        nonlocal pulled
        while True:
            yield {"phone": f"555{pulled:07d}", "country_code": "1", "code": "1"}
            pulled += 1

    async with client_for(emulator) as client, contextlib.aclosing(endless()) as source:
        seen = 0
        async for _ in client.place_many(source, concurrency=5):
            seen += 1
            if seen == 50:
                break
        assert pulled <= seen + 5 + 5  # in flight plus items waiting in the channel
        # Leaving the loop early leaves the batch waiting on its full channel (the client's
        # exit cancels it): the client stays usable.
        assert (await client.place_call("5555559999", country_code="1", code="1")).placed


async def test_an_input_error_is_raised_by_the_loop(emulator: Emulator) -> None:
    """If the input itself fails, the loop raises that error (after what was done)."""

    def broken() -> Iterator[dict[str, str]]:
        yield from rows(3)
        raise OSError("disk on fire")

    async with client_for(emulator) as client:
        seen: list[BatchItem[Any, Any]] = []

        async def consume() -> None:
            async for item in client.place_many(broken()):
                seen.append(item)

        with pytest.raises(OSError, match="disk on fire"):
            await consume()
    assert len(emulator.calls) == len(seen) == 3


async def test_block_exceptions_are_not_wrapped(emulator: Emulator) -> None:
    """An exception leaving the client's block is the exception, not an ExceptionGroup."""
    with pytest.raises(KeyError):
        async with client_for(emulator):
            raise KeyError("mine")


async def test_resume_after_an_interrupted_run(emulator: Emulator, tmp_path: Path) -> None:
    """A run cut short, then resumed with the same journal: every row once, no second call."""
    journal = tmp_path / "journal.sqlite"
    count = 300
    first: list[BatchItem[Any, Any]] = []
    async with client_for(emulator) as client:
        async for item in client.place_many(rows(count), concurrency=20, journal=journal):
            first.append(item)
            if len(first) == 100:
                break  # like a killed run: rows in flight stay marked "sending"
    calls_after_first = Counter(c.phone for c in emulator.calls)
    async with client_for(emulator) as client:
        second = await collect(client.place_many(rows(count), concurrency=20, journal=journal))
    assert sorted(i.index for i in second) == list(range(count))
    calls = Counter(c.phone for c in emulator.calls)
    assert max(calls.values()) == 1
    replayed = {i.index for i in second if i.from_journal}
    assert {i.index for i in first} <= replayed
    unknown = [i for i in second if isinstance(i.error, CallOutcomeUnknownError)]
    assert len(unknown) <= 20  # at most the rows that were in flight
    for item in unknown:
        assert item.from_journal
        assert "ended before its answer was recorded" in str(item.error)
    for item in second:
        if item.result is not None:
            assert item.request is not None
            assert calls[item.request.phone] == 1
    assert len(calls) - len(calls_after_first) == count - len(replayed)


async def test_resend_unknown_opt_in(make_emulator: EmulatorFactory, tmp_path: Path) -> None:
    """Rows whose outcome was unknown are sent again only with resend_unknown=True."""
    journal = tmp_path / "journal.sqlite"
    faulty = make_emulator(fault_rate=1.0, faults=("http_500",), seed=1)
    async with client_for(faulty) as client:
        first = await collect(client.place_many(rows(10), journal=journal))
    assert all(isinstance(i.error, CallOutcomeUnknownError) for i in first)
    healthy = make_emulator()
    async with client_for(healthy) as client:
        again = await collect(client.place_many(rows(10), journal=journal))
        assert all(isinstance(i.error, CallOutcomeUnknownError) for i in again)
        assert healthy.calls == []
        resent = await collect(client.place_many(rows(10), journal=journal, resend_unknown=True))
    assert all(i.result is not None and i.result.placed for i in resent)
    assert len(healthy.calls) == 10


async def test_failed_rows_are_retried_on_resume(
    make_emulator: EmulatorFactory, tmp_path: Path
) -> None:
    """A row that failed without phoning anybody is sent again by a resumed run."""
    journal = tmp_path / "journal.sqlite"
    refusing = make_emulator(api_keys=("another-key",))
    async with client_for(refusing) as client:
        first = await collect(client.place_many(rows(5), journal=journal))
    assert {type(i.error).__name__ for i in first} == {"AuthenticationError"}
    healthy = make_emulator()
    async with client_for(healthy) as client:
        second = await collect(client.place_many(rows(5), journal=journal))
    assert all(i.result is not None and not i.from_journal for i in second)
    assert len(healthy.calls) == 5


async def test_verify_rows_in_flight_are_sent_again(emulator: Emulator, tmp_path: Path) -> None:
    """Verifications are safe to repeat: a resumed run re-sends unfinished ones."""
    journal = tmp_path / "verify.sqlite"
    async with client_for(emulator) as client:
        placed = [i async for i in client.place_many(rows(30))]
        pairs = [
            VerifyRequest(i.result.transaction_number if i.result else None, "4821")  # type: ignore[arg-type]
            for i in sorted(placed, key=lambda i: i.index)
        ]
        seen = 0
        async for _ in client.verify_many(pairs, concurrency=10, journal=journal):
            seen += 1
            if seen == 10:
                break
        again = await collect(client.verify_many(pairs, concurrency=10, journal=journal))
    assert len(again) == 30
    assert all(i.result is not None and i.result.verified for i in again)
    assert any(not i.from_journal for i in again)


async def test_journal_holds_no_secret(emulator: Emulator, tmp_path: Path) -> None:
    """No API key, code or phone number is stored in the journal file in clear."""
    journal = tmp_path / "journal.sqlite"
    async with client_for(emulator) as client:
        await collect(
            client.place_many(
                [{"phone": "555-867-5309", "country_code": "1", "code": "Zq7Kx9"}],
                journal=journal,
            )
        )
    blob = b"".join(p.read_bytes() for p in tmp_path.iterdir())  # noqa: ASYNC240
    for secret in (API_KEY, "Zq7Kx9", "8675309", "5558675309"):
        assert secret.encode() not in blob
    with sqlite3.connect(journal) as db:
        assert db.execute("SELECT state FROM rows").fetchall() == [("done",)]


async def test_journal_of_another_input_or_kind(emulator: Emulator, tmp_path: Path) -> None:
    """Rows that differ from the journal are refused; a journal of the other kind too."""
    journal = tmp_path / "journal.sqlite"
    async with client_for(emulator) as client:
        await collect(client.place_many(rows(3), journal=journal))
        other = await collect(client.place_many(rows(3, start=100), journal=journal))
        assert all(isinstance(i.error, ConfigurationError) for i in other)
        assert len(emulator.calls) == 3
        with pytest.raises(ConfigurationError, match="'placecall' batch"):
            await collect(client.verify_many([VerifyRequest("1", "1")], journal=journal))


async def test_concurrency_is_validated(emulator: Emulator) -> None:
    """A batch's concurrency must be a positive whole number."""
    async with client_for(emulator) as client:
        with pytest.raises(ConfigurationError, match="concurrency"):
            client.place_many(rows(1), concurrency=0)


async def test_no_stray_tasks_after_break(emulator: Emulator) -> None:
    """Leaving a batch loop early and closing the client leaves nothing running."""
    with anyio.fail_after(10):
        async with client_for(emulator) as client:
            async for _ in client.place_many(rows(1000), concurrency=50):
                break
