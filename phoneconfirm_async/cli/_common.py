"""Pieces every ``phoneconfirm`` command shares: credentials, the client (or the built-in
emulator), running a coroutine with one-line errors, and printing rows."""

from __future__ import annotations

import contextlib
import gc
import importlib.util
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final, NoReturn, TypeVar

import anyio
import click

from phoneconfirm_async import (
    ConfigurationError,
    PhoneConfirmClient,
    SessionStore,
    store_from_url,
)
from phoneconfirm_async.cli._io import SetupError, dumps_row

T = TypeVar("T")

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
#: 128 + SIGINT, as shells report a command stopped by Ctrl-C.
EXIT_INTERRUPTED: Final = 130


@dataclass(frozen=True)
class Credentials:
    """What the user gave (flags, else environment); None where nothing was given."""

    api_key: str | None
    domain: str | None
    base_url: str | None
    secret_key: str | None
    emulator: bool = False

    @property
    def wants_emulator(self) -> bool:
        """``--emulator``, or (for the demo commands) neither a key nor a base URL given."""
        return self.emulator or (not self.api_key and not self.base_url)

    def require_service(self, why: str) -> None:
        """Refuse the implicit emulator: where a command's work is real (a store's
        sessions), running it on a private emulator would burn them without a call."""
        if not self.emulator and not self.api_key:
            env = PhoneConfirmClient.env_vars["api_key"]
            raise SetupError(
                f"{why} needs the service's API key: set {env} (or pass --api-key), "
                "or pass --emulator to use the built-in emulator"
            )


def credential_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--api-key``, ``--domain``, ``--base-url`` and ``--secret-key``, each falling back
    to the client's environment variable."""
    env = PhoneConfirmClient.env_vars
    options = [
        click.option(
            "--emulator",
            is_flag=True,
            help="Run on the built-in emulator (a free loopback port) instead of the service; "
            "the default of the demo commands when no API key or base URL is given.",
        ),
        click.option(
            "--secret-key",
            envvar=env["secret_key"],
            default=None,
            help=f"The account's secret key, sent with each call (env `{env['secret_key']}`).",
        ),
        click.option(
            "--base-url",
            envvar=env["base_url"],
            default=None,
            help=f"The service's base URL, ending in `/services` (env `{env['base_url']}`; "
            "default: `https://www.xverify.com/services`).",
        ),
        click.option(
            "--domain",
            envvar=env["domain"],
            default=None,
            help=f"The domain trusted for the key (env `{env['domain']}`).",
        ),
        click.option(
            "--api-key",
            envvar=env["api_key"],
            default=None,
            help=f"The account's API key (env `{env['api_key']}`).",
        ),
    ]
    for option in options:
        func = option(func)
    return func


#: The environment variable ``--store`` falls back to.
STORE_ENV: Final = "PHONECONFIRM_STORE"


def parse_store(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> SessionStore | None:
    """``--store URL`` as a store (the error never repeats the URL: it may hold a password)."""
    if value is None:
        return None
    try:
        return store_from_url(value)
    except ConfigurationError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None


def credentials_from(kwargs: dict[str, Any]) -> Credentials:
    credentials = Credentials(
        kwargs.pop("api_key"),
        kwargs.pop("domain"),
        kwargs.pop("base_url"),
        kwargs.pop("secret_key"),
        kwargs.pop("emulator"),
    )
    if credentials.emulator and (credentials.api_key or credentials.base_url):
        names = PhoneConfirmClient.env_vars
        raise click.UsageError(
            f"--emulator excludes a service: unset --api-key/--base-url ({names['api_key']}, "
            f"{names['base_url']})"
        )
    return credentials


@contextlib.asynccontextmanager
async def open_client(
    credentials: Credentials, **options: Any
) -> AsyncIterator[PhoneConfirmClient]:
    """A client on the given service, or on a built-in emulator when none was named.

    Telemetry is off unless ``options`` say otherwise (``--otel``): a command has no SDK
    of its own to record it.
    """
    options.setdefault("telemetry", False)
    async with contextlib.AsyncExitStack() as stack:
        if credentials.wants_emulator:
            from phoneconfirm_async.emulator import DEFAULT_API_KEY, DEFAULT_DOMAIN, run_emulator

            emulator = await stack.enter_async_context(run_emulator())
            why = "--emulator" if credentials.emulator else "no API key or base URL given"
            click.echo(
                f"phoneconfirm: {why}: using the built-in emulator at {emulator.base_url} "
                "(nobody is phoned)",
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


#: Set to 1 to keep asyncio's own event loop even when uvloop is installed.
NO_UVLOOP_ENV: Final = "PHONECONFIRM_NO_UVLOOP"


def run_async(main: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine function; configuration errors exit 2 with one line, no traceback.

    The command owns its event loop, so it runs on uvloop when uvloop is installed (the
    ``speedups`` extra) and ``PHONECONFIRM_NO_UVLOOP`` is not set; the library itself never
    chooses a loop.
    """
    try:
        with fewer_collections():
            return anyio.run(main, backend_options={"use_uvloop": _uvloop_wanted()})
    except ConfigurationError as exc:
        raise SetupError(str(exc)) from None


#: Allocations between two young-generation collections while a command runs (Python: 700).
GC_YOUNG_THRESHOLD: Final = 20_000


@contextlib.contextmanager
def fewer_collections() -> Iterator[None]:
    """Run with the garbage collector tuned for a process that keeps many requests in
    flight: everything imported so far is frozen out of full collections, and the young
    generation is collected every 20,000 allocations instead of 700. Each request in flight
    holds dozens of objects, so the default collects every few requests and re-scans them
    all: a measurable share of a batch's CPU (``benchmarks.bench_cli``). Memory held by
    cycles between collections stays small. Restored afterwards (tests run commands in-process).
    """
    thresholds = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


def _uvloop_wanted() -> bool:
    if os.environ.get(NO_UVLOOP_ENV, "") not in ("", "0"):
        return False
    return importlib.util.find_spec("uvloop") is not None


@contextlib.contextmanager
def interrupt_exits() -> Iterator[None]:
    """Ctrl-C ends the command with one line and ``EXIT_INTERRUPTED``, no traceback."""
    try:
        yield
    except KeyboardInterrupt:
        click.echo("phoneconfirm: interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)


def print_row(row: dict[str, Any]) -> None:
    click.echo(dumps_row(row))


def exit_with_row(run: Callable[[], Awaitable[dict[str, Any]]], success: str) -> NoReturn:
    """Run a one-row command: print its row as JSON on stdout, exit 0 when the row's
    ``outcome`` is ``success``, 1 otherwise (2 for configuration errors, 130 on Ctrl-C)."""
    with interrupt_exits():
        row = run_async(run)
    print_row(row)
    sys.exit(EXIT_OK if row["outcome"] == success else EXIT_FAILED)
