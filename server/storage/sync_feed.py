"""The queries behind pulls: pages of the change feed, and the caller's whole visible state."""

import heapq
import itertools
from typing import Any

from schemas.accounts import Account
from server.faults import TEST_NAIVE_FEED
from server.storage.unit import Tx


def purged_seq(tx: Tx, event_id: str, audiences: list[str]) -> int:
    """Cursors of these audiences below this may have missed tombstones that were purged since."""
    marks = ", ".join("?" for _ in audiences)
    row = tx.execute(
        f"SELECT MAX(seq) FROM purge_marks WHERE event_id = ? AND audience IN ({marks})", (event_id, *audiences)
    ).fetchone()
    return int(row[0] or 0)


def feed_head(tx: Tx, event_id: str) -> int:
    """The newest change position of this event's feed in this snapshot.

    SQLite numbers every event's changes from one AUTOINCREMENT, so the newest of all is the
    event's bound too, found at the end of the rowid. PostgreSQL numbers each event's feed from its
    own clock, which another event's positions say nothing about; the clock's committed value is
    the newest position this snapshot can see (positions are taken at commit, sync-protocol §5.2).
    """
    if tx.dialect == "postgresql" and TEST_NAIVE_FEED:  # test-only (server/faults.py): the newest visible
        row = tx.execute("SELECT MAX(seq) FROM changes WHERE event_id = ?", (event_id,)).fetchone()
    elif tx.dialect == "postgresql":
        row = tx.execute("SELECT seq FROM feed_clocks WHERE event_id = ?", (event_id,)).fetchone()
    else:
        row = tx.execute("SELECT MAX(seq) FROM changes").fetchone()
    return 0 if row is None else int(row[0] or 0)


def feed_page(tx: Tx, event_id: str, audiences: list[str], after: int, limit: int) -> list[tuple[int, str, str]]:
    """(seq, entity, entity_id) of changes for these audiences after ``after``, oldest first.

    One index range per audience, each already in seq order, merged here: a single query with
    ``audience IN (...)`` would make SQLite collect and sort every later change of the event
    for each page.
    """
    ranges = [
        [
            (int(r[0]), str(r[1]), str(r[2]))
            for r in tx.execute(
                "SELECT seq, entity, entity_id FROM changes WHERE event_id = ? AND audience = ? AND seq > ?"
                " ORDER BY seq LIMIT ?",
                (event_id, audience, after, limit),
            )
        ]
        for audience in audiences
    ]
    return list(itertools.islice(heapq.merge(*ranges), limit))


def feed_page_payloads(
    tx: Tx, event_id: str, audiences: list[str], after: int, limit: int
) -> list[tuple[int, str, str, bytes | None]]:
    """As ``feed_page``, with each row's payload (``changes.payload``: None where the pull shapes the change)."""
    # SQLite's rows hold these types already (tuple() is the whole cost per row); psycopg's bytea may not be bytes.
    as_row = tuple if tx.dialect == "sqlite" else _pg_feed_row
    ranges = [
        [
            as_row(r)
            for r in tx.execute(
                "SELECT seq, entity, entity_id, payload FROM changes WHERE event_id = ? AND audience = ? AND seq > ?"
                " ORDER BY seq LIMIT ?",
                (event_id, audience, after, limit),
            )
        ]
        for audience in audiences
    ]
    # Positions are unique in an event's feed: the merge never compares two payloads.
    if len([r for r in ranges if r]) <= 1:
        return next((r[:limit] for r in ranges if r), [])  # type: ignore[return-value]
    return list(itertools.islice(heapq.merge(*ranges), limit))  # type: ignore[arg-type]


def _pg_feed_row(r: Any) -> tuple[int, str, str, bytes | None]:
    return (int(r[0]), str(r[1]), str(r[2]), None if r[3] is None else bytes(r[3]))


SUMMARY_KINDS = ("event", "site", "visit", "group", "question", "note", "feedback")
_EVENT_WIDE = SUMMARY_KINDS[:5]
_MASK = (1 << 64) - 1


def summary_sums(tx: Tx, account: Account) -> dict[str, tuple[int, int]] | None:
    """Per entity kind, how many records a participant or organizer may see and the sum of their
    checksum shares (mod 2^64), from the shares its audiences' feed rows keep; None when a row of
    them was written before rows kept shares (then ``visible_versions`` answers), or for hosts.

    A participant sees everyone's records (``all``) and its own (its ``acct:`` row); an organizer
    also every shared note and every feedback (``org``), less its own shared notes and feedback,
    which its own rows count too (counts 2 on its row marks a shared note).
    """
    if account.role not in ("participant", "organizer"):
        return None
    sums: dict[tuple[str, str, int], tuple[int, int]] = {}
    own = f"acct:{account.id}"
    # One audience's range of the feed index: SQLite would rather walk the whole event's rows in
    # changes_key's order, for the GROUP BY, than sort a few groups.
    table = "changes INDEXED BY changes_feed" if tx.dialect == "sqlite" else "changes"
    for audience in ("all", own, *(["org"] if account.role == "organizer" else [])):
        for entity, counts, rows, hi, lo in tx.execute(
            f"SELECT entity, counts, COUNT(*), SUM(share_hi), SUM(share_lo) FROM {table}"
            " WHERE event_id = ? AND audience = ? GROUP BY entity, counts",
            (account.event_id, audience),
        ):
            if counts is None:
                return None
            if counts:
                sums[audience, str(entity), int(counts)] = (int(rows), (int(hi) << 32) + int(lo))

    def total(audience: str, entity: str, *counts: int) -> tuple[int, int]:
        found = [sums.get((audience, entity, c), (0, 0)) for c in counts]
        return sum(n for n, _ in found), sum(s for _, s in found)

    result = {entity: total("all", entity, 1) for entity in _EVENT_WIDE}
    if account.role == "participant":
        result["note"] = total(own, "note", 1, 2)
        result["feedback"] = total(own, "feedback", 1)
    else:
        mine, shared, mine_shared = total(own, "note", 1, 2), total("org", "note", 1), total(own, "note", 2)
        result["note"] = (mine[0] + shared[0] - mine_shared[0], mine[1] + shared[1] - mine_shared[1])
        result["feedback"] = total("org", "feedback", 1)
    return {entity: (count, share & _MASK) for entity, (count, share) in result.items()}


def visible_versions(tx: Tx, account: Account) -> dict[str, list[tuple[str, int]]]:
    """(id, version) of every live record the account may see, per entity kind."""
    event_id = account.event_id

    def pairs(sql: str, *params: object) -> list[tuple[str, int]]:
        return [(str(r[0]), int(r[1])) for r in tx.execute(sql, params)]

    result = {
        "event": pairs("SELECT id, version FROM events WHERE id = ?", event_id),
        **{
            entity: pairs(f"SELECT id, version FROM {table} WHERE event_id = ?", event_id)
            for entity, table in (
                ("site", "sites"),
                ("visit", "visits"),
                ("group", "groups"),
                ("question", "questions"),
            )
        },
    }
    if account.role == "organizer":
        result["note"] = pairs(
            "SELECT id, version FROM notes WHERE event_id = ? AND NOT deleted AND (author_id = ? OR share_with_organizers)",
            event_id,
            account.id,
        )
        result["feedback"] = pairs("SELECT id, version FROM feedback WHERE event_id = ?", event_id)
    else:
        result["note"] = pairs("SELECT id, version FROM notes WHERE author_id = ? AND NOT deleted", account.id)
        sites = account.site_ids if account.role == "host" else []
        marks = ", ".join("?" for _ in sites) or "NULL"
        result["feedback"] = pairs(
            f"SELECT id, version FROM feedback WHERE event_id = ? AND (author_id = ? OR site_id IN ({marks}))",
            event_id,
            account.id,
            *sites,
        )
    return result
