"""Input, output and progress for the ``phoneconfirm batch`` commands.

Inputs are read lazily (CSV with a header, or JSON Lines by extension); output rows are
written and flushed one by one (JSON Lines, or CSV by extension), so a killed run leaves
everything it finished. Progress and the summary go to stderr.
"""

from __future__ import annotations

import csv
import io
import json
import sys
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any, Final

import anyio
import click

from phoneconfirm_async import BatchItem, CallOutcomeUnknownError, PhoneConfirmError

#: The columns a placement's input must have; ``country_code`` too, unless every phone is
#: international (``+15555550123``, with the ``numbers`` extra).
PLACE_COLUMNS: Final = ("phone", "code")
VERIFY_COLUMNS: Final = ("transaction_number", "code")
PLACE_OUTPUT: Final = (
    "row",
    "phone",
    "country_code",
    "outcome",
    "status",
    "transaction_number",
    "message",
    "error",
)
VERIFY_OUTPUT: Final = ("row", "transaction_number", "outcome", "status", "message", "error")
_JSONL: Final = (".jsonl", ".ndjson", ".json")


class SetupError(click.ClickException):
    """A configuration error found after the flags parsed: one line on stderr, exit 2."""

    exit_code = 2


class InputError(SetupError):
    """An input file that cannot be read as rows (exit status 2, one line)."""


def _is_jsonl(path: Path) -> bool:
    return path.suffix.lower() in _JSONL


def open_rows(path: Path, columns: tuple[str, ...]) -> Iterator[dict[str, Any]]:
    """Check the file and its header now; return an iterator that reads rows lazily.

    Raises:
        InputError: the file cannot be opened, or its header lacks required columns.
    """
    try:
        handle = path.open(newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
    if _is_jsonl(path):
        return _jsonl_rows(handle, path)
    reader = csv.reader(handle)
    try:
        header = next(reader, [])
    except (csv.Error, UnicodeDecodeError) as exc:
        handle.close()
        raise InputError(f"{path}: not a readable CSV file ({exc})") from None
    names = [name.strip() for name in header]
    missing = [c for c in columns if c not in names]
    if missing:
        handle.close()
        raise InputError(
            f"{path}: the header lacks column(s) {', '.join(missing)} "
            f"(expected {','.join(columns)})"
        )
    return _csv_rows(handle, reader, names, path)


def _csv_rows(
    handle: IO[str], reader: Any, names: list[str], path: Path
) -> Iterator[dict[str, Any]]:
    """Each data row as a dict of the header's names (values stripped; blank lines skipped;
    a short row lacks its last columns, cells past the header are dropped)."""
    strip = str.strip
    named = all(names)  # the usual header: every column named, so no column is skipped
    with handle:
        try:
            for values in reader:
                if not values:
                    continue
                if named:
                    yield dict(zip(names, map(strip, values), strict=False))
                else:
                    pairs = zip(names, values, strict=False)
                    yield {name: value.strip() for name, value in pairs if name}
        except (csv.Error, UnicodeDecodeError) as exc:
            raise InputError(f"{path}, line {reader.line_num}: {exc}") from None


def _jsonl_rows(handle: IO[str], path: Path) -> Iterator[dict[str, Any]]:
    with handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except ValueError:
                value = None
            # A malformed line is still a row: the batch reports it as invalid.
            yield value if isinstance(value, dict) else {"_malformed": number}


def count_rows(path: Path) -> int | None:
    """Data rows in a file (for a progress bar), or None if it cannot be told cheaply."""
    try:
        with path.open("rb") as handle:
            lines = sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))
            handle.seek(-1, io.SEEK_END)
            ends_with_newline = handle.read(1) == b"\n"
    except OSError:
        return None
    if not ends_with_newline:
        lines += 1
    return lines if _is_jsonl(path) else max(lines - 1, 0)


class RowWriter:
    """Writes output rows as they complete: JSON Lines, or CSV when the file ends in .csv.

    ``write`` buffers; ``flush_in_bursts`` (a task) flushes once the rows that completed
    together are written, so every finished row reaches the file as soon as the command
    waits for the next one, with one write for a burst of rows instead of one per row.
    """

    def __init__(self, path: Path | None, columns: tuple[str, ...]) -> None:
        self.columns = columns
        self.csv = path is not None and path.suffix.lower() == ".csv"
        try:
            self.stream: IO[str] = (
                path.open("w", newline="", encoding="utf-8") if path else sys.stdout
            )
        except OSError as exc:
            raise SetupError(f"cannot write {path}: {exc.strerror or exc}") from None
        self.owned = path is not None
        self._csv_writer: Any = None
        if self.csv:
            self._csv_writer = csv.DictWriter(self.stream, fieldnames=list(columns))
            self._csv_writer.writeheader()
        self._unflushed = anyio.Event()

    def write(self, row: Mapping[str, Any]) -> None:
        """Write one row (flushed by ``flush_in_bursts``, or by ``flush``)."""
        if self._csv_writer is not None:
            flat = dict(row)
            error = flat.get("error")
            flat["error"] = f"{error['type']}: {error['message']}" if error else ""
            self._csv_writer.writerow(flat)
        else:
            self.stream.write(dumps_row(row) + "\n")
        self._unflushed.set()

    async def flush_in_bursts(self) -> None:
        """Flush whenever rows were written and the writer let other tasks run: at the end
        of each burst of rows that were ready together. Runs until cancelled."""
        while True:
            await self._unflushed.wait()
            self._unflushed = anyio.Event()
            self.stream.flush()

    def flush(self) -> None:
        self.stream.flush()

    def close(self) -> None:
        self.stream.flush()
        if self.owned:
            self.stream.close()


def _stdlib_dumps(row: Mapping[str, Any]) -> str:
    return json.dumps(row, ensure_ascii=False)


def _orjson_dumps(row: Mapping[str, Any]) -> str:
    return orjson.dumps(row).decode()


#: One output row as one line of JSON (orjson when it is installed: the same JSON, compact).
dumps_row = _stdlib_dumps
try:
    import orjson
except ImportError:  # the speedups extra is not installed
    pass
else:
    dumps_row = _orjson_dumps


def error_field(exc: PhoneConfirmError | None) -> dict[str, str] | None:
    """The ``error`` field of an output row (our exception texts carry no secrets)."""
    return None if exc is None else exc.as_dict()


def place_row(
    row: int, fields: Mapping[str, Any], item: BatchItem[Any, Any] | None = None, **kw: Any
) -> dict[str, Any]:
    """One output row of a placement (the CLI's documented columns)."""
    result = item.result if item else kw.get("result")
    error = item.error if item else kw.get("error")
    if result is not None:
        outcome = "placed" if result.placed else "invalid"
    else:
        outcome = "unknown" if isinstance(error, CallOutcomeUnknownError) else "failed"
    return {
        "row": row,
        "phone": _text(fields.get("phone")),
        "country_code": _text(fields.get("country_code")),
        "outcome": outcome,
        "status": result.status if result else None,
        "transaction_number": result.transaction_number if result else None,
        "message": result.message if result else None,
        "error": error_field(error),
    }


def verify_row(
    row: int, fields: Mapping[str, Any], item: BatchItem[Any, Any] | None = None, **kw: Any
) -> dict[str, Any]:
    """One output row of a verification (the CLI's documented columns)."""
    result = item.result if item else kw.get("result")
    error = item.error if item else kw.get("error")
    if result is not None:
        outcome = "verified" if result.verified else "not_verified"
    else:
        outcome = "failed"
    return {
        "row": row,
        "transaction_number": _text(fields.get("transaction_number")),
        "outcome": outcome,
        "status": result.status if result else None,
        "message": result.message if result else None,
        "error": error_field(error),
    }


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


class Progress:
    """A rich progress bar on stderr when it is a terminal; silent otherwise."""

    def __init__(self, total: int | None, label: str) -> None:
        self.started = time.monotonic()
        self.outcomes: Counter[str] = Counter()
        self._bar: Any = None
        self._task: Any = None
        self._total = total
        self._label = label

    def start(self) -> None:
        """Show the bar (once what the command says before its work has been said)."""
        if sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeElapsedColumn,
            )
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self._task = self._bar.add_task(self._label, total=self._total)
            self._bar.start()

    def advance(self, outcome: str) -> None:
        self.outcomes[outcome] += 1
        if self._bar is not None:
            self._bar.advance(self._task)

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()

    def summary(self, columns: tuple[str, ...]) -> None:
        """The summary table on stderr: outcome counts, rate and elapsed time (drawn by rich
        on a terminal; plain aligned text otherwise, for logs, without importing rich)."""
        elapsed = time.monotonic() - self.started
        total = sum(self.outcomes.values())
        names = (*columns, "rows", "rate", "elapsed")
        values = (
            *(str(self.outcomes[name]) for name in columns),
            str(total),
            f"{total / elapsed:,.1f}/s" if elapsed > 0 else "-",
            f"{elapsed:.2f} s",
        )
        if not sys.stderr.isatty():
            widths = [
                max(len(name), len(value)) for name, value in zip(names, values, strict=True)
            ]
            sys.stderr.write("phoneconfirm batch\n")
            for cells in (names, values):
                line = "  ".join(
                    cell.rjust(width) for cell, width in zip(cells, widths, strict=True)
                )
                sys.stderr.write(line + "\n")
            sys.stderr.flush()
            return
        from rich.console import Console
        from rich.table import Table

        table = Table(title="phoneconfirm batch", title_justify="left")
        for name in names:
            table.add_column(name, justify="right")
        table.add_row(*values)
        Console(stderr=True, width=100).print(table)
