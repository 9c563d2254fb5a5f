"""A hook on every SQLite connection the server's store opens (its writer, its readers, a migration's)."""

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from server.storage import db as storage_db


def on_each_connection(monkeypatch: pytest.MonkeyPatch, hook: Callable[[sqlite3.Connection], None]) -> None:
    """Run ``hook`` (a trace, a cap on the file's size) on each connection ``server.storage.db`` opens until
    the test ends: after the store's own pragmas, before it is handed to the store."""
    real_open = storage_db._open  # the one place the store opens a connection

    def hooked(path: Path, lock_timeout: float) -> sqlite3.Connection:
        conn = real_open(path, lock_timeout)
        hook(conn)
        return conn

    monkeypatch.setattr(storage_db, "_open", hooked)
