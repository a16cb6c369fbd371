"""The database interface table owners use, whatever the engine behind it.

Table owners (the ledger, the queue, the cache store, ...) write portable SQL with `?`
placeholders and read rows as dicts. What differs between engines - connections,
placeholders, inserting with a new id, upserts, locking, change detection - lives behind
this interface, so no package outside `store/` knows which engine it runs on (SQLite or
PostgreSQL).

Portable SQL here means: `?` placeholders, no `INSERT OR ...` (use `insert`), no `rowid`,
no sums of booleans (`SUM(CASE WHEN ... THEN 1 ELSE 0 END)` or `COUNT(column)`), no
two-argument MIN/MAX, `LOWER(x) LIKE LOWER(?)` for case-insensitive matching.

A Database is safe to share between threads: each thread gets its own connection.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
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

    @abstractmethod
    def insert_many(
        self, table: str, rows: Sequence[dict[str, Any]], *, on_conflict: str | None = None
    ) -> int:
        """Insert rows that all have the same columns; `on_conflict` as for `insert`.
        Returns how many rows were written."""

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

    @abstractmethod
    def lock(self, name: str) -> None:
        """Hold the lock `name` until this transaction ends: transactions taking the same
        name run one after the other. (SQLite's write lock already orders every write
        transaction; a server engine orders only those that ask.)"""

    @abstractmethod
    def select_for_update(
        self, sql: str, params: Params = (), *, skip_locked: bool = False
    ) -> list[dict[str, Any]]:
        """Rows of a SELECT, locked against other writers until this transaction ends.
        With `skip_locked`, rows another transaction holds are left out instead of waited
        for (claiming work: two claimers never take, or wait for, the same row)."""


class Database(Executor):
    """One database: a file (SQLite) or a server; migrated to the current schema on open."""

    engine: str  # "sqlite" | "postgresql"
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

    @abstractmethod
    def schema(self) -> SchemaState:
        """The schema version stored in the database and what this tars-opt knows."""

    @abstractmethod
    def migrate(self) -> tuple[int, int]:
        """Apply the migrations not yet applied; (version before, version after)."""

    @abstractmethod
    def server_time(self) -> float:
        """The database's clock in epoch seconds (the local clock for a file)."""


@dataclass(frozen=True)
class SchemaState:
    """Where a database's schema stands against this tars-opt's migrations."""

    version: int  # migrations applied to the database
    compatible_from: int  # the oldest schema version whose code may use it
    known: int  # migrations this tars-opt has

    @property
    def pending(self) -> int:
        return max(0, self.known - self.version)

    @property
    def newer(self) -> bool:
        """Written by a newer tars-opt (still usable when `compatible_from` <= `known`)."""
        return self.version > self.known
