"""Asyncio and trio client for phone-call confirmation APIs (XVerify Phone Confirm).

The public names live here; the modules behind them are private.
"""

from phoneconfirm_async._batch import BatchItem as BatchItem
from phoneconfirm_async._batch import BatchIterator as BatchIterator
from phoneconfirm_async._blocking._client import SyncPhoneConfirmClient as SyncPhoneConfirmClient
from phoneconfirm_async._blocking._scheduler import (
    SyncConfirmationScheduler as SyncConfirmationScheduler,
)
from phoneconfirm_async._blocking._scheduler import (
    SyncConfirmationSession as SyncConfirmationSession,
)
from phoneconfirm_async._client import PhoneConfirmClient as PhoneConfirmClient
from phoneconfirm_async._errors import ApiError as ApiError
from phoneconfirm_async._errors import AuthenticationError as AuthenticationError
from phoneconfirm_async._errors import CallOutcomeUnknownError as CallOutcomeUnknownError
from phoneconfirm_async._errors import ConfigurationError as ConfigurationError
from phoneconfirm_async._errors import DomainNotAuthorizedError as DomainNotAuthorizedError
from phoneconfirm_async._errors import InvalidRequestError as InvalidRequestError
from phoneconfirm_async._errors import ParseError as ParseError
from phoneconfirm_async._errors import PhoneConfirmError as PhoneConfirmError
from phoneconfirm_async._errors import RateLimitedError as RateLimitedError
from phoneconfirm_async._errors import ServerError as ServerError
from phoneconfirm_async._errors import StoreError as StoreError
from phoneconfirm_async._errors import ThrottledError as ThrottledError
from phoneconfirm_async._errors import TransportError as TransportError
from phoneconfirm_async._errors import ValidationError as ValidationError
from phoneconfirm_async._errors import VerificationClosedError as VerificationClosedError
from phoneconfirm_async._models import PlaceCallRequest as PlaceCallRequest
from phoneconfirm_async._models import PlaceCallResult as PlaceCallResult
from phoneconfirm_async._models import VerifyRequest as VerifyRequest
from phoneconfirm_async._models import VerifyResult as VerifyResult
from phoneconfirm_async._parsers import ParserRegistry as ParserRegistry
from phoneconfirm_async._parsers import ResponseParser as ResponseParser
from phoneconfirm_async._policy import ConfirmationPolicy as ConfirmationPolicy
from phoneconfirm_async._retry import RetryEvent as RetryEvent
from phoneconfirm_async._retry import RetryPolicy as RetryPolicy
from phoneconfirm_async._scheduler import ConfirmationScheduler as ConfirmationScheduler
from phoneconfirm_async._session import ConfirmationSession as ConfirmationSession
from phoneconfirm_async._transports._seam import Transport as Transport
from phoneconfirm_async._transports._seam import TransportRequest as TransportRequest
from phoneconfirm_async._transports._seam import TransportResponse as TransportResponse
from phoneconfirm_async._version import __version__ as __version__
from phoneconfirm_async.stores import MemoryStore as MemoryStore
from phoneconfirm_async.stores import PostgresStore as PostgresStore
from phoneconfirm_async.stores import SessionRecord as SessionRecord
from phoneconfirm_async.stores import SessionState as SessionState
from phoneconfirm_async.stores import SessionStore as SessionStore
from phoneconfirm_async.stores import SQLiteStore as SQLiteStore
from phoneconfirm_async.stores import store_from_url as store_from_url

__all__ = [
    "ApiError",
    "AuthenticationError",
    "BatchItem",
    "BatchIterator",
    "CallOutcomeUnknownError",
    "ConfigurationError",
    "ConfirmationPolicy",
    "ConfirmationScheduler",
    "ConfirmationSession",
    "DomainNotAuthorizedError",
    "InvalidRequestError",
    "MemoryStore",
    "ParseError",
    "ParserRegistry",
    "PhoneConfirmClient",
    "PhoneConfirmError",
    "PlaceCallRequest",
    "PlaceCallResult",
    "PostgresStore",
    "RateLimitedError",
    "ResponseParser",
    "RetryEvent",
    "RetryPolicy",
    "SQLiteStore",
    "ServerError",
    "SessionRecord",
    "SessionState",
    "SessionStore",
    "StoreError",
    "SyncConfirmationScheduler",
    "SyncConfirmationSession",
    "SyncPhoneConfirmClient",
    "ThrottledError",
    "Transport",
    "TransportError",
    "TransportRequest",
    "TransportResponse",
    "ValidationError",
    "VerificationClosedError",
    "VerifyRequest",
    "VerifyResult",
    "store_from_url",
]

# Reprs and tracebacks show the public path (phoneconfirm_async.X), not the private module.
for _name in __all__:
    _member = globals()[_name]
    if isinstance(_member, type):
        _member.__module__ = __name__
del _name, _member
