"""A statement that broke a rule of the schema, told apart on either engine without importing it."""

import sqlite3
import sys


def is_integrity_error(exc: BaseException) -> bool:
    """Whether a statement broke a rule of the schema (a unique key, a foreign key, a check).

    DB-API 2.0 names the class IntegrityError on both engines; psycopg's is looked at only once
    something imported psycopg, so a SQLite server never loads it.
    """
    if isinstance(exc, sqlite3.IntegrityError):
        return True
    psycopg = sys.modules.get("psycopg")
    return psycopg is not None and isinstance(exc, psycopg.IntegrityError)
