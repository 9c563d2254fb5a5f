"""Blob bytes in PostgreSQL itself (``STUDYVISIT_BLOB_STORE=database``): several servers, no shared disk.

A blob is rows of ``blob_chunks`` (at most 1 MiB each, keyed by the byte they start at), a preview
one row of ``blob_previews``. An upload being received is a ``blob_uploads`` row with its own
``upload_chunks``. Every statement is a short transaction on a pooled connection: no connection
is held while a phone sends its body or a client reads a download, and no whole photo is ever in
memory (a request holds at most about 1 MiB of it).

- A part of a resumable upload is stored a chunk at a time: each chunk's transaction locks the
  upload's row (``SELECT … FOR UPDATE``), checks that it stands where this request left it, adds
  the chunk and moves ``acked``. So a byte counts once it is committed, a request that resumes on
  another server continues from what the database holds, and two servers appending to the same
  upload take turns: the one that finds the row moved on stops (409, with the offset).
- The chunk that completes an upload is not committed alone: it is written in the transaction that
  checks the hash, moves the chunks to the blob and inserts its ``blobs`` row. Either the blob is
  whole and recorded, or nothing of that chunk counts. There is no state between (no sidecar with
  every byte acknowledged but no row, as the directory store has to repair).
- Landings of the same blob take turns on an advisory lock: chunk boundaries differ between uploads,
  so one blob's chunks must come from one of them, and a purge must not remove what a landing keeps.
"""

import contextlib
import hashlib
import io
from collections.abc import Callable, Generator, Iterator
from datetime import UTC, datetime
from typing import Any, BinaryIO, TypeVar

from server.errors import DomainError
from server.storage.blob_store import Check, UploadRaceError
from server.storage.blobs import CHUNK, SNIFF_BYTES, PartialState, UploadOwner
from server.storage.db import utcnow
from server.storage.pg.database import PgDatabase
from server.storage.unit import Store, Tx

T = TypeVar("T")

_NEXT_UPLOAD_CHUNK = "SELECT start, data FROM upload_chunks WHERE upload_id = ? AND start > ? ORDER BY start LIMIT 1"
_NEXT_BLOB_CHUNK = "SELECT start, data FROM blob_chunks WHERE sha256 = ? AND start > ? ORDER BY start LIMIT 1"
# The chunk that holds byte `pos`: the last one starting at or before it.
_CHUNK_AT = "SELECT start, data FROM blob_chunks WHERE sha256 = ? AND start <= ? ORDER BY start DESC LIMIT 1"
_MOVE_CHUNKS = (
    "INSERT INTO blob_chunks (sha256, start, data) SELECT ?, start, data FROM upload_chunks WHERE upload_id = ?"
)


def _lock_blob(tx: Tx, sha256: str) -> None:
    tx.execute("SELECT pg_advisory_xact_lock(hashtextextended('studyvisit.blob.' || ?::text, 0))", (sha256,))


def _has_bytes(tx: Tx, sha256: str) -> bool:
    return tx.execute("SELECT 1 FROM blob_chunks WHERE sha256 = ? LIMIT 1", (sha256,)).fetchone() is not None


def _chunks(tx: Tx, sql: str, key: object) -> Iterator[bytes]:
    """The chunks of a blob or an upload in order, one row in memory at a time."""
    start = -1
    while (row := tx.execute(sql, (key, start)).fetchone()) is not None:
        start = int(row[0])
        yield bytes(row[1])


def _digest(chunks: Iterator[bytes]) -> tuple[str, bytes]:
    digest, head = hashlib.sha256(), b""
    for chunk in chunks:
        if len(head) < SNIFF_BYTES:
            head += chunk[: SNIFF_BYTES - len(head)]
        digest.update(chunk)
    return digest.hexdigest(), head


def _drop_resumable(tx: Tx, owner: UploadOwner, sha256: str) -> None:
    # Unless a request is appending to it right now (its row is locked): that one lands or fails alone.
    tx.execute(
        "DELETE FROM blob_uploads WHERE id IN (SELECT id FROM blob_uploads WHERE event_id = ? AND account_id = ?"
        " AND sha256 = ? AND resumable FOR UPDATE SKIP LOCKED)",
        (owner.event_id, owner.account_id, sha256),
    )


class PgWholeUpload:
    """A whole upload: hashed as it arrives, its chunks kept under a row of its own until it lands."""

    def __init__(self, db: PgDatabase) -> None:
        self._db = db
        self._hash = hashlib.sha256()
        self._buffer = bytearray()
        self._id: int | None = None  # its blob_uploads row, once a first chunk was stored
        self._stored = 0
        self._landed = False
        self.size = 0
        self.head = b""

    def write(self, chunk: bytes) -> None:
        """Append bytes; every full MiB goes to the database."""
        self._hash.update(chunk)
        if len(self.head) < SNIFF_BYTES:
            self.head += chunk[: SNIFF_BYTES - len(self.head)]
        self.size += len(chunk)
        self._buffer += chunk
        while len(self._buffer) >= CHUNK:
            self._store(bytes(self._buffer[:CHUNK]))
            del self._buffer[:CHUNK]

    def _store(self, piece: bytes) -> None:
        with self._db.write() as tx:
            upload_id = self._id
            if upload_id is None:
                row = tx.execute(
                    "INSERT INTO blob_uploads (event_id, account_id, sha256, resumable, total, acked, updated_at)"
                    " VALUES ('', '', '', false, 0, 0, ?) RETURNING id",
                    (utcnow(),),
                ).fetchone()
                assert row is not None  # RETURNING always gives the row
                upload_id = int(row[0])
            tx.execute(
                "INSERT INTO upload_chunks (upload_id, start, data) VALUES (?, ?, ?)", (upload_id, self._stored, piece)
            )
            tx.execute(
                "UPDATE blob_uploads SET acked = ?, updated_at = ? WHERE id = ?",
                (self._stored + len(piece), utcnow(), upload_id),
            )
        self._id = upload_id
        self._stored += len(piece)

    def finish(self) -> str:
        """The SHA-256 of everything written (its last bytes wait for ``land``)."""
        return self._hash.hexdigest()

    def land(self, db: Store, sha256: str, owner: UploadOwner, record: Callable[[Tx], T]) -> T:
        """Make the chunks the blob's (unless it is held already) and record it, in one transaction."""
        with self._db.write() as tx:
            _lock_blob(tx, sha256)
            if not _has_bytes(tx, sha256):  # stored once, whoever uploads the same bytes later
                if self._id is not None:
                    tx.execute(_MOVE_CHUNKS, (sha256, self._id))
                if self._buffer:
                    tx.execute(
                        "INSERT INTO blob_chunks (sha256, start, data) VALUES (?, ?, ?)",
                        (sha256, self._stored, bytes(self._buffer)),
                    )
            if self._id is not None:
                tx.execute("DELETE FROM blob_uploads WHERE id = ?", (self._id,))
            _drop_resumable(tx, owner, sha256)  # a resumable attempt at the same bytes is moot now
            outcome = record(tx)
        self._landed = True
        return outcome

    def discard(self) -> None:
        """Forget the bytes (a no-op once they landed)."""
        self._buffer.clear()
        if self._id is not None and not self._landed:
            with self._db.write() as tx:
                tx.execute("DELETE FROM blob_uploads WHERE id = ?", (self._id,))
            self._id = None


class PgResumableUpload:
    """One request's turn at an account's resumable upload; see the module's docstring for the locking."""

    def __init__(self, db: PgDatabase, owner: UploadOwner, sha256: str, state: PartialState | None) -> None:
        self._db = db
        self.owner = owner
        self.sha256 = sha256
        self.total = state.total if state else 0
        self._acked = state.offset if state else 0  # what the database holds, as this request last saw it
        self._buffer = bytearray()  # appended after _acked, not stored yet (at most 1 MiB)

    @property
    def offset(self) -> int:
        """The bytes acknowledged, and appended by this request."""
        return self._acked + len(self._buffer)

    @property
    def unfinished_landing(self) -> bool:
        """Never: the bytes of an upload become whole in the transaction that records the blob."""
        return False

    def _locked(self, tx: Tx) -> int:
        """The upload's row id, locked; UploadRaceError when another request moved it since this one looked."""
        owner = self.owner
        key = (owner.event_id, owner.account_id, self.sha256)
        for _ in range(3):
            tx.execute(
                "INSERT INTO blob_uploads (event_id, account_id, sha256, resumable, total, acked, updated_at)"
                " VALUES (?, ?, ?, true, ?, 0, ?) ON CONFLICT (event_id, account_id, sha256) WHERE resumable DO NOTHING",
                (*key, self.total, utcnow()),
            )
            row = tx.execute(
                "SELECT id, total, acked FROM blob_uploads WHERE event_id = ? AND account_id = ? AND sha256 = ?"
                " AND resumable FOR UPDATE",
                key,
            ).fetchone()
            if row is not None:
                break
            # The row was there for the INSERT and gone for the SELECT: another request landed the
            # upload (or a purge removed it) in between. Make it anew.
        else:
            raise UploadRaceError(0)
        acked = int(row["acked"])
        if acked != self._acked or (acked and int(row["total"]) != self.total):
            raise UploadRaceError(acked)
        return int(row["id"])

    def _store(self, piece: bytes) -> None:
        with self._db.write() as tx:
            upload_id = self._locked(tx)
            tx.execute(
                "INSERT INTO upload_chunks (upload_id, start, data) VALUES (?, ?, ?)", (upload_id, self._acked, piece)
            )
            tx.execute(
                "UPDATE blob_uploads SET total = ?, acked = ?, updated_at = ? WHERE id = ?",
                (self.total, self._acked + len(piece), utcnow(), upload_id),
            )
        self._acked += len(piece)

    def append(self, chunk: bytes) -> None:
        """Add bytes; each full MiB is committed at once, except the one that would complete the upload."""
        self._buffer += chunk
        while len(self._buffer) >= CHUNK and self._acked + CHUNK < self.total:
            self._store(bytes(self._buffer[:CHUNK]))
            del self._buffer[:CHUNK]

    def commit(self) -> None:
        """Commit what this request appended, unless it completes the upload: that waits for ``land``."""
        if self._buffer and self.offset < self.total:
            self._store(bytes(self._buffer))
            self._buffer.clear()

    def rollback(self, offset: int) -> None:
        """Forget what this request appended past ``offset``, committed chunks too."""
        if offset >= self._acked:
            del self._buffer[offset - self._acked :]
            return
        self._buffer.clear()
        with self._db.write() as tx:
            upload_id = self._locked(tx)
            if offset == 0:
                tx.execute("DELETE FROM blob_uploads WHERE id = ?", (upload_id,))
            else:
                tx.execute("DELETE FROM upload_chunks WHERE upload_id = ? AND start >= ?", (upload_id, offset))
                tx.execute(
                    "UPDATE blob_uploads SET acked = ?, updated_at = ? WHERE id = ?", (offset, utcnow(), upload_id)
                )
        self._acked = offset

    def land(self, db: Store, check: Check, record: Callable[[Tx, str], T]) -> T | None:
        """Store the last chunk, check the whole, make it the blob's and record it: one transaction."""
        refused = False
        try:
            with self._db.write() as tx:
                upload_id = self._locked(tx)
                if self._buffer:
                    tx.execute(
                        "INSERT INTO upload_chunks (upload_id, start, data) VALUES (?, ?, ?)",
                        (upload_id, self._acked, bytes(self._buffer)),
                    )
                digest, head = _digest(_chunks(tx, _NEXT_UPLOAD_CHUNK, upload_id))
                try:
                    media_type = check(digest, head)
                except DomainError:
                    refused = True
                    raise
                _lock_blob(tx, self.sha256)
                if not _has_bytes(tx, self.sha256):
                    tx.execute(_MOVE_CHUNKS, (self.sha256, upload_id))
                tx.execute("DELETE FROM blob_uploads WHERE id = ?", (upload_id,))
                outcome = record(tx, media_type)
        except DomainError:
            if refused:
                self._buffer.clear()
                with self._db.write() as tx, contextlib.suppress(UploadRaceError):
                    # Nothing of a refused upload stays behind (unless another request took it on meanwhile).
                    tx.execute("DELETE FROM blob_uploads WHERE id = ?", (self._locked(tx),))
                self._acked = 0
            raise
        self._buffer.clear()
        self._acked = 0
        return outcome

    def close(self) -> None:
        """Forget what was not stored: it was never acknowledged."""
        self._buffer.clear()


class PgBlobReader(io.RawIOBase):
    """A complete blob as a seekable file, read a chunk row at a time (for Pillow and the zip export)."""

    def __init__(self, db: PgDatabase, sha256: str, size: int) -> None:
        super().__init__()
        self._db = db
        self._sha256 = sha256
        self._size = size
        self._pos = 0
        self._chunk: tuple[int, bytes] = (0, b"")

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        if self._pos >= self._size:
            return 0
        start, data = self._chunk
        if not start <= self._pos < start + len(data):
            with self._db.statement() as tx:
                row = tx.execute(_CHUNK_AT, (self._sha256, self._pos)).fetchone()
            if row is None:
                return 0
            start, data = self._chunk = (int(row[0]), bytes(row[1]))
        view = memoryview(data)[self._pos - start :]
        n = min(len(buffer), len(view))
        memoryview(buffer).cast("B")[:n] = view[:n]
        self._pos += n
        return n


class PgBlobStore:
    """Blobs, previews and unfinished uploads as rows of the PostgreSQL database the server serves from."""

    def __init__(self, db: PgDatabase) -> None:
        self.db = db

    def new_temp(self) -> PgWholeUpload:
        """A new whole upload."""
        return PgWholeUpload(self.db)

    def open_partial(self, owner: UploadOwner, sha256: str, wait_s: float = 0) -> PgResumableUpload:
        """The account's upload of this blob; appends are serialised chunk by chunk, so never None."""
        return PgResumableUpload(self.db, owner, sha256, self.partial_state(owner, sha256))

    def partial_state(self, owner: UploadOwner, sha256: str) -> PartialState | None:
        """The account's unfinished upload of this blob: its total and committed offset."""
        with self.db.statement() as tx:
            row = tx.execute(
                "SELECT total, acked FROM blob_uploads WHERE event_id = ? AND account_id = ? AND sha256 = ? AND resumable",
                (owner.event_id, owner.account_id, sha256),
            ).fetchone()
        if row is None:
            return None
        return PartialState(total=int(row[0]), offset=int(row[1]), event_id=owner.event_id, account_id=owner.account_id)

    def partial_uploads(self, event_id: str | None = None) -> Iterator[tuple[UploadOwner, str, PartialState]]:
        """Every unfinished resumable upload (of one event, when given) with committed bytes."""
        sql = "SELECT event_id, account_id, sha256, total, acked FROM blob_uploads WHERE resumable AND acked > 0"
        with self.db.statement() as tx:
            if event_id is None:
                rows = tx.execute(sql).fetchall()
            else:
                rows = tx.execute(sql + " AND event_id = ?", (event_id,)).fetchall()
        for event, account, sha256, total, acked in rows:
            state = PartialState(total=int(total), offset=int(acked), event_id=event, account_id=account)
            yield UploadOwner(event, account), sha256, state

    def partial_bytes(self, owner: UploadOwner, *, event_wide: bool = False, besides: str = "") -> int:
        """Bytes held by unfinished uploads of this account (or of its whole event), except of one blob."""
        with self.db.statement() as tx:
            row = tx.execute(
                "SELECT coalesce(sum(acked), 0) FROM blob_uploads WHERE resumable AND event_id = ?"
                " AND (? OR account_id = ?) AND NOT (account_id = ? AND sha256 = ?)",
                (owner.event_id, event_wide, owner.account_id, owner.account_id, besides),
            ).fetchone()
        assert row is not None  # an aggregate always gives a row
        return int(row[0])

    @contextlib.contextmanager
    def open_blob(self, sha256: str) -> Generator[BinaryIO]:
        """A complete blob's bytes, read a chunk at a time as the caller reads."""
        with self.db.statement() as tx:
            row = tx.execute(
                "SELECT max(start + octet_length(data)) FROM blob_chunks WHERE sha256 = ?", (sha256,)
            ).fetchone()
        if row is None or row[0] is None:
            raise FileNotFoundError(f"no blob {sha256} in the database")
        with io.BufferedReader(PgBlobReader(self.db, sha256, int(row[0])), CHUNK) as file:
            yield file  # type: ignore[misc]  # a BufferedReader is a BinaryIO in all but name

    def read_range(self, sha256: str, first: int, last: int) -> Iterator[bytes]:
        """Bytes ``first`` to ``last`` (inclusive), a chunk row per statement: no connection held between."""
        pos = first
        while pos <= last:
            with self.db.statement() as tx:
                row = tx.execute(_CHUNK_AT, (sha256, pos)).fetchone()
            if row is None:
                return
            start, data = int(row[0]), bytes(row[1])
            piece = data[pos - start : last + 1 - start]
            if not piece:
                return
            yield piece
            pos += len(piece)

    def read_preview(self, sha256: str, width: int, extension: str) -> bytes | None:
        """A preview made before, if any."""
        with self.db.statement() as tx:
            row = tx.execute(
                "SELECT data FROM blob_previews WHERE sha256 = ? AND width = ? AND extension = ?",
                (sha256, width, extension),
            ).fetchone()
        return None if row is None else bytes(row[0])

    def save_preview(self, sha256: str, width: int, extension: str, data: bytes) -> None:
        """Keep a preview; two requests making it at once both succeed (the same bytes either way)."""
        with self.db.statement() as tx:
            tx.execute(
                "INSERT INTO blob_previews (sha256, width, extension, data) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (sha256, width, extension, data),
            )

    def purge_stale(self, older_than_s: float, now: float | None = None) -> int:
        """Remove uploads untouched for this long, not one whose row a request holds locked; how many."""
        moment = datetime.now(UTC).timestamp() if now is None else now
        cutoff = datetime.fromtimestamp(moment - older_than_s, UTC)
        with self.db.write() as tx:
            return tx.execute(
                "DELETE FROM blob_uploads WHERE id IN"
                " (SELECT id FROM blob_uploads WHERE updated_at < ? FOR UPDATE SKIP LOCKED)",
                (cutoff,),
            ).rowcount

    def unrecorded_blobs(self, recorded: Callable[[str], bool]) -> Iterator[tuple[str, int, bytes]]:
        """None ever: a blob's chunks and its row are committed together."""
        return iter(())

    def file_digest(self, sha256: str) -> str | None:
        """The SHA-256 of a complete blob's chunks as stored (None when there are none)."""
        with self.db.read() as tx:
            if not _has_bytes(tx, sha256):
                return None
            return _digest(_chunks(tx, _NEXT_BLOB_CHUNK, sha256))[0]

    def remove_blob(self, sha256: str) -> None:
        """Delete a blob's chunks and previews, unless it was recorded again meanwhile."""
        with self.db.write() as tx:
            _lock_blob(tx, sha256)
            if tx.execute("SELECT 1 FROM blobs WHERE sha256 = ?", (sha256,)).fetchone() is not None:
                return
            tx.execute("DELETE FROM blob_chunks WHERE sha256 = ?", (sha256,))
            tx.execute("DELETE FROM blob_previews WHERE sha256 = ?", (sha256,))
