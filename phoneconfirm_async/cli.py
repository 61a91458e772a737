"""The ``phoneconfirm`` command line (needs the ``cli`` extra: click and rich).

Progress and summaries go to stderr, result rows to stdout, so output can be piped.
Credentials come from flags or the environment; with neither a key nor a base URL, commands
run against the built-in emulator on a free loopback port and say so on stderr.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.from_thread
import anyio.lowlevel
import click
from anyio.streams.memory import MemoryObjectReceiveStream

from phoneconfirm_async import _client
from phoneconfirm_async._cli_io import (
    PLACE_COLUMNS,
    PLACE_OUTPUT,
    VERIFY_COLUMNS,
    VERIFY_OUTPUT,
    Progress,
    RowWriter,
    count_rows,
    error_field,
    open_rows,
    place_row,
    verify_row,
)
from phoneconfirm_async._client import PhoneConfirmClient
from phoneconfirm_async._errors import ConfigurationError, PhoneConfirmError
from phoneconfirm_async._redact import mask_phone
from phoneconfirm_async._scheduler import ConfirmationSession, SessionState

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


def _credential_options(func: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--secret-key", envvar=_client.ENV_SECRET_KEY, help="Secret key."),
        click.option("--base-url", envvar=_client.ENV_BASE_URL, help="Service base URL."),
        click.option("--domain", envvar=_client.ENV_DOMAIN, help="Domain trusted for the key."),
        click.option("--api-key", envvar=_client.ENV_API_KEY, help="API key."),
    ]
    for option in options:
        func = option(func)
    return func


def _credentials(kwargs: dict[str, Any]) -> Credentials:
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


def _run(main: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine function; configuration errors exit 2 with one line, no traceback."""
    try:
        return anyio.run(main)
    except ConfigurationError as exc:
        raise click.UsageError(str(exc)) from None


@contextlib.contextmanager
def _interrupt_exits(code: int) -> Iterator[None]:
    try:
        yield
    except KeyboardInterrupt:
        click.echo("phoneconfirm: interrupted", err=True)
        sys.exit(code)


def _print_row(row: dict[str, Any]) -> None:
    click.echo(json.dumps(row, ensure_ascii=False))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="phoneconfirm-async")
def main() -> None:
    """Place and verify phone-confirmation calls (XVerify Phone Confirm)."""


@main.command()
@click.argument("phone")
@click.option("--country-code", required=True, help="1-3 digits, '+' allowed.")
@click.option("--code", required=True, help="The code to speak: 1-10 letters or digits.")
@click.option("--format", "response_format", type=click.Choice(["json", "xml"]), default="json")
@_credential_options
def place(phone: str, country_code: str, code: str, response_format: str, **kw: Any) -> None:
    """Place one call; print the result row; exit 0 when the call was placed."""
    credentials = _credentials(kw)

    async def run() -> dict[str, Any]:
        async with open_client(credentials, response_format=response_format) as client:
            fields = {"phone": phone, "country_code": country_code}
            try:
                result = await client.place_call(phone, country_code=country_code, code=code)
            except PhoneConfirmError as exc:
                return place_row(1, fields, error=exc)
            return place_row(1, fields, result=result)

    with _interrupt_exits(130):
        row = _run(run)
    _print_row(row)
    sys.exit(EXIT_OK if row["outcome"] == "placed" else EXIT_FAILED)


@main.command()
@click.argument("transaction_number")
@click.option("--code", required=True, help="The code the person typed.")
@_credential_options
def verify(transaction_number: str, code: str, **kw: Any) -> None:
    """Verify one code; print the result row; exit 0 when the code was verified."""
    credentials = _credentials(kw)

    async def run() -> dict[str, Any]:
        async with open_client(credentials) as client:
            fields = {"transaction_number": transaction_number}
            try:
                result = await client.verify_code(transaction_number, code)
            except PhoneConfirmError as exc:
                return verify_row(1, fields, error=exc)
            return verify_row(1, fields, result=result)

    with _interrupt_exits(130):
        row = _run(run)
    _print_row(row)
    sys.exit(EXIT_OK if row["outcome"] == "verified" else EXIT_FAILED)


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


@main.command()
@click.argument("phone")
@click.option("--country-code", required=True, help="1-3 digits, '+' allowed.")
@click.option("--code", default=None, help="The code to speak (default: six random digits).")
@click.option("--redial-count", default=0, show_default=True, type=click.IntRange(0, 10))
@click.option(
    "--redial-interval",
    default=60.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
)
@click.option("--at", "at", default=None, help="When to call: seconds from now or ISO time.")
@_credential_options
def confirm(
    phone: str,
    country_code: str,
    code: str | None,
    redial_count: int,
    redial_interval: float,
    at: str | None,
    **kw: Any,
) -> None:
    """Call PHONE (and redial), then ask for the code the person heard until it verifies.

    Exits 0 when verified, 1 when the calls were exhausted or failed, 130 on Ctrl-C.
    """
    credentials = _credentials(kw)
    when = _parse_at(at)
    spoken = code if code is not None else f"{secrets.randbelow(10**6):06d}"

    async def run() -> dict[str, Any]:
        async with open_client(credentials) as client, client.scheduler() as scheduler:
            try:
                session = await scheduler.schedule(
                    phone,
                    country_code=country_code,
                    code=spoken,
                    redial_count=redial_count,
                    redial_interval=redial_interval,
                    call_place_time=when,
                )
            except PhoneConfirmError as exc:
                return {"phone": phone, "outcome": "failed", "error": error_field(exc)}
            click.echo(
                f"Calling {mask_phone(session.request.phone)}: up to {session.calls_allowed} "
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

    with _interrupt_exits(130):
        row = _run(run)
    _print_row(row)
    sys.exit(EXIT_OK if row["outcome"] == "verified" else EXIT_FAILED)


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
    async with anyio.create_task_group() as tg:

        async def end_with_session() -> None:
            state = await session.wait()
            if state is not SessionState.VERIFIED:
                click.echo(f"Session {state.value}.", err=True)
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
            except PhoneConfirmError as exc:
                click.echo(f"Cannot verify yet: {exc}", err=True)
                continue
            if result.verified:
                click.echo("Verified.", err=True)
                break
            click.echo("That code does not match; try again.", err=True)
        lines.close()
        tg.cancel_scope.cancel()


@main.group()
def batch() -> None:
    """Place or verify calls for every row of a CSV (or JSON Lines) file."""


def _batch_options(func: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option(
            "--resend-unknown", is_flag=True, help="Re-send placements of unknown outcome."
        ),
        click.option(
            "--journal", type=click.Path(dir_okay=False, path_type=Path), help="Resume file."
        ),
        click.option("--rate", type=click.FloatRange(min=0, min_open=True), help="Requests/s."),
        click.option("--concurrency", default=50, show_default=True, type=click.IntRange(min=1)),
        click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path)),
        click.argument("input_path", metavar="INPUT", type=click.Path(path_type=Path)),
    ]
    for option in options:
        func = option(func)
    return _credential_options(func)


@batch.command("place")
@_batch_options
def batch_place(**kw: Any) -> None:
    """Place a call for every row (columns phone, country_code, code).

    Writes one row per input row (JSON Lines, or CSV when OUTPUT ends in .csv); exits 0
    when every row was placed or answered invalid, 1 when some failed or are unknown.
    """
    _run_batch("place", kw)


@batch.command("verify")
@_batch_options
def batch_verify(**kw: Any) -> None:
    """Verify a code for every row (columns transaction_number, code).

    Exits 0 when every row was checked (verified or not), 1 when some failed.
    """
    _run_batch("verify", kw)


def _run_batch(kind: str, kw: dict[str, Any]) -> None:
    credentials = _credentials(kw)
    place = kind == "place"
    input_path: Path = kw["input_path"]
    rows = open_rows(input_path, PLACE_COLUMNS if place else VERIFY_COLUMNS)
    writer = RowWriter(kw["output"], PLACE_OUTPUT if place else VERIFY_OUTPUT)
    outcomes = (
        ("placed", "invalid", "failed", "unknown")
        if place
        else ("verified", "not_verified", "failed")
    )
    progress = Progress(count_rows(input_path), f"{kind} {input_path.name}")
    make_row = place_row if place else verify_row
    kept = ("phone", "country_code") if place else ("transaction_number",)
    pending: dict[int, dict[str, Any]] = {}

    def remember() -> Iterator[dict[str, Any]]:
        # Only the non-secret fields of rows in flight are kept, to write their output row.
        for index, row in enumerate(rows):
            pending[index] = {name: row.get(name) for name in kept}
            yield row

    async def run() -> None:
        options: dict[str, Any] = {"max_concurrency": kw["concurrency"], "rate_limit": kw["rate"]}
        async with open_client(credentials, **options) as client:
            if place:
                items: Any = client.place_many(
                    remember(), journal=kw["journal"], resend_unknown=kw["resend_unknown"]
                )
            else:
                items = client.verify_many(remember(), journal=kw["journal"])
            async for item in items:
                row = make_row(item.index + 1, pending.pop(item.index), item)
                writer.write(row)
                progress.advance(row["outcome"])

    try:
        with _interrupt_exits(130):
            _run(run)
    finally:
        progress.stop()
        writer.close()
    progress.summary(outcomes)
    bad = progress.outcomes["failed"] + progress.outcomes["unknown"]
    sys.exit(EXIT_FAILED if bad else EXIT_OK)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option("--port", default=8099, show_default=True, type=click.IntRange(0, 65535))
@click.option("--api-key", "api_keys", multiple=True, help="Accepted key (repeatable).")
@click.option("--trusted-domain", "trusted_domains", multiple=True, help="Trusted domain.")
@click.option("--latency-ms", default=0.0, type=click.FloatRange(min=0), help="Added latency.")
@click.option("--fault-rate", default=0.0, type=click.FloatRange(0, 1), help="Fault probability.")
@click.option("--answer-on-attempt", default=1, type=click.IntRange(min=1), show_default=True)
@click.option("--seed", type=int, default=None, help="Seed for reproducible faults.")
def emulator(
    host: str,
    port: int,
    api_keys: tuple[str, ...],
    trusted_domains: tuple[str, ...],
    latency_ms: float,
    fault_rate: float,
    answer_on_attempt: int,
    seed: int | None,
) -> None:
    """Serve the Phone Confirm emulator until interrupted (Ctrl-C)."""
    from phoneconfirm_async.emulator import Emulator, EmulatorConfig

    fields: dict[str, Any] = {}
    if api_keys:
        fields["api_keys"] = api_keys
    if trusted_domains:
        fields["trusted_domains"] = trusted_domains
    config = EmulatorConfig(
        host=host,
        port=port,
        latency=latency_ms / 1000,
        fault_rate=fault_rate,
        answer_on_attempt=answer_on_attempt,
        seed=seed,
        **fields,
    )
    server = Emulator(config)
    try:
        server.start()
    except OSError as exc:
        raise click.UsageError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    keys = "the default key 'emulator-key'" if not api_keys else f"{len(api_keys)} key(s)"
    domains = ", ".join(config.trusted_domains)
    click.echo(
        f"Phone Confirm emulator serving {server.base_url} ({keys}; trusted: {domains}). "
        "Ctrl-C to stop.",
        err=True,
    )
    try:
        while not server.wait(timeout=0.5):
            pass
    except KeyboardInterrupt:
        server.stop()
        click.echo(f"Emulator stopped after {server.request_count} requests. Goodbye.", err=True)
        sys.exit(EXIT_OK)
    sys.exit(EXIT_FAILED)  # the server thread ended on its own: something went wrong


@main.command()
@click.option("--quick", is_flag=True, help="A small version of each benchmark (< 1 min).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Also write JSON.")
def bench(quick: bool, json_path: str | None) -> None:
    """Run the benchmark suite (benchmarks/ of a source checkout) and print its table.

    Every figure is a ratio against a baseline measured in the same run. Exits 1 when a
    target was missed on this machine.
    """
    try:
        from benchmarks import suite
        from benchmarks._common import machine, write_json
    except ImportError:
        raise click.UsageError(
            "phoneconfirm bench runs benchmarks/ from a source checkout: "
            "python -m pip install -e '.[dev]' in the repository"
        ) from None
    from rich.console import Console
    from rich.table import Table

    console = Console(stderr=True)
    results = suite.run_all(quick, lambda name: console.print(f"running {name}...", style="dim"))
    info = machine()
    table = Table(title=f"phoneconfirm bench{' --quick' if quick else ''}: {info['cores']} cores")
    for column in ("benchmark", "value", "baseline", "ratio", "target", ""):
        table.add_column(column, justify="left" if column == "benchmark" else "right")
    for r in results:
        table.add_row(
            r.name,
            f"{r.value:,.1f} {r.unit}",
            f"{r.baseline:,.1f}",
            f"{r.ratio:.2f}",
            r.target,
            "met" if r.met else "[bold red]MISSED",
        )
    Console(width=130).print(table)
    if json_path:
        write_json(results, json_path)
    sys.exit(EXIT_OK if all(r.met for r in results) else EXIT_FAILED)


def run() -> None:
    """The ``phoneconfirm`` entry point: usage and configuration errors in one line, exit 2."""
    try:
        main.main(standalone_mode=False)
    except click.UsageError as exc:
        click.echo(f"phoneconfirm: {exc.format_message()}", err=True)
        sys.exit(EXIT_USAGE)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("phoneconfirm: interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    run()
