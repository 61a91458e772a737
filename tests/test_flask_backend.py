"""examples/flask_backend.py end to end against the emulator on loopback: in process with
Flask's test client, then as it is deployed, under a real ``gunicorn --workers 2
--preload`` with sync workers."""

from __future__ import annotations

import contextlib
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from flask.testing import FlaskClient

from examples.flask_backend import create_app
from phoneconfirm_async.emulator import Emulator
from tests.conftest import API_KEY, DOMAIN, EmulatorFactory
from tests.servers import example_env, serve


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PHONECONFIRM_API_KEY", API_KEY)
    monkeypatch.setenv("PHONECONFIRM_DOMAIN", DOMAIN)
    monkeypatch.setenv("PHONECONFIRM_STORE", f"sqlite:///{tmp_path}/sessions.sqlite")
    monkeypatch.setenv("PHONECONFIRM_COUNTRIES", "1, 44")


def web_client(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch, redial_interval: float = 60.0
) -> FlaskClient:
    """Flask's test client on the app, configured by the environment as when deployed."""
    monkeypatch.setenv("PHONECONFIRM_BASE_URL", emulator.base_url)
    return create_app(redial_count=3, redial_interval=redial_interval).test_client()


@pytest.mark.usefixtures("environment")
def test_confirm_a_number_on_the_second_call(
    make_emulator: EmulatorFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator = make_emulator(answer_on_attempt=2)
    web = web_client(emulator, monkeypatch, redial_interval=1.0)  # margin before a 3rd call
    started = web.post("/confirm", json={"phone": "555-555-0123", "country_code": "1"})
    assert started.status_code == 201
    assert started.json is not None
    assert set(started.json) == {"id", "state"}  # the code is spoken, never returned
    session_id = started.json["id"]
    assert emulator.wait_for_calls(2, 20.0)  # nobody picked up the first call
    wrong = web.post(f"/confirm/{session_id}/verify", json={"code": "000000"})
    assert wrong.json == {"verified": False, "state": "awaiting_code", "attempts_left": 4}
    heard = emulator.heard_code("5555550123")
    assert heard is not None
    right = web.post(f"/confirm/{session_id}/verify", json={"code": heard})
    assert right.json == {"verified": True, "state": "verified", "attempts_left": 3}
    again = web.post(f"/confirm/{session_id}/verify", json={"code": heard})
    assert (again.status_code, again.json) == (409, {"state": "verified"})
    assert web.get(f"/confirm/{session_id}").json == {"state": "verified", "calls": 2}
    assert web.get("/confirm/unknown").status_code == 404
    assert web.post("/confirm/unknown/verify", json={"code": "1"}).status_code == 404
    assert len(emulator.calls) == 2


@pytest.mark.usefixtures("environment")
def test_the_policy_answers(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """Five wrong codes, then 409 locked (the right one too); the fourth session for one
    phone is 429 with Retry-After; refused input is 422 naming the field, never a 500."""
    web = web_client(emulator, monkeypatch)
    started = web.post("/confirm", json={"phone": "+1 555 555 0123"})
    assert started.json is not None
    session_id = started.json["id"]
    assert emulator.wait_for_calls(1, 20.0)
    answers = [
        web.post(f"/confirm/{session_id}/verify", json={"code": f"00000{n}"}) for n in range(6)
    ]
    assert [answer.status_code for answer in answers] == [200] * 5 + [409]
    assert answers[-1].json == {"state": "locked"}
    heard = emulator.heard_code("5555550123")
    locked = web.post(f"/confirm/{session_id}/verify", json={"code": heard})
    assert (locked.status_code, locked.json) == (409, {"state": "locked"})
    for _ in range(2):
        assert web.post("/confirm", json={"phone": "+15555550123"}).status_code == 201
    throttled = web.post("/confirm", json={"phone": "+15555550123"})
    assert throttled.status_code == 429
    assert throttled.json == {"error": "too many confirmations", "limit": "phone"}
    assert int(throttled.headers["retry-after"]) > 0
    for body, field in [
        ({"phone": "12", "country_code": "1"}, "phone"),
        ({"phone": "+33 1 23 45 67 89"}, "country_code"),  # outside PHONECONFIRM_COUNTRIES
        ({"phone": "+1 900 555 0123"}, "phone"),  # premium rate
        ({}, "phone"),
        ([1, 2], "phone"),
    ]:
        refused = web.post("/confirm", json=body)
        assert refused.status_code == 422, body
        assert refused.json is not None
        assert refused.json["error"]["field"] == field, body
    not_json = web.post("/confirm", data="phone=5555550123", content_type="text/plain")
    assert not_json.status_code == 422


@pytest.fixture
def two_gunicorn_workers(tmp_path: Path, emulator: Emulator) -> Iterator[str]:
    """``gunicorn --workers 2 --preload examples.flask_backend:app`` (sync workers) on a
    SQLite store; its base URL once both workers booted."""
    env = example_env(emulator, tmp_path / "sessions.sqlite")
    args = ["gunicorn", "--workers", "2", "--preload", "--bind", "127.0.0.1:0"]

    def listening(lines: list[str]) -> str | None:
        log = "".join(lines)
        address = re.search(r"Listening at: (http://127\.0\.0\.1:\d+)", log)
        booted = log.count("Booting worker with pid")
        return address[1] if address and booted == 2 else None

    with serve([*args, "examples.flask_backend:app"], env, listening) as server:
        yield server.url
    assert server.process.returncode == 0, server.log
    assert "Traceback" not in server.log, server.log


def fresh(method: str, url: str, **options: object) -> httpx.Response:
    """One request on a connection of its own: either worker may accept it."""
    with httpx.Client() as web:
        return web.request(method, url, **options)  # type: ignore[arg-type]


@contextlib.contextmanager
def stalled(base: str) -> Iterator[None]:
    """A connection that sends half a request's headers: the sync worker that accepts it
    is busy reading them until the block ends, so the other worker takes the next ones."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as held:
        held.sendall(b"GET /confirm/held HTTP/1.1\r\nHost: app\r\n")
        yield


@pytest.mark.slow
def test_two_gunicorn_workers_share_the_sessions(
    two_gunicorn_workers: str, emulator: Emulator
) -> None:
    """Started on one worker, seen on both, verified on the other: one call placed."""
    base = two_gunicorn_workers
    started = fresh("POST", f"{base}/confirm", json={"phone": "555-555-0123", "country_code": "1"})
    assert started.status_code == 201, started.text
    session_id = started.json()["id"]
    starter = started.headers["x-worker-pid"]
    assert emulator.wait_for_calls(1, 20.0)
    heard = emulator.heard_code("5555550123")
    assert heard is not None

    seen: dict[str, object] = {}
    for _ in range(200):  # fresh connections until both workers have answered
        shown = fresh("GET", f"{base}/confirm/{session_id}")
        seen[shown.headers["x-worker-pid"]] = shown.json()
        if len(seen) == 2:
            break
    assert list(seen.values()) == [{"state": "awaiting_code", "calls": 1}] * 2, seen

    # The verify goes to the worker that did not start the session: the starter is held.
    # A stalled connection is accepted before the next one (the accept queue is FIFO),
    # so when the other worker answers that next one, the starter is the one held.
    for _ in range(100):
        with stalled(base):
            probe = fresh("GET", f"{base}/confirm/{session_id}")
            if probe.headers["x-worker-pid"] != starter:
                right = fresh("POST", f"{base}/confirm/{session_id}/verify", json={"code": heard})
                break
    else:
        pytest.fail("the starter never took the stalled connection")
    assert right.headers["x-worker-pid"] != starter
    assert right.json() == {"verified": True, "state": "verified", "attempts_left": 4}

    answers: dict[str, object] = {}
    for _ in range(200):
        shown = fresh("GET", f"{base}/confirm/{session_id}")
        answers[shown.headers["x-worker-pid"]] = shown.json()
        if len(answers) == 2:
            break
    assert list(answers.values()) == [{"state": "verified", "calls": 1}] * 2, answers
    assert len(emulator.calls) == 1  # placed by one worker, once; no redial after the verify
