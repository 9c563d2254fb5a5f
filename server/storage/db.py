"""The SQLite database: connections, transactions and migrations.

This package is the only code that touches SQL. A PostgreSQL backend replaces it whole.
"""

import sqlite3
import threading
from collections.abc import Generator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlite_utils

from server.storage.migrations import MIGRATIONS


def utcnow() -> str:
    """The current time as RFC 3339 in UTC, with microseconds so it sorts."""
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _open(path: Path) -> sqlite3.Connection:
    # isolation_level=None: we issue BEGIN IMMEDIATE ourselves, so a writer takes the lock up
    # front instead of failing to upgrade a read lock half-way through a transaction.
    conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    # FULL: an acknowledged write survives power loss, not only a process crash.
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


class Database:
    """A SQLite file with one connection per thread.

    Litestar runs sync handlers in worker threads; a connection is never shared between two
    concurrent transactions, and several server processes may open the same file (WAL mode).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._writer = threading.RLock()
        self._all: list[sqlite3.Connection] = []

    @property
    def conn(self) -> sqlite3.Connection:
        """This thread's connection, opened on first use."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = _open(self.path)
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    @property
    def utils(self) -> sqlite_utils.Database:
        """sqlite-utils over this thread's connection, for table introspection."""
        return sqlite_utils.Database(self.conn)

    @contextmanager
    def write(self) -> Generator[sqlite3.Connection]:
        """A write transaction: all or nothing, committed (and fsynced) before it returns.

        Writers of this process queue on a lock: SQLite lets one writer in at a time anyway, and
        its busy handler would make the others sleep and poll, which stretches tail latency.
        Other processes are still kept apart by SQLite's own lock (BEGIN IMMEDIATE).
        """
        conn = self.conn
        with self._writer:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    @contextmanager
    def read(self) -> Generator[sqlite3.Connection]:
        """A read transaction: one consistent snapshot for several queries."""
        conn = self.conn
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            conn.execute("COMMIT")

    def ping(self) -> None:
        """Fail unless the database answers."""
        self.conn.execute("SELECT 1").fetchone()

    def query(self, sql: str, params: Any = ()) -> list[sqlite3.Row]:
        """Run one read-only statement."""
        return self.conn.execute(sql, params).fetchall()

    def close(self) -> None:
        """Close every connection this object opened."""
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()


@contextmanager
def savepoint(conn: sqlite3.Connection) -> Generator[None]:
    """A nested transaction: on an exception, undo what happened inside it (and re-raise)."""
    conn.execute("SAVEPOINT nested")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK TO nested")
        raise
    finally:
        conn.execute("RELEASE nested")


def migrate(db: Database) -> list[int]:
    """Apply pending migrations; returns the versions applied now. Safe to race from several processes."""
    applied: list[int] = []
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
