"""Purging old tombstones, and remembering how far, so that stale cursors get 410 instead of missing deletes."""

import sqlite3


def purge_tombstones(conn: sqlite3.Connection, older_than: str) -> int:
    """Forget deleted notes last changed before ``older_than`` (RFC 3339 UTC); returns how many.

    A cursor that had not yet seen such a deletion could never learn of it, so each event's
    ``purged_seq`` rises to the newest purged change: pulls from below it answer 410.
    """
    rows = conn.execute(
        "SELECT n.event_id, n.id, MAX(c.seq) FROM notes n LEFT JOIN changes c"
        " ON c.event_id = n.event_id AND c.entity = 'note' AND c.entity_id = n.id"
        " WHERE n.deleted = 1 AND n.updated_at < ? GROUP BY n.event_id, n.id",
        (older_than,),
    ).fetchall()
    for event_id, note_id, seq in rows:
        conn.execute(
            "DELETE FROM changes WHERE event_id = ? AND entity = 'note' AND entity_id = ?", (event_id, note_id)
        )
        conn.execute(
            "DELETE FROM history WHERE event_id = ? AND entity = 'note' AND entity_id = ?", (event_id, note_id)
        )
        conn.execute("DELETE FROM notes WHERE id = ?", (note_id,))
        if seq is not None:
            conn.execute("UPDATE events SET purged_seq = MAX(purged_seq, ?) WHERE id = ?", (seq, event_id))
    return len(rows)
