"""Photos and documents of notes: content-addressed uploads (whole or resumable) and who may fetch them.

A blob is named by the SHA-256 of its bytes, so an upload is checked against its own name before
the server accepts it. The name is no key: an account holds a blob once it uploaded the bytes in
its event (or may see a note whose author did), and to anyone else a blob the server stores looks
exactly like one nobody uploaded: same status, same headers, the bytes asked for and read. Notes
may reference a blob before it lands; when it does, the notes whose author may now reference it
get a new version, so that the devices which see them pull the attachment as ``available``.

Where the bytes live is the blob store's business (server/storage/blob_store.py): the data
directory, or PostgreSQL. Landing a complete upload is: make the verified bytes the blob's, then
record it (row, owner, notes' versions). In the directory that is a rename, then a transaction,
then dropping the partial upload's sidecar; a crash between the first two leaves the sidecar with
every byte acknowledged, and the next HEAD or PUT of that upload, or the server's start-up,
finishes the landing, so an upload is never wedged. In PostgreSQL it is one transaction.
"""

import re
import threading
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, TypeVar

import anyio
import anyio.to_thread
import msgspec

from schemas.accounts import Account
from server.errors import BadRequestError, DomainError, NotFoundError, PayloadTooLargeError, UnsupportedMediaTypeError
from server.faults import fault_point
from server.settings import Settings
from server.storage.blob_refs import (
    add_blob_owner,
    blob_landed,
    blob_usage,
    fetchable_blobs,
    owned_at,
    purge_unreferenced_blobs,
    referable_blobs,
)
from server.storage.blob_store import BlobStore, ResumableUpload, UploadRaceError, WholeUpload
from server.storage.blobs import (
    BlobFiles,
    BlobRow,
    UploadOwner,
    get_blob,
    record_blob,
    sniff_media_type,
)
from server.storage.location import SqliteLocation
from server.storage.stores import open_blob_store
from server.storage.unit import Store, Tx

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


class StorageQuotaError(DomainError):
    status = 507
    slug = "storage-quota-exceeded"
    title = "The upload would pass a storage quota"


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


# --- where the bytes live -----------------------------------------------------------------

_files: dict[Path, BlobFiles] = {}
_files_lock = threading.Lock()


def data_dir(settings: Settings) -> Path:
    """Where blobs live: the configured directory, or the SQLite file's own (named by db_path or by a
    sqlite:/// database_url); on PostgreSQL without a data_dir, db_path's default directory."""
    if settings.data_dir:
        return Path(settings.data_dir)
    location = settings.location()
    return (location.path if isinstance(location, SqliteLocation) else Path(settings.db_path)).resolve().parent


def blob_files(settings: Settings) -> BlobFiles:
    """The data directory of these settings, created once per process."""
    root = data_dir(settings)
    with _files_lock:
        files = _files.get(root)
        if files is None:
            files = _files[root] = BlobFiles(root)
        return files


def choose_blob_store(settings: Settings, db: Store) -> BlobStore:
    """The blob store these settings choose: the data directory (the default), or the database."""
    if settings.blob_store == "database":
        return open_blob_store(db)
    return blob_files(settings)


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


def quota_room(db: Store, files: BlobStore, owner: UploadOwner, sha256: str, settings: Settings) -> int:
    """How many bytes this upload may still hold: the smaller room of the account's and the event's quota.

    Recorded uploads and other unfinished ones (their acknowledged bytes) count; this blob's own
    unfinished upload does not, as the blob is counted whole by the caller.
    """
    with db.read() as tx:
        usage = blob_usage(tx, owner.event_id, owner.account_id)
    account = settings.max_account_blob_bytes - usage.account - files.partial_bytes(owner, besides=sha256)
    event = settings.max_event_blob_bytes - usage.event - files.partial_bytes(owner, event_wide=True, besides=sha256)
    return min(account, event)


def check_quota(room: int, size: int) -> None:
    """507 when a blob of ``size`` bytes does not fit the room the quotas leave."""
    if size > room:
        raise StorageQuotaError(
            f"This {size}-byte blob does not fit: the account's or the event's uploads may hold only"
            f" {max(0, room)} more bytes. Delete notes with photos you no longer need, or ask an organizer."
        )


# --- upload -------------------------------------------------------------------------------


def upload_owner(account: Account) -> UploadOwner:
    """Whose an upload is: partial uploads and proofs of holding are per account and event."""
    return UploadOwner(account.event_id, account.id)


def held_for(db: Store, account: Account, sha256: str) -> BlobRow | None:
    """The blob as this account holds it (uploaded by it, or on a note it may see), else None.

    None also when the server stores the bytes for somebody else: nothing tells the two apart.
    """
    with db.read() as tx:
        blob = get_blob(tx, sha256)
        if blob is None or sha256 not in referable_blobs(tx, account, [sha256]):
            return None
        since = owned_at(tx, account.event_id, account.id, sha256)
    return msgspec.structs.replace(blob, created_at=since) if since else blob


def upload_state(db: Store, files: BlobStore, account: Account, sha256: str) -> UploadState:
    """Whether the account holds the blob, else how far its own upload of it got (0 when none began)."""
    owner = upload_owner(account)
    finish_landing(db, files, owner, sha256)
    blob = held_for(db, account, sha256)
    if blob is not None:
        return UploadState(blob=blob, offset=blob.size)
    state = files.partial_state(owner, sha256)
    return UploadState(blob=None, offset=state.offset if state else 0)


async def _thread(func: Callable[..., T], *args: object) -> T:
    return await anyio.to_thread.run_sync(func, *args)


async def receive_blob(
    db: Store,
    files: BlobStore,
    account: Account,
    sha256: str,
    chunks: AsyncIterator[bytes],
    part: ContentRange | None,
    settings: Settings,
    declared: int | None = None,
) -> UploadOutcome:
    """Store an upload: the whole blob, or one part of a resumable upload (``part``)."""
    owner = upload_owner(account)
    if part is None:
        room: int = await _thread(quota_room, db, files, owner, sha256, settings)
        if declared is not None:
            check_quota(room, declared)
        return await _receive_whole(db, files, owner, sha256, chunks, min(settings.max_blob_bytes, room), room)
    check_size(part.total, settings.max_blob_bytes, "Content-Range")
    return await _receive_part(db, files, owner, sha256, chunks, part, settings)


async def _receive_whole(
    db: Store,
    files: BlobStore,
    owner: UploadOwner,
    sha256: str,
    chunks: AsyncIterator[bytes],
    max_bytes: int,
    room: int,
) -> UploadOutcome:
    temp: WholeUpload = await _thread(files.new_temp)
    try:
        async for chunk in chunks:
            if not chunk:
                continue
            if temp.size + len(chunk) > max_bytes:
                check_quota(room, temp.size + len(chunk))  # 507 when it is the quota that is passed
                raise PayloadTooLargeError(f"A blob may hold at most {max_bytes} bytes.")
            await _thread(temp.write, chunk)
        digest = await _thread(temp.finish)
        fault_point("blob.whole-written")
        _verify(sha256, digest, temp.size)
        media_type = _media_type(temp.head)
        size = temp.size

        def record(tx: Tx) -> _Recorded:
            return _record(tx, owner, sha256, size, media_type)

        return _answer(await _thread(temp.land, db, sha256, owner, record))
    finally:
        with anyio.CancelScope(shield=True):
            await _thread(temp.discard)


async def _receive_part(
    db: Store,
    files: BlobStore,
    owner: UploadOwner,
    sha256: str,
    chunks: AsyncIterator[bytes],
    part: ContentRange,
    settings: Settings,
) -> UploadOutcome:
    upload: ResumableUpload | None = await _thread(files.open_partial, owner, sha256)
    if upload is None:
        state = files.partial_state(owner, sha256)
        raise UploadInProgressError(
            "Another request is appending to this upload; ask HEAD for the offset and retry.",
            state.offset if state else 0,
        )
    try:
        return await _append_part(db, files, upload, chunks, part, settings)
    except UploadRaceError as exc:
        # Another server appended to this upload first (the database store serialises per chunk).
        raise UploadInProgressError(
            "Another request is appending to this upload; ask HEAD for the offset and retry.", exc.offset
        ) from None
    finally:
        with anyio.CancelScope(shield=True):
            await _thread(upload.close)


async def _append_part(
    db: Store,
    files: BlobStore,
    upload: ResumableUpload,
    chunks: AsyncIterator[bytes],
    part: ContentRange,
    settings: Settings,
) -> UploadOutcome:
    owner, sha256 = upload.owner, upload.sha256
    if upload.unfinished_landing:
        # Every byte arrived before, and a crash came before the blob was recorded: finish now.
        landed = await _thread(_land_partial, db, upload)
        if landed is not None:
            return landed
    if upload.offset and upload.total != part.total:
        raise BadRequestError(f"This upload is of {upload.total} bytes, not {part.total}.")
    if part.first != upload.offset:
        raise UploadOffsetError(
            f"The server holds {upload.offset} bytes of this blob: send the part from byte {upload.offset}.",
            upload.offset,
        )
    room = await _thread(quota_room, db, files, owner, sha256, settings)
    check_quota(room, part.total)
    upload.total = part.total
    await _append(upload, chunks, part)
    if upload.offset < upload.total:
        return UploadOutcome(status="incomplete", offset=upload.offset)
    landed = await _thread(_land_partial, db, upload)
    if landed is None:  # the bytes vanished under us: impossible short of a broken disk; start over
        raise UploadOffsetError("The server lost this upload's bytes: send it again from byte 0.", 0)
    return landed


async def _append(upload: ResumableUpload, chunks: AsyncIterator[bytes], part: ContentRange) -> None:
    start, end = upload.offset, part.last + 1
    try:
        async for chunk in chunks:
            if upload.offset + len(chunk) > end:
                raise BadRequestError(f"The body is longer than Content-Range says ({part.length} bytes).")
            if chunk:
                await _thread(upload.append, chunk)
    except UploadRaceError:
        raise  # nothing of this request's was kept past where the other request took the upload
    except UploadInterruptedError:
        # Keep what arrived when the connection broke: the client resumes from HEAD's offset.
        with anyio.CancelScope(shield=True):
            await _thread(upload.commit)
        raise
    except DomainError:
        # A refused part keeps none of its bytes: HEAD goes on telling the offset before it.
        with anyio.CancelScope(shield=True):
            await _thread(upload.rollback, start)
        raise
    except BaseException:
        with anyio.CancelScope(shield=True):
            await _thread(upload.commit)
        raise
    fault_point("blob.part-appended")
    await _thread(upload.commit)
    fault_point("blob.part-acknowledged")


def _land_partial(db: Store, upload: ResumableUpload) -> UploadOutcome | None:
    """Land an upload whose bytes all arrived; None when it must start over from 0."""
    owner, sha256, size = upload.owner, upload.sha256, upload.total

    def check(digest: str, head: bytes) -> str:
        _verify(sha256, digest, size)
        return _media_type(head)

    outcome = upload.land(db, check, lambda tx, media_type: _record(tx, owner, sha256, size, media_type))
    return None if outcome is None else _answer(outcome)


def finish_landing(db: Store, files: BlobStore, owner: UploadOwner, sha256: str) -> UploadOutcome | None:
    """Finish an upload whose every byte arrived but which a crash kept from being recorded.

    Called on HEAD and at start-up. An upload another request holds is left to it.
    """
    state = files.partial_state(owner, sha256)
    if state is None or state.offset != state.total:
        return None
    upload = files.open_partial(owner, sha256, wait_s=0)
    if upload is None:
        return None
    try:
        if not upload.unfinished_landing:
            return None
        return _land_partial(db, upload)
    except DomainError:
        return None  # refused bytes: discarded, the client starts over from 0
    finally:
        upload.close()


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


class _Recorded(msgspec.Struct, frozen=True):
    blob: BlobRow
    created: bool
    since: str | None


def _record(tx: Tx, owner: UploadOwner, sha256: str, size: int, media_type: str) -> _Recorded:
    # The row, the proof of holding and the notes' new versions commit together: a device that pulls
    # a note referencing this blob after the commit sees it available, one that pulled before gets
    # the new version.
    record_blob(tx, sha256, size, media_type)
    since = add_blob_owner(tx, owner.event_id, owner.account_id, sha256, size)
    if since is not None:
        blob_landed(tx, owner.event_id, sha256)
    blob = get_blob(tx, sha256)
    assert blob is not None
    return _Recorded(blob, since is not None, since or owned_at(tx, owner.event_id, owner.account_id, sha256))


def _answer(recorded: _Recorded) -> UploadOutcome:
    # The account's own date: when somebody else first stored the bytes is none of its business.
    blob = msgspec.structs.replace(recorded.blob, created_at=recorded.since or recorded.blob.created_at)
    return UploadOutcome(status="created" if recorded.created else "held", offset=blob.size, blob=blob)


def repair_uploads(db: Store, files: BlobStore) -> int:
    """At start-up: finish every upload a crash left between its file and its row; returns how many.

    Files under ``blobs/`` without a row (a whole upload that died there) get their row, owned by
    nobody: the uploader's retry proves it holds them, and ``db purge-uploads`` removes them if none comes.
    """
    repaired = 0
    for owner, sha256, state in list(files.partial_uploads()):
        if state.offset == state.total and finish_landing(db, files, owner, sha256) is not None:
            repaired += 1
    with db.read() as tx:
        orphans = list(files.unrecorded_blobs(lambda h: get_blob(tx, h) is not None))
    for sha256, size, head in orphans:
        media_type = sniff_media_type(head)
        if media_type is None or files.file_digest(sha256) != sha256:
            files.remove_blob(sha256)  # cannot be: only verified bytes are ever moved there
            continue
        with db.write() as tx:
            record_blob(tx, sha256, size, media_type)
        repaired += 1
    return repaired


def purge_uploads(db: Store, files: BlobStore, older_than_s: float, now: float | None = None) -> tuple[int, int]:
    """Remove abandoned partial uploads, and blobs no live note references, untouched for this long.

    Returns (upload files removed, blobs removed). An account's upload that no note of its own
    references stops counting against its quota; the bytes go once no account holds them.
    """
    moment = time.time() if now is None else now
    cutoff = datetime.fromtimestamp(moment - older_than_s, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    partial = files.purge_stale(older_than_s, now=moment)
    with db.write() as tx:
        gone = purge_unreferenced_blobs(tx, cutoff)
    for sha256 in gone:
        with db.read() as tx:
            if get_blob(tx, sha256) is not None:
                continue  # uploaded again in the meantime
        files.remove_blob(sha256)
    return partial, len(gone)


# --- fetch --------------------------------------------------------------------------------


def find_blob(db: Store, account: Account, sha256: str) -> BlobRow:
    """A blob the caller may fetch: on a live note they can see, whose author uploaded it; else 404."""
    with db.read() as tx:
        blob = get_blob(tx, sha256)
        if blob is None or sha256 not in fetchable_blobs(tx, account, [sha256]):
            # The same answer for a blob that does not exist and one the caller may not see.
            raise NotFoundError(f"No blob {sha256} among the notes you can see.")
    return blob
