"""The blocking scheduler and its sessions against the emulator on loopback: the async
scheduler's store, policy and errors, used from request threads."""

from __future__ import annotations

import gc
import threading
from pathlib import Path

import pytest

from phoneconfirm_async import (
    ConfirmationPolicy,
    ConfirmationSession,
    SessionState,
    SQLiteStore,
    SyncConfirmationSession,
    SyncPhoneConfirmClient,
    ThrottledError,
    ValidationError,
    VerificationClosedError,
)
from phoneconfirm_async.emulator import Emulator
from tests.conftest import API_KEY, DOMAIN, EmulatorFactory


def test_sessions_start_in_one_thread_and_verify_in_another(
    make_emulator: EmulatorFactory, tmp_path: Path
) -> None:
    """A sign-up request schedules; the next request, on another thread, finds the session
    by id and checks the code the person heard on the second call."""
    emulator = make_emulator(answer_on_attempt=2)
    store = SQLiteStore(tmp_path / "sessions.sqlite")
    with (
        SyncPhoneConfirmClient(API_KEY, DOMAIN, base_url=emulator.base_url) as client,
        client.scheduler(store=store) as scheduler,
    ):
        session = scheduler.schedule(
            "555-555-0123", country_code="1", redial_count=2, redial_interval=0.2
        )
        assert isinstance(session, SyncConfirmationSession)
        # The loop thread may be dialling already: the state is the latest this thread saw.
        assert session.state in (SessionState.SCHEDULED, SessionState.CALLING)
        assert session.wait_called(timeout=30)
        assert emulator.wait_for_calls(2, 30)
        outcome: dict[str, object] = {}

        def verify_request() -> None:
            found = scheduler.get(session.id)
            assert found is not None
            found.refresh()
            heard = emulator.heard_code("5555550123")
            assert heard is not None
            outcome["wrong"] = found.verify("000000").verified
            outcome["right"] = found.verify(heard).verified
            outcome["left"] = found.verify_attempts_left

        thread = threading.Thread(target=verify_request)
        thread.start()
        thread.join()
        assert outcome == {"wrong": False, "right": True, "left": 3}
        assert session.wait(timeout=30) is SessionState.VERIFIED
        assert session.calls_made == 2
        assert session.request is None  # phone and code erased once final
        assert "***0123" not in repr(session)
        assert scheduler.get("unknown-id") is None
    assert len(emulator.calls) == 2


def test_the_policy_and_its_errors_are_the_async_ones(emulator: Emulator) -> None:
    policy = ConfirmationPolicy(max_verify_attempts=2, max_sessions_per_phone=2)
    with (
        SyncPhoneConfirmClient(API_KEY, DOMAIN, base_url=emulator.base_url) as client,
        client.scheduler(policy=policy) as scheduler,
    ):
        with pytest.raises(ValidationError) as short:
            scheduler.schedule("5555550123", country_code="1", code="12")
        assert short.value.field == "code"
        first = scheduler.schedule("5555550123", country_code="1")
        assert first.wait_called(timeout=30)
        assert first.verify_attempts_left == 2
        assert not first.verify("000000").verified
        assert not first.verify("000001").verified
        assert first.state is SessionState.LOCKED
        with pytest.raises(VerificationClosedError) as closed:
            first.verify(emulator.heard_code("5555550123") or "")
        assert closed.value.state is SessionState.LOCKED
        scheduler.schedule("5555550123", country_code="1")
        with pytest.raises(ThrottledError) as throttled:
            scheduler.schedule("5555550123", country_code="1")
        assert throttled.value.limit == "phone"
        assert throttled.value.retry_after > 0


def test_a_web_tier_and_a_worker_share_a_durable_store(emulator: Emulator, tmp_path: Path) -> None:
    """drive=False schedules and verifies; another client (a worker, here in the same
    process) places the call, exactly once."""
    url = tmp_path / "sessions.sqlite"
    with (
        SyncPhoneConfirmClient(API_KEY, DOMAIN, base_url=emulator.base_url) as web,
        web.scheduler(store=SQLiteStore(url), drive=False) as front,
    ):
        session = front.schedule("5555550123", country_code="1")
        with pytest.raises(TimeoutError, match="first call"):
            session.wait_called(timeout=0.1)  # nobody drives yet
        assert emulator.calls == []
        with (
            SyncPhoneConfirmClient(API_KEY, DOMAIN, base_url=emulator.base_url) as worker,
            worker.scheduler(store=SQLiteStore(url)),
        ):
            assert session.wait_called(timeout=30)
            heard = emulator.heard_code("5555550123")
            assert heard is not None
            assert session.verify(heard).verified
        assert session.state is SessionState.VERIFIED
    assert len(emulator.calls) == 1


def test_closing_the_client_closes_its_schedulers(emulator: Emulator) -> None:
    """A memory store's pending sessions are cancelled, as leaving ``async with`` does."""
    client = SyncPhoneConfirmClient(API_KEY, DOMAIN, base_url=emulator.base_url)
    scheduler = client.scheduler()
    later = scheduler.schedule("5555550123", country_code="1", call_place_time=3600)
    assert "open" in repr(scheduler)
    client.close()
    assert later.state is SessionState.CANCELLED
    assert "closed" in repr(scheduler)
    scheduler.close()  # after the client's close: nothing
    with pytest.raises(RuntimeError, match="closed"):
        scheduler.schedule("5555550123", country_code="1")
    assert emulator.calls == []


def test_the_session_properties_are_the_async_ones() -> None:
    """Every public property of ConfirmationSession is on the blocking session."""

    def properties(cls: type) -> set[str]:
        return {
            name
            for name in dir(cls)
            if not name.startswith("_") and isinstance(getattr(cls, name), property)
        }

    assert properties(SyncConfirmationSession) == properties(ConfirmationSession)
    assert {"verify", "cancel", "refresh", "wait", "wait_called"} <= set(
        dir(SyncConfirmationSession)
    )


def test_a_scheduler_keeps_its_client_alive(emulator: Emulator) -> None:
    """A client nobody refers to is closed when collected: not while its scheduler (or a
    session of it) is in use."""
    scheduler = SyncPhoneConfirmClient(API_KEY, DOMAIN, base_url=emulator.base_url).scheduler()
    gc.collect()
    session = scheduler.schedule("5555550123", country_code="1")
    del scheduler
    gc.collect()
    assert session.wait_called(timeout=30)
    assert session.verify(emulator.heard_code("5555550123") or "").verified
