"""The error tree (see ``phoneconfirm_async._errors`` for the drawing); also re-exported
from ``phoneconfirm_async``."""

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

__all__ = [
    "ApiError",
    "AuthenticationError",
    "CallOutcomeUnknownError",
    "ConfigurationError",
    "DomainNotAuthorizedError",
    "InvalidRequestError",
    "ParseError",
    "PhoneConfirmError",
    "RateLimitedError",
    "ServerError",
    "StoreError",
    "ThrottledError",
    "TransportError",
    "ValidationError",
    "VerificationClosedError",
]
