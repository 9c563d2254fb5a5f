"""Schema migrations of the database a location names, whichever its engine: for the command line.

A PostgreSQL server that cannot be reached or refuses the connection is `DatabaseUnavailableError`,
with libpq's own words, so the command line says why without seeing psycopg.
"""

from collections.abc import Generator
from contextlib import contextmanager
from typing import Any

from server.errors import DatabaseUnavailableError
from server.storage.db import Database, migrate, migration_status
from server.storage.location import Location, PostgresLocation


def migrate_location(location: Location) -> list[int]:
    """Apply pending migrations; returns the versions applied now."""
    if isinstance(location, PostgresLocation):
        from server.storage.pg.migrate import migrate as pg_migrate  # psycopg only when PostgreSQL is named

        with _postgres():
            return pg_migrate(location.url)
    database = Database(location.path)
    try:
        return migrate(database)
    finally:
        database.close()


def location_migrations(location: Location) -> list[dict[str, Any]]:
    """Every known migration of the engine, applied (when) or pending."""
    if isinstance(location, PostgresLocation):
        from server.storage.pg.migrate import migration_status as pg_migration_status

        with _postgres():
            return pg_migration_status(location.url)
    database = Database(location.path)
    try:
        return migration_status(database)
    finally:
        database.close()


@contextmanager
def _postgres() -> Generator[None]:
    import psycopg

    try:
        yield
    except psycopg.Error as exc:
        raise DatabaseUnavailableError(f"PostgreSQL: {exc}") from None
