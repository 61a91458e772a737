"""The public front door holds exactly the documented public names."""

from __future__ import annotations

import phoneconfirm_async

ERRORS = {
    "PhoneConfirmError",
    "ConfigurationError",
    "ValidationError",
    "TransportError",
    "CallOutcomeUnknownError",
    "ParseError",
    "ApiError",
    "AuthenticationError",
    "DomainNotAuthorizedError",
    "InvalidRequestError",
    "RateLimitedError",
    "ServerError",
}
SPEC_NAMES = {
    "PhoneConfirmClient",
    "RetryPolicy",
    "PlaceCallRequest",
    "VerifyRequest",
    "PlaceCallResult",
    "VerifyResult",
    "ParserRegistry",
    "ResponseParser",
    "ConfirmationScheduler",
    "ConfirmationSession",
    "BatchItem",
    "SessionState",
    # Section 9: the second release.
    "BatchIterator",
    "Transport",
    "SessionStore",
    "MemoryStore",
    "SQLiteStore",
    "PostgresStore",
    # Section 10: the third release.
    "ConfirmationPolicy",
    "ThrottledError",
    "VerificationClosedError",
    "SyncPhoneConfirmClient",
} | ERRORS
#: Names added beyond the first specification, each documented in docs/reference.
EXTRA_NAMES = {
    "RetryEvent",
    "TransportRequest",
    "TransportResponse",
    # The durable-sessions issue: the store protocol's record, its error, stores by URL.
    "SessionRecord",
    "StoreError",
    "store_from_url",
    # The blocking face: SyncPhoneConfirmClient's scheduler and sessions, for annotations.
    "SyncConfirmationScheduler",
    "SyncConfirmationSession",
}


def test_all_is_sorted_and_complete() -> None:
    """__all__ is sorted and holds exactly the specified names plus documented extras."""
    exported = phoneconfirm_async.__all__
    assert exported == sorted(exported)
    assert set(exported) == SPEC_NAMES | EXTRA_NAMES


def test_every_exported_name_resolves() -> None:
    """Every name in __all__ is importable and public classes claim the package."""
    for name in phoneconfirm_async.__all__:
        member = getattr(phoneconfirm_async, name)
        assert member is not None
        if isinstance(member, type):
            assert member.__module__ == "phoneconfirm_async", name
    assert repr(phoneconfirm_async.ValidationError) == (
        "<class 'phoneconfirm_async.ValidationError'>"
    )


def test_error_tree_matches_spec() -> None:
    """The error classes form the documented tree and are re-exported from errors too."""
    from phoneconfirm_async import errors

    pc = phoneconfirm_async
    assert issubclass(pc.ApiError, pc.PhoneConfirmError)
    for name in (
        "AuthenticationError",
        "DomainNotAuthorizedError",
        "InvalidRequestError",
        "RateLimitedError",
        "ServerError",
    ):
        assert issubclass(getattr(pc, name), pc.ApiError)
    for name in (
        "ConfigurationError",
        "ValidationError",
        "TransportError",
        "CallOutcomeUnknownError",
        "ParseError",
    ):
        cls = getattr(pc, name)
        assert issubclass(cls, pc.PhoneConfirmError)
        assert not issubclass(cls, pc.ApiError)
    for name in ERRORS:
        assert getattr(errors, name) is getattr(pc, name)


def test_version() -> None:
    """The package has a version string."""
    assert phoneconfirm_async.__version__.count(".") == 2
