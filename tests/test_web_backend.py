"""examples/web_backend.py end to end: the test plays the person against the emulator."""

from __future__ import annotations

import anyio
import httpx
import pytest

from examples.web_backend import create_app
from tests.conftest import API_KEY, DOMAIN, EmulatorFactory

pytestmark = pytest.mark.anyio


async def test_confirm_a_number_on_the_second_call(
    make_emulator: EmulatorFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sign-up starts a session; the person picks up the 2nd call and types the code."""
    emulator = make_emulator(answer_on_attempt=2)
    monkeypatch.setenv("PHONECONFIRM_API_KEY", API_KEY)
    monkeypatch.setenv("PHONECONFIRM_DOMAIN", DOMAIN)
    monkeypatch.setenv("PHONECONFIRM_BASE_URL", emulator.base_url)
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
        assert right.json() == {"verified": True, "state": "verified"}

        bad = await web.post("/confirm", json={"phone": "12", "country_code": "1"})
        assert bad.status_code == 422
        assert bad.json()["error"]["field"] == "phone"
        missing = await web.post("/confirm/nope/verify", json={"code": "1"})
        assert missing.status_code == 404
    assert len(emulator.calls) == 2
