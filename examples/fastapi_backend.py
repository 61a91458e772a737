"""A FastAPI sign-up backend that confirms phone numbers by a call.

    python -m pip install -e '.[dev]'     # FastAPI, uvicorn and the numbers extra
    PHONECONFIRM_API_KEY=... PHONECONFIRM_DOMAIN=... \\
        uvicorn examples.fastapi_backend:app --workers 2

The same routes and answers as ``examples/web_backend.py`` (Starlette):

- ``POST /confirm`` ``{"phone": "+15555550123"}`` (or a national number with
  ``"country_code"``) → ``201 {"id": ..., "state": "scheduled"}``; the library draws the
  code and the call speaks it. ``429`` with ``Retry-After`` over a throttle of the policy.
- ``POST /confirm/{id}/verify`` ``{"code": "123 456"}`` → ``{"verified": ..., "state":
  ..., "attempts_left": ...}``; ``409 {"state": "locked" | "expired" | "verified" | ...}``
  once the session takes no more codes.
- ``GET /confirm/{id}`` → ``{"state": ..., "calls": ...}``; ``404`` for an unknown id.

Anything a user can type is answered ``422`` in FastAPI's own shape (``{"detail": [{"loc":
[...], "msg": ..., "type": ...}]}``), the library's rules included (a number too short for
its country, a premium-rate or shared-cost number, a country outside
``PHONECONFIRM_COUNTRIES``); never a 500. The lifespan owns one client and one scheduler per
worker process; sessions live in ``PHONECONFIRM_STORE`` (default
``sqlite:///phoneconfirm-sessions.sqlite``), so any worker serves any session.
"""

from __future__ import annotations

import math
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Path, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from phoneconfirm_async import (
    ConfirmationPolicy,
    ConfirmationScheduler,
    PhoneConfirmClient,
    PhoneConfirmError,
    StoreError,
    ThrottledError,
    ValidationError,
    VerificationClosedError,
    store_from_url,
)

#: Where sessions live when ``PHONECONFIRM_STORE`` is not set.
DEFAULT_STORE = "sqlite:///phoneconfirm-sessions.sqlite"

#: Lines a sign-up never calls: the toll-fraud targets (needs the ``numbers`` extra).
BLOCKED_NUMBER_TYPES = frozenset({"premium_rate", "shared_cost"})


class StartBody(BaseModel):
    """A number as the user typed it: ``+15555550123``, or national with its country code."""

    phone: str = Field(min_length=1, max_length=40)
    country_code: str | None = Field(default=None, max_length=4)


class CodeBody(BaseModel):
    """The code the person heard, as typed (``123 456`` and ``123-456`` are fine)."""

    code: str = Field(min_length=1, max_length=32)


SessionId = Annotated[str, Path(max_length=64)]


def policy_from_environment() -> ConfirmationPolicy:
    """The default policy, refusing premium-rate and shared-cost numbers, with the
    allow-list of ``PHONECONFIRM_COUNTRIES`` (``1,44``) if set."""
    countries = os.environ.get("PHONECONFIRM_COUNTRIES", "").replace(" ", "")
    return ConfirmationPolicy(
        allowed_countries=countries.split(",") if countries else None,
        blocked_number_types=BLOCKED_NUMBER_TYPES,
    )


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """One client and one scheduler for the worker's life; its redials run meanwhile."""
    store = store_from_url(os.environ.get("PHONECONFIRM_STORE", DEFAULT_STORE))
    async with (
        PhoneConfirmClient() as client,
        client.scheduler(store=store, policy=policy_from_environment()) as scheduler,
    ):
        app.state.scheduler = scheduler
        yield


app = FastAPI(title="Phone confirmation", lifespan=lifespan)


def current_scheduler(request: Request) -> ConfirmationScheduler:
    """The worker's scheduler, opened by the lifespan."""
    return request.app.state.scheduler  # type: ignore[no-any-return]


Scheduler = Annotated[ConfirmationScheduler, Depends(current_scheduler)]


@app.exception_handler(ValidationError)
async def invalid(request: Request, exc: ValidationError) -> JSONResponse:
    """A rule of the library, answered as FastAPI answers its own: 422, field and rule."""
    detail = [{"loc": ["body", exc.field], "msg": exc.rule, "type": "value_error"}]
    return JSONResponse({"detail": detail}, status_code=422)


@app.exception_handler(ThrottledError)
async def throttled(request: Request, exc: ThrottledError) -> JSONResponse:
    return JSONResponse(
        {"error": "too many confirmations", "limit": exc.limit},
        status_code=429,
        headers={"retry-after": str(math.ceil(exc.retry_after))},
    )


@app.exception_handler(VerificationClosedError)
async def closed(request: Request, exc: VerificationClosedError) -> JSONResponse:
    return JSONResponse({"state": exc.state.value}, status_code=409)


@app.exception_handler(StoreError)
async def store_down(request: Request, exc: StoreError) -> JSONResponse:
    return JSONResponse({"error": "try again shortly"}, status_code=503)


@app.exception_handler(PhoneConfirmError)
async def service_error(request: Request, exc: PhoneConfirmError) -> JSONResponse:
    return JSONResponse({"error": type(exc).__name__}, status_code=502)


@app.post("/confirm", status_code=201)
async def start(body: StartBody, request: Request, scheduler: Scheduler) -> dict[str, Any]:
    client = request.client.host if request.client else "unknown"
    session = await scheduler.schedule(
        body.phone,
        country_code=body.country_code,
        redial_count=2,
        redial_interval=60,
        throttle_key=f"ip:{client}",
    )
    return {"id": session.id, "state": session.state.value}


@app.get("/confirm/{session_id}", response_model=None)
async def show(session_id: SessionId, scheduler: Scheduler) -> dict[str, Any] | JSONResponse:
    session = await scheduler.get(session_id)
    if session is None:
        return JSONResponse({"error": "unknown or expired confirmation"}, status_code=404)
    return {"state": session.state.value, "calls": session.calls_made}


@app.post("/confirm/{session_id}/verify", response_model=None)
async def verify(
    session_id: SessionId, body: CodeBody, scheduler: Scheduler
) -> dict[str, Any] | JSONResponse:
    session = await scheduler.get(session_id)
    if session is None:
        return JSONResponse({"error": "unknown or expired confirmation"}, status_code=404)
    result = await session.verify(body.code)
    return {
        "verified": result.verified,
        "state": session.state.value,
        "attempts_left": session.verify_attempts_left,
    }
