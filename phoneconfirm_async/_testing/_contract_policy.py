"""The part of ``StoreContract`` that checks the confirmation policy's rules: attempts,
code lifetime, throttles and the spend cap, each decided by the store in one atomic step
(two store objects racing never get past a limit)."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from phoneconfirm_async._stores._protocol import SessionStore
from phoneconfirm_async._stores._rules import Quota, SessionRecord, SessionState, Throttled
from phoneconfirm_async._testing._contract_base import PHONE, ContractBase, ignore


class PolicyContract(ContractBase):
    """Tests of the policy's rules (part of ``StoreContract``)."""

    # -- verification attempts --------------------------------------------------------------
    async def test_attempts_are_taken_up_to_the_limit_and_given_back(
        self, store: SessionStore
    ) -> None:
        async with store.open(retain=60, on_change=ignore):
            record = await self.called(store, verify_limit=3)
            now = store.now
            # Not every attempt taken yet: no lock.
            assert await store.finish(record.id, SessionState.LOCKED, now()) is None
            taken = [await store.take_attempt(record.id, now()) for _ in range(4)]
            assert [t.verify_attempts if t else None for t in taken] == [1, 2, 3, None]
            await store.return_attempt(record.id)  # a check that was never sent
            again = await store.take_attempt(record.id, now())
            assert again is not None
            assert again.verify_attempts == 3
            locked = await store.finish(record.id, SessionState.LOCKED, now())
            assert locked is not None
            assert locked.state is SessionState.LOCKED
            assert locked.request is None
            await store.return_attempt(record.id)
            assert await store.take_attempt(record.id, now()) is None  # LOCKED is final
            assert await store.take_attempt("no-such-session", now()) is None

    async def test_two_store_objects_never_take_more_attempts_than_the_limit(
        self, store: SessionStore, peer: SessionStore | None
    ) -> None:
        async with self.both(store, peer) as (one, other):
            record = await self.called(one, verify_limit=5)
            taken: list[int] = []

            async def guesser(store: SessionStore) -> None:
                for _ in range(6):
                    got = await store.take_attempt(record.id, store.now())
                    if got is not None:
                        taken.append(got.verify_attempts)
                    await anyio.lowlevel.checkpoint()

            async with anyio.create_task_group() as tasks:
                for each in (one, other, one, other):
                    tasks.start_soon(guesser, each)
            assert sorted(taken) == [1, 2, 3, 4, 5]  # each count given out exactly once
            loaded = await one.load(record.id)
            assert loaded is not None
            assert loaded.verify_attempts == 5

    async def test_no_attempt_on_a_closed_session(self, store: SessionStore) -> None:
        async with store.open(retain=60, on_change=ignore):
            now = store.now
            for state in (SessionState.VERIFIED, SessionState.CANCELLED):
                record = await self.called(store)
                assert await store.take_attempt(record.id, now()) is not None  # no limit
                await store.finish(record.id, state, now())
                assert await store.take_attempt(record.id, now()) is None

    # -- the code's lifetime ----------------------------------------------------------------
    async def test_a_code_expires_its_lifetime_after_the_latest_call(
        self, store: SessionStore
    ) -> None:
        async with store.open(retain=60, on_change=ignore):
            ttl = 0.4
            record = await self.called(store, redial_count=0, interval=0.1, code_ttl=ttl)
            assert record.code_expires is not None
            assert record.code_expires >= store.now() + ttl - 0.1
            seen: list[SessionRecord] = []

            async def settled(state: SessionState) -> SessionRecord | None:
                claimed = await store.claim(store.now(), 100)
                seen.extend(r for r in claimed.changed if r.id == record.id)
                return next((r for r in seen if r.state is state), None)

            exhausted = await self.until(lambda: settled(SessionState.EXHAUSTED))
            assert exhausted.request is None
            if store.now() < (exhausted.code_expires or 0.0):
                # EXHAUSTED stays verifiable until the code expires.
                assert await store.take_attempt(record.id, store.now()) is not None
            expired = await self.until(lambda: settled(SessionState.EXPIRED))
            assert expired.state is SessionState.EXPIRED
            assert await store.take_attempt(record.id, store.now()) is None
            assert await store.finish(record.id, SessionState.CANCELLED, store.now()) is None

    async def test_an_expired_code_takes_no_attempt_before_any_pass(
        self, store: SessionStore
    ) -> None:
        async with store.open(retain=60, on_change=ignore):
            record = await self.called(store, redial_count=0, interval=3600, code_ttl=0.2)

            async def refused() -> bool | None:
                return True if await store.take_attempt(record.id, store.now()) is None else None

            await self.until(refused)
            loaded = await store.load(record.id)
            assert loaded is not None
            # No pass over due rows ran (nothing was due): the update itself read the time.
            assert loaded.state is SessionState.AWAITING_CODE

    # -- throttles --------------------------------------------------------------------------
    async def test_two_store_objects_never_start_more_sessions_than_a_quota(
        self, store: SessionStore, peer: SessionStore | None
    ) -> None:
        async with self.both(store, peer) as (one, other):
            quota = Quota("phone", f"1:{PHONE}", 3, 60.0)
            results: list[Throttled | None] = []
            added: list[str] = []

            async def schedule(store: SessionStore) -> None:
                record = self.record(store, due_in=3600)
                got = await store.add(record, quotas=[quota])
                results.append(got)
                if got is None:
                    added.append(record.id)

            async with anyio.create_task_group() as tasks:
                for n in range(16):
                    tasks.start_soon(schedule, (one, other)[n % 2])
            refused = [r for r in results if r is not None]
            assert len(added) == 3
            assert len(refused) == 13
            assert {r.limit for r in refused} == {"phone"}
            assert all(0 < r.retry_after <= 61 for r in refused)  # a store may round up to 1 s
            for session_id in added:
                assert await other.load(session_id) is not None

    async def test_a_refused_session_is_not_stored_or_counted(self, store: SessionStore) -> None:
        async with store.open(retain=60, on_change=ignore):
            full = Quota("phone", "1:5555550100", 1, 60.0)
            key = Quota("key", "ip:192.0.2.7", 1, 60.0)
            assert await store.add(self.record(store, due_in=3600), quotas=[full]) is None
            refused = self.record(store, due_in=3600)
            throttled = await store.add(refused, quotas=[full, key])
            assert throttled is not None
            assert throttled.limit == "phone"
            assert await store.load(refused.id) is None
            # The key was not counted for the refused session: its one place is still free.
            other = Quota("phone", "1:5555550101", 1, 60.0)
            assert await store.add(self.record(store, due_in=3600), quotas=[other, key]) is None

    async def test_a_quota_frees_when_its_window_passes(self, store: SessionStore) -> None:
        async with store.open(retain=60, on_change=ignore):
            quota = Quota("key", "account:42", 1, 1.5)
            assert await store.add(self.record(store, due_in=3600), quotas=[quota]) is None
            throttled = await store.add(self.record(store, due_in=3600), quotas=[quota])
            assert throttled is not None
            assert 0 < throttled.retry_after <= 2.5  # a store may round up to 1 s

            async def admitted() -> bool | None:
                got = await store.add(self.record(store, due_in=3600), quotas=[quota])
                return True if got is None else None

            await self.until(admitted)

    # -- the spend cap ----------------------------------------------------------------------
    async def test_the_spend_cap_holds_due_calls_back_uncounted(self, store: SessionStore) -> None:
        async with store.open(retain=60, on_change=ignore):
            records = [self.record(store) for _ in range(3)]
            for record in records:
                await store.add(record)
            first = await store.claim(store.now(), 100, calls_per_hour=2)
            assert len(first.calls) == 2
            assert first.capped is not None
            held = await store.claim(store.now(), 100, calls_per_hour=2)
            assert held.calls == []  # never dropped: still due, not counted as made
            assert held.capped is not None
            assert held.capped > store.now() + 3000  # the hour's first call leaves it then
            (waiting,) = [r for r in records if r.id not in {c.id for c in first.calls}]
            loaded = await store.load(waiting.id)
            assert loaded is not None
            assert (loaded.state, loaded.calls_made) == (SessionState.SCHEDULED, 0)
            assert loaded.due == pytest.approx(held.capped)  # due again when the cap frees
            quota = Quota("calls_per_hour", None, 2, 3600.0)
            throttled = await store.add(self.record(store), quotas=[quota])
            assert throttled is not None
            assert throttled.limit == "calls_per_hour"
            # A claimed call that was never sent gives its place back.
            await store.release(first.calls[0], store.now())
            freed = await store.claim(store.now(), 100, calls_per_hour=2)
            assert len(freed.calls) == 1

    async def test_two_store_objects_never_claim_past_the_spend_cap(
        self, store: SessionStore, peer: SessionStore | None
    ) -> None:
        async with self.both(store, peer) as (one, other):
            for _ in range(12):
                await one.add(self.record(one))
            taken: list[str] = []

            async def claimer(store: SessionStore) -> None:
                for _ in range(8):
                    claimed = await store.claim(store.now(), 2, calls_per_hour=5)
                    taken.extend(record.id for record in claimed.calls)
                    await anyio.lowlevel.checkpoint()

            async with anyio.create_task_group() as tasks:
                for each in (one, other, one, other):
                    tasks.start_soon(claimer, each)
            assert len(taken) == 5
            assert len(set(taken)) == 5
