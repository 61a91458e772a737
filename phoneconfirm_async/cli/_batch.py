"""``phoneconfirm batch place|verify``: every row of a file, written as it completes."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import click

from phoneconfirm_async.cli._common import (
    EXIT_FAILED,
    EXIT_OK,
    credential_options,
    credentials_from,
    interrupt_exits,
    open_client,
    run_async,
)
from phoneconfirm_async.cli._io import (
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
from phoneconfirm_async.cli._otel import otel_option, telemetry_options


@click.group()
def batch() -> None:
    """Place or verify calls for every row of a CSV (or JSON Lines) file."""


def _batch_options(func: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option(
            "--resend-unknown",
            is_flag=True,
            help="With `--journal`: send again the placements whose outcome was unknown "
            "(the call may then be placed twice).",
        ),
        click.option(
            "--journal",
            default=None,
            type=click.Path(dir_okay=False, path_type=Path),
            help="A SQLite file recording each row's outcome: a run given the same file "
            "resumes where the last one stopped.",
        ),
        click.option(
            "--rate",
            default=None,
            type=click.FloatRange(min=0, min_open=True),
            help="Requests started per second at most (default: no limit).",
        ),
        click.option(
            "--concurrency",
            default=50,
            show_default=True,
            type=click.IntRange(min=1),
            help="Requests in flight at once.",
        ),
        click.option(
            "-o",
            "--output",
            default=None,
            type=click.Path(dir_okay=False, path_type=Path),
            help="Write the rows to this file: JSON Lines, or CSV when it ends in `.csv` "
            "(default: JSON Lines on stdout).",
        ),
        click.argument("input_path", metavar="INPUT", type=click.Path(path_type=Path)),
    ]
    for option in options:
        func = option(func)
    return otel_option(credential_options(func))


@batch.command("place")
@_batch_options
def batch_place(**kw: Any) -> None:
    """Place a call for every row (columns phone, code, and country_code unless every phone
    is international, `+15555550123`).

    Writes one row per input row (JSON Lines, or CSV when OUTPUT ends in .csv); exits 0
    when every row was placed or answered invalid, 1 when some failed or are unknown.
    """
    _run_batch("placecall", kw)


@batch.command("verify")
@_batch_options
def batch_verify(**kw: Any) -> None:
    """Verify a code for every row (columns transaction_number, code).

    Exits 0 when every row was checked (verified or not), 1 when some failed.
    """
    _run_batch("verifycode", kw)


def _run_batch(operation: str, kw: dict[str, Any]) -> None:
    with telemetry_options(kw.pop("otel")) as telemetry:
        _run_batch_with(operation, kw, telemetry)


def _run_batch_with(operation: str, kw: dict[str, Any], telemetry: dict[str, Any]) -> None:
    credentials = credentials_from(kw)
    place = operation == "placecall"
    input_path: Path = kw["input_path"]
    rows = open_rows(input_path, PLACE_COLUMNS if place else VERIFY_COLUMNS)
    writer = RowWriter(kw["output"], PLACE_OUTPUT if place else VERIFY_OUTPUT)
    outcomes = (
        ("placed", "invalid", "failed", "unknown")
        if place
        else ("verified", "not_verified", "failed")
    )
    label = "place" if place else "verify"
    progress = Progress(count_rows(input_path), f"{label} {input_path.name}")
    make_row = place_row if place else verify_row
    # The rows in flight, to write their output row with the fields as the input gave them.
    pending: dict[int, dict[str, Any]] = {}

    def remember() -> Iterator[dict[str, Any]]:
        for index, row in enumerate(rows):
            pending[index] = row
            yield row

    async def run() -> None:
        options: dict[str, Any] = {
            "max_concurrency": kw["concurrency"],
            "rate_limit": kw["rate"],
            **telemetry,
        }
        async with open_client(credentials, **options) as client, anyio.create_task_group() as tg:
            progress.start()  # after the client's notice (the built-in emulator's, say)
            tg.start_soon(writer.flush_in_bursts)
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
            tg.cancel_scope.cancel()

    try:
        with interrupt_exits():
            run_async(run)
    finally:
        progress.stop()
        writer.close()
    progress.summary(outcomes)
    bad = progress.outcomes["failed"] + progress.outcomes["unknown"]
    sys.exit(EXIT_FAILED if bad else EXIT_OK)
