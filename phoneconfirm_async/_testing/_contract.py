"""StoreContract: the protocol a scheduler relies on, as tests a store author runs."""

from __future__ import annotations

import contextlib

import anyio
import anyio.lowlevel
import pytest

from phoneconfirm_async._errors import ApiError
from phoneconfirm_async._models import PlaceCallRequest
from phoneconfirm_async._stores._protocol import SessionStore
from phoneconfirm_async._stores._rules import SessionRecord, SessionState
from phoneconfirm_async._testing._contract_base import CODE, PHONE, ignore, result
from phoneconfirm_async._testing._contract_policy import PolicyContract


class StoreContract(PolicyContract):
    """Tests every ``SessionStore`` must pass: subclass it in your test suite.

        class TestRedisStore(StoreContract):
            @pytest.fixture
            def store(self, redis_url):
                return RedisStore(redis_url, lease=0.5, poll_interval=0.05)

    Fixtures a subclass defines:

    - ``store`` (required): a fresh, unopened store on an empty backing store. A durable
      store's ``lease`` should be short (a second or less): the contract waits for a lease
      to run out, and for ``retain_for`` seconds to pass. Take the backing store (a path,
      a table name, a client) from fixtures: the contract calls the function again with
      the same values for a second store object on the same backing store, as another
      process would open it.
    - ``peer`` (optional): that second store object, when calling ``store``'s function
      again cannot make it.
    - ``anyio_backend`` (optional): the contract runs on asyncio and trio by default.

    The tests need anyio's pytest plugin (installed with anyio). They use only the
    ``SessionStore`` protocol, with the store's own clock (``store.now()``), and wait for
    time to pass on it with bounded polling, never a fixed sleep.
    """

    # -- the protocol -----------------------------------------------------------------------
    async def test_a_session_reads_back_as_it_was_added(self, store: SessionStore) -> None:
        async with store.open(retain=60, on_change=ignore):
            record = self.record(store, due_in=3600, redial_count=2, interval=45)
            await store.add(record)
            loaded = await store.load(record.id)
            assert loaded is not None
            assert (loaded.id, loaded.request, loaded.state) == (
                record.id,
                PlaceCallRequest(PHONE, "1", CODE),
                SessionState.SCHEDULED,
            )
            assert (loaded.redial_count, loaded.redial_interval, loaded.calls_made) == (2, 45, 0)
            assert loaded.due == pytest.approx(record.due)
            assert loaded.attempts == ()
            assert loaded.error is None
            assert await store.load("no-such-session") is None

    async def test_a_claim_takes_due_calls_only_and_at_most_limit(
        self, store: SessionStore
    ) -> None:
        async with store.open(retain=60, on_change=ignore):
            due = [self.record(store) for _ in range(3)]
            later = self.record(store, due_in=3600)
            for record in (*due, later):
                await store.add(record)
            first = await store.claim(store.now(), 2)
            rest = await store.claim(store.now(), 10)
            assert len(first.calls) == 2
            claimed = first.calls + rest.calls
            assert sorted(r.id for r in claimed) == sorted(r.id for r in due)
            for record in claimed:
                assert record.state is SessionState.CALLING
                assert record.calls_made == 1
                assert record.claimed_at is not None
            assert await self.claim_all(store) == []
            next_due = await store.next_due()
            assert next_due is not None
            assert next_due <= later.due + 1e-3

    async def test_a_call_is_not_claimed_again_while_its_claim_holds(
        self, store: SessionStore
    ) -> None:
        async with store.open(retain=60, on_change=ignore):
            record = self.record(store)
            await store.add(record)
            (claim,) = await self.claim_all(store)
            for _ in range(3):
                renewed = await store.renew([claim], store.now())
                assert renewed.ids == {record.id}
                assert await self.claim_all(store) == []
            current = await store.load(record.id)
            assert current is not None
            assert current.state is SessionState.CALLING

    async def test_two_store_objects_never_claim_one_call(
        self, store: SessionStore, peer: SessionStore | None
    ) -> None:
        async with store.open(retain=60, on_change=ignore):
            if peer is None:  # one process: two claimers on one store object
                await self._claim_race(store, store)
            else:
                async with peer.open(retain=60, on_change=ignore):
                    await self._claim_race(store, peer)

    async def _claim_race(self, one: SessionStore, other: SessionStore) -> None:
        records = [self.record(one) for _ in range(40)]
        for record in records:
            await one.add(record)
        assert await other.load(records[0].id) is not None, (
            "the peer store does not see what the store added: it must be a second object "
            "on the same backing store (take the path, table or client from a fixture)"
        )
        taken: list[str] = []

        async def claimer(store: SessionStore) -> None:
            for _ in range(60):
                claimed = await store.claim(store.now(), 3)
                taken.extend(record.id for record in claimed.calls)
                await anyio.lowlevel.checkpoint()

        async with anyio.create_task_group() as tasks:
            for store in (one, other, one, other):
                tasks.start_soon(claimer, store)
        assert sorted(taken) == sorted(record.id for record in records)  # each exactly once

    async def test_a_dead_claim_is_settled_once_with_its_call_counted(
        self, store: SessionStore, peer: SessionStore | None
    ) -> None:
        async with store.open(retain=60, on_change=ignore):
            record = self.record(store, redial_count=1, interval=0.2)
            await store.add(record)
            (dead,) = await self.claim_all(store)
            if store.lease is None:  # nobody else could settle it: it stays claimed
                far = await store.claim(store.now() + 1e6, 100)
                assert record.id not in {r.id for r in far.calls + far.changed}
                return
            other = peer if peer is not None else store
            async with contextlib.AsyncExitStack() as stack:
                if peer is not None:
                    await stack.enter_async_context(peer.open(retain=60, on_change=ignore))
                seen: list[SessionRecord] = []

                async def settled() -> SessionRecord | None:
                    for claimer in (store, other):
                        claimed = await claimer.claim(claimer.now(), 100)
                        seen.extend(r for r in claimed.changed + claimed.calls)
                    return next((r for r in seen if r.calls_made == 2), None)

                redial = await self.until(settled)
            changes = [r for r in seen if r.id == record.id]
            assert [r.calls_made for r in changes] in ([1, 2], [2])
            assert changes[0].calls_made == 1 or changes[0].state is SessionState.CALLING
            assert redial.state is SessionState.CALLING
            # The dead claim's answer no longer moves the session; it is kept.
            assert await store.record_call(dead, result("late"), store.now()) is None
            current = await store.load(record.id)
            assert current is not None
            assert current.calls_made == 2
            assert current.state is SessionState.CALLING

    async def test_an_answered_call_waits_for_the_code_then_redials(
        self, store: SessionStore
    ) -> None:
        async with store.open(retain=60, on_change=ignore):
            record = self.record(store, redial_count=1, interval=3600)
            await store.add(record)
            (claim,) = await self.claim_all(store)
            updated = await store.record_call(claim, result("t1"), store.now())
            assert updated is not None
            assert updated.state is SessionState.AWAITING_CODE
            assert [a.transaction_number for a in updated.attempts] == ["t1"]
            assert updated.due >= store.now() + 3000  # redial_interval after the call
            assert await self.claim_all(store) == []

    async def test_an_unsent_call_goes_back_uncounted(self, store: SessionStore) -> None:
        async with store.open(retain=60, on_change=ignore):
            record = self.record(store)
            await store.add(record)
            (claim,) = await self.claim_all(store)
            released = await store.release(claim, store.now())
            assert released is not None
            assert (released.state, released.calls_made) == (SessionState.SCHEDULED, 0)
            assert await store.release(claim, store.now()) is None  # the claim is gone
            (again,) = await self.claim_all(store)
            assert again.calls_made == 1

    async def test_a_renewal_says_which_claims_still_hold(self, store: SessionStore) -> None:
        async with store.open(retain=60, on_change=ignore):
            kept, cancelled = self.record(store), self.record(store)
            await store.add(kept)
            await store.add(cancelled)
            claims = await self.claim_all(store)
            assert len(claims) == 2
            await store.finish(cancelled.id, SessionState.CANCELLED, store.now())
            renewed = await store.renew(claims, store.now())
            assert renewed.ids == {kept.id}

    async def test_finish_obeys_the_rules(self, store: SessionStore) -> None:
        async with store.open(retain=60, on_change=ignore):
            now = store.now
            verified = self.record(store)
            await store.add(verified)
            done = await store.finish(verified.id, SessionState.VERIFIED, now())
            assert done is not None
            assert done.state is SessionState.VERIFIED
            for state in (SessionState.VERIFIED, SessionState.CANCELLED):
                assert await store.finish(verified.id, state, now()) is None  # final
            failing = self.record(store)
            await store.add(failing)
            error = ApiError("the service refused", code=4, status_code=200)
            # FAILED only by the holder of the current claim.
            assert await store.finish(failing.id, SessionState.FAILED, now(), error=error) is None
            (claim,) = await self.claim_all(store)
            wrong = (claim.claimed_at or 0.0) - 1.0
            assert (
                await store.finish(
                    failing.id, SessionState.FAILED, now(), error=error, claimed_at=wrong
                )
                is None
            )
            failed = await store.finish(
                failing.id, SessionState.FAILED, now(), error=error, claimed_at=claim.claimed_at
            )
            assert failed is not None
            assert failed.state is SessionState.FAILED
            loaded = await store.load(failing.id)
            assert loaded is not None
            assert isinstance(loaded.error, ApiError)
            assert str(loaded.error) == str(error)
            assert await store.finish(failing.id, SessionState.CANCELLED, now()) is None

    async def test_an_exhausted_session_can_still_be_verified(self, store: SessionStore) -> None:
        async with store.open(retain=60, on_change=ignore):
            record = self.record(store, redial_count=0, interval=0.05)
            await store.add(record)
            (claim,) = await self.claim_all(store)
            await store.record_call(claim, result("t1"), store.now())

            async def exhausted() -> SessionRecord | None:
                claimed = await store.claim(store.now(), 100)
                return next((r for r in claimed.changed if r.id == record.id), None)

            ended = await self.until(exhausted)
            assert ended.state is SessionState.EXHAUSTED
            assert ended.request is None
            verified = await store.finish(record.id, SessionState.VERIFIED, store.now())
            assert verified is not None
            assert verified.state is SessionState.VERIFIED

    async def test_phone_and_code_are_erased_at_a_final_state(self, store: SessionStore) -> None:
        async with store.open(retain=60, on_change=ignore):
            for state in (SessionState.CANCELLED, SessionState.VERIFIED):
                record = self.record(store)
                await store.add(record)
                ended = await store.finish(record.id, state, store.now())
                assert ended is not None
                assert ended.request is None
                loaded = await store.load(record.id)
                assert loaded is not None
                assert loaded.request is None
                assert PHONE not in repr(loaded)
                assert CODE not in repr(loaded)

    async def test_retained_sessions_are_forgotten(self, store: SessionStore) -> None:
        async with store.open(retain=self.retain_for, on_change=ignore):
            record = self.record(store)
            await store.add(record)
            await store.finish(record.id, SessionState.CANCELLED, store.now())
            assert await store.load(record.id) is not None

            async def gone() -> bool | None:
                await store.claim(store.now(), 100)
                return True if await store.load(record.id) is None else None

            await self.until(gone)

    async def test_a_wake_ends_a_wait(self, store: SessionStore) -> None:
        async with store.open(retain=60, on_change=ignore):
            await store.claim(store.now(), 100)
            with anyio.fail_after(self.patience):
                async with anyio.create_task_group() as tasks:
                    tasks.start_soon(store.wait, store.now() + 3600)
                    await anyio.lowlevel.checkpoint()
                    store.wake()
            await store.claim(store.now(), 100)
            with anyio.fail_after(self.patience):  # a wait ends by its due time too
                await store.wait(store.now() + 0.05)
