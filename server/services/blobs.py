"""Photos and documents of notes: content-addressed uploads (whole or resumable) and who may fetch them.

A blob is named by the SHA-256 of its bytes, so an upload is checked against its own name before
the server accepts it, and uploading a blob the server already holds costs nothing. Notes may
reference a blob before it lands; when it does, every such note gets a new version, so that the
devices which see the note pull its attachment as ``available``.
"""

import re
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Literal, TypeVar

import anyio
import anyio.to_thread
import msgspec

from schemas.accounts import Account
from server.errors import BadRequestError, DomainError, NotFoundError, PayloadTooLargeError, UnsupportedMediaTypeError
from server.settings import Settings
from server.storage.blob_refs import blob_landed, may_fetch_blob
from server.storage.blobs import BlobFiles, BlobRow, PartialUpload, TempUpload, get_blob, record_blob, sniff_media_type
from server.storage.db import Database

_CONTENT_RANGE = re.compile(r"^bytes (\d{1,15})-(\d{1,15})/(\d{1,15})\Z")
ACCEPTED_MEDIA_TYPES = "JPEG, PNG, WebP, HEIC or PDF"
T = TypeVar("T")


class BlobHashMismatchError(DomainError):
    status = 422
    slug = "blob-hash-mismatch"
    title = "The bytes do not have the SHA-256 they were uploaded under"


class UploadOffsetError(DomainError):
    """A part that does not start where the upload stands; ``offset`` is where it does."""

    status = 409
    slug = "upload-offset-mismatch"
    title = "The part does not start at the upload's offset"

    def __init__(self, detail: str, offset: int) -> None:
        super().__init__(detail)
        self.offset = offset


class UploadInProgressError(UploadOffsetError):
    slug = "upload-in-progress"
    title = "Another request is uploading this blob"


class UploadInterruptedError(DomainError):
    slug = "upload-interrupted"
    title = "The connection closed before the body was complete"


class RangeNotSatisfiableError(DomainError):
    status = 416
    slug = "range-not-satisfiable"
    title = "The range starts past the end of the blob"


class ContentRange(msgspec.Struct, frozen=True):
    """``Content-Range: bytes first-last/total`` of one part of a resumable upload."""

    first: int
    last: int
    total: int

    @property
    def length(self) -> int:
        return self.last - self.first + 1


class UploadOutcome(msgspec.Struct, frozen=True):
    """What an upload request achieved: the blob was already held, landed now, or is still incomplete."""

    status: Literal["held", "created", "incomplete"]
    offset: int
    blob: BlobRow | None = None


class UploadState(msgspec.Struct, frozen=True):
    """What HEAD tells: the blob when it is held, else how many bytes of an upload the server keeps."""

    blob: BlobRow | None
    offset: int


# --- the data directory -------------------------------------------------------------------

_files: dict[Path, BlobFiles] = {}
_files_lock = threading.Lock()


def data_dir(settings: Settings) -> Path:
    """Where blobs live: the configured directory, or the database's own."""
    return Path(settings.data_dir) if settings.data_dir else Path(settings.db_path).resolve().parent


def blob_files(settings: Settings) -> BlobFiles:
    """The data directory of these settings, created once per process."""
    root = data_dir(settings)
    with _files_lock:
        files = _files.get(root)
        if files is None:
            files = _files[root] = BlobFiles(root)
        return files


# --- checks -------------------------------------------------------------------------------


def parse_content_range(header: str) -> ContentRange:
    """A part's ``Content-Range``, or 400."""
    match = _CONTENT_RANGE.match(header.strip())
    if match is None:
        raise BadRequestError(f"Content-Range must read 'bytes FIRST-LAST/TOTAL', not {header[:100]!r}.")
    first, last, total = (int(g) for g in match.groups())
    if not first <= last < total:
        raise BadRequestError(f"Content-Range {header!r} is not a range of a {total}-byte blob.")
    return ContentRange(first, last, total)


def check_size(declared: int, limit: int, what: str) -> None:
    """413 before any byte is read, when the request announces more than a blob may hold."""
    if declared > limit:
        raise PayloadTooLargeError(f"A blob may hold at most {limit} bytes; this {what} declares {declared}.")


# --- upload -------------------------------------------------------------------------------


def upload_state(db: Database, files: BlobFiles, sha256: str) -> UploadState:
    """Whether the server holds the blob, else how far an upload of it got (0 when none began)."""
    blob = get_blob(db.conn, sha256)
    if blob is not None:
        return UploadState(blob=blob, offset=blob.size)
    state = files.partial_state(sha256)
    return UploadState(blob=None, offset=state.offset if state else 0)


def held_blob(db: Database, sha256: str) -> BlobRow | None:
    """The blob's row when the server holds it whole."""
    return get_blob(db.conn, sha256)


async def _thread(func: Callable[..., T], *args: object) -> T:
    return await anyio.to_thread.run_sync(func, *args)


async def receive_blob(
    db: Database,
    files: BlobFiles,
    sha256: str,
    chunks: AsyncIterator[bytes],
    part: ContentRange | None,
    max_bytes: int,
) -> UploadOutcome:
    """Store an upload: the whole blob, or one part of a resumable upload (``part``)."""
    if part is None:
        return await _receive_whole(db, files, sha256, chunks, max_bytes)
    check_size(part.total, max_bytes, "Content-Range")
    return await _receive_part(db, files, sha256, chunks, part)


async def _receive_whole(
    db: Database, files: BlobFiles, sha256: str, chunks: AsyncIterator[bytes], max_bytes: int
) -> UploadOutcome:
    temp: TempUpload = await _thread(files.new_temp)
    try:
        async for chunk in chunks:
            if not chunk:
                continue
            if temp.size + len(chunk) > max_bytes:
                raise PayloadTooLargeError(f"A blob may hold at most {max_bytes} bytes.")
            await _thread(temp.write, chunk)
        digest = await _thread(temp.finish)
        _verify(sha256, digest, temp.size)
        media_type = _media_type(temp.head)
        return await _thread(_land_whole, db, files, temp, sha256, media_type)
    finally:
        with anyio.CancelScope(shield=True):
            await _thread(temp.discard)


def _land_whole(db: Database, files: BlobFiles, temp: TempUpload, sha256: str, media_type: str) -> UploadOutcome:
    files.install_temp(temp, sha256)
    outcome = _record(db, sha256, temp.size, media_type)
    files.drop_partial(sha256)  # a resumable attempt at the same bytes is moot now
    return outcome


async def _receive_part(
    db: Database, files: BlobFiles, sha256: str, chunks: AsyncIterator[bytes], part: ContentRange
) -> UploadOutcome:
    upload: PartialUpload | None = await _thread(files.open_partial, sha256)
    if upload is None:
        state = files.partial_state(sha256)
        raise UploadInProgressError(
            "Another request is appending to this upload; ask HEAD for the offset and retry.",
            state.offset if state else 0,
        )
    try:
        if upload.offset and upload.total != part.total:
            raise BadRequestError(f"This upload is of {upload.total} bytes, not {part.total}.")
        if part.first != upload.offset:
            raise UploadOffsetError(
                f"The server holds {upload.offset} bytes of this blob: send the part from byte {upload.offset}.",
                upload.offset,
            )
        upload.total = part.total
        await _append(upload, chunks, part)
        if upload.offset < upload.total:
            return UploadOutcome(status="incomplete", offset=upload.offset)
        return await _thread(_land_partial, db, files, upload, sha256)
    finally:
        with anyio.CancelScope(shield=True):
            await _thread(upload.close)


async def _append(upload: PartialUpload, chunks: AsyncIterator[bytes], part: ContentRange) -> None:
    end = part.last + 1
    try:
        async for chunk in chunks:
            if upload.offset + len(chunk) > end:
                await _thread(upload.append, chunk[: end - upload.offset])
                raise BadRequestError(f"The body is longer than Content-Range says ({part.length} bytes).")
            if chunk:
                await _thread(upload.append, chunk)
    finally:
        # Keep what arrived, also when the connection broke: the client resumes from HEAD's offset.
        with anyio.CancelScope(shield=True):
            await _thread(upload.commit)


def _land_partial(db: Database, files: BlobFiles, upload: PartialUpload, sha256: str) -> UploadOutcome:
    digest, head = upload.digest()
    try:
        _verify(sha256, digest, upload.total)
        media_type = _media_type(head)
    except DomainError:
        upload.discard()  # nothing of a refused upload stays behind
        raise
    upload.install()
    return _record(db, sha256, upload.total, media_type)


def _verify(sha256: str, digest: str, size: int) -> None:
    if digest != sha256:
        raise BlobHashMismatchError(
            f"The {size} bytes received have SHA-256 {digest}, not {sha256}; nothing was kept: upload them again."
        )


def _media_type(head: bytes) -> str:
    media_type = sniff_media_type(head)
    if media_type is None:
        raise UnsupportedMediaTypeError(f"Attachments are {ACCEPTED_MEDIA_TYPES}; these bytes are none of them.")
    return media_type


def _record(db: Database, sha256: str, size: int, media_type: str) -> UploadOutcome:
    # The row and the notes' new versions commit together: a device that pulls a note referencing
    # this blob after the commit sees it available, and one that pulled before gets the new version.
    with db.write() as conn:
        created = record_blob(conn, sha256, size, media_type)
        if created:
            blob_landed(conn, sha256)
        blob = get_blob(conn, sha256)
    return UploadOutcome(status="created" if created else "held", offset=size, blob=blob)


# --- fetch --------------------------------------------------------------------------------


def find_blob(db: Database, account: Account, sha256: str) -> BlobRow:
    """A blob the caller may fetch: one held whole and attached to a live note they can see; else 404."""
    with db.read() as conn:
        blob = get_blob(conn, sha256)
        if blob is None or not may_fetch_blob(conn, account, sha256):
            # The same answer for a blob that does not exist and one the caller may not see.
            raise NotFoundError(f"No blob {sha256} among the notes you can see.")
    return blob
