"""The SQLite database: connections, transactions and migrations.

`Database` is SQLite's `Store` and `SqliteTx` its `Tx` (server/storage/unit.py): services and routes
see only those protocols, never `sqlite3`.
"""

import contextlib
import errno
import sqlite3
import threading
from collections.abc import Callable, Generator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

import sqlite_utils

from server.errors import DatabaseBusyError, DatabaseUnavailableError, DomainError, InsufficientStorageError
from server.storage.migrations import MIGRATIONS
from server.storage.pg.schema import PG_MIGRATIONS
from server.storage.unit import Dialect, Store, Tx

T = TypeVar("T")

# How long a writer waits for the write lock (this process's queue, then SQLite's busy handler)
# before the request is answered 503 database-busy: phones retry, a held request only ties up a worker.
DEFAULT_LOCK_TIMEOUT_S = 5.0
_BUSY = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})
# Errors of the file rather than of the statement: a connection that saw one is reopened, since a
# connection opened while the file was read-only stays read-only for good.
_UNAVAILABLE = frozenset({sqlite3.SQLITE_READONLY, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CANTOPEN})


def utcnow() -> str:
    """The current time as RFC 3339 in UTC, with microseconds so it sorts."""
    return rfc3339(datetime.now(UTC))


def rfc3339(moment: datetime) -> str:
    """An aware time as RFC 3339 in UTC, with microseconds, as ``utcnow`` writes it."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def storage_failure(exc: BaseException) -> DomainError | None:
    """The domain error for a failure of the database's state (busy, full, unwritable), or None.

    These say nothing about the request: the same request succeeds once the lock is free, the disk
    has room or the file is writable again, so they are answered 503/507, never "rejected".
    """
    if isinstance(exc, sqlite3.Error):
        code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF  # the primary result code of an extended one
        if code in _BUSY:
            return DatabaseBusyError("Another write held the database too long; nothing was written. Retry shortly.")
        if code == sqlite3.SQLITE_FULL:
            return InsufficientStorageError("The server's storage is full; nothing was written. Retry later.")
        if code in _UNAVAILABLE:
            return DatabaseUnavailableError("The database cannot be written just now; nothing was written.")
        if isinstance(exc, sqlite3.ProgrammingError) and "closed database" in str(exc):
            # A connection closed under a request because the file had failed (Database._reopen_all).
            return DatabaseUnavailableError("The database was being reopened; nothing was written. Retry shortly.")
        return None
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return InsufficientStorageError("The server's storage is full; nothing was written. Retry later.")
    return None


def _open(path: Path, lock_timeout: float) -> sqlite3.Connection:
    # isolation_level=None: we issue BEGIN IMMEDIATE ourselves, so a writer takes the lock up
    # front instead of failing to upgrade a read lock half-way through a transaction.
    conn = sqlite3.connect(path, timeout=lock_timeout, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    # FULL: an acknowledged write survives power loss, not only a process crash.
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute(f"PRAGMA busy_timeout={int(lock_timeout * 1000)}")
    return conn


def _in_transaction(conn: sqlite3.Connection) -> bool:
    try:
        return conn.in_transaction
    except sqlite3.ProgrammingError:  # closed
        return False


class SqliteTx:
    """SQLite's unit of work: this thread's connection, inside the transaction `Database` began.

    Its statements are the connection's own bound methods, so a statement costs what it costs on
    `sqlite3.Connection` itself: no call in between.
    """

    __slots__ = ("conn", "execute", "executemany", "feed_rows", "given_rows")
    dialect: Literal["sqlite"] = "sqlite"

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.execute = conn.execute
        self.executemany = conn.executemany
        # Feed rows written in this transaction, whose payloads are written just before it commits.
        self.feed_rows: list[tuple[str, str, str, str]] = []
        # Rows written with their values (changes.record_new_changes), by record: written again at
        # commit if the record changes after.
        self.given_rows: dict[tuple[str, str, str], list[tuple[str, str, str, str]]] = {}

    def finish(self) -> None:
        """Write the payloads of this transaction's feed rows from the records' final state (before COMMIT)."""
        self.given_rows.clear()
        if self.feed_rows:
            from server.storage.changes import write_payloads  # changes imports this module

            rows, self.feed_rows = self.feed_rows, []
            write_payloads(self, rows)

    @contextmanager
    def savepoint(self) -> Generator[None]:
        """A nested transaction: on an exception, undo what happened inside it (and re-raise)."""
        conn = self.conn
        conn.execute("SAVEPOINT nested")
        try:
            yield
        except BaseException:
            # After a disk-full or I/O error SQLite may have rolled back the whole transaction, and
            # with it the savepoint: then there is nothing to undo here, and the original error stands.
            if conn.in_transaction:
                conn.execute("ROLLBACK TO nested")
                conn.execute("RELEASE nested")
            raise
        conn.execute("RELEASE nested")


# The most pieces of work one group commit takes: past it, the rest wait for the next commit.
GROUP_MAX = 64


class _Work:
    """One caller's work in a group commit, and what became of it (set by the thread that ran it)."""

    __slots__ = ("done", "error", "result", "work")

    def __init__(self, work: Callable[[Tx], Any]) -> None:
        self.work = work
        self.result: Any = None
        self.error: BaseException | None = None
        self.done = False


class Database:
    """A SQLite file with one connection per thread: SQLite's `Store`.

    Litestar runs sync handlers in worker threads; a connection is never shared between two
    concurrent transactions, and several server processes may open the same file (WAL mode).
    """

    dialect: Literal["sqlite"] = "sqlite"

    def __init__(self, path: str | Path, lock_timeout: float = DEFAULT_LOCK_TIMEOUT_S) -> None:
        self.path = Path(path)
        self.lock_timeout = lock_timeout
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._writer = threading.RLock()
        # Work waiting for the next group commit (`write_grouped`), taken whole by the next writer.
        self._waiting: list[_Work] = []
        self._all: list[sqlite3.Connection] = []
        # Bumped when a connection finds the file unwritable: every thread's connection was perhaps
        # opened in the same bad moment (read-only for good), so each is reopened at its next use.
        self._generation = 0

    @property
    def conn(self) -> sqlite3.Connection:
        """This thread's connection, opened on first use (and again after the file failed).

        Storage's own: code outside server/storage/ asks for a unit of work (`read`, `write`)."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None and self._local.generation != self._generation and not _in_transaction(conn):
            self._discard(conn)
            conn = None
        if conn is None:
            generation = self._generation
            try:
                conn = _open(self.path, self.lock_timeout)
            except sqlite3.Error as exc:
                if (failure := storage_failure(exc)) is None:
                    raise
                raise failure from exc
            self._local.conn = conn
            self._local.generation = generation
            with self._lock:
                self._all.append(conn)
        return conn

    @property
    def utils(self) -> sqlite_utils.Database:
        """sqlite-utils over this thread's connection, for table introspection."""
        return sqlite_utils.Database(self.conn)

    @contextmanager
    def write(self) -> Generator[SqliteTx]:
        """A write transaction: all or nothing, committed (and fsynced) before it returns.

        Writers of this process queue on a lock: SQLite lets one writer in at a time anyway, and
        its busy handler would make the others sleep and poll, which stretches tail latency.
        Other processes are still kept apart by SQLite's own lock (BEGIN IMMEDIATE).
        """
        if not self._writer.acquire(timeout=self.lock_timeout):
            raise DatabaseBusyError("Other writes held the database too long; nothing was written. Retry shortly.")
        try:
            conn = self.conn  # after the wait: a failed write meanwhile may have had it reopened
            try:
                conn.execute("BEGIN IMMEDIATE")
                tx = SqliteTx(conn)
                yield tx
                tx.finish()
                conn.execute("COMMIT")
            except BaseException as exc:
                self._abandon(conn, exc)
                raise
        finally:
            self._writer.release()

    def write_grouped(self, work: Callable[[Tx], T]) -> T:
        """``work(tx)`` in a write transaction that the work of other threads waiting meanwhile may
        share (group commit): one COMMIT, so one fsync, for all of them; each in its own savepoint.

        SQLite has one writer and, with synchronous=FULL, an fsync per COMMIT: concurrent writers
        queue behind each other's fsync. Here a caller queues its work; whichever caller gets the
        write lock takes everything queued, runs each piece in a savepoint, commits once, and only
        then hands each caller its result. So a result is never seen before its COMMIT returned
        (a crash before that loses only work nobody was answered for), and every caller's work
        stays all or nothing: an exception from one piece (not a storage failure) undoes that piece
        alone and is raised to its caller only, while the others commit. A storage failure (busy,
        full, unwritable) or a failed COMMIT undoes the whole group, and every caller in it gets
        the domain error: nothing of theirs was written, and a retry reaches the same end.
        """
        mine = _Work(work)
        with self._lock:
            self._waiting.append(mine)
        if not self._writer.acquire(timeout=self.lock_timeout):
            with self._lock:
                queued = any(w is mine for w in self._waiting)
                if queued:
                    self._waiting.remove(mine)
            if queued:
                raise DatabaseBusyError("Other writes held the database too long; nothing was written. Retry shortly.")
            # Another thread took it into its group and is running it: its answer comes with that COMMIT.
            self._writer.acquire()
        try:
            while not mine.done:  # past GROUP_MAX waiting, this one may be in the next group
                self._commit_group()
        finally:
            self._writer.release()
        if mine.error is not None:
            raise mine.error
        return mine.result  # type: ignore[no-any-return]

    def _commit_group(self) -> None:
        """Run every queued piece of work in one transaction (the write lock held) and mark each done.

        Work queued while the group runs joins it (up to ``GROUP_MAX``): a caller answered by the
        last commit queues its next batch meanwhile, and waiting for the commit after this one
        would cost it a whole group's time anyway. A caller has one piece in a group at most, so
        a group ends once every waiting caller is in it.
        """
        group = taken = self._take(GROUP_MAX)
        try:
            conn = self.conn
            conn.execute("BEGIN IMMEDIATE")
            tx = SqliteTx(conn)
            try:
                while taken:
                    for piece in taken:
                        try:
                            with tx.savepoint():
                                piece.result = piece.work(tx)
                        except Exception as exc:
                            if storage_failure(exc) is not None or not conn.in_transaction:
                                raise  # the database's state, or a transaction SQLite already rolled back: all wait
                            piece.result, piece.error = None, exc
                    taken = self._take(GROUP_MAX - len(group))
                    group = group + taken
                tx.finish()
                conn.execute("COMMIT")
            except BaseException as exc:
                self._abandon(conn, exc)  # raises the domain error of a storage failure
                raise
        except BaseException as exc:
            for piece in group:
                piece.result, piece.error = None, exc
            if not isinstance(exc, Exception):
                raise  # an interrupt is the process's, not the work's
        finally:
            for piece in group:
                piece.done = True

    def _take(self, most: int) -> list[_Work]:
        """The oldest ``most`` pieces of work waiting, taken off the queue."""
        with self._lock:
            taken, self._waiting = self._waiting[:most], self._waiting[most:]
        return taken

    @contextmanager
    def trial(self) -> Generator[SqliteTx]:
        """A write transaction that is always rolled back: what a change would do, by the very code
        that does it, with nothing kept (queued with the writers, as a write)."""
        if not self._writer.acquire(timeout=self.lock_timeout):
            raise DatabaseBusyError("Other writes held the database too long; nothing was checked. Retry shortly.")
        try:
            conn = self.conn
            try:
                conn.execute("BEGIN IMMEDIATE")
                yield SqliteTx(conn)
                conn.execute("ROLLBACK")
            except BaseException as exc:
                self._abandon(conn, exc)
                raise
        finally:
            self._writer.release()

    @contextmanager
    def read(self) -> Generator[SqliteTx]:
        """A read transaction: one consistent snapshot for several queries."""
        conn = self.conn
        try:
            conn.execute("BEGIN")
            try:
                yield SqliteTx(conn)
            finally:
                conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._abandon(conn, exc)
            raise

    @contextmanager
    def statement(self) -> Generator[SqliteTx]:
        """One statement outside a transaction (SQLite runs it as its own, one snapshot): no BEGIN or COMMIT."""
        conn = self.conn
        try:
            yield SqliteTx(conn)
        except sqlite3.Error as exc:
            self._abandon(conn, exc)
            raise

    def _abandon(self, conn: sqlite3.Connection, exc: BaseException) -> None:
        """Undo a failed transaction; a storage failure is raised as its domain error instead.

        SQLite rolls the transaction back itself after some errors (disk full, I/O), so there may be
        nothing left to roll back. A connection that saw the file fail is closed: the next use of
        this thread opens a fresh one, so a database that was unwritable for a moment recovers
        without a restart.
        """
        if _in_transaction(conn):
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                self._discard(conn)  # it cannot even roll back: it must not be used again
        failure = storage_failure(exc)
        if failure is None:
            return
        if isinstance(failure, DatabaseUnavailableError):  # busy or full: the connection itself is fine
            self._discard(conn)
            self._reopen_all()
        raise failure from exc

    def _reopen_all(self) -> None:
        """Have every connection reopened: the one that failed may not be the only one opened in
        the bad moment, and while any connection of this process still holds the file's shared
        memory (-shm) as it was opened then (read-only), SQLite hands that same state to every new
        connection. Idle connections are closed now; one in a transaction is left to finish, and
        its thread reopens at its next use (the generation)."""
        with self._lock:
            self._generation += 1
            idle = [c for c in self._all if not _in_transaction(c)]
            self._all = [c for c in self._all if _in_transaction(c)]
        for conn in idle:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    def _discard(self, conn: sqlite3.Connection) -> None:
        with self._lock:
            if conn in self._all:
                self._all.remove(conn)
        if getattr(self._local, "conn", None) is conn:
            self._local.conn = None
        with contextlib.suppress(sqlite3.Error):
            conn.close()

    def check_writable(self) -> None:
        """Commit a one-row write, or raise the storage failure's domain error (503/507).

        A real committed write: SELECT 1 answers on a read-only file, and BEGIN IMMEDIATE alone
        succeeds on a read-only connection; only writing finds an unwritable file or a full disk.
        """
        with self.write() as tx:
            tx.execute(
                "INSERT INTO health_probe (id, at) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET at = excluded.at",
                (utcnow(),),
            )

    def ping(self) -> None:
        """Fail unless the database answers."""
        self.conn.execute("SELECT 1").fetchone()

    def migrate(self) -> list[int]:
        """Apply pending migrations; returns the versions applied now. Safe to race from several processes."""
        return migrate(self)

    def query(self, sql: str, params: Any = ()) -> list[sqlite3.Row]:
        """Run one read-only statement (a SQLite-only helper for storage and tests)."""
        return self.conn.execute(sql, params).fetchall()

    def close(self) -> None:
        """Close every connection this object opened."""
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()


def migrate(db: Database) -> list[int]:
    """Apply pending migrations; returns the versions applied now. Safe to race from several processes."""
    applied: list[int] = []
    if not _pending(db):
        return applied  # nothing to do: no write lock, so a server can start on a read-only file
    with db.write() as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
            " applied_at TEXT NOT NULL)"
        )
        done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
        for migration in MIGRATIONS:
            if migration.version in done:
                continue
            for statement in _statements(migration.sql):
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                (migration.version, migration.name, utcnow()),
            )
            applied.append(migration.version)
    return applied


def _pending(db: Database) -> bool:
    with db.read() as conn:
        if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'").fetchone():
            done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
        else:
            done = set()
    return any(m.version not in done for m in MIGRATIONS)


# Whether the table of applied migrations exists yet, in each engine's catalog.
_HAS_MIGRATIONS_TABLE: dict[Dialect, str] = {
    "sqlite": "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'",
    "postgresql": "SELECT 1 WHERE to_regclass('schema_migrations') IS NOT NULL",
}


def pending_migrations(db: Store) -> list[int]:
    """Versions of the engine's known migrations not applied to this database (a `Store` of either engine)."""
    known = [m.version for m in MIGRATIONS] if db.dialect == "sqlite" else [m.version for m in PG_MIGRATIONS]
    with db.read() as tx:
        done: set[int] = set()
        if tx.execute(_HAS_MIGRATIONS_TABLE[tx.dialect]).fetchone():
            done = {int(row[0]) for row in tx.execute("SELECT version FROM schema_migrations")}
    return [v for v in known if v not in done]


def migration_status(db: Database) -> list[dict[str, Any]]:
    """Every known migration, applied or pending."""
    applied: dict[int, str] = {}
    if db.utils["schema_migrations"].exists():
        applied = {row[0]: row[1] for row in db.query("SELECT version, applied_at FROM schema_migrations")}
    return [{"version": m.version, "name": m.name, "applied_at": applied.get(m.version)} for m in MIGRATIONS]


def _statements(sql: str) -> list[str]:
    # executescript() would COMMIT our transaction; split on the statement boundary instead.
    parts: list[str] = []
    current = ""
    for line in sql.splitlines():
        current += line + "\n"
        if sqlite3.complete_statement(current):
            parts.append(current.strip())
            current = ""
    return [p for p in parts if p]
