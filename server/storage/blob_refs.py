"""Notes' references to blobs: keeping them, telling devices when a blob lands, who may fetch it."""

import sqlite3
from collections.abc import Iterable
from typing import Any

from schemas.accounts import Account
from server.storage.changes import record_change
from server.storage.db import utcnow


def held_blobs(conn: sqlite3.Connection, hashes: Iterable[str]) -> set[str]:
    """Which of these blobs the server holds whole."""
    wanted = sorted(set(hashes))
    if not wanted:
        return set()
    marks = ", ".join("?" for _ in wanted)
    return {r[0] for r in conn.execute(f"SELECT sha256 FROM blobs WHERE sha256 IN ({marks})", wanted)}


def set_note_blobs(conn: sqlite3.Connection, event_id: str, note_id: str, attachments: list[dict[str, Any]]) -> None:
    """Make the note's blob references match its attachments."""
    conn.execute("DELETE FROM note_blobs WHERE note_id = ?", (note_id,))
    conn.executemany(
        "INSERT OR IGNORE INTO note_blobs (sha256, note_id, event_id) VALUES (?, ?, ?)",
        [(a["sha256"], note_id, event_id) for a in attachments],
    )


def blob_landed(conn: sqlite3.Connection, sha256: str) -> int:
    """A blob is whole now: every note that references it gets a new version, so that devices
    which can see the note pull its attachment as ``available``. Returns how many notes."""
    rows = conn.execute(
        "SELECT n.id, n.event_id, n.author_id, n.share_with_organizers FROM note_blobs b JOIN notes n ON n.id = b.note_id"
        " WHERE b.sha256 = ? AND n.deleted = 0",
        (sha256,),
    ).fetchall()
    now = utcnow()
    for note_id, event_id, author_id, shared in rows:
        conn.execute("UPDATE notes SET version = version + 1, updated_at = ? WHERE id = ?", (now, note_id))
        record_change(conn, event_id, "note", note_id, [f"acct:{author_id}", *(["org"] if shared else [])])
    return len(rows)


def may_fetch_blob(conn: sqlite3.Connection, account: Account, sha256: str) -> bool:
    """Whether the account can see a live note of its event that references this blob."""
    row = conn.execute(
        "SELECT 1 FROM note_blobs b JOIN notes n ON n.id = b.note_id WHERE b.sha256 = ? AND b.event_id = ?"
        " AND n.deleted = 0 AND (n.author_id = ? OR (? = 'organizer' AND n.share_with_organizers = 1)) LIMIT 1",
        (sha256, account.event_id, account.id, account.role),
    ).fetchone()
    return row is not None
