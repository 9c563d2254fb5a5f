"""The change feed behind sync pulls, and the content version behind read caches."""

from collections.abc import Iterable
from typing import Any, cast

from server.errors import EventNotFoundError
from server.storage.feed_payloads import FeedValues, feed_values
from server.storage.unit import Tx

EVENT_WIDE = frozenset({"event", "site", "visit", "group", "question"})


def record_change(tx: Tx, event_id: str, entity: str, entity_id: str, audiences: Iterable[str]) -> None:
    """Tell each audience that a record changed; replaces older rows for the same record and audience."""
    _write_feed_rows(tx, [(event_id, entity, entity_id, audience) for audience in audiences])
    if entity in EVENT_WIDE:
        tx.execute("UPDATE events SET content_version = content_version + 1 WHERE id = ?", (event_id,))


def record_changes(tx: Tx, rows: list[tuple[str, str, str, str]]) -> None:
    """Many (event_id, entity, entity_id, audience) changes of records that are not event-wide."""
    _write_feed_rows(tx, rows)


def _write_feed_rows(tx: Any, rows: list[tuple[str, str, str, str]]) -> None:
    if tx.dialect == "postgresql":
        # Positions are taken from the event's feed clock at commit, in commit order (sync-protocol §5.2).
        tx.queue_feed_rows(rows)
        return
    # SQLite has one writer: AUTOINCREMENT gives positions in commit order. REPLACE deletes the old
    # row and inserts one at a new position (an upsert would keep the old one). Its payload is
    # written at commit (SqliteTx.finish): later statements of this transaction may still change the record.
    tx.executemany("INSERT OR REPLACE INTO changes (event_id, entity, entity_id, audience) VALUES (?, ?, ?, ?)", rows)
    tx.feed_rows.extend(rows)
    if tx.given_rows:
        # A record created with its rows' values given (record_new_changes) changes again: all its
        # rows, not only the ones written again now, get their values from its state at commit.
        for row in rows:
            tx.feed_rows.extend(tx.given_rows.pop(row[:3], ()))


def record_new_changes(tx: Tx, rows: list[tuple[str, str, str, str]], values: list[FeedValues]) -> None:
    """Feed rows of records created by this transaction, with what each keeps, built by the writer from
    the state it wrote: no read-back at commit, and on SQLite no UPDATE after the INSERT.

    The values stand unless a later statement of the transaction changes the record; every such write
    records the record's change again (the feed's invariant), and then every row of the record is given
    its values at commit from the record's state, as any other (SqliteTx.finish, PgTx.write_feed).
    """
    if tx.dialect == "postgresql":
        cast(Any, tx).queue_feed_rows(rows, values)
        return
    given = cast(Any, tx).given_rows
    for row in rows:
        given.setdefault(row[:3], []).append(row)
    tx.executemany(
        "INSERT OR REPLACE INTO changes (event_id, entity, entity_id, audience, payload, counts, share_hi, share_lo)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [(*row, *kept) for row, kept in zip(rows, values, strict=True)],
    )


def write_payloads(tx: Tx, rows: list[tuple[str, str, str, str]]) -> None:
    """Give these (event_id, entity, entity_id, audience) feed rows of SQLite their payloads, from the
    records' state now.

    A row undone since (a savepoint rolled back) matches no row, or the row as it was, whose record
    is as it was too: its payload is the same either way.
    """
    unique = list(dict.fromkeys(rows))
    tx.executemany(
        "UPDATE changes SET payload = ?, counts = ?, share_hi = ?, share_lo = ?"
        " WHERE event_id = ? AND entity = ? AND entity_id = ? AND audience = ?",
        [(*values, *row) for row, values in zip(unique, feed_values(tx, unique), strict=True)],
    )


def content_version(tx: Tx, event_id: str) -> int:
    """A number that grows whenever anything the read API serves for this event changes.

    EventNotFoundError if there is no such event."""
    row = tx.execute("SELECT content_version FROM events WHERE id = ?", (event_id,)).fetchone()
    if row is None:
        raise EventNotFoundError(event_id)
    return int(row[0])
