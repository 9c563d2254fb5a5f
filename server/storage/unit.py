"""The backend-neutral unit of work that storage functions take: one connection inside a transaction.

Services and routes hold a `Store` and ask it for a `Tx` (`with store.read() as tx`, `with
store.write() as tx`); they never see `sqlite3` or `psycopg`. Storage functions take the `Tx` and
run their statements on it. Both backends satisfy these protocols structurally: SQLite's through a
thin wrapper over `sqlite3.Connection` (server/storage/db.py), PostgreSQL's over a pooled psycopg
connection (server/storage/pg/). Rows answer to both an index and a column name, as `sqlite3.Row`
does, so a storage function reads a row the same way on either engine.

Statements use `?` placeholders; the PostgreSQL unit translates them. Where the engines' SQL
differs, the statement asks `tx.dialect`.
"""

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, Literal, Protocol, TypeVar

Dialect = Literal["sqlite", "postgresql"]
T = TypeVar("T")


class Row(Protocol):
    """One result row: `row[0]` and `row["name"]` both work."""

    def __getitem__(self, key: int | str, /) -> Any: ...

    def keys(self) -> list[str]: ...


class Cursor(Protocol):
    """The result of one statement."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Tx(Protocol):
    """A unit of work: statements on one connection, in one transaction the `Store` opened."""

    @property
    def dialect(self) -> Dialect: ...

    def execute(self, sql: str, params: Sequence[Any] = (), /) -> Cursor: ...

    def executemany(self, sql: str, params: Iterable[Sequence[Any]], /) -> Cursor: ...

    def savepoint(self) -> AbstractContextManager[None]:
        """A nested transaction: on an exception inside it, undo what it did and re-raise."""
        ...


class Store(Protocol):
    """A database: it hands out units of work and maps its engine's failures to domain errors
    (`DatabaseBusyError`, `InsufficientStorageError`, `DatabaseUnavailableError`)."""

    @property
    def dialect(self) -> Dialect: ...

    def read(self) -> AbstractContextManager[Tx]:
        """One consistent snapshot for several queries."""
        ...

    def statement(self) -> AbstractContextManager[Tx]:
        """A unit for exactly one statement, which is its own snapshot: cheaper than `read` (no BEGIN, no COMMIT)."""
        ...

    def write(self) -> AbstractContextManager[Tx]:
        """All or nothing, durable (committed and fsynced) before the block's exit returns."""
        ...

    def write_grouped(self, work: Callable[[Tx], T], /) -> T:
        """``work(tx)`` all or nothing and durable before it returns, as in `write`, in a transaction that
        other callers' concurrent work may share (one commit for all: group commit); ``work``'s
        result, or its exception, which undoes its own writes only."""
        ...

    def trial(self) -> AbstractContextManager[Tx]:
        """A write transaction that is always rolled back: what a change would do, nothing kept."""
        ...

    def ping(self) -> None:
        """Fail unless the database answers."""
        ...

    def check_writable(self) -> None:
        """Commit a one-row write, or raise the storage failure's domain error."""
        ...

    def migrate(self) -> list[int]:
        """Apply pending schema migrations (one process at a time); the versions applied now."""
        ...

    def close(self) -> None: ...
