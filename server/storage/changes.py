"""The change feed behind sync pulls, and the content version behind read caches."""

from collections.abc import Iterable

from server.errors import EventNotFoundError
from server.storage.unit import Tx

EVENT_WIDE = frozenset({"event", "site", "visit", "group", "question"})


def record_change(conn: Tx, event_id: str, entity: str, entity_id: str, audiences: Iterable[str]) -> None:
    """Tell each audience that a record changed; replaces older rows for the same record and audience."""
    conn.executemany(
        "INSERT OR REPLACE INTO changes (event_id, entity, entity_id, audience) VALUES (?, ?, ?, ?)",
        [(event_id, entity, entity_id, audience) for audience in audiences],
    )
    if entity in EVENT_WIDE:
        conn.execute("UPDATE events SET content_version = content_version + 1 WHERE id = ?", (event_id,))


def record_changes(conn: Tx, rows: list[tuple[str, str, str, str]]) -> None:
    """Many (event_id, entity, entity_id, audience) changes of records that are not event-wide."""
    conn.executemany("INSERT OR REPLACE INTO changes (event_id, entity, entity_id, audience) VALUES (?, ?, ?, ?)", rows)


def content_version(conn: Tx, event_id: str) -> int:
    """A number that grows whenever anything the read API serves for this event changes.

    EventNotFoundError if there is no such event."""
    row = conn.execute("SELECT content_version FROM events WHERE id = ?", (event_id,)).fetchone()
    if row is None:
        raise EventNotFoundError(event_id)
    return int(row[0])
