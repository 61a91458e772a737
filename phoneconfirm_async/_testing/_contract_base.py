"""The fixtures and helpers every part of ``StoreContract`` uses."""

from __future__ import annotations

import contextlib
import inspect
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, ClassVar, TypeVar

import anyio
import anyio.lowlevel
import pytest

from phoneconfirm_async._models import PlaceCallRequest, PlaceCallResult
from phoneconfirm_async._stores._protocol import SessionStore
from phoneconfirm_async._stores._rules import SessionRecord, SessionState

_T = TypeVar("_T")
PHONE = "5555550123"
CODE = "4821"


def ignore(session_id: str) -> None:
    pass


def result(number: str) -> PlaceCallResult:
    fields = {
        "status": "valid",
        "error": 0,
        "message": None,
        "transaction_number": number,
        "duration": 1.5,
    }
    result: PlaceCallResult = PlaceCallResult.from_fields(fields)
    return result


class ContractBase:
    """The fixtures and helpers of ``StoreContract`` (see there)."""

    pytestmark: ClassVar[Any] = pytest.mark.anyio
    #: Seconds a finished session is retained in ``test_retained_sessions_are_forgotten``.
    retain_for: ClassVar[float] = 0.3
    #: The longest any one test waits for a store (a lease, a poll, ``retain_for``).
    patience: ClassVar[float] = 20.0

    @pytest.fixture(params=["asyncio", "trio"])
    def anyio_backend(self, request: pytest.FixtureRequest) -> str:
        return str(request.param)

    @pytest.fixture
    def store(self) -> SessionStore:
        pytest.fail("a StoreContract subclass defines the fixture 'store'")

    @pytest.fixture
    def peer(
        self, store: SessionStore, request: pytest.FixtureRequest
    ) -> Iterator[SessionStore | None]:
        """A second store object on ``store``'s backing store, as another process would
        open it: the ``store`` fixture's function called again with the same fixture
        values (the same file, table or client). None for a store that is not durable."""
        if not store.durable:
            yield None
            return
        make = getattr(type(self).store, "__wrapped__", None)
        if make is None or inspect.iscoroutinefunction(make):
            pytest.fail("define the fixture 'peer': a second store on the same backing store")
        names = list(inspect.signature(make).parameters)[1:]  # after self
        made = make(self, **{name: request.getfixturevalue(name) for name in names})
        if inspect.isgenerator(made):  # a fixture that yields its store, then cleans up
            yield next(made)  # type: ignore[misc]
            next(made, None)
        else:
            yield made

    # -- helpers ----------------------------------------------------------------------------
    @staticmethod
    def record(
        store: SessionStore,
        *,
        due_in: float = 0.0,
        redial_count: int = 1,
        interval: float = 60,
        verify_limit: int | None = None,
        code_ttl: float | None = None,
    ) -> SessionRecord:
        """A new SCHEDULED session due ``due_in`` seconds from now on the store's clock."""
        return SessionRecord(
            id=secrets.token_urlsafe(12),
            request=PlaceCallRequest(PHONE, "1", CODE),
            redial_count=redial_count,
            redial_interval=interval,
            state=SessionState.SCHEDULED,
            due=store.now() + due_in,
            verify_limit=verify_limit,
            code_ttl=code_ttl,
        )

    @contextlib.asynccontextmanager
    async def both(
        self, store: SessionStore, peer: SessionStore | None, *, retain: float = 60
    ) -> AsyncIterator[tuple[SessionStore, SessionStore]]:
        """``store`` and ``peer`` open (a store that is not durable: itself, twice)."""
        async with store.open(retain=retain, on_change=ignore):
            if peer is None:
                yield store, store
                return
            async with peer.open(retain=retain, on_change=ignore):
                yield store, peer

    async def called(self, store: SessionStore, **fields: Any) -> SessionRecord:
        """A new session whose first call was placed and answered (``tx-1``)."""
        record = self.record(store, **fields)
        await store.add(record)
        claimed = await store.claim(store.now(), 100)
        (claim,) = [r for r in claimed.calls if r.id == record.id]
        answered = await store.record_call(claim, result("tx-1"), store.now())
        assert answered is not None
        return answered

    async def until(self, look: Callable[[], Awaitable[_T | None]]) -> _T:
        """Poll ``look`` until it gives something (bounded by ``patience``)."""
        with anyio.fail_after(self.patience):
            while True:
                found = await look()
                if found is not None:
                    return found
                await anyio.sleep(0.02)

    @staticmethod
    async def claim_all(store: SessionStore, limit: int = 100) -> list[SessionRecord]:
        return (await store.claim(store.now(), limit)).calls
