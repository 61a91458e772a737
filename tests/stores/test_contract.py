"""``StoreContract`` on the project's three stores, and on broken ones it must fail."""

from __future__ import annotations

import dataclasses
import secrets
import tempfile
import textwrap
from collections.abc import Collection, Sequence
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest

from phoneconfirm_async import PhoneConfirmError
from phoneconfirm_async.stores import (
    Claimed,
    MemoryStore,
    PostgresStore,
    Quota,
    SessionRecord,
    SessionState,
    SessionStore,
    SQLiteStore,
    Throttled,
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

    async def claim(
        self,
        now: float,
        limit: int,
        *,
        exclude: Collection[str] = (),
        calls_per_hour: int | None = None,
    ) -> Claimed:
        claimed = await super().claim(now, limit, exclude=exclude, calls_per_hour=calls_per_hour)
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


class IgnoresAttemptLimit(MemoryStore):
    """Broken: takes a verification attempt whatever the count (a guesser is never
    stopped)."""

    async def take_attempt(self, session_id: str, now: float) -> SessionRecord | None:
        record = await self.load(session_id)
        if record is None:
            return None
        record.verify_attempts += 1
        return dataclasses.replace(record)


class RacyQuotas(MemoryStore):
    """Broken: reads a quota's count, then counts and adds in a second step (as a store
    that reads and writes back outside one transaction would)."""

    def __init__(self) -> None:
        super().__init__()
        self.counted: dict[str, int] = {}

    async def add(
        self, record: SessionRecord, *, quotas: Sequence[Quota] = ()
    ) -> Throttled | None:
        counters = [quota for quota in quotas if quota.value is not None]
        for quota in counters:
            if self.counted.get(str(quota.value), 0) >= quota.most:
                return Throttled(quota.limit, quota.window)
        await anyio.lowlevel.checkpoint()  # another add reads the same count meanwhile
        for quota in counters:
            self.counted[str(quota.value)] = self.counted.get(str(quota.value), 0) + 1
        return await super().add(record)


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
        (
            "IgnoresAttemptLimit",
            {
                "test_attempts_are_taken_up_to_the_limit_and_given_back",
                "test_two_store_objects_never_take_more_attempts_than_the_limit",
            },
        ),
        ("RacyQuotas", {"test_two_store_objects_never_start_more_sessions_than_a_quota"}),
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
