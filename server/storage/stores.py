"""Opening the store a location names, whichever its engine."""

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
