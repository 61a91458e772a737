"""examples/fastapi_backend.py as it is deployed: ``uvicorn`` in a subprocess, the emulator
on loopback as the service, a SQLite store; the test plays the person, the guesser, and
a user typing anything into the form."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from phoneconfirm_async.emulator import Emulator
from tests.servers import example_env, serve

PROJECT = Path(__file__).resolve().parent.parent
_LISTENING = re.compile(r"Uvicorn running on http://127\.0\.0\.1:(\d+)")


@pytest.fixture
def app_url(tmp_path: Path, emulator: Emulator) -> Iterator[str]:
    """``uvicorn examples.fastapi_backend:app`` on a free port; its base URL."""
    env = example_env(emulator, tmp_path / "sessions.sqlite", PHONECONFIRM_COUNTRIES="1,44")
    args = ["uvicorn", "examples.fastapi_backend:app", "--host", "127.0.0.1", "--port", "0"]

    def listening(lines: list[str]) -> str | None:  # uvicorn names its port once it listens
        found = _LISTENING.search(lines[-1])
        return None if found is None else f"http://127.0.0.1:{found.group(1)}"

    with serve([*args, "--no-access-log"], env, listening) as server:
        yield server.url
    # One uvicorn process re-raises SIGTERM once it shut down cleanly.
    assert "Application shutdown complete" in server.log, server.log
    assert "Traceback" not in server.log, server.log


def _spaced(code: str) -> str:
    """A code as people type it: ``123 456``."""
    return f"{code[:3]} {code[3:]}"


@pytest.mark.slow
def test_sign_up_guessing_and_repeats(app_url: str, emulator: Emulator) -> None:
    """A number typed in international form is called once; the code typed with a space
    verifies, and only once. Another session is locked by five wrong guesses (the right code
    after that is refused), and the fourth session for one phone within the hour is 429."""
    with httpx.Client(base_url=app_url) as web:
        started = web.post("/confirm", json={"phone": "+1 555-555-0123"})
        assert started.status_code == 201, started.text
        session_id = started.json()["id"]
        assert emulator.wait_for_calls(1, 20.0)
        heard = emulator.heard_code("5555550123")
        assert heard is not None
        assert len(heard) == 6
        assert emulator.calls[0].country_code == "1"

        right = web.post(f"/confirm/{session_id}/verify", json={"code": _spaced(heard)})
        assert right.json() == {"verified": True, "state": "verified", "attempts_left": 4}
        again = web.post(f"/confirm/{session_id}/verify", json={"code": heard})
        assert (again.status_code, again.json()) == (409, {"state": "verified"})
        assert web.get(f"/confirm/{session_id}").json() == {"state": "verified", "calls": 1}

        guessed = web.post("/confirm", json={"phone": "5555550123", "country_code": "1"})
        guessed_id = guessed.json()["id"]
        assert emulator.wait_for_calls(2, 20.0)
        heard = emulator.heard_code("5555550123")
        assert heard is not None
        wrong = "000000" if heard != "000000" else "111111"
        answers = [
            web.post(f"/confirm/{guessed_id}/verify", json={"code": wrong}) for _ in range(7)
        ]
        assert [answer.status_code for answer in answers] == [200] * 5 + [409] * 2
        assert answers[4].json() == {"verified": False, "state": "locked", "attempts_left": 0}
        late = web.post(f"/confirm/{guessed_id}/verify", json={"code": heard})
        assert (late.status_code, late.json()) == (409, {"state": "locked"})
        assert emulator.verification_count == 1 + 5

        third = web.post("/confirm", json={"phone": "+15555550123"})
        assert third.status_code == 201
        throttled = web.post("/confirm", json={"phone": "+15555550123"})
        assert throttled.status_code == 429
        assert throttled.json()["limit"] == "phone"
        assert 3590 <= int(throttled.headers["retry-after"]) <= 3600
    assert emulator.wait_for_calls(3, 20.0)
    assert len(emulator.calls) == 3  # the throttled request phoned nobody


#: Bodies a user (or a bot) can send to ``POST /confirm``, and the field each one is
#: refused on; none is called.
_BAD_STARTS: list[tuple[Any, str]] = [
    ({}, "phone"),
    ({"phone": ""}, "phone"),
    ({"phone": 5555550123}, "phone"),
    ({"phone": None}, "phone"),
    ({"phone": ["+15555550123"]}, "phone"),
    ({"phone": "x" * 1000}, "phone"),
    ({"phone": "555-CALL-NOW", "country_code": "1"}, "phone"),
    ({"phone": "\x00\x01"}, "phone"),
    ({"phone": "+1 555 0123"}, "phone"),  # a local number: no area code
    ({"phone": "+1 555 555 01234"}, "phone"),  # too long for +1
    ({"phone": "+999 1234 5678"}, "phone"),  # no such country code
    ({"phone": "5555550123"}, "country_code"),  # national without its country code
    ({"phone": "5555550123", "country_code": "+1234"}, "country_code"),
    ({"phone": "+44 20 7946 0018", "country_code": "1"}, "country_code"),
    ({"phone": "+49 30 1234567"}, "country_code"),  # outside PHONECONFIRM_COUNTRIES
    ({"phone": "+1 900 234 5678"}, "phone"),  # premium rate
    ({"phone": "+44 901 234 5678"}, "phone"),  # premium rate
    ({"phone": "+15555550123x12"}, "phone"),  # an extension
]


@pytest.mark.slow
def test_anything_a_user_types_is_a_422_never_a_500(app_url: str, emulator: Emulator) -> None:
    with httpx.Client(base_url=app_url) as web:
        for body, field in _BAD_STARTS:
            answer = web.post("/confirm", json=body)
            assert answer.status_code == 422, (body, answer.text)
            fields = [error["loc"][-1] for error in answer.json()["detail"]]
            assert field in fields, (body, answer.json())
        premium = web.post("/confirm", json={"phone": "+19002345678"}).json()
        assert "premium rate" in premium["detail"][0]["msg"]
        for raw in (b"{", b"[]", b"null", b"\xff\xfe", b'{"phone": "+1555'):
            answer = web.post(
                "/confirm", content=raw, headers={"content-type": "application/json"}
            )
            assert answer.status_code == 422, (raw, answer.text)
        as_form = web.post("/confirm", data={"phone": "+15555550123"})
        assert as_form.status_code == 422

        session_id = web.post("/confirm", json={"phone": "+15555550123"}).json()["id"]
        assert emulator.wait_for_calls(1, 20.0)
        for body in ({}, {"code": ""}, {"code": None}, {"code": "12 34 56 78 90 12"}, []):
            answer = web.post(f"/confirm/{session_id}/verify", json=body)
            assert answer.status_code == 422, (body, answer.text)
        for unknown in ("nope", "..%2F..%2Fetc", "%00"):
            assert web.get(f"/confirm/{unknown}").status_code == 404
            answer = web.post(f"/confirm/{unknown}/verify", json={"code": "123456"})
            assert answer.status_code == 404
        too_long = web.post(f"/confirm/{'x' * 100}/verify", json={"code": "123456"})
        assert too_long.status_code == 422
        assert web.get(f"/confirm/{session_id}").json() == {"state": "awaiting_code", "calls": 1}
    assert len(emulator.calls) == 1
    assert emulator.verification_count == 0  # no refused code reached the service
    assert json.dumps(_BAD_STARTS)  # the table stays plain data (it documents the refusals)
