"""examples/web_backend.py end to end: the test plays the person against the emulator, in
process on both backends, then as a real ``uvicorn --workers 2`` server."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import anyio
import anyio.to_thread
import httpx
import pytest

from examples.web_backend import create_app
from phoneconfirm_async.emulator import Emulator
from tests.conftest import API_KEY, DOMAIN, EmulatorFactory
from tests.servers import example_env, serve

pytestmark = pytest.mark.anyio
PROJECT = Path(__file__).resolve().parent.parent


async def test_confirm_a_number_on_the_second_call(
    make_emulator: EmulatorFactory, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Sign-up starts a session; the person picks up the 2nd call and types the code."""
    emulator = make_emulator(answer_on_attempt=2)
    monkeypatch.setenv("PHONECONFIRM_API_KEY", API_KEY)
    monkeypatch.setenv("PHONECONFIRM_DOMAIN", DOMAIN)
    monkeypatch.setenv("PHONECONFIRM_BASE_URL", emulator.base_url)
    monkeypatch.setenv("PHONECONFIRM_STORE", f"sqlite:///{tmp_path}/sessions.sqlite")
    app = create_app(redial_count=3, redial_interval=0.3)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://app") as web,
    ):
        started = await web.post("/confirm", json={"phone": "555-555-0123", "country_code": "1"})
        assert started.status_code == 201
        session_id = started.json()["id"]
        assert "code" not in started.json()

        assert await anyio.to_thread.run_sync(emulator.wait_for_calls, 1, 10.0)
        assert emulator.heard_code("5555550123") is None  # nobody picked up the 1st call

        # The 2nd call is placed only after the 1st was answered, so a verify can be sent.
        assert await anyio.to_thread.run_sync(emulator.wait_for_calls, 2, 10.0)
        wrong = await web.post(f"/confirm/{session_id}/verify", json={"code": "000000"})
        assert wrong.json()["verified"] is False
        heard = emulator.heard_code("5555550123")
        assert heard is not None
        right = await web.post(f"/confirm/{session_id}/verify", json={"code": heard})
        assert right.json() == {"verified": True, "state": "verified", "attempts_left": 3}
        again = await web.post(f"/confirm/{session_id}/verify", json={"code": heard})
        assert (again.status_code, again.json()) == (409, {"state": "verified"})
        shown = await web.get(f"/confirm/{session_id}")
        assert shown.json() == {"state": "verified", "calls": 2}

        bad = await web.post("/confirm", json={"phone": "12", "country_code": "1"})
        assert bad.status_code == 422
        assert bad.json()["error"]["field"] == "phone"
        missing = await web.post("/confirm/nope/verify", json={"code": "1"})
        assert missing.status_code == 404
    assert len(emulator.calls) == 2


async def test_guessing_locks_and_repeats_are_throttled(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The run from the issue: 300 wrong codes in a row get five ``200 false``, then
    ``409 locked``; the right code after the lock is refused too. The fourth ``POST
    /confirm`` for one phone within the hour is ``429`` with ``Retry-After``; a country
    outside ``PHONECONFIRM_COUNTRIES`` is ``422``."""
    monkeypatch.setenv("PHONECONFIRM_API_KEY", API_KEY)
    monkeypatch.setenv("PHONECONFIRM_DOMAIN", DOMAIN)
    monkeypatch.setenv("PHONECONFIRM_BASE_URL", emulator.base_url)
    monkeypatch.setenv("PHONECONFIRM_STORE", f"sqlite:///{tmp_path}/sessions.sqlite")
    monkeypatch.setenv("PHONECONFIRM_COUNTRIES", "1, 44")
    app = create_app()
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://app") as web,
    ):
        body = {"phone": "5555550123", "country_code": "1"}
        session_id = (await web.post("/confirm", json=body)).json()["id"]
        assert await anyio.to_thread.run_sync(emulator.wait_for_calls, 1, 10.0)
        heard = emulator.heard_code("5555550123")
        assert heard is not None
        answers = []
        for guess in range(300):
            code = f"{guess:06d}" if f"{guess:06d}" != heard else "999999"
            answer = await web.post(f"/confirm/{session_id}/verify", json={"code": code})
            answers.append((answer.status_code, answer.json()))
        assert answers[:5] == [
            (200, {"verified": False, "state": state, "attempts_left": left})
            for state, left in [("awaiting_code", n) for n in (4, 3, 2, 1)] + [("locked", 0)]
        ]
        assert set(map(str, answers[5:])) == {str((409, {"state": "locked"}))}
        right = await web.post(f"/confirm/{session_id}/verify", json={"code": heard})
        assert (right.status_code, right.json()) == (409, {"state": "locked"})
        assert emulator.verification_count == 5

        for _ in range(2):
            assert (await web.post("/confirm", json=body)).status_code == 201
        throttled = await web.post("/confirm", json=body)
        assert throttled.status_code == 429
        assert throttled.json()["limit"] == "phone"
        assert 3590 <= int(throttled.headers["retry-after"]) <= 3600
        german = await web.post("/confirm", json={"phone": "301234567", "country_code": "49"})
        assert german.status_code == 422
        assert german.json()["error"]["field"] == "country_code"
        for refused in ({"phone": "+1 900 234 5678"}, {"phone": None}, {"phone": ["1"]}):
            answer = await web.post("/confirm", json=refused)
            assert answer.status_code == 422, refused
            assert answer.json()["error"]["field"] == "phone"
        british = await web.post("/confirm", json={"phone": "+44 20 7946 0018"})
        assert british.status_code == 201
        assert await anyio.to_thread.run_sync(emulator.wait_for_calls, 4, 10.0)
    assert len(emulator.calls) == 4  # the throttled and refused requests phoned nobody
    assert emulator.calls[-1].country_code == "44"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def two_workers(tmp_path: Path, emulator: Emulator) -> Iterator[str]:
    """``uvicorn examples.web_backend:app --workers 2`` on a SQLite store; its base URL."""
    port = _free_port()
    env = example_env(emulator, tmp_path / "sessions.sqlite")
    args = ["uvicorn", "examples.web_backend:app", "--workers", "2"]

    def listening(lines: list[str]) -> str | None:  # each worker logs its startup once
        started = sum("Application startup complete" in line for line in lines)
        return f"http://127.0.0.1:{port}" if started == 2 else None

    with serve([*args, "--host", "127.0.0.1", "--port", str(port)], env, listening) as server:
        yield server.url
    assert server.process.returncode == 0, server.log


async def _fresh(method: str, url: str, **kwargs: object) -> httpx.Response:
    """One request on a connection of its own: any worker may accept it."""
    async with httpx.AsyncClient() as web:
        return await web.request(method, url, **kwargs)  # type: ignore[arg-type]


@pytest.mark.slow
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_two_workers_share_the_sessions(two_workers: str, emulator: Emulator) -> None:
    """A session started through one connection is seen and verified through fresh
    connections, whichever of the two worker processes answers each."""
    base = two_workers
    started = await _fresh(
        "POST", f"{base}/confirm", json={"phone": "555-555-0123", "country_code": "1"}
    )
    assert started.status_code == 201
    session_id = started.json()["id"]
    assert await anyio.to_thread.run_sync(emulator.wait_for_calls, 1, 20.0)
    heard = emulator.heard_code("5555550123")
    assert heard is not None

    seen: dict[str, dict[str, object]] = {}
    for _ in range(200):  # fresh connections until both workers have answered
        shown = await _fresh("GET", f"{base}/confirm/{session_id}")
        seen[shown.headers["x-worker-pid"]] = shown.json()
        if len(seen) == 2 and all(body["calls"] == 1 for body in seen.values()):
            break
    assert len(seen) == 2, seen
    assert {body["state"] for body in seen.values()} == {"awaiting_code"}

    wrong = await _fresh("POST", f"{base}/confirm/{session_id}/verify", json={"code": "000000"})
    assert wrong.json() == {"verified": False, "state": "awaiting_code", "attempts_left": 4}
    right = await _fresh("POST", f"{base}/confirm/{session_id}/verify", json={"code": heard})
    assert right.json() == {"verified": True, "state": "verified", "attempts_left": 3}
    answers: dict[str, str] = {}
    for _ in range(200):
        shown = await _fresh("GET", f"{base}/confirm/{session_id}")
        answers[shown.headers["x-worker-pid"]] = str(shown.json()["state"])
        if len(answers) == 2:
            break
    assert len(answers) == 2
    assert set(answers.values()) == {"verified"}
    assert len(emulator.calls) == 1  # one worker placed it; no redial after the verify
