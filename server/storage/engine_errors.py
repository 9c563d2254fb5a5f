"""An engine's exceptions told apart on either engine, without importing the one not in use.

psycopg's classes are looked at only once something imported psycopg, so a SQLite server never
loads it.
"""

import sqlite3
import sys

from server.errors import DomainError
from server.storage.db import storage_failure as sqlite_storage_failure


def is_integrity_error(exc: BaseException) -> bool:
    """Whether a statement broke a rule of the schema (a unique key, a foreign key, a check).

    DB-API 2.0 names the class IntegrityError on both engines.
    """
    if isinstance(exc, sqlite3.IntegrityError):
        return True
    psycopg = sys.modules.get("psycopg")
    return psycopg is not None and isinstance(exc, psycopg.IntegrityError)


def storage_failure(exc: BaseException) -> DomainError | None:
    """The domain error for a failure of either database's state (busy, full, gone), or None.

    Such a failure says nothing about the request: it is answered 503/507, never "rejected".
    """
    if (failure := sqlite_storage_failure(exc)) is not None:
        return failure
    if "psycopg" in sys.modules:
        from server.storage.pg.database import pg_storage_failure

        return pg_storage_failure(exc)
    return None
