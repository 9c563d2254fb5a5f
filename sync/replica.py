"""The field client's local SQLite store: server-confirmed records, the outbox, and what needs attention.

Replicache-style: ``records`` holds only state the server sent; the client overlays the outbox
when it reads. Every write here is one transaction, committed (WAL, ``synchronous=FULL``)
before the method returns, so a process killed at any point leaves a state the next sync
can finish from.
"""

import os
import sqlite3
import uuid
from collections.abc import Callable, Collection, Generator, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, NamedTuple

import msgspec

from schemas.sync import BlobMediaType, EntitySummary, MutationOutcome, MutationResult, PullResponse
from sync.checksum import checksum

SCHEMA_VERSION = 2
AttentionKind = Literal["rejected", "conflict", "upload"]
# pending: the server may lack it; uploaded: the server said it holds it (the copy stays while a
# queued mutation names it); corrupt: the copy here no longer matches its hash; refused: the
# server will not take it (too large, ...). Only a re-added photo moves corrupt/refused back.
UploadState = Literal["pending", "uploaded", "corrupt", "refused"]

SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)
    """,
    """
    -- Mutations not yet known to be in the replica. acked = 1: the server processed it (push
    -- answered) but stays, overlaid on reads, until a pull's last_mutation_id covers it, so a
    -- note never blinks out between push and pull. sent = 0: no push has carried it yet, so
    -- the server cannot know it and it may still be merged with a later edit (see _coalesce).
    CREATE TABLE IF NOT EXISTS outbox (
        id INTEGER PRIMARY KEY,
        type TEXT NOT NULL,
        args TEXT NOT NULL,
        client_time TEXT NOT NULL,
        created_at TEXT NOT NULL,
        sent INTEGER NOT NULL DEFAULT 0,
        acked INTEGER NOT NULL DEFAULT 0
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS records (
        entity TEXT NOT NULL,
        id TEXT NOT NULL,
        version INTEGER NOT NULL,
        data TEXT NOT NULL,
        PRIMARY KEY (entity, id)
    ) WITHOUT ROWID
    """,
    """
    -- A full pull lands here first and replaces records in one transaction at its last page.
    CREATE TABLE IF NOT EXISTS staging (
        entity TEXT NOT NULL,
        id TEXT NOT NULL,
        version INTEGER NOT NULL,
        data TEXT NOT NULL,
        PRIMARY KEY (entity, id)
    ) WITHOUT ROWID
    """,
    """
    -- key: "mutation:<id>" for push results, "record:<entity>:<id>" for conflicts pulled on a
    -- record, "blob:<sha256>" for a photo that could not be uploaded.
    CREATE TABLE IF NOT EXISTS attention (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        key TEXT NOT NULL UNIQUE,
        kind TEXT NOT NULL CHECK (kind IN ('rejected', 'conflict', 'upload')),
        mutation_id INTEGER,
        mutation_type TEXT,
        entity TEXT,
        entity_id TEXT,
        detail TEXT NOT NULL,
        dismissed INTEGER NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL
    )
    """,
    """
    -- Photos kept in the blob store beside this file, one row per file: written in the same
    -- transaction as the mutation that attaches them, deleted (with the file) once the server
    -- holds the blob and no queued mutation names it.
    CREATE TABLE IF NOT EXISTS uploads (
        sha256 TEXT PRIMARY KEY,
        size INTEGER NOT NULL,
        media_type TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('pending', 'uploaded', 'corrupt', 'refused')),
        created_at TEXT NOT NULL,
        confirmed_at TEXT
    ) WITHOUT ROWID
    """,
)


def utcnow() -> str:
    """The current time as RFC 3339 in UTC."""
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class OutboxEntry(msgspec.Struct, kw_only=True, frozen=True):
    """A queued mutation."""

    id: int
    type: str
    args: dict[str, Any]
    client_time: str
    created_at: str
    acked: bool = False


class StoredRecord(msgspec.Struct, kw_only=True, frozen=True):
    """A record as the server last sent it."""

    entity: str
    id: str
    version: int
    data: dict[str, Any]


class AttentionItem(msgspec.Struct, kw_only=True, frozen=True):
    """Something the user should look at: a rejected mutation, or a conflict kept on a record."""

    id: int
    kind: AttentionKind
    mutation_id: int | None
    mutation_type: str | None
    entity: str | None
    entity_id: str | None
    detail: dict[str, Any]
    dismissed: bool
    created_at: str


class Upload(msgspec.Struct, kw_only=True, frozen=True):
    """A photo kept on this device, and whether the server holds it yet."""

    sha256: str
    size: int
    media_type: BlobMediaType
    state: UploadState
    created_at: str
    confirmed_at: str | None = None


class PushTally(msgspec.Struct, kw_only=True):
    """How many mutations of a push ended in each status."""

    applied: int = 0
    duplicate: int = 0
    rejected: int = 0
    conflict: int = 0
    out_of_order: int = 0


# Which entity and id a mutation touches, for attention items.
_TARGET = {"note.put": ("note", "id"), "note.delete": ("note", "id"), "feedback.put": ("feedback", "id")}


def _target(mutation_type: str, args: dict[str, Any]) -> tuple[str | None, str | None]:
    if mutation_type == "site.patch":
        return "site", args.get("site_id")
    entity, key = _TARGET.get(mutation_type, (None, ""))
    return entity, args.get(key) if entity else None


def _make_private(path: Path) -> None:
    """Create the replica file readable by its owner only (it holds the account's token), or tighten it.

    SQLite gives the ``-wal`` and ``-shm`` files the database file's mode, so this covers them too;
    existing ones, made by an older client, are tightened as well.
    """
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    for name in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        with suppress(FileNotFoundError):
            os.chmod(name, 0o600)


class Replica:
    """One device's SQLite file: meta, outbox, records, staging and attention tables."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _make_private(self.path)
        # isolation_level=None: transactions are ours (BEGIN IMMEDIATE), never implicit.
        self.conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")
        # FULL: a note the user saved survives power loss, not only a crash of the app.
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.execute("PRAGMA busy_timeout=30000")
        with self.write() as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise RuntimeError(f"{self.path} was written by a newer client (schema {version})")
            if version == 1:
                # Schema 2 admits 'upload' attention items; SQLite changes a CHECK only by a rebuild.
                conn.execute("ALTER TABLE attention RENAME TO attention_v1")
            # Not executescript: it would COMMIT the transaction this runs in.
            for statement in SCHEMA:
                conn.execute(statement)
            if version == 1:
                conn.execute("INSERT INTO attention SELECT * FROM attention_v1")
                conn.execute("DROP TABLE attention_v1")
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("INSERT OR IGNORE INTO meta VALUES ('client_id', ?)", (str(uuid.uuid4()),))
            conn.execute("INSERT OR IGNORE INTO meta VALUES ('next_mutation_id', '1')")

    def close(self) -> None:
        """Close the file."""
        self.conn.close()

    @contextmanager
    def write(self) -> Generator[sqlite3.Connection, None, None]:
        """A write transaction: all or nothing, durable when the block ends."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    # --- meta -----------------------------------------------------------------------------

    def get(self, key: str) -> str | None:
        """A meta value."""
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def put(self, **values: str | None) -> None:
        """Set (or, with None, remove) meta values in one transaction."""
        with self.write() as conn:
            for key, value in values.items():
                _put_meta(conn, key, value)

    @property
    def client_id(self) -> str:
        """This install's id, generated once."""
        value = self.get("client_id")
        assert value is not None
        return value

    def reset_for_account(self) -> None:
        """Start over for another account: new client id, mutation ids from 1, nothing pulled or queued."""
        with self.write() as conn:
            # The blob store's files left without a row are swept by the client.
            for table in ("outbox", "records", "staging", "attention", "uploads"):
                conn.execute(f"DELETE FROM {table}")
            conn.execute("DELETE FROM meta WHERE key IN ('cursor', 'full_pull_cursor', 'last_sync', 'account')")
            # The server counts mutation ids per (account, client): a new pair starts at 1.
            _put_meta(conn, "client_id", str(uuid.uuid4()))
            _put_meta(conn, "next_mutation_id", "1")

    def start_over_as_new_client(self) -> None:
        """The server lost mutations it had acknowledged (restored from a backup): the ids between
        its last one and this outbox can never be filled. Become a new install (new client id),
        renumber the outbox from 1 in its order, to be sent again whole, and rebuild the replica
        with a full pull, since the server's state went back in time (docs §3, "Gaps")."""
        old_client = self.client_id
        with self.write() as conn:
            first = conn.execute("SELECT MIN(id) FROM outbox").fetchone()[0]
            offset = int(first or 1) - 1
            # Two steps, so that no row takes an id another still holds mid-update.
            conn.execute("UPDATE outbox SET id = -id")
            conn.execute("UPDATE outbox SET id = -id - ?, sent = 0, acked = 0", (offset,))
            # Results of the old client's mutations stay visible, under keys the new ids cannot take.
            conn.execute("UPDATE attention SET key = key || ':' || ? WHERE key LIKE 'mutation:%'", (old_client,))
            last = conn.execute("SELECT COALESCE(MAX(id), 0) FROM outbox").fetchone()[0]
            _put_meta(conn, "client_id", str(uuid.uuid4()))
            _put_meta(conn, "next_mutation_id", str(int(last) + 1))
            conn.execute("DELETE FROM staging")
            _put_meta(conn, "cursor", None)
            _put_meta(conn, "full_pull_cursor", "")

    # --- outbox ---------------------------------------------------------------------------

    def enqueue(
        self,
        mutation_type: str,
        args: dict[str, Any],
        client_time: str,
        *,
        uploads: Sequence[tuple[str, int, str]] = (),
        guard: Callable[[], None] | None = None,
    ) -> None:
        """Queue a mutation, merged into the not-yet-sent ones of the same record where it can be.

        Unsent mutations are a suffix of the outbox that the server has never seen, so it is
        rewritten with consecutive ids from its first one: ids stay gap-free and the server
        sees one edit, based on the version the user started from, instead of an edit that
        would conflict with this device's own creation of the record.

        ``uploads`` (sha256, size, media type) are the photos the mutation attaches: recorded in
        the same transaction, so neither exists without the other. ``guard`` runs first, inside
        the transaction, and may raise to abort it (the client checks there that the photos'
        files are still in the store: freeing one deletes it under the same lock).
        """
        with self.write() as conn:
            if guard is not None:
                guard()
            conn.executemany(
                "INSERT INTO uploads (sha256, size, media_type, state, created_at) VALUES (?, ?, ?, 'pending', ?) "
                "ON CONFLICT (sha256) DO UPDATE SET state = CASE WHEN uploads.state IN ('corrupt', 'refused') "
                "THEN 'pending' ELSE uploads.state END",
                [(sha256, size, media_type, utcnow()) for sha256, size, media_type in uploads],
            )
            next_id = int(conn.execute("SELECT value FROM meta WHERE key = 'next_mutation_id'").fetchone()[0])
            rows = conn.execute(
                "SELECT id, type, args, client_time, created_at FROM outbox WHERE sent = 0 ORDER BY id"
            ).fetchall()
            unsent = [_Draft(r[1], msgspec.json.decode(r[2]), r[3], r[4]) for r in rows]
            first = rows[0][0] if rows else next_id
            new = _Draft(mutation_type, args, client_time, utcnow())
            drafts = _coalesce(unsent, new, server_knows=lambda e, i: _server_knows(conn, e, i))
            conn.execute("DELETE FROM outbox WHERE sent = 0")
            conn.executemany(
                "INSERT INTO outbox (id, type, args, client_time, created_at) VALUES (?, ?, ?, ?, ?)",
                [
                    (first + n, d.type, msgspec.json.encode(d.args).decode(), d.client_time, d.created_at)
                    for n, d in enumerate(drafts)
                ],
            )
            _put_meta(conn, "next_mutation_id", str(first + len(drafts)))

    def mark_sent(self, last_id: int) -> None:
        """Record, before a push goes out, that the server may know mutations up to ``last_id``."""
        with self.write() as conn:
            conn.execute("UPDATE outbox SET sent = 1 WHERE id <= ? AND sent = 0", (last_id,))

    def outbox(self, *, acked: bool | None = None, limit: int = -1) -> list[OutboxEntry]:
        """Queued mutations in id order: all, only those to send (acked=False), or only acknowledged ones."""
        where = "" if acked is None else f"WHERE acked = {int(acked)}"
        rows = self.conn.execute(
            f"SELECT id, type, args, client_time, created_at, acked FROM outbox {where} ORDER BY id LIMIT ?", (limit,)
        ).fetchall()
        return [
            OutboxEntry(
                id=r[0], type=r[1], args=msgspec.json.decode(r[2]), client_time=r[3], created_at=r[4], acked=bool(r[5])
            )
            for r in rows
        ]

    def count_outbox(self, *, acked: bool) -> int:
        """How many queued mutations are (not) acknowledged by the server."""
        return int(self.conn.execute("SELECT count(*) FROM outbox WHERE acked = ?", (int(acked),)).fetchone()[0])

    def acknowledge(self, last_mutation_id: int, results: list[MutationResult]) -> PushTally:
        """Record a push response: processed mutations are acked, rejections and conflicts go to attention.

        Rejected mutations leave the outbox at once (their effect must not be overlaid); the
        others stay until a pull shows their effect. Mutations above ``last_mutation_id`` were
        not processed and are marked to be sent again, whatever an earlier push said.
        """
        tally = PushTally()
        with self.write() as conn:
            for sent in results:
                setattr(tally, sent.status, getattr(tally, sent.status) + 1)
                # A retry whose first answer was lost brings that answer back: show it as if new.
                result: MutationOutcome = sent.result if sent.status == "duplicate" and sent.result else sent
                if result.status not in ("rejected", "conflict") or result.id > last_mutation_id:
                    continue
                row = conn.execute("SELECT type, args FROM outbox WHERE id = ?", (result.id,)).fetchone()
                if row is None:
                    continue
                mutation_type, args = row[0], msgspec.json.decode(row[1])
                entity, entity_id = _target(mutation_type, args)
                detail = {"status": result.status, "type": mutation_type, "args": args}
                detail |= msgspec.to_builtins(result, builtin_types=None)
                _upsert_attention(
                    conn,
                    f"mutation:{result.id}",
                    result.status,
                    detail,
                    mutation_id=result.id,
                    mutation_type=mutation_type,
                    entity=entity,
                    entity_id=entity_id,
                )
                if result.status == "rejected":
                    conn.execute("DELETE FROM outbox WHERE id = ?", (result.id,))
            conn.execute("UPDATE outbox SET acked = 1 WHERE id <= ?", (last_mutation_id,))
            conn.execute("UPDATE outbox SET acked = 0 WHERE id > ?", (last_mutation_id,))
        return tally

    # --- records --------------------------------------------------------------------------

    def record(self, entity: str, record_id: str) -> StoredRecord | None:
        """One server-confirmed record."""
        row = self.conn.execute(
            "SELECT entity, id, version, data FROM records WHERE entity = ? AND id = ?", (entity, record_id)
        ).fetchone()
        return None if row is None else _record(row)

    def records(self, entity: str) -> list[StoredRecord]:
        """Every server-confirmed record of a kind, by id."""
        rows = self.conn.execute(
            "SELECT entity, id, version, data FROM records WHERE entity = ? ORDER BY id", (entity,)
        ).fetchall()
        return [_record(row) for row in rows]

    def summary(self) -> dict[str, EntitySummary]:
        """Count and checksum of the records of each kind, to compare with a pull's summary."""
        pairs: dict[str, list[tuple[str, int]]] = {}
        for entity, record_id, version in self.conn.execute("SELECT entity, id, version FROM records"):
            pairs.setdefault(entity, []).append((record_id, version))
        return {entity: EntitySummary(count=len(p), checksum=checksum(p)) for entity, p in pairs.items()}

    # --- pulling --------------------------------------------------------------------------

    def pull_position(self) -> tuple[bool, str | None]:
        """Whether a full pull is under way, and the cursor to pull from (None: never pulled)."""
        staged = self.get("full_pull_cursor")
        if staged is not None:
            return True, staged
        return False, self.get("cursor")

    def begin_full_pull(self) -> None:
        """Drop the cursor and start (or restart) a full pull into an empty staging table.

        The records stay readable until the full pull's last page replaces them, so a crash
        half-way leaves the device with its old replica rather than a partial one.
        """
        with self.write() as conn:
            conn.execute("DELETE FROM staging")
            _put_meta(conn, "cursor", None)
            _put_meta(conn, "full_pull_cursor", "")

    def apply_page(self, page: PullResponse, *, full: bool) -> None:
        """Apply one pull page and save its cursor in one transaction.

        A full pull writes to staging and, on its last page, replaces the records with it. The
        last page's ``last_mutation_id`` says which mutations the pulled state includes: those
        leave the outbox, since their effect is now in the records.
        """
        table = "staging" if full else "records"
        with self.write() as conn:
            for change in page.changes:
                data = change.data or {}
                if change.op == "put":
                    conn.execute(
                        f"INSERT OR REPLACE INTO {table} (entity, id, version, data) VALUES (?, ?, ?, ?)",
                        (change.entity, change.id, change.version, msgspec.json.encode(data).decode()),
                    )
                else:
                    conn.execute(f"DELETE FROM {table} WHERE entity = ? AND id = ?", (change.entity, change.id))
                _note_conflicts(conn, change.entity, change.id, change.op, data.get("conflicts") or [])
            if full and not page.has_more:
                conn.execute("DELETE FROM records")
                conn.execute("INSERT INTO records SELECT * FROM staging")
                conn.execute("DELETE FROM staging")
                _put_meta(conn, "full_pull_cursor", None)
                # Conflicts of records the full pull no longer returned have nobody left to resolve them.
                conn.execute(
                    "DELETE FROM attention WHERE key LIKE 'record:%' AND json_extract(detail, '$.op') = 'put' "
                    "AND NOT EXISTS (SELECT 1 FROM records r WHERE r.entity = attention.entity "
                    "AND r.id = attention.entity_id)"
                )
            _put_meta(conn, "full_pull_cursor" if full and page.has_more else "cursor", page.cursor)
            if not page.has_more:
                conn.execute("DELETE FROM outbox WHERE id <= ?", (page.last_mutation_id,))
                # The server has not seen these (restored from a backup?): send them again.
                conn.execute("UPDATE outbox SET acked = 0 WHERE id > ?", (page.last_mutation_id,))
                _put_meta(conn, "last_sync", utcnow())

    # --- uploads --------------------------------------------------------------------------

    def uploads(self, *states: UploadState) -> list[Upload]:
        """Photos kept on this device (in the given states, or all), oldest first."""
        where = f"WHERE state IN ({', '.join('?' for _ in states)})" if states else ""
        rows = self.conn.execute(
            f"SELECT sha256, size, media_type, state, created_at, confirmed_at FROM uploads {where} "
            "ORDER BY created_at, sha256",
            states,
        ).fetchall()
        return [
            Upload(sha256=r[0], size=r[1], media_type=r[2], state=r[3], created_at=r[4], confirmed_at=r[5])
            for r in rows
        ]

    def upload(self, sha256: str) -> Upload | None:
        """One kept photo's row."""
        row = self.conn.execute(
            "SELECT sha256, size, media_type, state, created_at, confirmed_at FROM uploads WHERE sha256 = ?", (sha256,)
        ).fetchone()
        if row is None:
            return None
        return Upload(
            sha256=row[0], size=row[1], media_type=row[2], state=row[3], created_at=row[4], confirmed_at=row[5]
        )

    def pending_uploads(self) -> tuple[int, int]:
        """How many photos wait for upload, and their bytes."""
        row = self.conn.execute(
            "SELECT count(*), coalesce(sum(size), 0) FROM uploads WHERE state = 'pending'"
        ).fetchone()
        return int(row[0]), int(row[1])

    def set_upload_state(self, sha256: str, state: UploadState, problem: dict[str, Any] | None = None) -> None:
        """Record how an upload went; ``problem`` puts it in attention, success takes it out."""
        with self.write() as conn:
            confirmed = utcnow() if state == "uploaded" else None
            conn.execute("UPDATE uploads SET state = ?, confirmed_at = ? WHERE sha256 = ?", (state, confirmed, sha256))
            if problem is not None:
                _upsert_attention(conn, f"blob:{sha256}", "upload", problem, entity="blob", entity_id=sha256)
            elif state == "uploaded":
                conn.execute("DELETE FROM attention WHERE key = ?", (f"blob:{sha256}",))

    def reopen_uploads(self, hashes: Collection[str]) -> set[str]:
        """The server says it lacks these blobs: upload the ones kept here again; return those not kept."""
        with self.write() as conn:
            kept: set[str] = set()
            for sha256 in hashes:
                row = conn.execute("SELECT state FROM uploads WHERE sha256 = ?", (sha256,)).fetchone()
                if row is None:
                    continue
                kept.add(sha256)
                if row[0] == "uploaded":
                    conn.execute(
                        "UPDATE uploads SET state = 'pending', confirmed_at = NULL WHERE sha256 = ?", (sha256,)
                    )
            for sha256 in set(hashes) - kept:
                detail = {
                    "reason": "missing",
                    "sha256": sha256,
                    "detail": "the server lacks a photo this device no longer holds",
                }
                _upsert_attention(conn, f"blob:{sha256}", "upload", detail, entity="blob", entity_id=sha256)
        return set(hashes) - kept

    def free_uploads(self, unlink: Callable[[str], None]) -> list[str]:
        """Drop photos the server holds and no queued mutation names, calling ``unlink`` for each
        inside the transaction (so a photo attached again meanwhile waits, and keeps its file)."""
        with self.write() as conn:
            rows = conn.execute(
                "SELECT sha256 FROM uploads WHERE state = 'uploaded' AND sha256 NOT IN "
                "(SELECT json_extract(a.value, '$.sha256') FROM outbox, json_each(outbox.args, '$.attachments') a)"
                " ORDER BY sha256"
            ).fetchall()
            freed = [str(r[0]) for r in rows]
            for sha256 in freed:
                conn.execute("DELETE FROM uploads WHERE sha256 = ?", (sha256,))
                unlink(sha256)
        return freed

    def has_unsynced(self) -> bool:
        """Whether anything of this device's user waits for the server: mutations or photos."""
        return bool(
            self.conn.execute(
                "SELECT EXISTS (SELECT 1 FROM outbox) OR EXISTS (SELECT 1 FROM uploads WHERE state = 'pending')"
            ).fetchone()[0]
        )

    # --- attention ------------------------------------------------------------------------

    def attention(self, *, include_dismissed: bool = False) -> list[AttentionItem]:
        """Items needing the user's attention, oldest first."""
        where = "" if include_dismissed else "WHERE dismissed = 0"
        rows = self.conn.execute(
            "SELECT id, kind, mutation_id, mutation_type, entity, entity_id, detail, dismissed, created_at "
            f"FROM attention {where} ORDER BY id"
        ).fetchall()
        return [
            AttentionItem(
                id=r[0],
                kind=r[1],
                mutation_id=r[2],
                mutation_type=r[3],
                entity=r[4],
                entity_id=r[5],
                detail=msgspec.json.decode(r[6]),
                dismissed=bool(r[7]),
                created_at=r[8],
            )
            for r in rows
        ]

    def dismiss(self, item_id: int) -> bool:
        """Hide an attention item; False if there is none with this id."""
        with self.write() as conn:
            return conn.execute("UPDATE attention SET dismissed = 1 WHERE id = ?", (item_id,)).rowcount > 0


class _Draft(NamedTuple):
    type: str
    args: dict[str, Any]
    client_time: str
    created_at: str


def _coalesce(unsent: list[_Draft], new: _Draft, *, server_knows: Callable[[str, str], bool]) -> list[_Draft]:
    """The unsent mutations with ``new`` merged in: one put (or patch) per record, nothing for a
    record created and deleted before any push."""
    target = _target(new.type, new.args)
    if new.type == "note.delete":
        kept = [d for d in unsent if not (d.type == "note.put" and _target(d.type, d.args) == target)]
        entity, record_id = target
        known = entity is not None and record_id is not None and server_knows(entity, record_id)
        return [*kept, new] if known else kept
    for n in range(len(unsent) - 1, -1, -1):
        old = unsent[n]
        if _target(old.type, old.args) != target:
            continue
        if old.type != new.type:
            break
        # Edits carry only what they change (docs §4): the merged one carries what either changed.
        args = (
            old.args
            | new.args
            | {
                "base_version": old.args.get("base_version", 0),
                "resolve_conflicts": bool(old.args.get("resolve_conflicts") or new.args.get("resolve_conflicts")),
            }
        )
        if isinstance(old.args.get("answers"), dict) and isinstance(new.args.get("answers"), dict):
            args["answers"] = old.args["answers"] | new.args["answers"]
        if new.type == "site.patch":
            fields = old.args["fields"] | new.args["fields"]
            if isinstance(old.args["fields"].get("description"), dict) and "description" in new.args["fields"]:
                fields["description"] = old.args["fields"]["description"] | new.args["fields"]["description"]
            args["fields"] = fields
        return [*unsent[:n], _Draft(old.type, args, new.client_time, old.created_at), *unsent[n + 1 :]]
    return [*unsent, new]


def _server_knows(conn: sqlite3.Connection, entity: str, record_id: str) -> bool:
    """Whether the server may hold this record: it was pulled, or a push carried a mutation of it."""
    if conn.execute("SELECT 1 FROM records WHERE entity = ? AND id = ?", (entity, record_id)).fetchone():
        return True
    rows = conn.execute("SELECT type, args FROM outbox WHERE sent = 1").fetchall()
    return any(_target(t, msgspec.json.decode(a)) == (entity, record_id) for t, a in rows)


def _put_meta(conn: sqlite3.Connection, key: str, value: str | None) -> None:
    if value is None:
        conn.execute("DELETE FROM meta WHERE key = ?", (key,))
    else:
        conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))


def _record(row: tuple[Any, ...]) -> StoredRecord:
    return StoredRecord(entity=row[0], id=row[1], version=row[2], data=msgspec.json.decode(row[3]))


def _upsert_attention(
    conn: sqlite3.Connection,
    key: str,
    kind: str,
    detail: dict[str, Any],
    *,
    mutation_id: int | None = None,
    mutation_type: str | None = None,
    entity: str | None = None,
    entity_id: str | None = None,
) -> None:
    # A dismissed item stays dismissed while it says the same thing; new content shows it again.
    conn.execute(
        "INSERT INTO attention (key, kind, mutation_id, mutation_type, entity, entity_id, detail, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET kind = excluded.kind, "
        "detail = excluded.detail, dismissed = CASE WHEN attention.detail = excluded.detail "
        "THEN attention.dismissed ELSE 0 END",
        (key, kind, mutation_id, mutation_type, entity, entity_id, msgspec.json.encode(detail).decode(), utcnow()),
    )


def _note_conflicts(conn: sqlite3.Connection, entity: str, record_id: str, op: str, conflicts: list[Any]) -> None:
    """Keep a pulled record's conflicts (or a deleted note's, sent to its owner) in attention."""
    key = f"record:{entity}:{record_id}"
    if conflicts:
        detail = {"op": op, "conflicts": conflicts}
        _upsert_attention(conn, key, "conflict", detail, entity=entity, entity_id=record_id)
    else:
        conn.execute("DELETE FROM attention WHERE key = ?", (key,))
