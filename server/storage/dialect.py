"""SQL fragments that more than one storage module needs, per engine (`tx.dialect`)."""

from server.storage.unit import Dialect

# The larger of two values: SQLite's two-argument MAX is PostgreSQL's GREATEST (both over NOT NULL columns here).
GREATEST: dict[Dialect, str] = {"sqlite": "MAX", "postgresql": "GREATEST"}

# Lock the rows read until the transaction ends. SQLite has no row locks: its write transaction
# (BEGIN IMMEDIATE) already holds the one write lock.
FOR_UPDATE: dict[Dialect, str] = {"sqlite": "", "postgresql": " FOR UPDATE"}
