"""A Starlette app that confirms phone numbers with the local redial scheduler.

    PHONECONFIRM_API_KEY=... PHONECONFIRM_DOMAIN=... uvicorn examples.web_backend:app

- ``POST /confirm`` with ``{"phone": "...", "country_code": "1"}`` starts a session (the
  server makes up the code; it is spoken by phone, never returned) and answers
  ``{"id": "..."}``. Keep the id in the user's web session.
- ``POST /confirm/{id}/verify`` with ``{"code": "..."}`` answers
  ``{"verified": true|false, "state": "..."}``.

The scheduler's sessions live in this process: run one worker, or pin confirmation to one
worker, or use server-side scheduling (``place_call`` with redial arguments) instead.
"""

from __future__ import annotations

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
    ValidationError,
)


def create_app(
    *,
    redial_count: int = 2,
    redial_interval: float = 60.0,
    client_factory: Callable[[], PhoneConfirmClient] = PhoneConfirmClient,
) -> Starlette:
    """The app; its lifespan owns one client and one scheduler for the whole process.

    ``client_factory`` makes the client (default: credentials from the environment); a
    test passes ``EmulatorTransport(...).client`` to run the app without a network.
    """

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with client_factory() as client, client.scheduler() as scheduler:
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
        return JSONResponse({"id": session.id, "state": session.state.value}, status_code=201)

    async def verify(request: Request) -> JSONResponse:
        scheduler: ConfirmationScheduler = request.app.state.scheduler
        session = scheduler.get(request.path_params["session_id"])
        if session is None:
            return JSONResponse({"error": "unknown or expired confirmation"}, status_code=404)
        body = await _json(request)
        try:
            result = await session.verify(str(body.get("code", "")))
        except ValidationError as exc:
            return _invalid(exc)
        except PhoneConfirmError as exc:
            return JSONResponse({"error": type(exc).__name__}, status_code=502)
        return JSONResponse({"verified": result.verified, "state": session.state.value})

    return Starlette(
        routes=[
            Route("/confirm", start, methods=["POST"]),
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


def _invalid(exc: ValidationError) -> JSONResponse:
    return JSONResponse({"error": {"field": exc.field, "rule": exc.rule}}, status_code=422)


app = create_app()
