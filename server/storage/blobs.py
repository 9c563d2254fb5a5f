"""Blobs: their bytes on disk under the data directory, named by SHA-256, and their rows in the database.

Layout of the data directory::

    blobs/ab/abcdef...           complete blobs, immutable, stored once whoever uploaded them
    partial/<event>/<account>/<sha256>       one account's unfinished resumable upload
    partial/<event>/<account>/<sha256>.json  its declared total, the offset acknowledged so far, whose
    previews/ab/<sha256>-w480.jpg  downsized copies, made once
    tmp/                         files being written; what a crash leaves here is garbage, never a blob

``<event>`` and ``<account>`` are SHA-256 digests of the ids (file names never come from input).
Partial uploads are kept per account: how far one account got says nothing to another.

Every file that looks whole got there by a rename of a file that was fsynced first, followed by an
fsync of the directory, so a crash never leaves a half file under a final name. The ``blobs`` row
is inserted only after that rename: a row always has its bytes. A crash between the rename and the
row leaves a sidecar whose offset is its total: ``PartialUpload.landing`` tells, and the upload
service finishes the landing on the next request, or at start-up.
"""

import contextlib
import fcntl
import hashlib
import os
import re
import tempfile
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple, TypeVar

import msgspec

from schemas.common import SHA256_PATTERN
from server.errors import DomainError
from server.faults import fault_point
from server.storage.db import utcnow
from server.storage.rows import row_dict
from server.storage.unit import Store, Tx

CHUNK = 1024 * 1024
# Long enough for every signature below (HEIF needs 12 bytes: a box size, "ftyp" and the brand).
SNIFF_BYTES = 16
# ISO BMFF brands of HEIF images from phones (Apple's HEIC, Android's HEIF); AVIF is not among them.
HEIF_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"})
# How long to wait for another request that is appending to the same partial upload.
LOCK_WAIT_S = 1.0
_SHA256_NAME = re.compile(SHA256_PATTERN)
T = TypeVar("T")


class BlobRow(msgspec.Struct, kw_only=True, frozen=True):
    """A complete blob the server holds."""

    sha256: str
    size: int
    media_type: str
    created_at: str


class ExportNote(msgspec.Struct, kw_only=True, frozen=True):
    """A shared note as organizers export it, with its author's name and attachments."""

    id: str
    author_name: str
    visit_id: str | None
    visit_title: str | None = None
    site_id: str | None = None
    site_name: str | None = None
    body: str
    tags: list[str]
    captured_at: str | None
    updated_at: str
    attachments: list[dict[str, Any]]


# --- rows ---------------------------------------------------------------------------------


def get_blob(tx: Tx, sha256: str) -> BlobRow | None:
    """The blob's row, when the server holds it whole."""
    row = tx.execute("SELECT sha256, size, media_type, created_at FROM blobs WHERE sha256 = ?", (sha256,)).fetchone()
    return None if row is None else BlobRow(**dict(row))


def get_blobs(tx: Tx, hashes: Iterable[str]) -> dict[str, BlobRow]:
    """The rows of those of these blobs the server holds."""
    wanted = sorted(set(hashes))
    if not wanted:
        return {}
    marks = ", ".join("?" for _ in wanted)
    rows = tx.execute(f"SELECT sha256, size, media_type, created_at FROM blobs WHERE sha256 IN ({marks})", wanted)
    return {row[0]: BlobRow(**dict(row)) for row in rows}


def record_blob(tx: Tx, sha256: str, size: int, media_type: str) -> bool:
    """Note a blob whose bytes were just put in place; False when another upload did it first."""
    cur = tx.execute(
        "INSERT INTO blobs (sha256, size, media_type, created_at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
        (sha256, size, media_type, utcnow()),
    )
    return cur.rowcount == 1


def list_export_notes(tx: Tx, event_id: str, visit_id: str | None) -> list[ExportNote]:
    """Live notes shared with the organizers, of one visit or of the whole event, in the order they reached the server."""
    # The site: the note's own, else its visit's, so that the index names the place either way.
    sql = (
        "SELECT n.id, a.name AS author_name, n.visit_id, v.title AS visit_title,"
        " COALESCE(n.site_id, v.site_id) AS site_id, s.name AS site_name,"
        " n.body, n.tags, n.captured_at, n.updated_at, n.attachments"
        " FROM notes n JOIN accounts a ON a.id = n.author_id"
        " LEFT JOIN visits v ON v.event_id = n.event_id AND v.id = n.visit_id"
        " LEFT JOIN sites s ON s.event_id = n.event_id AND s.id = COALESCE(n.site_id, v.site_id)"
        " WHERE n.event_id = ? AND n.share_with_organizers AND NOT n.deleted"
    )
    params: list[object] = [event_id]
    if visit_id is not None:
        sql += " AND n.visit_id = ?"
        params.append(visit_id)
    # Arrival order, which later edits (or a photo landing) do not change, unlike updated_at.
    sql += " ORDER BY n.arrival"
    return [ExportNote(**row_dict("notes", row)) for row in tx.execute(sql, params)]


# --- bytes --------------------------------------------------------------------------------


def sniff_media_type(head: bytes) -> str | None:
    """The media type the first bytes of a file announce, among those notes may carry."""
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[4:8] == b"ftyp" and head[8:12] in HEIF_BRANDS:
        return "image/heic"
    if head.startswith(b"%PDF-"):
        return "application/pdf"
    return None


def _name(sha256: str) -> str:
    # Routes check the hash already; a file name is never built from anything else, whatever calls this.
    if not _SHA256_NAME.match(sha256):
        raise ValueError(f"not a SHA-256: {sha256[:80]!r}")
    return sha256


def blob_file(root: Path, sha256: str) -> Path:
    """Where a complete blob lives in the data directory ``root``."""
    return root / "blobs" / _name(sha256)[:2] / sha256


def _fsync_dir(path: Path) -> None:
    # A rename is durable only once the directory that holds the new name is on disk too.
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _make_dir(path: Path) -> None:
    if not path.is_dir():
        path.mkdir(parents=True, exist_ok=True)
        _fsync_dir(path.parent)


class TempUpload:
    """A new file in ``tmp/``, hashed while it is written, so the bytes are read once."""

    def __init__(self, files: "BlobFiles") -> None:
        self._files = files
        fd, name = tempfile.mkstemp(dir=files.tmp_dir, prefix="upload-")
        self.path = Path(name)
        self._file = os.fdopen(fd, "wb")
        self._hash = hashlib.sha256()
        self.size = 0
        self.head = b""
        self.moved = False

    def write(self, chunk: bytes) -> None:
        """Append bytes."""
        self._file.write(chunk)
        self._hash.update(chunk)
        if len(self.head) < SNIFF_BYTES:
            self.head += chunk[: SNIFF_BYTES - len(self.head)]
        self.size += len(chunk)

    def finish(self) -> str:
        """Flush the file to disk; returns the SHA-256 of everything written."""
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        return self._hash.hexdigest()

    def land(self, db: Store, sha256: str, owner: "UploadOwner", record: Callable[[Tx], T]) -> T:
        """Move the verified file to the blob's name (unless it is there already), then record it."""
        if not self._files.blob_path(sha256).exists():  # stored once, whoever uploads the same bytes later
            self._files.install_temp(self, sha256)
            fault_point("blob.installed")
        with db.write() as tx:
            outcome = record(tx)
        fault_point("blob.recorded")
        self._files.drop_partial(owner, sha256)  # a resumable attempt at the same bytes is moot now
        return outcome

    def discard(self) -> None:
        """Forget the file (a no-op once it was moved into place)."""
        self._file.close()
        if not self.moved:
            self.path.unlink(missing_ok=True)


class PartialState(msgspec.Struct, kw_only=True):
    """What the sidecar of a partial upload keeps: the blob's size, the bytes acknowledged so far, whose it is."""

    total: int
    offset: int
    event_id: str = ""
    account_id: str = ""


class UploadOwner(NamedTuple):
    """The account a partial upload belongs to, in its event."""

    event_id: str
    account_id: str

    @property
    def event_key(self) -> str:
        """The event's directory name under ``partial/``."""
        return hashlib.sha256(self.event_id.encode()).hexdigest()

    @property
    def key(self) -> str:
        """The account's directory name under its event's."""
        return hashlib.sha256(f"{self.event_id}\n{self.account_id}".encode()).hexdigest()


class PartialUpload:
    """A resumable upload, held under an exclusive lock until ``close``.

    The lock is ``flock`` on the partial file itself, so it excludes other threads and other server
    processes alike. Only bytes up to the sidecar's offset count: whatever lies past it was written
    by a request that crashed before acknowledging it, and is cut off when the upload is reopened.
    """

    def __init__(
        self, files: "BlobFiles", owner: UploadOwner, sha256: str, fd: int, state: PartialState | None
    ) -> None:
        self._files = files
        self.owner = owner
        self.sha256 = sha256
        self._fd = fd
        self.total = state.total if state else 0
        self.offset = state.offset if state else 0
        self._finished = False
        held = os.fstat(fd).st_size
        # Every acknowledged byte was fsynced first, so fewer bytes than acknowledged means they moved:
        # a crash between installing the complete file and recording it. ``landing`` tells the caller.
        self.bytes_moved = held < self.offset
        if not self.bytes_moved:
            os.ftruncate(fd, self.offset)
            os.lseek(fd, self.offset, os.SEEK_SET)

    @property
    def landing(self) -> bool:
        """Every byte arrived and was acknowledged, but the blob was not recorded (a crash came between)."""
        return self.total > 0 and self.offset == self.total

    @property
    def unfinished_landing(self) -> bool:
        """A crash came after every byte arrived, or after they were moved, and before the blob's row."""
        return self.landing or self.bytes_moved

    def land(self, db: Store, check: Callable[[str, bytes], str], record: Callable[[Tx, str], T]) -> T | None:
        """Land an upload whose bytes all arrived (lock held); None when it must start over from 0."""
        sha256, files = self.sha256, self._files
        if not self.bytes_moved:
            digest, head = self.digest()
            try:
                media_type = check(digest, head)
            except DomainError:
                self.discard()  # nothing of a refused upload stays behind
                raise
            if files.blob_path(sha256).exists():
                self.drop_bytes()  # stored once already
            else:
                self.install()
                fault_point("blob.installed")
        elif self.landing and files.file_digest(sha256) == sha256:
            # Installed by a request that died before recording it: the file under the final name is whole.
            with files.open_blob(sha256) as file:
                media_type = check(sha256, file.read(SNIFF_BYTES))
        else:
            self.restart()
            return None
        with db.write() as tx:
            outcome = record(tx, media_type)
        fault_point("blob.recorded")
        self.finish()
        return outcome

    def append(self, chunk: bytes) -> None:
        """Write bytes at the current offset (not yet acknowledged)."""
        view = memoryview(chunk)
        while view:
            view = view[os.write(self._fd, view) :]
        self.offset += len(chunk)

    def rollback(self, offset: int) -> None:
        """Forget what was appended after ``offset`` (not acknowledged yet): a refused part keeps nothing."""
        os.ftruncate(self._fd, offset)
        os.lseek(self._fd, offset, os.SEEK_SET)
        self.offset = offset

    def commit(self) -> None:
        """Make what was appended durable, then acknowledge it in the sidecar."""
        os.fsync(self._fd)
        state = PartialState(
            total=self.total, offset=self.offset, event_id=self.owner.event_id, account_id=self.owner.account_id
        )
        self._files.write_sidecar(self.owner, self.sha256, state)

    def digest(self) -> tuple[str, bytes]:
        """The SHA-256 of the whole file, read in chunks, and its first bytes."""
        digest = hashlib.sha256()
        os.lseek(self._fd, 0, os.SEEK_SET)
        head = b""
        while chunk := os.read(self._fd, CHUNK):
            if not head:
                head = chunk[:SNIFF_BYTES]
            digest.update(chunk)
        return digest.hexdigest(), head

    def install(self) -> None:
        """Move the complete file to the blob's final name; the sidecar stays until ``finish``."""
        self._files.install(self._files.partial_path(self.owner, self.sha256), self.sha256)
        self.bytes_moved = True

    def drop_bytes(self) -> None:
        """Forget this upload's copy of bytes the server holds already; the sidecar stays until ``finish``."""
        self._files.partial_path(self.owner, self.sha256).unlink(missing_ok=True)
        self.bytes_moved = True

    def finish(self) -> None:
        """The blob is recorded: the sidecar goes, and the file this lock was taken on if it is still here
        (an empty one, when another request installed the bytes while this one waited for the lock)."""
        self._files.sidecar_path(self.owner, self.sha256).unlink(missing_ok=True)
        self._files.partial_path(self.owner, self.sha256).unlink(missing_ok=True)
        self._finished = True

    def discard(self) -> None:
        """Forget every byte of this upload."""
        self._files.sidecar_path(self.owner, self.sha256).unlink(missing_ok=True)
        self._files.partial_path(self.owner, self.sha256).unlink(missing_ok=True)
        self._finished = True

    def restart(self) -> None:
        """Start over from byte 0 (the bytes the sidecar counted are gone)."""
        self.rollback(0)
        self.total = 0
        self.bytes_moved = False
        self._files.sidecar_path(self.owner, self.sha256).unlink(missing_ok=True)

    def close(self) -> None:
        """Release the lock; an upload that holds nothing leaves nothing behind."""
        try:
            if not self._finished and self.offset == 0:
                self.discard()
        finally:
            os.close(self._fd)  # closing the descriptor releases the flock


class BlobFiles:
    """The data directory: complete blobs, partial uploads and previews."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs_dir = root / "blobs"
        self.partial_dir = root / "partial"
        self.previews_dir = root / "previews"
        self.tmp_dir = root / "tmp"
        for path in (self.blobs_dir, self.partial_dir, self.previews_dir, self.tmp_dir):
            path.mkdir(parents=True, exist_ok=True)

    def blob_path(self, sha256: str) -> Path:
        """Where a complete blob lives."""
        return blob_file(self.root, sha256)

    def owner_dir(self, owner: UploadOwner) -> Path:
        """Where one account's unfinished uploads live."""
        return self.partial_dir / owner.event_key / owner.key

    def partial_path(self, owner: UploadOwner, sha256: str) -> Path:
        """Where an account's unfinished upload of this blob lives."""
        return self.owner_dir(owner) / _name(sha256)

    def sidecar_path(self, owner: UploadOwner, sha256: str) -> Path:
        """The partial upload's declared total and acknowledged offset."""
        return self.owner_dir(owner) / f"{_name(sha256)}.json"

    def preview_path(self, sha256: str, width: int, extension: str) -> Path:
        """Where a downsized copy lives."""
        return self.previews_dir / _name(sha256)[:2] / f"{sha256}-w{width}.{extension}"

    # --- whole files

    def new_temp(self) -> TempUpload:
        """A new temporary file for an upload."""
        return TempUpload(self)

    def install_temp(self, temp: TempUpload, sha256: str) -> None:
        """Move a finished upload to the blob's final name, durably."""
        self.install(temp.path, sha256)
        temp.moved = True

    def install(self, source: Path, sha256: str) -> None:
        """Rename a fsynced file to the blob's final name, durably."""
        target = self.blob_path(sha256)
        _make_dir(target.parent)
        os.replace(source, target)
        _fsync_dir(target.parent)
        if source.parent != target.parent:
            _fsync_dir(source.parent)

    @contextlib.contextmanager
    def open_blob(self, sha256: str) -> Generator[BinaryIO]:
        """The bytes of a complete blob."""
        with self.blob_path(sha256).open("rb") as file:
            yield file

    def read_range(self, sha256: str, first: int, last: int) -> Iterator[bytes]:
        """Bytes ``first`` to ``last`` (inclusive) of a complete blob, in chunks."""
        with self.blob_path(sha256).open("rb") as file:
            file.seek(first)
            left = last - first + 1
            while left > 0:
                chunk = file.read(min(CHUNK, left))
                if not chunk:
                    return
                left -= len(chunk)
                yield chunk

    def read_preview(self, sha256: str, width: int, extension: str) -> bytes | None:
        """A cached preview, if it was made before."""
        try:
            return self.preview_path(sha256, width, extension).read_bytes()
        except FileNotFoundError:
            return None

    def save_preview(self, sha256: str, width: int, extension: str, data: bytes) -> None:
        """Store a preview under its final name atomically; two requests making it at once both succeed."""
        path = self.preview_path(sha256, width, extension)
        _make_dir(path.parent)
        fd, name = tempfile.mkstemp(dir=self.tmp_dir, prefix="preview-")
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.replace(name, path)
        except BaseException:
            Path(name).unlink(missing_ok=True)
            raise

    # --- partial uploads

    def partial_state(self, owner: UploadOwner, sha256: str) -> PartialState | None:
        """The sidecar of an unfinished upload (read without the lock: it is replaced atomically)."""
        return _read_sidecar(self.sidecar_path(owner, sha256))

    def write_sidecar(self, owner: UploadOwner, sha256: str, state: PartialState) -> None:
        """Replace the sidecar atomically and durably."""
        directory = self.owner_dir(owner)
        fd, name = tempfile.mkstemp(dir=directory, prefix=".sidecar-")
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(msgspec.json.encode(state))
                file.flush()
                os.fsync(file.fileno())
            os.replace(name, self.sidecar_path(owner, sha256))
        except BaseException:
            Path(name).unlink(missing_ok=True)
            raise
        _fsync_dir(directory)

    def open_partial(self, owner: UploadOwner, sha256: str, wait_s: float = LOCK_WAIT_S) -> PartialUpload | None:
        """The account's upload of this blob, locked for the caller; None if another request keeps it locked."""
        path = self.partial_path(owner, sha256)
        if not path.parent.is_dir():
            _make_dir(path.parent.parent)
            _make_dir(path.parent)
        deadline = time.monotonic() + wait_s
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                if time.monotonic() >= deadline:
                    return None
                time.sleep(0.02)
                continue
            # The holder we waited for may have completed or discarded the upload, unlinking the file
            # we opened: a lock on that orphan would protect nothing, so open the name afresh.
            try:
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                return PartialUpload(self, owner, sha256, fd, self.partial_state(owner, sha256))
            os.close(fd)

    def partial_uploads(self, event_id: str | None = None) -> Iterator[tuple[UploadOwner, str, PartialState]]:
        """Every unfinished upload (of one event, when given) that has acknowledged bytes, as its sidecar says."""
        pattern = f"{UploadOwner(event_id, '').event_key}/*/*.json" if event_id is not None else "*/*/*.json"
        for sidecar in self.partial_dir.glob(pattern):
            sha256 = sidecar.name.removesuffix(".json")
            state = _read_sidecar(sidecar)
            if state is None or not _SHA256_NAME.match(sha256) or not state.event_id:
                continue
            owner = UploadOwner(state.event_id, state.account_id)
            if sidecar.parent.name == owner.key:
                yield owner, sha256, state

    def partial_bytes(self, owner: UploadOwner, *, event_wide: bool = False, besides: str = "") -> int:
        """Bytes held by unfinished uploads of this account (or of its whole event), except of one blob."""
        return sum(
            state.offset
            for other, sha256, state in self.partial_uploads(owner.event_id)
            if (event_wide or other == owner) and not (other == owner and sha256 == besides)
        )

    def purge_stale(self, older_than_s: float, now: float | None = None) -> int:
        """Remove unfinished uploads and temporary files untouched for this long; returns how many.

        An upload being appended to right now is locked and left alone, and so is one whose bytes
        all arrived: it is finished on the next request or at start-up, never thrown away.
        """
        cutoff = (time.time() if now is None else now) - older_than_s
        removed = 0
        for path in self.tmp_dir.iterdir():
            if path.stat().st_mtime < cutoff:
                path.unlink(missing_ok=True)
                removed += 1
        for path in self.partial_dir.iterdir():
            if path.is_file() and path.stat().st_mtime < cutoff:  # of the layout before uploads were per account
                path.unlink(missing_ok=True)
                removed += 1
        for path in self.partial_dir.glob("*/*/*"):
            if not _SHA256_NAME.match(path.name) or path.stat().st_mtime >= cutoff:
                continue
            state = _read_sidecar(path.with_name(path.name + ".json"))
            if state is None or not state.event_id:
                # No sidecar: no byte of it was ever acknowledged; nobody can resume it.
                path.unlink(missing_ok=True)
                removed += 1
                continue
            upload = self.open_partial(UploadOwner(state.event_id, state.account_id), path.name, wait_s=0)
            if upload is not None:
                if upload.landing:
                    upload.close()
                    continue
                upload.discard()
                upload.close()
                removed += 1
        return removed

    def drop_partial(self, owner: UploadOwner, sha256: str) -> None:
        """Forget an account's unfinished upload of a blob it now holds another way (unless one is in flight)."""
        if not self.partial_path(owner, sha256).exists() and not self.sidecar_path(owner, sha256).exists():
            return
        upload = self.open_partial(owner, sha256, wait_s=0)
        if upload is not None:
            upload.discard()
            upload.close()

    def unrecorded_blobs(self, recorded: Callable[[str], bool]) -> Iterator[tuple[str, int, bytes]]:
        """Complete files under ``blobs/`` without a row (a crash between rename and insert): hash, size, head."""
        for path in self.blobs_dir.glob("??/*"):
            if not _SHA256_NAME.match(path.name) or recorded(path.name):
                continue
            with path.open("rb") as file:
                head = file.read(SNIFF_BYTES)
                size = os.fstat(file.fileno()).st_size
            yield path.name, size, head

    def file_digest(self, sha256: str) -> str | None:
        """The SHA-256 of a complete blob's file as it is on disk now (None when there is none)."""
        digest = hashlib.sha256()
        try:
            with self.blob_path(sha256).open("rb") as file:
                while chunk := file.read(CHUNK):
                    digest.update(chunk)
        except FileNotFoundError:
            return None
        return digest.hexdigest()

    def remove_blob(self, sha256: str) -> None:
        """Delete a blob's file and its previews (its row is gone already)."""
        self.blob_path(sha256).unlink(missing_ok=True)
        for preview in self.previews_dir.glob(f"{_name(sha256)[:2]}/{sha256}-w*"):
            preview.unlink(missing_ok=True)


def _read_sidecar(path: Path) -> PartialState | None:
    try:
        return msgspec.json.decode(path.read_bytes(), type=PartialState)
    except (FileNotFoundError, msgspec.DecodeError):
        return None
