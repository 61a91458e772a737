"""The exceptions raised by phoneconfirm_async.

The whole tree:

    PhoneConfirmError
    ├── ConfigurationError          missing/invalid settings (also a ValueError)
    ├── ValidationError             bad input, raised before anything is sent (a ValueError)
    ├── TransportError              network failure (connect, read, protocol)
    ├── CallOutcomeUnknownError     placecall failed after it was sent (.cause)
    ├── ParseError                  body could not be understood
    ├── StoreError                  a session store failed mid-run (.store)
    ├── ThrottledError              schedule() over a policy limit (.limit, .retry_after)
    ├── VerificationClosedError     verify() refused before sending (.state)
    └── ApiError (.code, .status_code, .message)
        ├── AuthenticationError       error 2
        ├── DomainNotAuthorizedError  error 3 / HTTP 503 with error body
        ├── InvalidRequestError       errors 1, 4, 5
        ├── RateLimitedError          HTTP 429 (.retry_after)
        └── ServerError               5xx without error body

No exception text, ``repr`` or chained cause carries the API key, the secret key or a
confirmation code: errors from the HTTP libraries are summarized (type and redacted text)
instead of being chained, because httpx puts the full URL, query string included, into its
own exception text.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from phoneconfirm_async._stores._states import Limit, SessionState


class PhoneConfirmError(Exception):
    """Base class of every error raised by phoneconfirm_async."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"

    def as_dict(self) -> dict[str, str]:
        """``{"type": class name, "message": text}``: how batch journals and the CLI's
        output rows record an error (the text carries no secret)."""
        return {"type": type(self).__name__, "message": str(self)}


class ConfigurationError(PhoneConfirmError, ValueError):
    """Raised when a setting is missing or invalid (names the argument or variable, and
    the rule). Also a ``ValueError``, so ``except ValueError`` catches a bad setting."""


class ValidationError(PhoneConfirmError, ValueError):
    """Raised when an argument breaks a rule, before anything is sent.

    ``field`` names the argument and ``rule`` says what it must be.
    """

    def __init__(self, field: str, rule: str) -> None:
        super().__init__(f"{field}: {rule}")
        self.field = field
        self.rule = rule


class TransportError(PhoneConfirmError):
    """Raised when the network failed: connect, read, write or protocol errors, timeouts.

    ``sent`` is False when the request certainly never reached the service (the connection
    was never made), True when it may have. ``kind`` is the failure's short name
    (``"connect"``, ``"connect_timeout"``, ``"pool_timeout"``, ``"read_timeout"``,
    ``"disconnected"``, ...).
    """

    def __init__(self, message: str, *, sent: bool, kind: str = "network") -> None:
        super().__init__(message)
        self.sent = sent
        self.kind = kind

    @property
    def is_timeout(self) -> bool:
        return self.kind.endswith("timeout")


class ParseError(PhoneConfirmError):
    """Raised when a response body cannot be understood.

    ``status_code`` is the HTTP status (None when parsing outside a request) and
    ``excerpt`` a short, redacted start of the body.
    """

    def __init__(self, message: str, *, status_code: int | None = None, excerpt: str = "") -> None:
        detail = message
        if status_code is not None:
            detail += f" (HTTP {status_code})"
        if excerpt:
            detail += f"; body starts {excerpt!r}"
        super().__init__(detail)
        self.status_code = status_code
        self.excerpt = excerpt


class CallOutcomeUnknownError(PhoneConfirmError):
    """Raised when a call placement failed after it was sent: the call may have gone out.

    Retrying could phone the person twice, so the client does not (unless
    ``RetryPolicy(retry_unsafe=True)``). ``cause`` is the redacted error that struck.
    """

    def __init__(self, cause: PhoneConfirmError) -> None:
        super().__init__(
            f"the call may or may not have been placed: {type(cause).__name__}: {cause}"
        )
        self.cause = cause


class ApiError(PhoneConfirmError):
    """Raised when the service answered with an error.

    ``code`` is the service's error code (None when the answer had none), ``status_code``
    the HTTP status and ``message`` the service's text.
    """

    def __init__(self, message: str, *, code: int | None, status_code: int) -> None:
        prefix = f"error {code}: " if code is not None else ""
        super().__init__(f"{prefix}{message} (HTTP {status_code})")
        self.code = code
        self.status_code = status_code
        self.message = message


class AuthenticationError(ApiError):
    """Raised when the service does not know the API key (error 2)."""


class DomainNotAuthorizedError(ApiError):
    """Raised when the domain is not trusted for the key (error 3, HTTP 503)."""


class InvalidRequestError(ApiError):
    """Raised for a bad parameter (1), an uncallable number (4) or unknown transaction (5)."""


class RateLimitedError(ApiError):
    """Raised when the service refused with HTTP 429; ``retry_after`` is in seconds or None."""

    def __init__(self, message: str, *, retry_after: float | None, status_code: int = 429) -> None:
        super().__init__(message, code=None, status_code=status_code)
        self.retry_after = retry_after


class ServerError(ApiError):
    """Raised on an HTTP 5xx answer without an error body (transient server trouble)."""

    def __init__(self, message: str, *, status_code: int) -> None:
        super().__init__(message, code=None, status_code=status_code)


_BY_CODE: dict[int, type[ApiError]] = {
    1: InvalidRequestError,
    2: AuthenticationError,
    3: DomainNotAuthorizedError,
    4: InvalidRequestError,
    5: InvalidRequestError,
}


def api_error_for(code: int, message: str, status_code: int) -> ApiError:
    """The exception for a service error code (``ApiError`` itself for unknown codes)."""
    return _BY_CODE.get(code, ApiError)(message, code=code, status_code=status_code)


class StoreError(PhoneConfirmError):
    """Raised when a session store failed during an operation (its database went away, say).

    ``store`` names the store (never with a password). The operation may or may not have
    taken effect; a claimed call is never lost by it (the claim's lease settles it).
    """

    def __init__(self, message: str, *, store: str) -> None:
        super().__init__(f"{store}: {message}")
        self.store = store


class ThrottledError(PhoneConfirmError):
    """Raised by ``schedule()`` when the confirmation policy's limit is reached; nothing
    was created or called.

    ``limit`` is ``"phone"`` (sessions for this phone number), ``"key"`` (sessions for this
    ``throttle_key``) or ``"calls_per_hour"`` (the spend cap of every worker on the store);
    ``retry_after`` the seconds until it frees (a ``Retry-After`` header's value). The text
    names neither the phone nor the key.
    """

    def __init__(self, limit: Limit, retry_after: float) -> None:
        what = {
            "phone": "too many confirmations for this phone number",
            "key": "too many confirmations for this client",
            "calls_per_hour": "the calls-per-hour cap of this store is reached",
        }[limit]
        super().__init__(f"{what}; try again in {retry_after:.0f} s")
        self.limit = limit
        self.retry_after = retry_after


class VerificationClosedError(PhoneConfirmError):
    """Raised by ``session.verify()`` when no code may be checked; nothing was sent.

    ``state`` is the session's state: VERIFIED (already confirmed: a repeated form can take
    it as success), LOCKED (every attempt used), EXPIRED (the code's lifetime ran out),
    CANCELLED or FAILED; or a pending state when every attempt is in flight elsewhere.
    """

    def __init__(self, state: SessionState, reason: str) -> None:
        super().__init__(f"verification closed ({state.value}): {reason}")
        self.state = state


#: Public attributes an error keeps when a durable store writes it down.
_KEPT_ATTRIBUTES: Final = (
    "code",
    "status_code",
    "message",
    "retry_after",
    "kind",
    "sent",
    "field",
    "rule",
    "store",
)


def error_to_state(exc: PhoneConfirmError) -> dict[str, Any]:
    """What a durable store keeps of a session's error: class, text, public attributes."""
    kept = {name: getattr(exc, name) for name in _KEPT_ATTRIBUTES if hasattr(exc, name)}
    return {"type": type(exc).__name__, "text": str(exc), "attributes": kept}


def error_from_state(state: Mapping[str, Any]) -> PhoneConfirmError:
    """The error again, in any process: same class, text and public attributes."""
    cls = _BY_NAME.get(str(state.get("type")), PhoneConfirmError)
    exc = cls.__new__(cls)
    Exception.__init__(exc, str(state.get("text", "")))
    attributes = state.get("attributes")
    if isinstance(attributes, Mapping):
        for name in _KEPT_ATTRIBUTES:
            if name in attributes:
                setattr(exc, name, attributes[name])
    return exc


_BY_NAME: Final[dict[str, type[PhoneConfirmError]]] = {
    cls.__name__: cls
    for cls in (
        PhoneConfirmError,
        ConfigurationError,
        ValidationError,
        TransportError,
        ParseError,
        CallOutcomeUnknownError,
        ApiError,
        AuthenticationError,
        DomainNotAuthorizedError,
        InvalidRequestError,
        RateLimitedError,
        ServerError,
        StoreError,
        ThrottledError,
        VerificationClosedError,
    )
}
