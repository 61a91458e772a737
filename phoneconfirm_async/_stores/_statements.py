"""The statements of the SQL stores: an operation as a generator of ``Statement``s, the
two ways to run one (a blocking driver, an async one), and the statement texts every
dialect writes alike (``Statements``), built from the columns of ``_schema``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator
from typing import Any, Final, Literal, NamedTuple, TypeVar

from phoneconfirm_async._stores._rules import CHECKABLE_STATES
from phoneconfirm_async._stores._schema import MUTABLE, NAMES, side_table

#: The name of the store's secret (the throttle hashes' key) in ``<table>_meta``.
SECRET_NAME: Final = "throttle_secret"  # noqa: S105 - a row name, not a secret
_T = TypeVar("_T")


class Statement(NamedTuple):
    """One statement of an operation; ``args`` is a list of argument tuples for
    ``executemany``."""

    kind: Literal["execute", "executemany", "fetch", "fetchrow", "fetchval"]
    sql: str
    args: Any = ()


#: An operation: yields statements, receives their results, returns its answer.
Op = Generator[Statement, Any, _T]


def run_sync(op: Op[_T], execute: Callable[[Statement], Any]) -> _T:
    """Run ``op`` with a blocking ``execute`` (SQLite, in a worker thread)."""
    result = None
    try:
        while True:
            result = execute(op.send(result))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


async def run_async(op: Op[_T], execute: Callable[[Statement], Awaitable[Any]]) -> _T:
    """Run ``op`` with an async ``execute`` (asyncpg)."""
    result = None
    try:
        while True:
            result = await execute(op.send(result))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


class Statements:
    """The statements every dialect writes alike, for one table; ``param(n)`` is the
    dialect's n-th positional parameter (``?n``, ``$n``)."""

    __slots__ = (
        "count",
        "delete",
        "give_back",
        "insert",
        "lock",
        "newest",
        "next_due",
        "read_secret",
        "select",
        "spent",
        "sweep",
        "take",
        "uncount",
        "update",
        "write_secret",
    )

    def __init__(self, table: str, param: Callable[[int], str], *, lock: str = "") -> None:
        columns = ", ".join(NAMES)
        values = ", ".join(param(i + 1) for i in range(len(NAMES)))
        assignments = ", ".join(f"{name} = {param(i + 1)}" for i, name in enumerate(MUTABLE))
        self.insert = f"INSERT INTO {table} ({columns}) VALUES ({values})"
        self.select = f"SELECT {columns} FROM {table} WHERE id = {param(1)}"
        #: The row read to change it: locked until the transaction ends where rows lock.
        self.lock = self.select + lock
        self.update = f"UPDATE {table} SET {assignments} WHERE id = {param(len(MUTABLE) + 1)}"
        self.delete = f"DELETE FROM {table} WHERE id = {param(1)}"
        self.next_due = f"SELECT min(due) FROM {table}"
        # ``may_check`` as one conditional update: (id, now).
        checkable = ", ".join(f"'{state.value}'" for state in sorted(CHECKABLE_STATES, key=str))
        self.take = (
            f"UPDATE {table} SET verify_attempts = verify_attempts + 1 WHERE id = {param(1)} "
            f"AND state IN ({checkable}) "
            "AND (verify_limit IS NULL OR verify_attempts < verify_limit) "
            f"AND (state = 'calling' OR code_expires IS NULL OR code_expires > {param(2)}) "
            f"RETURNING {columns}"
        )
        self.give_back = (
            f"UPDATE {table} SET verify_attempts = verify_attempts - 1 "
            f"WHERE id = {param(1)} AND verify_attempts > 0"
        )
        throttle, meta = side_table(table, "throttle"), side_table(table, "meta")
        #: The ``most``-th newest event of a counter still in its window: (kind, key, now,
        #: most - 1). There is one when the quota is full; it frees when that one ends.
        self.newest = (
            f"SELECT until FROM {throttle} WHERE kind = {param(1)} AND key = {param(2)} "
            f"AND until > {param(3)} ORDER BY until DESC LIMIT 1 OFFSET {param(4)}"
        )
        self.count = (
            f"INSERT INTO {throttle} (kind, key, until, ref) "
            f"VALUES ({param(1)}, {param(2)}, {param(3)}, {param(4)})"
        )
        #: A claimed call that was never sent leaves the spend cap's count: (id, until).
        self.uncount = (
            f"DELETE FROM {throttle} WHERE kind = 'calls_per_hour' AND key = '' "
            f"AND ref = {param(1)} AND until = {param(2)}"
        )
        #: Calls counted against the spend cap, still in its window: (now,).
        self.spent = (
            f"SELECT count(*) FROM {throttle} WHERE kind = 'calls_per_hour' AND key = '' "
            f"AND until > {param(1)}"
        )
        self.sweep = f"DELETE FROM {throttle} WHERE until <= {param(1)}"
        self.write_secret = (
            f"INSERT INTO {meta} (name, value) VALUES ('{SECRET_NAME}', {param(1)}) "
            "ON CONFLICT (name) DO NOTHING"
        )
        self.read_secret = f"SELECT value FROM {meta} WHERE name = '{SECRET_NAME}'"


def one(kind: Literal["execute", "fetchrow", "fetchval"], sql: str, args: Any) -> Op[Any]:
    """An operation of one statement."""
    return (yield Statement(kind, sql, args))
