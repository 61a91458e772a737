"""The ``phoneconfirm`` command line (needs the ``cli`` extra: click and rich).

Progress and summaries go to stderr, result rows to stdout, so output can be piped.
Credentials come from flags or the environment; with neither a key nor a base URL, commands
run against the built-in emulator on a free loopback port and say so on stderr.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

from phoneconfirm_async._cli_common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    credential_options,
    credentials_from,
    interrupt_exits,
    open_client,
    print_row,
    run_async,
)
from phoneconfirm_async._cli_confirm import confirm
from phoneconfirm_async._cli_io import (
    PLACE_COLUMNS,
    PLACE_OUTPUT,
    VERIFY_COLUMNS,
    VERIFY_OUTPUT,
    Progress,
    RowWriter,
    count_rows,
    open_rows,
    place_row,
    verify_row,
)
from phoneconfirm_async._errors import PhoneConfirmError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="phoneconfirm-async")
def main() -> None:
    """Place and verify phone-confirmation calls (XVerify Phone Confirm)."""


@main.command()
@click.argument("phone")
@click.option("--country-code", required=True, help="1-3 digits, '+' allowed.")
@click.option("--code", required=True, help="The code to speak: 1-10 letters or digits.")
@click.option("--format", "response_format", type=click.Choice(["json", "xml"]), default="json")
@credential_options
def place(phone: str, country_code: str, code: str, response_format: str, **kw: Any) -> None:
    """Place one call; print the result row; exit 0 when the call was placed."""
    credentials = credentials_from(kw)

    async def run() -> dict[str, Any]:
        async with open_client(credentials, response_format=response_format) as client:
            fields = {"phone": phone, "country_code": country_code}
            try:
                result = await client.place_call(phone, country_code=country_code, code=code)
            except PhoneConfirmError as exc:
                return place_row(1, fields, error=exc)
            return place_row(1, fields, result=result)

    with interrupt_exits(130):
        row = run_async(run)
    print_row(row)
    sys.exit(EXIT_OK if row["outcome"] == "placed" else EXIT_FAILED)


@main.command()
@click.argument("transaction_number")
@click.option("--code", required=True, help="The code the person typed.")
@credential_options
def verify(transaction_number: str, code: str, **kw: Any) -> None:
    """Verify one code; print the result row; exit 0 when the code was verified."""
    credentials = credentials_from(kw)

    async def run() -> dict[str, Any]:
        async with open_client(credentials) as client:
            fields = {"transaction_number": transaction_number}
            try:
                result = await client.verify_code(transaction_number, code)
            except PhoneConfirmError as exc:
                return verify_row(1, fields, error=exc)
            return verify_row(1, fields, result=result)

    with interrupt_exits(130):
        row = run_async(run)
    print_row(row)
    sys.exit(EXIT_OK if row["outcome"] == "verified" else EXIT_FAILED)


main.add_command(confirm)


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
    return credential_options(func)


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
    credentials = credentials_from(kw)
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
        with interrupt_exits(130):
            run_async(run)
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
