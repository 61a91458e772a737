"""``phoneconfirm confirm``: call (and redial) locally, then prompt for the code."""

from __future__ import annotations

import sys
import threading
from datetime import datetime
from typing import Any

import anyio
import anyio.from_thread
import anyio.lowlevel
import click
from anyio.streams.memory import MemoryObjectReceiveStream

from phoneconfirm_async import (
    ConfirmationPolicy,
    ConfirmationSession,
    PhoneConfirmError,
    SessionState,
    SessionStore,
    ThrottledError,
    VerificationClosedError,
)
from phoneconfirm_async.cli._common import (
    credential_options,
    credentials_from,
    exit_with_row,
    open_client,
    parse_store,
)
from phoneconfirm_async.cli._io import error_field
from phoneconfirm_async.cli._otel import otel_option, telemetry_options


def _parse_at(value: str | None) -> datetime | float | None:
    """``--at``: seconds from now, or an ISO 8601 time with a zone."""
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            "a number of seconds or an ISO time with a zone", param_hint="--at"
        ) from None
    if when.tzinfo is None:
        raise click.BadParameter(
            "the time needs a zone, e.g. 2026-12-01T09:00:00+00:00", param_hint="--at"
        )
    return when


@click.command()
@click.argument("phone")
@click.option(
    "--country-code",
    default=None,
    help="1-3 digits, `+` allowed; optional for an international PHONE (`+15555550123`, "
    "with the `numbers` extra).",
)
@click.option(
    "--code", default=None, help="The code to speak, 4-10 characters (default: six random digits)."
)
@click.option(
    "--redial-count",
    default=0,
    show_default=True,
    type=click.IntRange(0, 10),
    help="Calls after the first while nobody verifies (0-10), placed by this process.",
)
@click.option(
    "--redial-interval",
    default=60.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds from one answered call to the next (at most `--code-ttl`).",
)
@click.option("--at", "at", default=None, help="When to call: seconds from now or ISO time.")
@click.option(
    "--max-verify-attempts",
    default=5,
    show_default=True,
    type=click.IntRange(min=1),
    help="Codes checked before the session locks.",
)
@click.option(
    "--code-ttl",
    default=600.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds a code stays good after the latest call.",
)
@click.option(
    "--store",
    "store",
    default=None,
    callback=parse_store,
    help="Keep the session in sqlite:///PATH or postgresql://... (default: memory).",
)
@credential_options
@otel_option
def confirm(
    phone: str,
    country_code: str | None,
    code: str | None,
    redial_count: int,
    redial_interval: float,
    at: str | None,
    max_verify_attempts: int,
    code_ttl: float,
    store: SessionStore | None,
    otel: bool,
    **kw: Any,
) -> None:
    """Call PHONE (and redial), then ask for the code the person heard until it verifies.

    With `--store` the session lives in a durable store: `phoneconfirm worker`
    processes on it may place its calls, and Ctrl-C leaves it pending there (end of input
    cancels it). The session follows the default confirmation policy, with
    `--max-verify-attempts` and `--code-ttl`. Exits 0 when verified; 1 when the session
    ended otherwise (its `outcome`: exhausted, locked after the last wrong code, expired,
    cancelled, failed, or throttled by the policy before any call, with `retry_after`);
    130 on Ctrl-C. With `--store`, the service's API key is required (or `--emulator`).
    """
    credentials = credentials_from(kw)
    if store is not None:
        credentials.require_service("--store")
    when = _parse_at(at)
    policy = ConfirmationPolicy(max_verify_attempts=max_verify_attempts, code_ttl=code_ttl)

    async def run(telemetry: dict[str, Any]) -> dict[str, Any]:
        async with (
            open_client(credentials, **telemetry) as client,
            client.scheduler(store=store, policy=policy) as scheduler,
        ):
            try:
                session = await scheduler.schedule(
                    phone,
                    country_code=country_code,
                    code=code,
                    redial_count=redial_count,
                    redial_interval=redial_interval,
                    call_place_time=when,
                )
            except ThrottledError as exc:
                click.echo(f"Throttled: {exc}.", err=True)
                return {
                    "phone": phone,
                    "outcome": "throttled",
                    "retry_after": round(exc.retry_after),
                    "error": error_field(exc),
                }
            except PhoneConfirmError as exc:
                return {"phone": phone, "outcome": "failed", "error": error_field(exc)}
            if scheduler.store.durable:
                click.echo(f"Session {session.id} in {scheduler.store.name}.", err=True)
            click.echo(
                f"Calling the number ending {phone[-4:]}: up to "
                f"{session.calls_allowed} "
                f"call(s), {redial_interval:g} s apart. Type the code the person heard "
                "(Ctrl-D gives up).",
                err=True,
            )
            await _prompt_until_done(session)
            state = session.state
            return {
                "phone": phone,
                "country_code": country_code,
                "outcome": state.value,
                "calls": session.calls_made,
                "transaction_number": (
                    session.attempts[-1].transaction_number if session.attempts else None
                ),
                "error": error_field(session.error),
            }

    with telemetry_options(otel) as telemetry:
        exit_with_row(lambda: run(telemetry), "verified")


def _start_stdin_reader() -> MemoryObjectReceiveStream[str]:
    """Lines of stdin ("" at the end), read by a daemon thread.

    Not an anyio worker thread: those are not daemons, so one blocked in ``readline`` would
    keep the process alive after Ctrl-C.
    """
    send, receive = anyio.create_memory_object_stream[str](16)
    token = anyio.lowlevel.current_token()

    def read() -> None:
        try:
            while True:
                line = sys.stdin.readline(256)
                anyio.from_thread.run(send.send, line, token=token)
                if not line:
                    return
        except (RuntimeError, anyio.BrokenResourceError, anyio.ClosedResourceError):
            return  # the event loop or the reader is gone: nobody wants more lines

    threading.Thread(target=read, name="phoneconfirm-stdin", daemon=True).start()
    return receive


async def _prompt_until_done(session: ConfirmationSession) -> None:
    """Read codes from stdin and verify them, until verified, exhausted, failed or EOF."""
    told: list[SessionState] = []  # the final state said, once

    def tell(state: SessionState) -> None:
        if not told and state is not SessionState.VERIFIED:
            click.echo(_closed_line(state), err=True)
        told.append(state)

    async with anyio.create_task_group() as tg:

        async def end_with_session() -> None:
            tell(await session.wait())
            tg.cancel_scope.cancel()

        tg.start_soon(end_with_session)
        await session.wait_called()  # nobody can have heard a code before the first call
        lines = _start_stdin_reader()
        while True:
            line = await lines.receive()
            if not line:  # end of input: the user gives up
                await session.cancel()
                break
            typed = line.strip()
            if not typed:
                continue
            try:
                result = await session.verify(typed)
            except VerificationClosedError as exc:
                tell(exc.state)
                break
            except PhoneConfirmError as exc:
                click.echo(f"Cannot verify yet: {exc}", err=True)
                continue
            if result.verified:
                click.echo("Verified.", err=True)
                break
            if session.state is SessionState.LOCKED:
                tell(session.state)
                break
            left = session.verify_attempts_left
            more = "" if left is None else f" ({left} attempt(s) left)"
            click.echo(f"That code does not match; try again{more}.", err=True)
        lines.close()
        tg.cancel_scope.cancel()


def _closed_line(state: SessionState) -> str:
    """One line for a session that no longer takes a code."""
    return {
        SessionState.LOCKED: "Session locked: every verification attempt was used.",
        SessionState.EXPIRED: "Session expired: the code's lifetime ran out.",
    }.get(state, f"Session {state.value}.")
