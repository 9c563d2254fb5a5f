"""Opening the store a location names, whichever its engine."""

from server.storage.accounts import StatementTokenChecks, TokenChecks
from server.storage.blob_store import BlobStore
from server.storage.db import DEFAULT_LOCK_TIMEOUT_S, Database
from server.storage.location import Location, PostgresLocation
from server.storage.unit import Store


def open_store(location: Location, *, lock_timeout: float = DEFAULT_LOCK_TIMEOUT_S) -> Store:
    """A SQLite file (created when missing) or a PostgreSQL pool; psycopg is imported only for the latter."""
    if isinstance(location, PostgresLocation):
        from server.storage.pg.database import PgDatabase

        return PgDatabase(location.url, lock_timeout=lock_timeout)
    return Database(location.path, lock_timeout=lock_timeout)


def open_blob_store(db: Store) -> BlobStore:
    """Blobs kept in this PostgreSQL database itself (the data directory needs no store: it is ``BlobFiles``)."""
    from server.storage.pg.blobs import PgBlobStore
    from server.storage.pg.database import PgDatabase

    if not isinstance(db, PgDatabase):
        raise ValueError("blobs are kept in the database only on PostgreSQL")
    return PgBlobStore(db)


def open_token_checks(db: Store) -> TokenChecks:
    """How requests check their tokens: on PostgreSQL batched on an asynchronous connection of the event
    loop (server/storage/pg/token_checks.py), on SQLite one in-process statement each."""
    if db.dialect == "postgresql":  # psycopg is imported only then
        from server.storage.pg.database import PgDatabase
        from server.storage.pg.token_checks import PgTokenChecks

        if isinstance(db, PgDatabase):
            return PgTokenChecks(db.url, connect_timeout=db.connect_timeout)
    return StatementTokenChecks(db)
