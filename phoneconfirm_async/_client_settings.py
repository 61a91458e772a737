"""A client's settings: its arguments and environment variables checked and gathered into
the ``EngineSettings`` its requests run with, and its telemetry."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

from phoneconfirm_async._engine import EngineSettings
from phoneconfirm_async._errors import ConfigurationError
from phoneconfirm_async._parsers import ParserRegistry
from phoneconfirm_async._retry import RetryPolicy
from phoneconfirm_async._settings import check_base_url, seconds_or_none, whole

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider

    from phoneconfirm_async._telemetry import Telemetry

DEFAULT_BASE_URL: Final = "https://www.xverify.com/services"
#: The environment variable each setting falls back to when it is not given.
ENV_VARS: Final[Mapping[str, str]] = {
    "api_key": "PHONECONFIRM_API_KEY",
    "domain": "PHONECONFIRM_DOMAIN",
    "base_url": "PHONECONFIRM_BASE_URL",
    "secret_key": "PHONECONFIRM_SECRET_KEY",
}


def _given(value: str | None, env: Mapping[str, str | None], name: str) -> str | None:
    """The argument, or else its environment variable's value (None when unset or empty)."""
    return env.get(name) if value is None else value


def engine_settings(
    env: Mapping[str, str | None],
    *,
    api_key: str | None,
    domain: str | None,
    base_url: str | None,
    response_format: str,
    secret_key: str | None,
    timeout: float | None,
    attempt_timeout: float | None,
    retry: RetryPolicy | None,
    retry_budget: int | None,
    max_concurrency: int,
    rate_limit: float | None,
    parsers: ParserRegistry | None,
) -> EngineSettings:
    """The client's arguments, with ``env`` (the environment variables' values by setting
    name) for the missing ones, checked: a ``ConfigurationError`` names the first wrong."""
    key = _given(api_key, env, "api_key")
    if key is not None and not isinstance(key, str):
        raise ConfigurationError("api_key must be a string")
    if not key:
        raise ConfigurationError(
            f"no API key: pass api_key= (--api-key) or set {ENV_VARS['api_key']}"
        )
    trusted_domain = _given(domain, env, "domain")
    if trusted_domain is not None and not isinstance(trusted_domain, str):
        raise ConfigurationError("domain must be a string")
    if not trusted_domain:
        raise ConfigurationError(f"no domain: pass domain= (--domain) or set {ENV_VARS['domain']}")
    url = check_base_url(
        _given(base_url, env, "base_url") or DEFAULT_BASE_URL, ENV_VARS["base_url"]
    )
    if response_format not in ("json", "xml"):
        raise ConfigurationError("response_format must be 'json' or 'xml'")
    timeout_s = seconds_or_none("timeout", timeout)
    attempt_s = seconds_or_none("attempt_timeout", attempt_timeout)
    if retry is not None and not isinstance(retry, RetryPolicy):
        raise ConfigurationError(f"retry must be a RetryPolicy, not {type(retry).__name__}")
    policy = retry if retry is not None else RetryPolicy()
    budget = whole("retry_budget", 100 if retry_budget is None else retry_budget, 0)
    concurrency = whole("max_concurrency", max_concurrency, 1)
    if rate_limit is not None and (
        isinstance(rate_limit, bool)
        or not isinstance(rate_limit, int | float)
        or not 0 < rate_limit < math.inf
    ):
        raise ConfigurationError(
            "rate_limit must be a positive, finite number of requests per second, or None"
        )
    if parsers is not None and not isinstance(parsers, ParserRegistry):
        raise ConfigurationError(f"parsers must be a ParserRegistry, not {type(parsers).__name__}")
    registry = parsers if parsers is not None else ParserRegistry.default()
    if response_format not in registry:
        raise ConfigurationError(f"parsers has no {response_format!r} parser")
    return EngineSettings(
        api_key=key,
        secret_key=_given(secret_key, env, "secret_key"),
        domain=trusted_domain,
        base_url=url,
        response_format=response_format,
        timeout=timeout_s,
        attempt_timeout=attempt_s,
        retry=policy,
        retry_budget=budget,
        max_concurrency=concurrency,
        rate_limit=rate_limit,
        parsers=registry,
    )


def open_telemetry(
    enabled: bool | None,
    tracer_provider: TracerProvider | None,
    meter_provider: MeterProvider | None,
    server_address: str,
) -> Telemetry | None:
    """The client's telemetry, or None when it is off (or the API is not installed)."""
    providers = tracer_provider is not None or meter_provider is not None
    if enabled not in (None, True, False):
        raise ConfigurationError("telemetry must be True, False or None")
    if enabled is False:
        if providers:
            raise ConfigurationError("tracer_provider/meter_provider given with telemetry=False")
        return None
    try:
        # Its schedulers' and batches' observers load with it, not when a scheduler opens.
        import phoneconfirm_async._telemetry_sessions  # noqa: F401
        from phoneconfirm_async._telemetry import Telemetry
    except ImportError:
        if enabled or providers:
            raise ConfigurationError(
                "telemetry needs the otel extra (opentelemetry-api): "
                "pip install 'phoneconfirm-async[otel]'"
            ) from None
        return None
    return Telemetry(
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        server_address=server_address,
    )
