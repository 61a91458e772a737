"""``phoneconfirm worker``: a process that only places the due calls of a durable store."""

from __future__ import annotations

import contextlib
import logging
import signal
from collections.abc import Iterator
from typing import Any

import anyio
import click

from phoneconfirm_async import ConfirmationPolicy, SessionStore
from phoneconfirm_async.cli._common import (
    STORE_ENV,
    credential_options,
    credentials_from,
    interrupt_exits,
    open_client,
    parse_store,
    run_async,
)
from phoneconfirm_async.cli._otel import otel_option, telemetry_options


@click.command()
@click.option(
    "--store",
    "store",
    required=True,
    envvar=STORE_ENV,
    callback=parse_store,
    help=f"sqlite:///PATH or postgresql://... (env {STORE_ENV}).",
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="Calls this worker holds at once (claimed, being placed).",
)
@click.option(
    "--rate",
    default=None,
    type=click.FloatRange(min=0, min_open=True),
    help="Calls this worker starts per second at most (default: no limit).",
)
@click.option(
    "--max-calls-per-hour",
    default=None,
    type=click.IntRange(min=1),
    envvar="PHONECONFIRM_MAX_CALLS_PER_HOUR",
    help="The spend cap: calls placed by every worker on the store in the trailing hour; "
    "due calls wait while it is reached (env PHONECONFIRM_MAX_CALLS_PER_HOUR; default: none).",
)
@credential_options
@otel_option
def worker(
    store: SessionStore,
    concurrency: int,
    rate: float | None,
    max_calls_per_hour: int | None,
    otel: bool,
    **kw: Any,
) -> None:
    """Place the calls that fall due in a durable session store, until stopped.

    Run as many as you like, on one host (SQLite) or several (PostgreSQL): each due call is
    claimed by exactly one of them, and a worker killed mid-call never causes a second
    call. SIGTERM stops it cleanly (exit 0): calls in flight are settled, sessions stay
    pending for the others. Ctrl-C exits 130.

    It needs the service's API key: without one it refuses to start (exit 2) rather than
    place the store's calls on a private emulator; `--emulator` asks for that explicitly.
    """
    credentials = credentials_from(kw)
    if not store.durable:
        raise click.BadParameter("a worker needs a durable store", param_hint="--store")
    credentials.require_service("a worker")
    # The sessions carry their own attempt limit and code lifetime (set where they were
    # scheduled); a worker applies only the spend cap, to the calls it claims.
    policy = ConfirmationPolicy(max_calls_per_hour=max_calls_per_hour)

    async def run(telemetry: dict[str, Any]) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM) as signals:
            async with (
                open_client(
                    credentials, max_concurrency=concurrency, rate_limit=rate, **telemetry
                ) as client,
                client.scheduler(store=store, policy=policy),
            ):
                click.echo(f"phoneconfirm worker: placing the due calls of {store.name}", err=True)
                async for _ in signals:
                    break
        click.echo("phoneconfirm worker: stopped", err=True)

    with telemetry_options(otel) as telemetry, interrupt_exits(), _logging_to_stderr():
        run_async(lambda: run(telemetry))


@contextlib.contextmanager
def _logging_to_stderr() -> Iterator[None]:
    """The library's log lines on stderr, from INFO up: a worker is a service, and what it
    says (a store that failed and came back, calls not sent after a stall) is its log."""
    library = logging.getLogger("phoneconfirm_async")
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("phoneconfirm worker: %(levelname)s: %(message)s"))
    level = library.level
    library.addHandler(handler)
    library.setLevel(logging.INFO)
    try:
        yield
    finally:
        library.removeHandler(handler)
        library.setLevel(level)
