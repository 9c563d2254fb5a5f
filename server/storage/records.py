"""Reading and writing synced records generically: rows as dicts, versions, history, the client table."""

from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec

from schemas.sync import MutationOutcome
from server.errors import HistoryEntryNotFoundError
from server.storage.db import utcnow
from server.storage.dialect import FOR_UPDATE
from server.storage.rows import BOOL_COLUMNS, column_value, encode_json, row_dict
from server.storage.unit import Row, Tx

# Table and key columns of each entity kind of the pull feed.
TABLES: dict[str, str] = {
    "event": "events",
    "site": "sites",
    "visit": "visits",
    "group": "groups",
    "question": "questions",
    "note": "notes",
    "feedback": "feedback",
}


def load_records(
    tx: Tx, event_id: str, entity: str, ids: Iterable[str], *, for_share: bool = False
) -> dict[str, dict[str, Any]]:
    """Rows of one entity kind by id, as dicts with JSON decoded (``for_share``: PostgreSQL keeps them
    from changing until the transaction ends)."""
    table = TABLES[entity]
    lock = " FOR SHARE" if for_share else ""
    found: dict[str, dict[str, Any]] = {}
    # "+event_id" keeps SQLite on the primary key: with the plain column it may pick an event_id
    # index and walk every note of the event for each chunk. PostgreSQL has no unary + for text.
    event_column = "+event_id" if tx.dialect == "sqlite" else "event_id"
    for chunk, marks in _in_chunks(ids):
        if table == "events":
            sql, params = f"SELECT * FROM events WHERE id IN ({marks})", chunk
        else:
            sql, params = f"SELECT * FROM {table} WHERE {event_column} = ? AND id IN ({marks})", [event_id, *chunk]
        for row in tx.execute(sql + lock, params):
            found[row["id"]] = row_dict(table, row)
    return found


# What a pull needs of a record to know whether what it sent before still stands, without reading the
# rest: (id, version, updated_at, then these columns). updated_at tells a record deleted and created
# again apart from the one before it, which may have had the same version.
HEAD_COLUMNS: dict[str, tuple[str, ...]] = {
    "site": (),
    "visit": (),
    "note": ("author_id", "share_with_organizers", "deleted", "attachments"),
    "feedback": ("author_id", "site_id"),
}


def load_heads(tx: Tx, event_id: str, entity: str, ids: Iterable[str]) -> dict[str, tuple[Any, ...]]:
    """(id, version, updated_at, *HEAD_COLUMNS[entity]) of rows of one entity kind by id; JSON left as text."""
    table = TABLES[entity]
    columns = ", ".join(("id", "version", "updated_at", *HEAD_COLUMNS[entity]))
    event_column = "+event_id" if tx.dialect == "sqlite" else "event_id"  # as in load_records
    found: dict[str, tuple[Any, ...]] = {}
    for chunk, marks in _in_chunks(ids):
        sql = f"SELECT {columns} FROM {table} WHERE {event_column} = ? AND id IN ({marks})"
        for row in tx.execute(sql, [event_id, *chunk]):
            found[row[0]] = tuple(row)
    return found


def load_record(tx: Tx, event_id: str, entity: str, record_id: str) -> dict[str, Any] | None:
    """One row as a dict, or None."""
    return load_records(tx, event_id, entity, [record_id]).get(record_id)


def record_exists(tx: Tx, event_id: str, entity: str, record_id: str) -> bool:
    """Whether a record of the event exists (without reading it)."""
    table = TABLES[entity]
    return (
        tx.execute(f"SELECT 1 FROM {table} WHERE event_id = ? AND id = ?", (event_id, record_id)).fetchone() is not None
    )


def note_owners(tx: Tx, note_ids: Iterable[str]) -> dict[str, tuple[str, str]]:
    """(event id, author id) of each note among these ids that exists, in any event."""
    found: dict[str, tuple[str, str]] = {}
    for chunk, marks in _in_chunks(set(note_ids)):
        for row in tx.execute(f"SELECT id, event_id, author_id FROM notes WHERE id IN ({marks})", chunk):
            found[str(row[0])] = (str(row[1]), str(row[2]))
    return found


def existing_ids(tx: Tx, event_id: str, entity: str, ids: Iterable[str]) -> set[str]:
    """Which of these ids name a record of the event (without reading them)."""
    table = TABLES[entity]
    found: set[str] = set()
    for chunk, marks in _in_chunks(set(ids)):
        rows = tx.execute(f"SELECT id FROM {table} WHERE event_id = ? AND id IN ({marks})", [event_id, *chunk])
        found |= {str(row[0]) for row in rows}
    return found


def _in_chunks(ids: Iterable[str], size: int = 500) -> Iterator[tuple[list[str], str]]:
    """The ids in lists of at most ``size``, each with its ``?, ?, …`` for an ``IN`` list."""
    listed = list(ids)
    for start in range(0, len(listed), size):
        chunk = listed[start : start + size]
        yield chunk, ", ".join("?" for _ in chunk)


def note_owner(tx: Tx, note_id: str) -> tuple[str, str] | None:
    """(event id, author id) of a note with this id in any event, or None."""
    row = tx.execute("SELECT event_id, author_id FROM notes WHERE id = ?", (note_id,)).fetchone()
    return None if row is None else (str(row[0]), str(row[1]))


NEW_NOTE_COLUMNS = (
    "id", "event_id", "author_id", "origin_client", "visit_id", "site_id", "body", "tags", "lat", "lon",
    "captured_at", "share_with_organizers", "updated_at", "client_time", "received_at", "clock_skewed",
)  # fmt: skip


def insert_new_notes(tx: Tx, rows: list[tuple[Any, ...]]) -> None:
    """Insert many new notes (values in NEW_NOTE_COLUMNS order, tags as JSON text) in one statement."""
    columns: tuple[str, ...] = NEW_NOTE_COLUMNS
    if tx.dialect == "postgresql":
        rows = [tuple(bool(v) if i in _NEW_NOTE_FLAGS else v for i, v in enumerate(row)) for row in rows]
    else:
        # Each note's rowid and arrival as the notes_arrival trigger would leave them (the next
        # rowid, and arrival = rowid), given here: the trigger's UPDATE of every new row was a fifth
        # of this insert. One writer at a time, so the largest rowid stays ours until COMMIT.
        last = int(tx.execute("SELECT COALESCE(MAX(rowid), 0) FROM notes").fetchone()[0])
        rows = [(last + n, last + n, *row) for n, row in enumerate(rows, 1)]
        columns = ("rowid", "arrival", *columns)
    marks = ", ".join("?" for _ in columns)
    tx.executemany(f"INSERT INTO notes ({', '.join(columns)}) VALUES ({marks})", rows)


# Flags are booleans on PostgreSQL, which takes no integer for them (SQLite stores either as 0/1, as given).
_NEW_NOTE_FLAGS = frozenset(i for i, c in enumerate(NEW_NOTE_COLUMNS) if c in BOOL_COLUMNS["notes"])


def start_utc(starts_at: str) -> str:
    """A visit's start as sortable UTC text: RFC 3339 strings with offsets do not sort as instants."""
    return datetime.fromisoformat(starts_at).astimezone(UTC).isoformat()


def _with_derived(entity: str, values: Mapping[str, Any]) -> Mapping[str, Any]:
    # Columns computed from others are kept true here, whoever writes.
    if entity == "visit" and "starts_at" in values:
        return {**values, "starts_utc": start_utc(values["starts_at"])}
    return values


def insert_record(tx: Tx, entity: str, values: Mapping[str, Any]) -> None:
    """Insert a new row."""
    values = _with_derived(entity, values)
    table = TABLES[entity]
    cols = list(values)
    tx.execute(
        f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)})",
        [column_value(table, c, values[c]) for c in cols],
    )


def update_record(tx: Tx, event_id: str, entity: str, record_id: str, values: Mapping[str, Any]) -> None:
    """Update some columns of a row."""
    values = _with_derived(entity, values)
    table = TABLES[entity]
    sets = ", ".join(f"{c} = ?" for c in values)
    params = [column_value(table, c, v) for c, v in values.items()]
    if table == "events":  # an event is its own key
        tx.execute(f"UPDATE events SET {sets} WHERE id = ?", [*params, record_id])
        return
    tx.execute(f"UPDATE {table} SET {sets} WHERE event_id = ? AND id = ?", [*params, event_id, record_id])


def add_history(
    tx: Tx,
    event_id: str,
    entity: str,
    entity_id: str,
    version: int,
    changes: Mapping[str, tuple[Any, Any]],
    *,
    account_id: str | None,
    client_id: str | None = None,
    flagged: str | None = None,
) -> int:
    """Record who changed which fields of a record, from what to what; returns the entry's id."""
    row = tx.execute(
        "INSERT INTO history (event_id, entity, entity_id, version, account_id, client_id, at, changes, flagged)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        (event_id, entity, entity_id, version, account_id, client_id, utcnow(), encode_json(dict(changes)), flagged),
    ).fetchall()
    return int(row[0][0])


def scrub_history(tx: Tx, event_id: str, entity: str, entity_id: str) -> None:
    """Forget the values a record's history holds, keeping who changed which field when.

    A delete must not leave what was typed readable in the audit trail until the tombstone is purged.
    """
    rows = tx.execute(
        "SELECT id, changes FROM history WHERE event_id = ? AND entity = ? AND entity_id = ?",
        (event_id, entity, entity_id),
    ).fetchall()
    for entry_id, changes in rows:
        names = msgspec.json.decode(changes)
        tx.execute(
            "UPDATE history SET changes = ? WHERE id = ?", (encode_json(dict.fromkeys(names, (None, None))), entry_id)
        )


def changed_since(
    tx: Tx,
    event_id: str,
    entity: str,
    record: Mapping[str, Any],
    base_version: int,
    defaults: Mapping[str, Any],
    own_client: tuple[str, str | None] | None = None,
) -> dict[str, Any]:
    """Fields someone else changed after ``base_version``, each with its value at that base.

    Changes made through ``own_client`` (account id, client id) do not count: a device's later edit never conflicts
    with its own earlier one that it has not pulled back yet. Base 0 means "before the record
    existed": every field another client set at creation (differing from its default), or
    changed since, counts as changed, with the default as its base value.
    """
    if base_version >= record["version"]:
        return {}
    rows = tx.execute(
        "SELECT changes, account_id, client_id FROM history WHERE event_id = ? AND entity = ? AND entity_id = ? AND version > ?"
        " ORDER BY version",
        (event_id, entity, record["id"], base_version),
    ).fetchall()
    first_old: dict[str, Any] = {}
    by_others: set[str] = set()
    for changes, account_id, client_id in rows:
        for name, (old, _new) in msgspec.json.decode(changes).items():
            first_old.setdefault(name, old)
            if own_client is None or (account_id, client_id) != own_client:
                by_others.add(name)
    if base_version > 0:
        return {name: first_old[name] for name in by_others}
    created_by_other = own_client is None or (record.get("author_id"), record.get("origin_client")) != own_client
    changed: dict[str, Any] = {}
    for name, default in defaults.items():
        at_creation = first_old.get(name, record_value(record, name))
        if name in by_others or (created_by_other and at_creation != default):
            changed[name] = default
    return changed


def record_value(record: Mapping[str, Any], name: str) -> Any:
    """A field's value, where ``a.b`` names key b of the mapping in field a."""
    if "." in name:
        outer, inner = name.split(".", 1)
        return (record.get(outer) or {}).get(inner)
    return record.get(name)


def last_mutation_id(tx: Tx, account_id: str, client_id: str) -> int:
    """The last mutation id processed for this client of this account (0 for a new client)."""
    row = tx.execute(
        "SELECT last_mutation_id FROM sync_clients WHERE account_id = ? AND client_id = ?", (account_id, client_id)
    ).fetchone()
    return 0 if row is None else int(row[0])


def claim_ledger(tx: Tx, account_id: str, client_id: str) -> int:
    """The last mutation id processed for this client, its ledger row held until the transaction ends.

    A retry of the same batch arriving at another server at the same moment waits here for the first
    to commit, then reads what it processed: exactly once, however many servers (PostgreSQL's READ
    COMMITTED re-reads the locked row once the lock is granted).
    """
    tx.execute(
        "INSERT INTO sync_clients (account_id, client_id, last_mutation_id, updated_at) VALUES (?, ?, 0, ?)"
        " ON CONFLICT (account_id, client_id) DO NOTHING",
        (account_id, client_id, utcnow()),
    )
    row = tx.execute(
        "SELECT last_mutation_id FROM sync_clients WHERE account_id = ? AND client_id = ?" + FOR_UPDATE[tx.dialect],
        (account_id, client_id),
    ).fetchone()
    return int(row[0])  # type: ignore[index]  # inserted above when it was missing


def set_last_mutation_id(tx: Tx, account_id: str, client_id: str, value: int) -> None:
    """Remember how far this client's mutations have been processed."""
    tx.execute(
        "INSERT INTO sync_clients (account_id, client_id, last_mutation_id, updated_at) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (account_id, client_id) DO UPDATE SET last_mutation_id = excluded.last_mutation_id,"
        " updated_at = excluded.updated_at",
        (account_id, client_id, value, utcnow()),
    )


def client_synced_at(tx: Tx, account_id: str, client_id: str) -> str | None:
    """When this install of this account last pushed or caught up (RFC 3339 UTC), or None."""
    row = tx.execute(
        "SELECT updated_at FROM sync_clients WHERE account_id = ? AND client_id = ?", (account_id, client_id)
    ).fetchone()
    return None if row is None else str(row[0])


def record_client_sync(tx: Tx, account_id: str, client_id: str, at: str) -> None:
    """Remember that this install synced at ``at``; its processed mutation id is left as it is."""
    tx.execute(
        "INSERT INTO sync_clients (account_id, client_id, last_mutation_id, updated_at) VALUES (?, ?, 0, ?)"
        " ON CONFLICT (account_id, client_id) DO UPDATE SET updated_at = excluded.updated_at",
        (account_id, client_id, at),
    )


def mutation_results(tx: Tx, account_id: str, client_id: str, first: int, last: int) -> dict[int, MutationOutcome]:
    """The kept results of this client's mutations ``first``..``last``, by mutation id."""
    rows = tx.execute(
        "SELECT mutation_id, result FROM sync_results WHERE account_id = ? AND client_id = ?"
        " AND mutation_id BETWEEN ? AND ?",
        (account_id, client_id, first, last),
    )
    return {int(r[0]): _RESULT_DECODER.decode(r[1]) for r in rows}


def keep_mutation_results(
    tx: Tx, account_id: str, client_id: str, results: Sequence[MutationOutcome], window: int
) -> None:
    """Keep the results of newly processed mutations, and forget those ``window`` ids or more behind."""
    if not results:
        return
    tx.executemany(
        "INSERT INTO sync_results (account_id, client_id, mutation_id, result) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (account_id, client_id, mutation_id) DO UPDATE SET result = excluded.result",
        [(account_id, client_id, r.id, _RESULT_ENCODER.encode(r)) for r in results],
    )
    newest = max(r.id for r in results)
    tx.execute(
        "DELETE FROM sync_results WHERE account_id = ? AND client_id = ? AND mutation_id <= ?",
        (account_id, client_id, newest - window),
    )


_RESULT_ENCODER = msgspec.json.Encoder()
_RESULT_DECODER = msgspec.json.Decoder(MutationOutcome)


def history_entries(tx: Tx, event_id: str, entity: str, entity_id: str) -> list[dict[str, Any]]:
    """A record's history, newest first."""
    rows = tx.execute(
        "SELECT * FROM history WHERE event_id = ? AND entity = ? AND entity_id = ? ORDER BY id DESC",
        (event_id, entity, entity_id),
    )
    return [_history(row) for row in rows]


def history_entry(tx: Tx, event_id: str, entry_id: int) -> dict[str, Any]:
    """One history entry of the event."""
    if not 0 < entry_id < 2**63:  # ids beyond 64-bit integers cannot exist (nor be bound)
        raise HistoryEntryNotFoundError(entry_id)
    row = tx.execute("SELECT * FROM history WHERE event_id = ? AND id = ?", (event_id, entry_id)).fetchone()
    if row is None:
        raise HistoryEntryNotFoundError(entry_id)
    return _history(row)


def history_since(tx: Tx, event_id: str, entity: str, since: str | None) -> list[dict[str, Any]]:
    """Every change to records of one kind after ``since`` (RFC 3339 UTC; None: ever), oldest first."""
    if not since:  # "" is no instant to PostgreSQL's timestamptz
        rows = tx.execute("SELECT * FROM history WHERE event_id = ? AND entity = ? ORDER BY id", (event_id, entity))
    else:
        rows = tx.execute(
            "SELECT * FROM history WHERE event_id = ? AND entity = ? AND at > ? ORDER BY id",
            (event_id, entity, since),
        )
    return [_history(row) for row in rows]


def mark_reverted(tx: Tx, entry_id: int, by_entry_id: int) -> None:
    """Link a history entry to the entry that undid it."""
    tx.execute("UPDATE history SET reverted_by = ? WHERE id = ?", (by_entry_id, entry_id))


def latest_history_id(tx: Tx, event_id: str, entity: str, entity_id: str) -> int | None:
    """The newest history entry of a record."""
    row = tx.execute(
        "SELECT MAX(id) FROM history WHERE event_id = ? AND entity = ? AND entity_id = ?", (event_id, entity, entity_id)
    ).fetchone()
    return None if row is None or row[0] is None else int(row[0])


def last_history_author(tx: Tx, event_id: str, entity: str, entity_id: str) -> tuple[str | None, str | None] | None:
    """(account id, client id) of a record's newest history entry, or None when it has no history."""
    row = tx.execute(
        "SELECT account_id, client_id FROM history WHERE event_id = ? AND entity = ? AND entity_id = ?"
        " ORDER BY id DESC LIMIT 1",
        (event_id, entity, entity_id),
    ).fetchone()
    return None if row is None else (row[0], row[1])


def _history(row: Row) -> dict[str, Any]:
    names = row.keys()  # a row iterates over its values, as a tuple does
    data = {name: row[name] for name in names}
    data["changes"] = {k: {"old": v[0], "new": v[1]} for k, v in msgspec.json.decode(row["changes"]).items()}
    return data


def resolve_feedback_alias(tx: Tx, feedback_id: str) -> str:
    """The record a feedback id stands for: itself, or the record it was merged into."""
    row = tx.execute("SELECT feedback_id FROM feedback_aliases WHERE alias_id = ?", (feedback_id,)).fetchone()
    return feedback_id if row is None else str(row[0])


def feedback_owner(tx: Tx, feedback_id: str) -> tuple[str, str] | None:
    """(event id, author id) of the feedback this id names (itself or through an alias), in any event."""
    row = tx.execute(
        "SELECT event_id, author_id FROM feedback WHERE id = ?"
        " UNION ALL SELECT f.event_id, f.author_id FROM feedback_aliases a JOIN feedback f ON f.id = a.feedback_id"
        " WHERE a.alias_id = ? LIMIT 1",
        (feedback_id, feedback_id),
    ).fetchone()
    return None if row is None else (str(row[0]), str(row[1]))


def feedback_of(tx: Tx, author_id: str, visit_id: str) -> str | None:
    """The id of someone's feedback on a visit, if they gave any."""
    row = tx.execute("SELECT id FROM feedback WHERE author_id = ? AND visit_id = ?", (author_id, visit_id)).fetchone()
    return None if row is None else str(row[0])


def add_feedback_alias(tx: Tx, alias_id: str, feedback_id: str) -> None:
    """Let a second device's feedback id stand for the record it merged into."""
    tx.execute("INSERT INTO feedback_aliases (alias_id, feedback_id) VALUES (?, ?)", (alias_id, feedback_id))
