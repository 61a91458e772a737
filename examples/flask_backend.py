"""A Flask app that confirms phone numbers: ``examples/web_backend.py``'s routes, answers and
policy, on the blocking client, for gunicorn's sync workers.

    PHONECONFIRM_API_KEY=... PHONECONFIRM_DOMAIN=... \\
        gunicorn --workers 2 --threads 4 examples.flask_backend:app

- ``POST /confirm`` with ``{"phone": "+15555550123"}`` (or a national number and
  ``"country_code": "1"``) starts a session (the library draws the code and speaks it by
  phone) and answers ``201 {"id": "...", "state": "scheduled"}``; over a throttle of the
  policy (three sessions per phone, ten per client address, an hour) ``429`` with
  ``Retry-After``; a number or country the policy refuses ``422``.
- ``POST /confirm/<id>/verify`` with ``{"code": "..."}`` answers
  ``{"verified": true|false, "state": "...", "attempts_left": n}``; once the session takes
  no more codes ``409 {"state": "locked" | "expired" | "verified" | ...}``.
- ``GET /confirm/<id>`` answers ``{"state": "...", "calls": n}``.

Each worker process makes one ``SyncPhoneConfirmClient`` and one scheduler, on its first
request: after gunicorn has forked it, also with ``--preload`` (a client made before the
fork refuses to work in the child). The client's event loop thread places the calls that
fall due while the worker's threads serve requests; it is closed when the worker exits.
Sessions live in the store ``PHONECONFIRM_STORE`` names (default
``sqlite:///phoneconfirm-sessions.sqlite``), so any worker can verify a session another
started, and each call is placed by exactly one of them. Each answer names its worker in
an ``x-worker-pid`` header.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, jsonify, request

from phoneconfirm_async import (
    ConfirmationPolicy,
    PhoneConfirmError,
    SessionStore,
    SyncConfirmationScheduler,
    SyncPhoneConfirmClient,
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
    client_factory: Callable[[], SyncPhoneConfirmClient] = SyncPhoneConfirmClient,
    store_factory: Callable[[], SessionStore] = store_from_environment,
    policy_factory: Callable[[], ConfirmationPolicy] = policy_from_environment,
) -> Flask:
    """The app. ``client_factory`` makes the worker's client (default: credentials from
    the environment), ``store_factory`` its session store, ``policy_factory`` its policy."""
    app = Flask(__name__)
    lock = threading.Lock()
    opened: list[SyncConfirmationScheduler] = []

    def confirmations() -> SyncConfirmationScheduler:
        """This process's scheduler, made by the first request that needs it."""
        with lock:
            if not opened:
                client = client_factory()
                opened.append(client.scheduler(store=store_factory(), policy=policy_factory()))
            return opened[0]

    @app.post("/confirm")
    def start() -> Response:
        body = _json()
        try:
            session = confirmations().schedule(
                body.get("phone", ""),  # a missing or mistyped field breaks its rule: 422
                country_code=body.get("country_code"),
                redial_count=redial_count,
                redial_interval=redial_interval,
                throttle_key=f"ip:{request.remote_addr or 'unknown'}",
            )
        except ValidationError as exc:
            return _invalid(exc)
        except ThrottledError as exc:
            answer = _answer({"error": "too many confirmations", "limit": exc.limit}, 429)
            answer.headers["retry-after"] = str(math.ceil(exc.retry_after))
            return answer
        return _answer({"id": session.id, "state": session.state.value}, 201)

    @app.get("/confirm/<session_id>")
    def show(session_id: str) -> Response:
        session = confirmations().get(session_id)
        if session is None:
            return _answer({"error": "unknown or expired confirmation"}, 404)
        return _answer({"state": session.state.value, "calls": session.calls_made})

    @app.post("/confirm/<session_id>/verify")
    def verify(session_id: str) -> Response:
        session = confirmations().get(session_id)
        if session is None:
            return _answer({"error": "unknown or expired confirmation"}, 404)
        try:
            result = session.verify(str(_json().get("code", "")))
        except VerificationClosedError as exc:
            return _answer({"state": exc.state.value}, 409)
        except ValidationError as exc:
            return _invalid(exc)
        except PhoneConfirmError as exc:
            return _answer({"error": type(exc).__name__}, 502)
        return _answer(
            {
                "verified": result.verified,
                "state": session.state.value,
                "attempts_left": session.verify_attempts_left,
            }
        )

    return app


def _json() -> dict[str, Any]:
    body = request.get_json(silent=True)  # a body that is not JSON reads as no fields
    return body if isinstance(body, dict) else {}


def _answer(body: dict[str, Any], status: int = 200) -> Response:
    answer = jsonify(body)
    answer.status_code = status
    answer.headers["x-worker-pid"] = str(os.getpid())
    return answer


def _invalid(exc: ValidationError) -> Response:
    return _answer({"error": {"field": exc.field, "rule": exc.rule}}, 422)


app = create_app()
