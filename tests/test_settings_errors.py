"""Every bad setting is a ``ConfigurationError`` (also a ``ValueError``) that names the
argument: client, scheduler, stores, store URLs, ``RetryPolicy``, test doubles."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from phoneconfirm_async import (
    ConfigurationError,
    ConfirmationScheduler,
    MemoryStore,
    PhoneConfirmClient,
    PostgresStore,
    RetryPolicy,
    SQLiteStore,
    store_from_url,
)
from phoneconfirm_async.testing import MockTransport


def client(**options: Any) -> PhoneConfirmClient:
    return PhoneConfirmClient("key", "example.com", **options)


def scheduler(**options: Any) -> ConfirmationScheduler:
    return ConfirmationScheduler(client(), **options)


CASES: list[tuple[str, Callable[[], object], str]] = [
    ("client timeout", lambda: client(timeout="5"), "timeout"),
    ("client attempt_timeout", lambda: client(attempt_timeout=0), "attempt_timeout"),
    ("client max_concurrency", lambda: client(max_concurrency=2.5), "max_concurrency"),
    ("client max_concurrency bool", lambda: client(max_concurrency=True), "max_concurrency"),
    ("client rate_limit", lambda: client(rate_limit="fast"), "rate_limit"),
    ("client retry_budget", lambda: client(retry_budget="many"), "retry_budget"),
    ("client retry", lambda: client(retry={"max_attempts": 2}), "retry"),
    ("client parsers", lambda: client(parsers=["json"]), "parsers"),
    ("client http_client", lambda: client(http_client="httpx"), "http_client"),
    ("client api_key", lambda: PhoneConfirmClient(42, "example.com"), "api_key"),  # type: ignore[arg-type]
    ("scheduler retain", lambda: scheduler(retain=-1), "retain"),
    ("scheduler retain text", lambda: scheduler(retain="1h"), "retain"),
    ("scheduler concurrency", lambda: scheduler(concurrency=0), "concurrency"),
    ("scheduler store", lambda: scheduler(store="sqlite:///x.sqlite"), "store"),
    ("scheduler retry", lambda: scheduler(retry=3), "retry"),
    ("scheduler drive", lambda: scheduler(drive=False), "drive"),
    ("scheduler wall_clock", lambda: scheduler(wall_clock=1.0), "wall_clock"),
    ("sqlite lease", lambda: SQLiteStore("x.sqlite", lease=0), "lease"),
    ("sqlite poll_interval", lambda: SQLiteStore("x.sqlite", poll_interval="1"), "poll_interval"),  # type: ignore[arg-type]
    ("postgres lease", lambda: PostgresStore("postgresql://h/db", lease=-1), "lease"),
    ("postgres table", lambda: PostgresStore("postgresql://h/db", table="a b"), "table"),
    ("url lease", lambda: store_from_url("sqlite:///x.sqlite?lease=never"), "lease"),
    ("retry max_attempts", lambda: RetryPolicy(max_attempts=0), "max_attempts"),
    ("retry deadline", lambda: RetryPolicy(deadline=-1), "deadline"),
    ("retry initial_wait", lambda: RetryPolicy(initial_wait="1"), "initial_wait"),  # type: ignore[arg-type]
    ("mock handler", lambda: MockTransport(None), "handler"),  # type: ignore[arg-type]
]


@pytest.mark.parametrize(
    ("make", "names"), [case[1:] for case in CASES], ids=[c[0] for c in CASES]
)
def test_a_bad_setting_is_a_configuration_error_naming_it(
    make: Callable[[], object], names: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no store file is created, but if it were: here
    with pytest.raises(ConfigurationError, match=names) as caught:
        make()
    assert isinstance(caught.value, ValueError)  # ``except ValueError`` keeps working


def test_good_settings_still_pass() -> None:
    """The checks refuse nonsense only: what the docs show is accepted."""
    client(timeout=None, attempt_timeout=2, max_concurrency=10, rate_limit=5, retry_budget=0)
    scheduler(retain=0, concurrency=3, store=MemoryStore())
    RetryPolicy(max_attempts=1, initial_wait=0, deadline=float("inf"))
    SQLiteStore("x.sqlite", lease=1, poll_interval=0.5)
