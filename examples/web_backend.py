"""A Starlette app that confirms phone numbers, with sessions any worker can serve.

    PHONECONFIRM_API_KEY=... PHONECONFIRM_DOMAIN=... \\
        uvicorn examples.web_backend:app --workers 2

- ``POST /confirm`` with ``{"phone": "...", "country_code": "1"}`` starts a session (the
  server makes up the code; it is spoken by phone, never returned) and answers
  ``{"id": "...", "state": "scheduled"}``. Keep the id in the user's web session.
- ``POST /confirm/{id}/verify`` with ``{"code": "..."}`` answers
  ``{"verified": true|false, "state": "..."}``.
- ``GET /confirm/{id}`` answers ``{"state": "...", "calls": n}``.

Sessions live in the store ``PHONECONFIRM_STORE`` names (default
``sqlite:///phoneconfirm-sessions.sqlite``, shared by the workers of one host; a
``postgresql://`` URL shares them across hosts), so the verify request may land on any
worker, and a redeploy loses no pending redial. Every worker places the calls that fall
due; each call is placed by exactly one of them. Each answer names the worker's process in
an ``x-worker-pid`` header, to see the sharing at work.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from phoneconfirm_async import (
    ConfirmationScheduler,
    PhoneConfirmClient,
    PhoneConfirmError,
    SessionStore,
    ValidationError,
    store_from_url,
)

#: Where sessions live when ``PHONECONFIRM_STORE`` is not set.
DEFAULT_STORE = "sqlite:///phoneconfirm-sessions.sqlite"


def store_from_environment() -> SessionStore:
    return store_from_url(os.environ.get("PHONECONFIRM_STORE", DEFAULT_STORE))


def create_app(
    *,
    redial_count: int = 2,
    redial_interval: float = 60.0,
    client_factory: Callable[[], PhoneConfirmClient] = PhoneConfirmClient,
    store_factory: Callable[[], SessionStore] = store_from_environment,
) -> Starlette:
    """The app; its lifespan owns one client and one scheduler per worker process.

    ``client_factory`` makes the client (default: credentials from the environment; a test
    passes ``EmulatorTransport(...).client`` to run the app without a network), and
    ``store_factory`` the session store (default: ``PHONECONFIRM_STORE``).
    """

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        store = store_factory()
        async with client_factory() as client, client.scheduler(store=store) as scheduler:
            app.state.scheduler = scheduler
            yield

    async def start(request: Request) -> JSONResponse:
        scheduler: ConfirmationScheduler = request.app.state.scheduler
        body = await _json(request)
        code = f"{secrets.randbelow(10**6):06d}"
        try:
            session = await scheduler.schedule(
                str(body.get("phone", "")),
                country_code=str(body.get("country_code", "")),
                code=code,
                redial_count=redial_count,
                redial_interval=redial_interval,
            )
        except ValidationError as exc:
            return _invalid(exc)
        return _answer({"id": session.id, "state": session.state.value}, status_code=201)

    async def show(request: Request) -> JSONResponse:
        scheduler: ConfirmationScheduler = request.app.state.scheduler
        session = await scheduler.get(request.path_params["session_id"])
        if session is None:
            return _answer({"error": "unknown or expired confirmation"}, status_code=404)
        return _answer({"state": session.state.value, "calls": session.calls_made})

    async def verify(request: Request) -> JSONResponse:
        scheduler: ConfirmationScheduler = request.app.state.scheduler
        session = await scheduler.get(request.path_params["session_id"])
        if session is None:
            return _answer({"error": "unknown or expired confirmation"}, status_code=404)
        body = await _json(request)
        try:
            result = await session.verify(str(body.get("code", "")))
        except ValidationError as exc:
            return _invalid(exc)
        except PhoneConfirmError as exc:
            return _answer({"error": type(exc).__name__}, status_code=502)
        return _answer({"verified": result.verified, "state": session.state.value})

    return Starlette(
        routes=[
            Route("/confirm", start, methods=["POST"]),
            Route("/confirm/{session_id}", show, methods=["GET"]),
            Route("/confirm/{session_id}/verify", verify, methods=["POST"]),
        ],
        lifespan=lifespan,
    )


async def _json(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _answer(body: dict[str, Any], status_code: int = 200) -> JSONResponse:
    return JSONResponse(body, status_code, headers={"x-worker-pid": str(os.getpid())})


def _invalid(exc: ValidationError) -> JSONResponse:
    return _answer({"error": {"field": exc.field, "rule": exc.rule}}, status_code=422)


app = create_app()
