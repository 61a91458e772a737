"""Pieces every ``phoneconfirm`` command shares: credentials, the client (or the built-in
emulator), running a coroutine with one-line errors, and printing rows."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
import click

from phoneconfirm_async import _client
from phoneconfirm_async._client import PhoneConfirmClient
from phoneconfirm_async._errors import ConfigurationError

T = TypeVar("T")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


@dataclass(frozen=True)
class Credentials:
    """What the user gave (flags, else environment); None where nothing was given."""

    api_key: str | None
    domain: str | None
    base_url: str | None
    secret_key: str | None

    @property
    def wants_emulator(self) -> bool:
        return not self.api_key and not self.base_url


def credential_options(func: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--secret-key", envvar=_client.ENV_SECRET_KEY, help="Secret key."),
        click.option("--base-url", envvar=_client.ENV_BASE_URL, help="Service base URL."),
        click.option("--domain", envvar=_client.ENV_DOMAIN, help="Domain trusted for the key."),
        click.option("--api-key", envvar=_client.ENV_API_KEY, help="API key."),
    ]
    for option in options:
        func = option(func)
    return func


def credentials_from(kwargs: dict[str, Any]) -> Credentials:
    return Credentials(
        kwargs.pop("api_key"),
        kwargs.pop("domain"),
        kwargs.pop("base_url"),
        kwargs.pop("secret_key"),
    )


@contextlib.asynccontextmanager
async def open_client(
    credentials: Credentials, **options: Any
) -> AsyncIterator[PhoneConfirmClient]:
    """A client on the given service, or on a built-in emulator when none was named."""
    async with contextlib.AsyncExitStack() as stack:
        if credentials.wants_emulator:
            from phoneconfirm_async.emulator import DEFAULT_API_KEY, DEFAULT_DOMAIN, run_emulator

            emulator = await stack.enter_async_context(run_emulator())
            click.echo(
                f"phoneconfirm: no API key or base URL given: using the built-in emulator at "
                f"{emulator.base_url}",
                err=True,
            )
            client = PhoneConfirmClient(
                DEFAULT_API_KEY, DEFAULT_DOMAIN, base_url=emulator.base_url, **options
            )
        else:
            client = PhoneConfirmClient(
                credentials.api_key,
                credentials.domain,
                base_url=credentials.base_url,
                secret_key=credentials.secret_key,
                **options,
            )
        yield await stack.enter_async_context(client)


def run_async(main: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine function; configuration errors exit 2 with one line, no traceback."""
    try:
        return anyio.run(main)
    except ConfigurationError as exc:
        raise click.UsageError(str(exc)) from None


@contextlib.contextmanager
def interrupt_exits(code: int) -> Iterator[None]:
    try:
        yield
    except KeyboardInterrupt:
        click.echo("phoneconfirm: interrupted", err=True)
        sys.exit(code)


def print_row(row: dict[str, Any]) -> None:
    click.echo(json.dumps(row, ensure_ascii=False))
