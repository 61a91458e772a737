"""The one definition of a session row: its columns, rows to records and back, the DDL of
each SQL dialect, and the steps from an older schema version to this one.

A row keeps the request's three fields (NULL once final), the attempts as a JSON list of
the result fields (never the normalized ``raw`` dict, which could echo anything the service
sent) and the error as its class, text and public attributes.

Adding a column is one entry in ``COLUMNS`` with ``since`` set to the next version, and
``SCHEMA_VERSION`` raised to it: tables of older versions gain the column when a store
opens them (``ALTER TABLE ... ADD COLUMN``, with the column's default for the rows they
hold).

Version 2 added the verification attempts and the code's lifetime to each session, and two
tables beside the sessions: ``<table>_throttle`` (the throttle counters: a keyed hash, the
end of the event's window, and for a call its session) and ``<table>_meta`` (the store's
secret those hashes are keyed with, made when the tables are).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from typing import Any, Final, Literal, NamedTuple

from phoneconfirm_async._errors import (
    ConfigurationError,
    PhoneConfirmError,
    error_from_state,
    error_to_state,
)
from phoneconfirm_async._models import PlaceCallRequest, PlaceCallResult
from phoneconfirm_async._stores._rules import SessionRecord, SessionState

#: The version a store writes; a table of a higher one is refused, a lower one migrated.
SCHEMA_VERSION: Final = 2
#: The request's fields, kept in columns of their own and erased together.
REQUEST_COLUMNS: Final = ("phone", "country_code", "code")

Kind = Literal["text", "integer", "real"]
Dialect = Literal["sqlite", "postgresql"]
_TYPES: Final[Mapping[Dialect, Mapping[Kind, str]]] = {
    "sqlite": {"text": "TEXT", "integer": "INTEGER", "real": "REAL"},
    "postgresql": {"text": "text", "integer": "integer", "real": "double precision"},
}


class Column(NamedTuple):
    """One column of the sessions table.

    It stores the ``SessionRecord`` attribute of its name (the request's three fields
    make ``record.request``). ``mutable`` columns are written
    by every update of a session; the others only when it is added. ``since`` is the
    schema version that added it; a column added after the first needs ``null`` or a
    ``default`` (an SQL literal) for the rows that existed before.
    """

    name: str
    kind: Kind
    null: bool = True
    mutable: bool = True
    since: int = 1
    default: str | None = None
    key: bool = False

    def ddl(self, dialect: Dialect) -> str:
        text = f"{self.name} {_TYPES[dialect][self.kind]}"
        if self.key:
            text += " PRIMARY KEY"
        elif not self.null:
            text += " NOT NULL"
        if self.default is not None:
            text += f" DEFAULT {self.default}"
        return text


COLUMNS: Final = (
    Column("id", "text", null=False, mutable=False, key=True),
    Column("phone", "text"),
    Column("country_code", "text"),
    Column("code", "text"),
    Column("redial_count", "integer", null=False, mutable=False),
    Column("redial_interval", "real", null=False, mutable=False),
    Column("state", "text", null=False),
    Column("due", "real", null=False),
    Column("calls_made", "integer", null=False),
    Column("attempts", "text", null=False),
    Column("error", "text"),
    Column("claimed_at", "real"),
    Column("verify_attempts", "integer", null=False, since=2, default="0"),
    Column("verify_limit", "integer", mutable=False, since=2),
    Column("code_ttl", "real", mutable=False, since=2),
    Column("code_expires", "real", since=2),
)
NAMES: Final = tuple(column.name for column in COLUMNS)
#: The columns an update writes, in ``update_values`` order (the id follows them).
MUTABLE: Final = tuple(column.name for column in COLUMNS if column.mutable)

_RESULT_FIELDS: Final = ("status", "error", "message", "transaction_number", "duration")
_STATES: Final = {state.value: state for state in SessionState}


def _encode_error(error: PhoneConfirmError | None) -> str | None:
    return None if error is None else json.dumps(error_to_state(error))


def _decode_error(text: str | None) -> PhoneConfirmError | None:
    return None if text is None else error_from_state(json.loads(text))


def encode_attempts(attempts: tuple[PlaceCallResult, ...]) -> str:
    return json.dumps([[getattr(a, name) for name in _RESULT_FIELDS] for a in attempts])


def encode_attempt(result: PlaceCallResult) -> str:
    """One attempt as the JSON value appended to a row's ``attempts`` list."""
    return json.dumps([getattr(result, name) for name in _RESULT_FIELDS])


def decode_attempts(text: str) -> tuple[PlaceCallResult, ...]:
    results: tuple[PlaceCallResult, ...] = ()
    for values in json.loads(text):
        fields = dict(zip(_RESULT_FIELDS, values, strict=True))
        results += (PlaceCallResult.from_fields(fields),)
    return results


#: Columns whose value is not the record's attribute as it is: (to the row, from the row).
_CODECS: Final[Mapping[str, tuple[Callable[[Any], Any], Callable[[Any], Any]]]] = {
    "state": (lambda state: state.value, _STATES.__getitem__),
    "attempts": (encode_attempts, decode_attempts),
    "error": (_encode_error, _decode_error),
}


def _compile(name: str, params: str, body: str) -> Callable[..., Any]:
    """A function made from the column list, as ``dataclasses`` makes ``__init__``: rows
    are converted for every claim, and attribute reads in one expression cost a fraction
    of a loop over per-column functions."""
    namespace: dict[str, Any] = {
        **{f"encode_{n}": codec[0] for n, codec in _CODECS.items()},
        **{f"decode_{n}": codec[1] for n, codec in _CODECS.items()},
        "SessionRecord": SessionRecord,
        "PlaceCallRequest": PlaceCallRequest,
    }
    exec(f"def {name}({params}):\n    {body}", namespace)  # noqa: S102 - our own columns
    function: Callable[..., Any] = namespace[name]
    return function


def _value(name: str) -> str:
    """The expression of column ``name``'s value, for a record ``r``."""
    if name in REQUEST_COLUMNS:
        return f"(None if r.request is None else r.request.{name})"
    if name in _CODECS:
        return f"encode_{name}(r.{name})"
    return f"r.{name}"


_FIELDS: Final = frozenset(field.name for field in dataclasses.fields(SessionRecord))
#: The record as a row, in ``COLUMNS`` order.
row_values: Callable[[SessionRecord], tuple[Any, ...]] = _compile(
    "row_values", "r", f"return ({', '.join(map(_value, NAMES))},)"
)
#: The values of an update of the ``MUTABLE`` columns, then the id for its WHERE.
update_values: Callable[[SessionRecord], tuple[Any, ...]] = _compile(
    "update_values", "r", f"return ({', '.join(map(_value, (*MUTABLE, 'id')))},)"
)
#: A record from a row read back (any mapping of the column names).
record_from_row: Callable[[Mapping[str, Any]], SessionRecord] = _compile(
    "record_from_row",
    "row",
    "phone = row['phone']\n    return SessionRecord(request=None if phone is None else "
    "PlaceCallRequest(phone, row['country_code'], row['code']), "
    + ", ".join(
        f"{n}=decode_{n}(row['{n}'])" if n in _CODECS else f"{n}=row['{n}']"
        for n in NAMES
        if n in _FIELDS
    )
    + ")",
)


def _check_columns() -> None:
    """The rules ``Column`` states, checked once at import (a mistake fails every test)."""
    for column in COLUMNS:
        if column.name not in _FIELDS and column.name not in REQUEST_COLUMNS:
            raise TypeError(f"column {column.name}: SessionRecord has no such field")
        if column.since > 1 and not column.null and column.default is None:
            raise TypeError(f"column {column.name}: added later, so nullable or with a default")
        if not 1 <= column.since <= SCHEMA_VERSION:
            raise TypeError(f"column {column.name}: since must be 1..{SCHEMA_VERSION}")


_check_columns()


def side_table(table: str, side: str) -> str:
    """The name of a table beside the sessions table (``throttle``, ``meta``), quoted."""
    return f'"{table.strip(chr(34))}_{side}"'


def _side_tables(dialect: Dialect, table: str) -> list[str]:
    """The tables schema version 2 added beside the sessions (see the module doc)."""
    types = _TYPES[dialect]
    throttle, meta = side_table(table, "throttle"), side_table(table, "meta")
    name = table.strip(chr(34))
    return [
        f"CREATE TABLE IF NOT EXISTS {throttle} (kind {types['text']} NOT NULL, "
        f"key {types['text']} NOT NULL, until {types['real']} NOT NULL, ref {types['text']})",
        # A counter's events in its window; and the sweep of ended windows, which would
        # otherwise read every counter (under the write lock) every SWEEP_INTERVAL.
        f'CREATE INDEX IF NOT EXISTS "{name}_throttle_window" ON {throttle} (kind, key, until)',
        f'CREATE INDEX IF NOT EXISTS "{name}_throttle_until" ON {throttle} (until)',
        f"CREATE TABLE IF NOT EXISTS {meta} (name {types['text']} PRIMARY KEY, "
        f"value {types['text']} NOT NULL)",
    ]


def create_table(dialect: Dialect, table: str) -> list[str]:
    """The statements that create the tables and indexes, as this version has them."""
    body = ",\n    ".join(column.ddl(dialect) for column in COLUMNS)
    index = table.strip('"') + "_due"
    return [
        f"CREATE TABLE IF NOT EXISTS {table} (\n    {body}\n)",
        f'CREATE INDEX IF NOT EXISTS "{index}" ON {table} (due)',
        *_side_tables(dialect, table),
    ]


def migrate(dialect: Dialect, table: str, version: int, *, store: str) -> list[str]:
    """The statements that bring a table of schema ``version`` to ``SCHEMA_VERSION``.

    Raises:
        ConfigurationError: the table was written by a newer release.
    """
    if version > SCHEMA_VERSION:
        raise ConfigurationError(
            f"{store}: schema version {version} was written by a newer release of "
            f"phoneconfirm-async (this one knows {SCHEMA_VERSION}): upgrade this process, or "
            "point it at another store"
        )
    steps = [
        f"ALTER TABLE {table} ADD COLUMN {column.ddl(dialect)}"
        for column in COLUMNS
        if column.since > version
    ]
    if version < 2:
        steps += _side_tables(dialect, table)
    return steps
