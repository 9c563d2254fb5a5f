"""The change feed behind sync pulls, and the content version behind read caches."""

import sqlite3
from collections.abc import Iterable
from typing import Any

from server.storage.dialect import dialect_of

EVENT_WIDE = frozenset({"event", "site", "visit", "group", "question"})


def record_change(
    conn: sqlite3.Connection, event_id: str, entity: str, entity_id: str, audiences: Iterable[str]
) -> None:
    """Tell each audience that a record changed; replaces older rows for the same record and audience."""
    _write_feed_rows(conn, [(event_id, entity, entity_id, audience) for audience in audiences])
    if entity in EVENT_WIDE:
        conn.execute("UPDATE events SET content_version = content_version + 1 WHERE id = ?", (event_id,))


def record_changes(conn: sqlite3.Connection, rows: list[tuple[str, str, str, str]]) -> None:
    """Many (event_id, entity, entity_id, audience) changes of records that are not event-wide."""
    _write_feed_rows(conn, rows)


def _write_feed_rows(conn: Any, rows: list[tuple[str, str, str, str]]) -> None:
    if dialect_of(conn) == "postgresql":
        # Positions are taken from the event's feed clock at commit, in commit order (sync-protocol §5.2).
        conn.queue_feed_rows(rows)
        return
    # SQLite has one writer: AUTOINCREMENT gives positions in commit order. REPLACE deletes the old
    # row and inserts one at a new position (an upsert would keep the old one).
    conn.executemany("INSERT OR REPLACE INTO changes (event_id, entity, entity_id, audience) VALUES (?, ?, ?, ?)", rows)


def content_version(conn: sqlite3.Connection, event_id: str) -> int | None:
    """A number that grows whenever anything the read API serves for this event changes."""
    row = conn.execute("SELECT content_version FROM events WHERE id = ?", (event_id,)).fetchone()
    return None if row is None else int(row[0])
