"""Purging old tombstones, and remembering how far, so that stale cursors get 410 instead of missing deletes."""

from server.storage.dialect import GREATEST
from server.storage.unit import Tx


def purge_tombstones(tx: Tx, older_than: str) -> int:
    """Forget deleted notes last changed before ``older_than`` (RFC 3339 UTC); returns how many.

    A cursor that had not yet seen such a deletion could never learn of it, so the purge mark of
    each audience the deletion was addressed to (the author, organizers when the note was shared)
    rises to its change: pulls of that audience from below it answer 410. Cursors of everyone
    else never held the note and are left alone.
    """
    rows = tx.execute(
        "SELECT n.event_id, n.id, c.audience, c.seq FROM notes n LEFT JOIN changes c"
        " ON c.event_id = n.event_id AND c.entity = 'note' AND c.entity_id = n.id"
        " WHERE n.deleted AND n.updated_at < ?",
        (older_than,),
    ).fetchall()
    notes = {(str(r[0]), str(r[1])) for r in rows}
    for event_id, note_id in notes:
        tx.execute("DELETE FROM changes WHERE event_id = ? AND entity = 'note' AND entity_id = ?", (event_id, note_id))
        tx.execute("DELETE FROM history WHERE event_id = ? AND entity = 'note' AND entity_id = ?", (event_id, note_id))
        tx.execute("DELETE FROM notes WHERE id = ?", (note_id,))
    tx.executemany(
        "INSERT INTO purge_marks (event_id, audience, seq) VALUES (?, ?, ?)"
        f" ON CONFLICT (event_id, audience) DO UPDATE SET seq = {GREATEST[tx.dialect]}(purge_marks.seq, excluded.seq)",
        [(r[0], r[2], r[3]) for r in rows if r[2] is not None],
    )
    return len(notes)
