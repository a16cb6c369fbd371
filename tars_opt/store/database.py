"""The database interface table owners use, whatever the engine behind it.

Table owners (the ledger, the queue, the cache store, ...) write portable SQL with `?`
placeholders and read rows as dicts. What differs between engines - connections,
placeholders, inserting with a new id, upserts, change detection - lives behind this
interface, so no package outside `store/` knows which engine it runs on.

A Database is safe to share between threads: each thread gets its own connection.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

Params = Sequence[Any] | dict[str, Any]


class Cursor(Protocol):
    """What `execute` returns: the DB-API cursor subset table owners use."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Executor(ABC):
    """Statements on a connection: the database itself (autocommit) or a transaction."""

    @abstractmethod
    def execute(self, sql: str, params: Params = ()) -> Cursor:
        """Run one statement; rows (if any) are tuples via fetchone/fetchall."""

    @abstractmethod
    def executemany(self, sql: str, rows: Iterable[Params]) -> Cursor:
        """Run one statement for each parameter row."""

    @abstractmethod
    def query(self, sql: str, params: Params = ()) -> Iterator[dict[str, Any]]:
        """Rows of a SELECT as dicts keyed by column name (fetched before returning)."""

    @abstractmethod
    def insert(self, table: str, row: dict[str, Any], *, on_conflict: str | None = None) -> int:
        """Insert `row`; return the new row's integer id (0 when the table has none or the
        row was not inserted). `on_conflict`: None (raise), "ignore" (keep the existing
        row), or "replace" (the new row wins)."""

    def scalar(self, sql: str, params: Params = ()) -> Any:
        """The first column of the first row, or None."""
        row = self.execute(sql, params).fetchone()
        return None if row is None else row[0]


class Transaction(Executor):
    """Statements inside one transaction. Like a DB-API cursor it also answers for the last
    statement it ran (`rowcount`, `fetchone`, `fetchall`)."""

    @property
    @abstractmethod
    def rowcount(self) -> int:
        """Rows the last statement changed."""

    @abstractmethod
    def fetchone(self) -> Any:
        """The next row of the last statement, or None."""

    @abstractmethod
    def fetchall(self) -> list[Any]:
        """The remaining rows of the last statement."""


class Database(Executor):
    """One database: a file (SQLite) or a server; migrated to the current schema on open."""

    engine: str
    location: str  # a path or a URL without its password, for messages

    @abstractmethod
    def transaction(self) -> AbstractContextManager[Transaction]:
        """A write transaction that takes the write lock first (committed on exit, rolled
        back on any error), so reads inside it are current and writers queue."""

    @abstractmethod
    def change_marker(self) -> object:
        """A value that changes whenever any connection commits a write: pollers compare
        it to skip re-reading when nothing changed."""

    @abstractmethod
    def close(self) -> None:
        """Close every connection this object opened."""
