"""Notes' references to blobs, and who proved to hold which blob: who may reference, fetch, and how much each holds.

Content addressing is no capability: knowing a blob's SHA-256 grants nothing. An account proves
it holds a blob by uploading its bytes in its event (``blob_owners``). A note's reference gives
access only when the note's author proved to hold the bytes, and only to whoever may see that note
(``sync.rules.note_visible``, the one home of that rule).
"""

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from schemas.accounts import Account
from server.storage.changes import record_change
from server.storage.db import utcnow
from server.storage.unit import Tx
from sync.rules import note_visible


def _marks(values: list[str]) -> str:
    return ", ".join("?" for _ in values)


def set_note_blobs(tx: Tx, event_id: str, note_id: str, attachments: list[dict[str, Any]]) -> None:
    """Make the note's blob references match its attachments."""
    tx.execute("DELETE FROM note_blobs WHERE note_id = ?", (note_id,))
    tx.executemany(
        "INSERT INTO note_blobs (sha256, note_id, event_id) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
        [(a["sha256"], note_id, event_id) for a in attachments],
    )


def add_blob_owner(tx: Tx, event_id: str, account_id: str, sha256: str, size: int) -> str | None:
    """Record that the account uploaded these bytes in its event; returns when, or None if it had before."""
    now = utcnow()
    cur = tx.execute(
        "INSERT INTO blob_owners (event_id, account_id, sha256, size, created_at) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT DO NOTHING",
        (event_id, account_id, sha256, size, now),
    )
    return now if cur.rowcount == 1 else None


def owned_at(tx: Tx, event_id: str, account_id: str, sha256: str) -> str | None:
    """When the account first uploaded these bytes in its event (None: it never did)."""
    row = tx.execute(
        "SELECT created_at FROM blob_owners WHERE event_id = ? AND account_id = ? AND sha256 = ?",
        (event_id, account_id, sha256),
    ).fetchone()
    return None if row is None else str(row[0])


def _owned(tx: Tx, event_id: str, account_id: str, wanted: list[str]) -> set[str]:
    if not wanted:
        return set()
    rows = tx.execute(
        f"SELECT sha256 FROM blob_owners WHERE event_id = ? AND account_id = ? AND sha256 IN ({_marks(wanted)})",
        [event_id, account_id, *wanted],
    )
    return {r[0] for r in rows}


def _grants(tx: Tx, event_id: str, wanted: list[str]) -> list[dict[str, Any]]:
    """Live notes of the event that reference these blobs and whose author proved to hold them."""
    if not wanted:
        return []
    rows = tx.execute(
        "SELECT b.sha256, n.author_id, n.share_with_organizers FROM note_blobs b JOIN notes n ON n.id = b.note_id"
        " JOIN blob_owners o ON o.event_id = b.event_id AND o.account_id = n.author_id AND o.sha256 = b.sha256"
        f" WHERE b.event_id = ? AND NOT n.deleted AND b.sha256 IN ({_marks(wanted)})",
        [event_id, *wanted],
    )
    return [{"sha256": r[0], "author_id": r[1], "share_with_organizers": r[2]} for r in rows]


def _fetchable(tx: Tx, event_id: str, account_id: str, role: str, wanted: list[str]) -> set[str]:
    return {g["sha256"] for g in _grants(tx, event_id, wanted) if note_visible(g, account_id, role)}


def fetchable_blobs(tx: Tx, account: Account, hashes: Iterable[str]) -> set[str]:
    """Which of these blobs the account may fetch: on a live note it may see whose author uploaded them."""
    return _fetchable(tx, account.event_id, account.id, account.role, sorted(set(hashes)))


def _referable(tx: Tx, event_id: str, account_id: str, role: str, wanted: list[str]) -> set[str]:
    owned = _owned(tx, event_id, account_id, wanted)
    return owned | _fetchable(tx, event_id, account_id, role, [h for h in wanted if h not in owned])


def referable_blobs(tx: Tx, account: Account, hashes: Iterable[str]) -> set[str]:
    """Which of these blobs the account proved to hold: it uploaded them in its event, or may fetch them.

    A note's attachment is pending for its author until this holds; HEAD answers 200 when it does.
    """
    return _referable(tx, account.event_id, account.id, account.role, sorted(set(hashes)))


def blob_landed(tx: Tx, event_id: str, sha256: str) -> int:
    """An account of the event proved to hold a blob: every live note of the event that references it,
    and whose author may now reference it, gets a new version, so that devices which see the note pull
    its attachment as ``available``. Notes whose author still may not are left alone: a new version
    would tell them that somebody else holds those bytes. Returns how many notes."""
    rows = tx.execute(
        "SELECT n.id, n.author_id, a.role, n.share_with_organizers FROM note_blobs b JOIN notes n ON n.id = b.note_id"
        " JOIN accounts a ON a.id = n.author_id WHERE b.event_id = ? AND b.sha256 = ? AND NOT n.deleted",
        (event_id, sha256),
    ).fetchall()
    now = utcnow()
    bumped = 0
    for note_id, author_id, role, shared in rows:
        if not _referable(tx, event_id, author_id, role, [sha256]):
            continue
        tx.execute("UPDATE notes SET version = version + 1, updated_at = ? WHERE id = ?", (now, note_id))
        record_change(tx, event_id, "note", note_id, [f"acct:{author_id}", *(["org"] if shared else [])])
        bumped += 1
    return bumped


def grants_changed(
    tx: Tx,
    event_id: str,
    note_id: str,
    author_id: str,
    hashes: Iterable[str],
    seen_by: Sequence[Mapping[str, Any]],
) -> int:
    """A note's references, sharing or life changed: other live notes that reference the same blobs,
    and whose authors could see the note before or after (``seen_by``: its states, for
    ``note_visible``), get a new version, as whether they may reference the blobs may have changed.

    Only blobs the note's author holds matter (a reference by anyone else grants nothing), and only
    authors who saw the note are told: to anyone else its change is no business. Returns how many.
    """
    wanted = sorted(_owned(tx, event_id, author_id, sorted(set(hashes))))
    if not wanted:
        return 0
    rows = tx.execute(
        "SELECT DISTINCT n.id, n.author_id, a.role, n.share_with_organizers FROM note_blobs b"
        " JOIN notes n ON n.id = b.note_id JOIN accounts a ON a.id = n.author_id"
        f" WHERE b.event_id = ? AND NOT n.deleted AND n.author_id != ? AND b.sha256 IN ({_marks(wanted)})",
        [event_id, author_id, *wanted],
    ).fetchall()
    now = utcnow()
    bumped = 0
    for other_id, other_author, role, shared in rows:
        if other_id == note_id or not any(note_visible(state, other_author, role) for state in seen_by):
            continue
        tx.execute("UPDATE notes SET version = version + 1, updated_at = ? WHERE id = ?", (now, other_id))
        record_change(tx, event_id, "note", other_id, [f"acct:{other_author}", *(["org"] if shared else [])])
        bumped += 1
    return bumped


class BlobUsage(NamedTuple):
    """Bytes of blobs recorded as uploaded, by one account and by its whole event."""

    account: int
    event: int


def blob_usage(tx: Tx, event_id: str, account_id: str) -> BlobUsage:
    """What an account's uploads, and its event's, count against their quotas.

    Each account's copy counts in full, even of bytes stored once: what one account uploaded must not
    change what another may, or the quota would tell who holds which photo.
    """
    row = tx.execute(
        "SELECT COALESCE(SUM(CASE WHEN account_id = ? THEN size END), 0), COALESCE(SUM(size), 0)"
        " FROM blob_owners WHERE event_id = ?",
        (account_id, event_id),
    ).fetchone()
    return BlobUsage(int(row[0]), int(row[1]))


def purge_unreferenced_blobs(tx: Tx, older_than: str) -> list[str]:
    """Forget uploads that no live note of their uploader references, recorded before ``older_than``;
    then the blobs nobody holds any more. Returns the hashes whose rows went (their files may go)."""
    tx.execute(
        "DELETE FROM blob_owners WHERE created_at < ? AND NOT EXISTS (SELECT 1 FROM note_blobs b"
        " JOIN notes n ON n.id = b.note_id WHERE b.sha256 = blob_owners.sha256 AND b.event_id = blob_owners.event_id"
        " AND n.author_id = blob_owners.account_id AND NOT n.deleted)",
        (older_than,),
    )
    gone = [
        r[0]
        for r in tx.execute(
            "SELECT sha256 FROM blobs WHERE created_at < ? AND NOT EXISTS"
            " (SELECT 1 FROM blob_owners o WHERE o.sha256 = blobs.sha256)",
            (older_than,),
        )
    ]
    tx.executemany("DELETE FROM blobs WHERE sha256 = ?", [(h,) for h in gone])
    return gone
