"""A Starlette app that confirms phone numbers, with sessions any worker can serve.

    PHONECONFIRM_API_KEY=... PHONECONFIRM_DOMAIN=... \\
        uvicorn examples.web_backend:app --workers 2

- ``POST /confirm`` with ``{"phone": "+15555550123"}`` (or a national number and
  ``"country_code": "1"``) starts a session (the library draws the code; it is spoken by
  phone, never returned) and answers
  ``{"id": "...", "state": "scheduled"}``. Keep the id in the user's web session. Over a
  throttle of the confirmation policy (three sessions per phone and ten per client
  address an hour) it answers ``429`` with ``Retry-After``.
- ``POST /confirm/{id}/verify`` with ``{"code": "..."}`` answers
  ``{"verified": true|false, "state": "...", "attempts_left": n}``; once the session takes
  no more codes (locked after five wrong ones, expired, verified already) ``409`` with
  ``{"state": "locked" | "expired" | "verified" | ...}``.
- ``GET /confirm/{id}`` answers ``{"state": "...", "calls": n}``.

``PHONECONFIRM_COUNTRIES`` (a comma list such as ``1,44``) restricts the countries called;
premium-rate and shared-cost numbers, what toll fraud dials, are refused (``422``; the
``numbers`` extra, in ``dev``, checks them).

Sessions live in the store ``PHONECONFIRM_STORE`` names (default
``sqlite:///phoneconfirm-sessions.sqlite``, shared by the workers of one host; a
``postgresql://`` URL shares them across hosts), so the verify request may land on any
worker, and a redeploy loses no pending redial. Every worker places the calls that fall
due; each call is placed by exactly one of them. Each answer names the worker's process in
an ``x-worker-pid`` header, to see the sharing at work.
"""

from __future__ import annotations

import math
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from phoneconfirm_async import (
    ConfirmationPolicy,
    ConfirmationScheduler,
    PhoneConfirmClient,
    PhoneConfirmError,
    SessionStore,
    ThrottledError,
    ValidationError,
    VerificationClosedError,
    store_from_url,
)

#: Where sessions live when ``PHONECONFIRM_STORE`` is not set.
DEFAULT_STORE = "sqlite:///phoneconfirm-sessions.sqlite"


def store_from_environment() -> SessionStore:
    return store_from_url(os.environ.get("PHONECONFIRM_STORE", DEFAULT_STORE))


def policy_from_environment() -> ConfirmationPolicy:
    """The default policy, refusing premium-rate and shared-cost numbers, with the
    allow-list of ``PHONECONFIRM_COUNTRIES`` if set."""
    countries = os.environ.get("PHONECONFIRM_COUNTRIES", "").replace(" ", "")
    return ConfirmationPolicy(
        allowed_countries=countries.split(",") if countries else None,
        blocked_number_types={"premium_rate", "shared_cost"},
    )


def create_app(
    *,
    redial_count: int = 2,
    redial_interval: float = 60.0,
    client_factory: Callable[[], PhoneConfirmClient] = PhoneConfirmClient,
    store_factory: Callable[[], SessionStore] = store_from_environment,
    policy_factory: Callable[[], ConfirmationPolicy] = policy_from_environment,
) -> Starlette:
    """The app; its lifespan owns one client and one scheduler per worker process.

    ``client_factory`` makes the client (default: credentials from the environment; a test
    passes ``EmulatorTransport(...).client`` to run the app without a network),
    ``store_factory`` the session store (default: ``PHONECONFIRM_STORE``) and
    ``policy_factory`` the confirmation policy (default: ``PHONECONFIRM_COUNTRIES``).
    """

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        store, policy = store_factory(), policy_factory()
        async with (
            client_factory() as client,
            client.scheduler(store=store, policy=policy) as scheduler,
        ):
            app.state.scheduler = scheduler
            yield

    async def start(request: Request) -> JSONResponse:
        scheduler: ConfirmationScheduler = request.app.state.scheduler
        body = await _json(request)
        client = request.client.host if request.client else "unknown"
        try:
            session = await scheduler.schedule(
                body.get("phone", ""),  # a missing or mistyped field breaks its rule: 422
                country_code=body.get("country_code"),
                redial_count=redial_count,
                redial_interval=redial_interval,
                throttle_key=f"ip:{client}",
            )
        except ValidationError as exc:
            return _invalid(exc)
        except ThrottledError as exc:
            retry_after = str(math.ceil(exc.retry_after))
            return _answer(
                {"error": "too many confirmations", "limit": exc.limit},
                status_code=429,
                headers={"retry-after": retry_after},
            )
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
        except VerificationClosedError as exc:
            return _answer({"state": exc.state.value}, status_code=409)
        except ValidationError as exc:
            return _invalid(exc)
        except PhoneConfirmError as exc:
            return _answer({"error": type(exc).__name__}, status_code=502)
        return _answer(
            {
                "verified": result.verified,
                "state": session.state.value,
                "attempts_left": session.verify_attempts_left,
            }
        )

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


def _answer(
    body: dict[str, Any], status_code: int = 200, headers: dict[str, str] | None = None
) -> JSONResponse:
    headers = {"x-worker-pid": str(os.getpid()), **(headers or {})}
    return JSONResponse(body, status_code, headers=headers)


def _invalid(exc: ValidationError) -> JSONResponse:
    return _answer({"error": {"field": exc.field, "rule": exc.rule}}, status_code=422)


app = create_app()
