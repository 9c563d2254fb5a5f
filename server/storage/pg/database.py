"""The PostgreSQL `Store`: pooled psycopg connections, each unit of work one transaction.

Storage functions run the same statements on both engines, so what a connection reads back is
what SQLite gives: JSON as text (storage decodes it), instants as RFC 3339 UTC text the way
`utcnow()` writes them, dates as ISO text, rows that answer to an index and a column name.
Statements use `?` placeholders, translated once per statement text to psycopg's `%s`.

Change-feed rows are not written where storage records them: a writing transaction queues them and
takes their positions from its event's feed clock as its last statements, just before it commits,
so that positions are given in commit order (docs/sync-protocol.md §5.2).
"""

import contextlib
from collections.abc import Callable, Generator, Iterable, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, ClassVar, Literal, LiteralString, TypeVar, cast

import psycopg
from psycopg import errors
from psycopg.abc import Buffer
from psycopg.adapt import AdaptersMap, Loader
from psycopg.pq import TransactionStatus
from psycopg.rows import RowMaker
from psycopg_pool import ConnectionPool, PoolTimeout

from server.errors import (
    BadRequestError,
    DatabaseBusyError,
    DatabaseUnavailableError,
    DomainError,
    InsufficientStorageError,
)
from server.faults import TEST_NAIVE_FEED, commit_delay_for_tests
from server.storage.db import DEFAULT_LOCK_TIMEOUT_S, rfc3339, utcnow
from server.storage.feed_payloads import FeedValues, feed_values
from server.storage.unit import Tx

T = TypeVar("T")

# Reads see one snapshot for all their statements, as a SQLite read transaction does; a read-only
# REPEATABLE READ transaction never fails to serialise. Writes are READ COMMITTED: what they must
# not race on they lock (the feed clock, a device's ledger row), and they are never refused for a
# concurrent update the way REPEATABLE READ would refuse them.
_BEGIN_READ = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
_BEGIN_WRITE = "BEGIN ISOLATION LEVEL READ COMMITTED"

# Waiting for the lock on a row or the feed clock: past the lock timeout a request is answered 503
# database-busy (phones retry), as on SQLite.
_BUSY = (errors.LockNotAvailable, errors.SerializationFailure, errors.DeadlockDetected, errors.QueryCanceled)
# The server went away, is restarting, or is a read-only standby: nothing was written.
_UNAVAILABLE = (errors.AdminShutdown, errors.CrashShutdown, errors.CannotConnectNow, errors.ReadOnlySqlTransaction)

FeedRow = tuple[str, str, str, str]  # event_id, entity, entity_id, audience


def pg_storage_failure(exc: BaseException) -> DomainError | None:
    """The domain error for a failure of PostgreSQL's state (busy, full, gone), or None.

    The counterpart of `server.storage.db.storage_failure`: these say nothing about the request.
    """
    if isinstance(exc, _BUSY):
        return DatabaseBusyError("Another write held the database too long; nothing was written. Retry shortly.")
    if isinstance(exc, errors.DiskFull):
        return InsufficientStorageError("The server's storage is full; nothing was written. Retry later.")
    if isinstance(exc, PoolTimeout):
        return DatabaseUnavailableError("No database connection could be had in time; nothing was written.")
    if isinstance(exc, _UNAVAILABLE) or (isinstance(exc, psycopg.OperationalError) and exc.sqlstate is None):
        # No SQLSTATE: libpq's own failure (the connection was lost or refused), not a statement's.
        return DatabaseUnavailableError("The database cannot be reached just now; nothing was written.")
    if isinstance(exc, psycopg.Error) and (exc.sqlstate or "").startswith("08"):  # connection exception
        return DatabaseUnavailableError("The database cannot be reached just now; nothing was written.")
    return None


# --- placeholders -------------------------------------------------------------------------

_TRANSLATED: dict[str, LiteralString] = {}


def translate(sql: str) -> LiteralString:
    """`?` placeholders as psycopg's `%s`, a literal `%` as `%%`; quoted text and comments are left as they are.

    Storage builds its statements from its own text (table and column names, one `?` per value),
    never from input, which is what psycopg's LiteralString asks.
    """
    done = _TRANSLATED.get(sql)
    if done is None:
        done = _TRANSLATED[sql] = cast(LiteralString, _translate(sql))
    return done


def _translate(sql: str) -> str:
    out: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        if c in "'\"":  # a string or a quoted name: a doubled quote inside is still inside
            end = sql.find(c, i + 1)
            while end != -1 and end + 1 < n and sql[end + 1] == c:
                end = sql.find(c, end + 2)
            end = n if end == -1 else end + 1
            out.append(sql[i:end].replace("%", "%%"))
            i = end
        elif c == "-" and sql.startswith("--", i):
            end = sql.find("\n", i)
            end = n if end == -1 else end
            out.append(sql[i:end].replace("%", "%%"))
            i = end
        elif c == "?":
            out.append("%s")
            i += 1
        elif c == "%":
            out.append("%%")
            i += 1
        else:
            j = i + 1
            while j < n and sql[j] not in "'\"-?%":
                j += 1
            out.append(sql[i:j])
            i = j
    return "".join(out)


# --- rows and values ----------------------------------------------------------------------


class PgRow(tuple[Any, ...]):
    """A row that answers `row[0]` and `row["name"]`, and `keys()`, like `sqlite3.Row`."""

    __slots__ = ()
    _index: ClassVar[dict[str, int]] = {}
    _names: ClassVar[list[str]] = []

    def __getitem__(self, key: Any) -> Any:  # pyright: ignore[reportIncompatibleMethodOverride]
        if isinstance(key, str):
            return tuple.__getitem__(self, self._index[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        """The column names, in order."""
        return list(self._names)


_ROW_TYPES: dict[tuple[bytes | None, ...], type[PgRow]] = {}


def pg_row(cursor: psycopg.Cursor[Any] | psycopg.AsyncCursor[Any]) -> RowMaker[PgRow]:
    """psycopg's row factory (of blocking and asynchronous cursors): one row class per result shape, made once and kept.

    The shape is looked up by the result's raw column names: `cursor.description` would build a
    `Column` object per column for every statement, which cost more than a one-row statement's loading.
    """
    result = cursor.pgresult
    raw = tuple(result.fname(i) for i in range(result.nfields)) if result is not None else ()
    row_type = _ROW_TYPES.get(raw)
    if row_type is None:
        names = [name.decode() if name is not None else "" for name in raw]  # libpq's names are the client's UTF-8
        index = {name: i for i, name in reversed(list(enumerate(names)))}  # the first of a repeated name
        row_type = _ROW_TYPES[raw] = type("PgRow", (PgRow,), {"__slots__": (), "_index": index, "_names": names})
    return row_type


class _TextLoader(Loader):
    """A value as the text PostgreSQL sends (jsonb: storage decodes JSON itself; date: ISO with DateStyle ISO)."""

    def load(self, data: Buffer) -> str:
        return bytes(data).decode()


class _InstantLoader(Loader):
    """A timestamptz as `utcnow()` writes it: `2025-12-01T09:00:00.123456Z`.

    The session's TimeZone is UTC (`_configure`), so PostgreSQL sends `2025-12-01 09:00:00.1234+00`
    (trailing zeros of the fraction dropped); anything else goes the slow way through datetime.
    """

    def load(self, data: Buffer) -> str:
        text = bytes(data).decode()
        if len(text) >= 22 and text.endswith("+00") and text[10] == " ":
            return f"{text[:10]}T{text[11:19]}{(text[19:-3] or '.').ljust(7, '0')}Z"
        return rfc3339(datetime.fromisoformat(text))


ADAPTERS = AdaptersMap(psycopg.adapters)
for _name in ("json", "jsonb", "date"):
    ADAPTERS.register_loader(_name, _TextLoader)
ADAPTERS.register_loader("timestamptz", _InstantLoader)


class _Adapted:
    """What psycopg's `context` argument asks of an object: the adapters its connections copy."""

    adapters = ADAPTERS
    connection = None


# --- units of work ------------------------------------------------------------------------


class PgTx:
    """A unit of work on one pooled connection, inside the transaction its `PgDatabase` opened."""

    dialect: Literal["postgresql"] = "postgresql"

    def __init__(self, conn: psycopg.Connection[PgRow]) -> None:
        self.conn = conn
        self._feed: list[FeedRow] = []
        # What rows of records created in this transaction keep, given by their writer: record -> audience -> values.
        self._known: dict[tuple[str, str, str], dict[str, FeedValues]] = {}
        self._depth = 0

    def execute(self, sql: str, params: Sequence[Any] = (), /) -> psycopg.Cursor[PgRow]:
        """Run one statement (`?` placeholders)."""
        try:
            return self.conn.execute(translate(sql), params)
        except psycopg.DataError as exc:
            # PostgreSQL's text cannot hold NUL (SQLite's can, and finds no such id): psycopg refuses
            # the value before sending it, so it is the request's value, not a failure of the server.
            if exc.sqlstate is None and any(isinstance(p, str) and "\x00" in p for p in params):
                raise BadRequestError("A value holds a NUL character, which no text may hold.") from exc
            raise

    def executemany(self, sql: str, params: Iterable[Sequence[Any]], /) -> psycopg.Cursor[PgRow]:
        """Run one statement for each parameter row, pipelined; its rowcount is their sum."""
        cur = self.conn.cursor()
        cur.executemany(translate(sql), params)
        return cur

    @contextmanager
    def savepoint(self) -> Generator[None]:
        """A nested transaction: on an exception inside it, undo what it did (feed rows too) and re-raise."""
        self._depth += 1
        name = cast(LiteralString, f"nested_{self._depth}")
        queued = len(self._feed)
        self.conn.execute(f"SAVEPOINT {name}")
        try:
            yield
        except BaseException:
            if self.conn.info.transaction_status in (TransactionStatus.INTRANS, TransactionStatus.INERROR):
                self.conn.execute(f"ROLLBACK TO SAVEPOINT {name}")
                self.conn.execute(f"RELEASE SAVEPOINT {name}")
            del self._feed[queued:]
            raise
        else:
            self.conn.execute(f"RELEASE SAVEPOINT {name}")
        finally:
            self._depth -= 1

    def queue_feed_rows(self, rows: Iterable[FeedRow], values: Sequence[FeedValues] | None = None) -> None:
        """Feed rows to write, with their positions, just before the transaction commits.

        ``values``: what each row keeps, from the state its writer just gave a record it created
        (see ``record_new_changes``); without them, a row's values come from the record's state at commit,
        and any values given before for the same record are dropped (a later change makes them stale).
        """
        rows = list(rows)
        if values is None:
            for row in rows:
                self._known.pop(row[:3], None)
        else:
            for row, kept in zip(rows, values, strict=True):
                self._known.setdefault(row[:3], {})[row[3]] = kept
        if TEST_NAIVE_FEED:
            # Test-only (server/faults.py): the design that skips, numbered now from a sequence.
            self.executemany(
                "INSERT INTO changes (event_id, seq, entity, entity_id, audience)"
                " VALUES (?, nextval('test_naive_feed'), ?, ?, ?)"
                " ON CONFLICT (event_id, entity, entity_id, audience) DO UPDATE SET seq = excluded.seq",
                list(rows),
            )
            return
        self._feed.extend(rows)

    def write_feed(self) -> None:
        """Take each event's positions from its clock, in event-id order (no deadlock), and write the rows.

        A record changed twice in one transaction keeps one row, as the upsert on SQLite's side
        would leave it; its position is among the last of this transaction's.
        """
        if not self._feed:
            self._known.clear()
            return
        by_event: dict[str, dict[FeedRow, None]] = {}
        for row in self._feed:
            rows = by_event.setdefault(row[0], {})
            rows.pop(row, None)
            rows[row] = None
        self._feed.clear()
        known, self._known = self._known, {}
        # Payloads and shares first, from the records' final state (locked FOR SHARE until commit): the clock,
        # taken next, is then held only for the statements that need it. Records this transaction created
        # and did not change since come with their values (no other transaction sees them before commit).
        values: dict[str, list[FeedValues]] = {}
        for event_id, rows in sorted(by_event.items()):
            given = [known.get(row[:3], {}).get(row[3]) for row in rows]
            unknown = [row for row, kept in zip(rows, given, strict=True) if kept is None]
            read = iter(feed_values(self, unknown) if unknown else [])
            values[event_id] = [next(read) if kept is None else kept for kept in given]
        for event_id in sorted(by_event):
            rows = list(by_event[event_id])
            top = self.execute(
                "INSERT INTO feed_clocks (event_id, seq) VALUES (?, ?)"
                " ON CONFLICT (event_id) DO UPDATE SET seq = feed_clocks.seq + excluded.seq RETURNING seq",
                (event_id, len(rows)),
            ).fetchone()
            first = int(top[0]) - len(rows) + 1  # type: ignore[index]  # RETURNING always gives the row
            self.executemany(
                "INSERT INTO changes (event_id, seq, entity, entity_id, audience, payload, counts, share_hi, share_lo)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (event_id, entity, entity_id, audience)"
                " DO UPDATE SET seq = excluded.seq, payload = excluded.payload, counts = excluded.counts,"
                " share_hi = excluded.share_hi, share_lo = excluded.share_lo",
                [
                    (e, first + i, entity, entity_id, audience, *kept)
                    for i, ((e, entity, entity_id, audience), kept) in enumerate(
                        zip(rows, values[event_id], strict=True)
                    )
                ],
            )


class PgDatabase:
    """A PostgreSQL database behind a connection pool; each unit of work is one connection's transaction."""

    dialect: Literal["postgresql"] = "postgresql"

    def __init__(
        self,
        url: str,
        *,
        min_size: int = 1,
        max_size: int = 8,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT_S,
        connect_timeout: float = 10.0,
    ) -> None:
        self.url = url
        self.lock_timeout = lock_timeout
        self._sizes = (min_size, max_size)
        self.connect_timeout = connect_timeout
        self.pool = self._open_pool()

    def _configure(self, conn: psycopg.Connection[Any]) -> None:
        # What the loaders read (instants in UTC, ISO dates), and how long a lock is waited for.
        conn.execute("SET TIME ZONE 'UTC'")
        conn.execute("SET DateStyle TO ISO")
        conn.execute("SELECT set_config('lock_timeout', %s, false)", (f"{int(self.lock_timeout * 1000)}ms",))

    def _open_pool(self) -> ConnectionPool[psycopg.Connection[PgRow]]:
        pool: ConnectionPool[psycopg.Connection[PgRow]] = ConnectionPool(
            self.url,
            min_size=self._sizes[0],
            max_size=self._sizes[1],
            timeout=self.connect_timeout,
            kwargs={"autocommit": True, "row_factory": pg_row, "context": _Adapted()},
            configure=self._configure,
            open=False,
        )
        try:
            pool.open(wait=True, timeout=self.connect_timeout)
        except PoolTimeout as exc:
            pool.close()
            raise DatabaseUnavailableError(f"PostgreSQL did not answer within {self.connect_timeout} s.") from exc
        if TEST_NAIVE_FEED:
            # Test-only (server/faults.py): the naive feed's sequence, starting above any position the
            # feed clock gave before (the fixture's), so that the two never collide.
            with pool.connection() as conn:
                conn.execute("CREATE SEQUENCE IF NOT EXISTS test_naive_feed START 1000000000")
        return pool

    @contextmanager
    def _unit(self, begin: LiteralString, *, keep: bool) -> Generator[PgTx]:
        try:
            with self.pool.connection() as conn:
                tx = PgTx(conn)
                conn.execute(begin)
                try:
                    yield tx
                    if begin is not _BEGIN_READ:
                        tx.write_feed()
                        commit_delay_for_tests()  # off unless a test sets it (server/faults.py)
                    conn.execute("COMMIT" if keep else "ROLLBACK")
                except BaseException:
                    if not conn.broken and conn.info.transaction_status != TransactionStatus.IDLE:
                        with contextlib.suppress(psycopg.Error):
                            conn.execute("ROLLBACK")
                    raise
        except (psycopg.Error, PoolTimeout) as exc:
            failure = pg_storage_failure(exc)
            if failure is None:
                raise
            if isinstance(failure, DatabaseUnavailableError):
                # Connections opened before the server went away are dead too: test them all now,
                # so that the next requests get fresh ones instead of failing one by one.
                with contextlib.suppress(Exception):
                    self.pool.check()
            raise failure from exc

    @contextmanager
    def statement(self) -> Generator[PgTx]:
        """One statement on an autocommit connection (its own snapshot): no BEGIN or COMMIT round trips."""
        try:
            with self.pool.connection() as conn:
                yield PgTx(conn)
        except (psycopg.Error, PoolTimeout) as exc:
            failure = pg_storage_failure(exc)
            if failure is None:
                raise
            if isinstance(failure, DatabaseUnavailableError):
                with contextlib.suppress(Exception):
                    self.pool.check()
            raise failure from exc

    def read(self) -> contextlib.AbstractContextManager[PgTx]:
        """One consistent snapshot for several queries (REPEATABLE READ, read only)."""
        return self._unit(_BEGIN_READ, keep=True)

    def write(self) -> contextlib.AbstractContextManager[PgTx]:
        """All or nothing, committed before the block's exit returns (durable with synchronous_commit on)."""
        return self._unit(_BEGIN_WRITE, keep=True)

    def write_grouped(self, work: Callable[[Tx], T], /) -> T:
        """``work`` in a write transaction of its own. No queue here, unlike SQLite's: PostgreSQL runs
        many writing transactions at once and its WAL writer flushes the commits that arrive
        together with one fsync (its own group commit), so one caller's commit never waits for
        another's flush to finish first."""
        with self.write() as tx:
            return work(tx)

    def trial(self) -> contextlib.AbstractContextManager[PgTx]:
        """A write transaction that is always rolled back: what a change would do, nothing kept."""
        return self._unit(_BEGIN_WRITE, keep=False)

    def ping(self) -> None:
        """Fail unless the database answers."""
        with self.read() as tx:
            tx.execute("SELECT 1").fetchone()

    def check_writable(self) -> None:
        """Commit a one-row write, or raise the storage failure's domain error (503/507)."""
        with self.write() as tx:
            tx.execute(
                "INSERT INTO health_probe (id, at) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET at = excluded.at",
                (utcnow(),),
            )

    def migrate(self) -> list[int]:
        """Apply pending migrations, one process at a time (an advisory lock); the versions applied now."""
        from server.storage.pg.migrate import migrate

        if self.pool.closed:
            # An app's start-up after its shutdown (a lifespan run again, as test clients and
            # schemathesis do): psycopg cannot reopen a closed pool, so a new one is opened, as
            # SQLite's Database reopens its connections.
            self.pool = self._open_pool()
        return migrate(self.url)

    def close(self) -> None:
        """Close every pooled connection."""
        self.pool.close()
