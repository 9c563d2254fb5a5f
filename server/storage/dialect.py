"""SQL fragments that more than one storage module needs, per engine (`tx.dialect`)."""

from server.storage.unit import Dialect

# The larger of two values: SQLite's two-argument MAX is PostgreSQL's GREATEST (both over NOT NULL columns here).
GREATEST: dict[Dialect, str] = {"sqlite": "MAX", "postgresql": "GREATEST"}
