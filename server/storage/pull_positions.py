"""How far each device has pulled the change feed, and where in the feed each visit change reached devices."""

from collections import defaultdict

from server.storage.db import utcnow
from server.storage.dialect import GREATEST
from server.storage.unit import Tx


def record_pull_position(tx: Tx, account_id: str, client_id: str, seq: int) -> None:
    """Remember that this client was served the feed up to ``seq``, now (a position never moves back)."""
    now = utcnow()
    tx.execute(
        "INSERT INTO sync_clients (account_id, client_id, last_mutation_id, updated_at, pulled_seq, pulled_at)"
        " VALUES (?, ?, 0, ?, ?, ?)"
        f" ON CONFLICT (account_id, client_id) DO UPDATE SET pulled_seq = {GREATEST[tx.dialect]}("
        "sync_clients.pulled_seq, excluded.pulled_seq),"
        " pulled_at = excluded.pulled_at",
        (account_id, client_id, now, seq, now),
    )


def pull_positions(tx: Tx, account_ids: list[str]) -> dict[str, list[int]]:
    """The feed position of each device (client) of these accounts, by account; 0 for one that never pulled."""
    found: dict[str, list[int]] = defaultdict(list)
    for start in range(0, len(account_ids), 500):
        chunk = account_ids[start : start + 500]
        marks = ", ".join("?" for _ in chunk)
        for row in tx.execute(
            f"SELECT account_id, pulled_seq FROM sync_clients WHERE account_id IN ({marks}) ORDER BY client_id", chunk
        ):
            found[str(row[0])].append(int(row[1]))
    return dict(found)


def visit_change_positions(tx: Tx, event_id: str) -> dict[tuple[str, str], int]:
    """The feed position of each visit change by (visit id, time of the change), where it is known."""
    rows = tx.execute(
        "SELECT entity_id, at, MAX(seq) FROM history WHERE event_id = ? AND entity = 'visit' AND seq IS NOT NULL"
        " GROUP BY entity_id, at",
        (event_id,),
    )
    return {(str(r[0]), str(r[1])): int(r[2]) for r in rows}


def visit_feed_positions(tx: Tx, event_id: str) -> dict[str, int]:
    """Each visit's row in the feed every account listens to: the position of its latest state."""
    rows = tx.execute(
        "SELECT entity_id, seq FROM changes WHERE event_id = ? AND entity = 'visit' AND audience = 'all'", (event_id,)
    )
    return {str(r[0]): int(r[1]) for r in rows}
