"""``StoreContract`` on the project's three stores, and on two broken ones it must fail."""

from __future__ import annotations

import secrets
import tempfile
import textwrap
from collections.abc import Collection
from pathlib import Path

import pytest

from phoneconfirm_async import PhoneConfirmError
from phoneconfirm_async.stores import (
    Claimed,
    MemoryStore,
    PostgresStore,
    SessionRecord,
    SessionState,
    SessionStore,
    SQLiteStore,
    end,
)
from phoneconfirm_async.testing import StoreContract

#: Short leases and polls: the contract waits for a lease to run out.
FAST = {"lease": 0.5, "poll_interval": 0.05}


class TestMemoryStore(StoreContract):
    @pytest.fixture
    def store(self) -> SessionStore:
        return MemoryStore()


class TestSQLiteStore(StoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> SessionStore:
        return SQLiteStore(tmp_path / "sessions.sqlite", **FAST)


class TestPostgresStore(StoreContract):
    @pytest.fixture
    def anyio_backend(self) -> str:
        return "asyncio"  # asyncpg's only

    @pytest.fixture
    def table(self) -> str:
        return f"contract_{secrets.token_hex(4)}"

    @pytest.fixture
    def store(self, postgres_dsn: str, table: str) -> SessionStore:
        return PostgresStore(postgres_dsn, table=table, **FAST)


class ClaimsTwice(MemoryStore):
    """Broken: hands out each call it claimed a second time."""

    def __init__(self) -> None:
        super().__init__()
        self.handed: list[SessionRecord] = []

    async def claim(self, now: float, limit: int, *, exclude: Collection[str] = ()) -> Claimed:
        claimed = await super().claim(now, limit, exclude=exclude)
        again = [r for r in self.handed if r.state is SessionState.CALLING][:limit]
        self.handed = claimed.calls
        return claimed._replace(calls=claimed.calls + again)


class IgnoresFinishRules(MemoryStore):
    """Broken: ends any session in any state, whoever asks."""

    async def finish(
        self,
        session_id: str,
        state: SessionState,
        now: float,
        *,
        error: PhoneConfirmError | None = None,
        claimed_at: float | None = None,
    ) -> SessionRecord | None:
        record = await self.load(session_id)
        if record is None:
            return None
        end(record, state, now, 60.0, error)
        return record


class FreshFileStore(SQLiteStore):
    """Broken as a contract fixture: every object on a file of its own, so a second
    object is not another process on the same store (the check would prove nothing)."""

    def __init__(self) -> None:
        super().__init__(Path(tempfile.mkdtemp()) / "sessions.sqlite", **FAST)


@pytest.mark.parametrize(
    ("broken", "failing"),
    [
        (
            "ClaimsTwice",
            {
                "test_a_claim_takes_due_calls_only_and_at_most_limit",
                "test_a_call_is_not_claimed_again_while_its_claim_holds",
                "test_two_store_objects_never_claim_one_call",
            },
        ),
        ("IgnoresFinishRules", {"test_finish_obeys_the_rules"}),
        ("FreshFileStore", {"test_two_store_objects_never_claim_one_call"}),
    ],
)
def test_the_contract_fails_a_broken_store(
    pytester: pytest.Pytester, broken: str, failing: set[str]
) -> None:
    pytester.makepyfile(
        test_broken=textwrap.dedent(
            f"""
            import pytest
            from phoneconfirm_async.testing import StoreContract
            from tests.stores.test_contract import {broken}

            class TestBroken(StoreContract):
                @pytest.fixture
                def anyio_backend(self):
                    return "asyncio"

                @pytest.fixture
                def store(self):
                    return {broken}()
            """
        )
    )
    result = pytester.runpytest("-q")
    outcomes = result.parseoutcomes()
    failed = {
        line.split("::")[-1].split(" ")[0] for line in result.outlines if line.startswith("FAILED")
    }
    assert failing <= failed, result.outlines
    assert outcomes.get("passed", 0) > 0  # the rest of the contract still holds
