"""Applying the PostgreSQL migrations: by one process at a time, however many start at once."""

from typing import Any

import psycopg

from server.storage.pg.schema import PG_MIGRATIONS

# One migrator per schema at a time: a session-level advisory lock keyed by the schema's name, held
# for the whole run, so servers starting together wait for the first, then find nothing left to do.
_KEY = "hashtextextended('studyvisit.migrate.' || current_schema(), 0)"
_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_migrations"
    " (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL)"
)


def connect(url: str, **kwargs: Any) -> psycopg.Connection[Any]:
    """A connection to the database of `url` (libpq URI; `?options=-csearch_path%3D…` picks a schema)."""
    return psycopg.connect(url, **kwargs)


def migrate(url: str) -> list[int]:
    """Apply pending migrations, each in one transaction with its record; returns the versions applied now."""
    applied: list[int] = []
    with connect(url, autocommit=True) as conn:
        conn.execute(f"SELECT pg_advisory_lock({_KEY})")  # released when the connection closes
        conn.execute(_TABLE)
        for migration in PG_MIGRATIONS:
            with conn.transaction():
                if conn.execute("SELECT 1 FROM schema_migrations WHERE version = %s", (migration.version,)).fetchone():
                    continue
                conn.execute(migration.sql)
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (%s, %s, now())",
                    (migration.version, migration.name),
                )
                applied.append(migration.version)
    return applied


def migration_status(url: str) -> list[dict[str, Any]]:
    """Every known migration, with when it was applied (None: pending)."""
    with connect(url, autocommit=True) as conn:
        exists = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
        applied: dict[int, str] = {}
        if exists and exists[0]:
            rows = conn.execute("SELECT version, applied_at FROM schema_migrations").fetchall()
            applied = {version: at.isoformat() for version, at in rows}
    return [{"version": m.version, "name": m.name, "applied_at": applied.get(m.version)} for m in PG_MIGRATIONS]
