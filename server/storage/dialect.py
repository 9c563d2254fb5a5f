"""Which engine a unit of work runs on, for the few statements whose SQL differs between them.

Transitional: until every storage function takes a `Tx` (which says `tx.dialect`), the SQLite side
still hands storage a bare `sqlite3.Connection`, which says nothing; that is SQLite.
"""

from typing import Any

from server.storage.unit import Dialect

# The larger of two values: SQLite's two-argument MAX is PostgreSQL's GREATEST (both over NOT NULL columns here).
GREATEST: dict[Dialect, str] = {"sqlite": "MAX", "postgresql": "GREATEST"}


def dialect_of(conn: Any) -> Dialect:
    """The engine of a unit of work (a bare sqlite3 connection is SQLite)."""
    return getattr(conn, "dialect", "sqlite")
