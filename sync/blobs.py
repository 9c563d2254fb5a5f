"""Photos of field notes on the device: sniffed, kept in a content-addressed store, uploaded resumably.

The store lives next to the replica (``<replica>.blobs/ab/abcd...``: the SHA-256 in lowercase
hex, fanned out by its first two digits). A file enters it through a temporary file that is
fsynced and renamed, so a name in the store always holds complete bytes, whatever moment the
app dies at. Which stored files are still wanted is the replica's business (its ``uploads``
table); this module only knows files and the server's blob HTTP contract.

Blob upload contract (``/api/v1/events/{event_id}/blobs/{sha256}``): ``HEAD`` answers 200 when
this account holds the whole blob (it uploaded the bytes, or may see a note whose author did: a
hash alone is no proof), else 404 with ``Upload-Offset`` (the bytes of this account's unfinished
upload the server kept). ``PUT`` with ``Content-Range: bytes A-B/TOTAL`` (A must be the server's
offset, else 409 with ``Upload-Offset``) answers 308 with the new ``Upload-Offset`` while
incomplete, 201 once the server verified the hash (422 ``blob-hash-mismatch`` if not: it drops
the partial upload), 200 when the account already held the blob, 413 when the blob is too large,
507 when it would pass the account's or the event's storage quota (reported, not retried).
"""

import hashlib
import os
import time
import uuid
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Literal, NamedTuple

import httpx

from schemas.sync import BlobMediaType
from sync.transport import OfflineError, ServerError, Transport, problem_of, raise_for_problem

CHUNK_SIZE = 1 << 20
MAX_PHOTO_BYTES = 20 << 20  # the server's default limit: refuse bigger photos before queueing them
MAX_ATTACHMENTS = 10  # NotePutArgs.attachments
_TEMP_PREFIX = ".tmp-"
# ISO BMFF brands of HEIC images; mif1/msf1 are generic HEIF, also used by AVIF, so they count
# only when a HEVC brand is among the compatible ones.
_HEIC_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs"})
_HEIF_BRANDS = frozenset({b"mif1", b"msf1"})
SNIFF_BYTES = 64

UploadOutcome = Literal["uploaded", "held", "corrupt", "refused", "failed"]


def sniff_media_type(head: bytes) -> BlobMediaType | None:
    """The media type of a file from its first bytes (magic numbers), or None if it is none we accept."""
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head.startswith(b"%PDF-"):
        return "application/pdf"
    if head[4:8] == b"ftyp":
        box = head[: min(len(head), int.from_bytes(head[:4], "big"))]
        major, compatible = box[8:12], {box[i : i + 4] for i in range(16, len(box) - 3, 4)}
        if major in _HEIC_BRANDS or (major in _HEIF_BRANDS and compatible & _HEIC_BRANDS):
            return "image/heic"
    return None


class BlobFile(NamedTuple):
    """A file in the store: its hash, size and sniffed media type."""

    sha256: str
    size: int
    media_type: BlobMediaType


class BlobStore:
    """A directory of files named by the SHA-256 of their bytes."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, sha256: str) -> Path:
        """Where the blob with this hash is (or would be) kept."""
        return self.root / sha256[:2] / sha256

    def has(self, sha256: str) -> bool:
        """Whether the store holds a file of this name."""
        return self.path(sha256).is_file()

    def check(self, source: Path, max_bytes: int = MAX_PHOTO_BYTES) -> tuple[int, BlobMediaType]:
        """Size and media type of a file we would accept; ValueError for an empty, too large or unknown one."""
        with source.open("rb") as f:
            head = f.read(SNIFF_BYTES)
            size = os.fstat(f.fileno()).st_size
        if size == 0:
            raise ValueError(f"{source}: the file is empty")
        if size > max_bytes:
            raise ValueError(f"{source}: {size} bytes is more than the {max_bytes} bytes a photo may have")
        media_type = sniff_media_type(head)
        if media_type is None:
            raise ValueError(f"{source}: not a JPEG, PNG, WebP, HEIC or PDF file")
        return size, media_type

    def add(self, source: Path, chunk_size: int = CHUNK_SIZE) -> BlobFile:
        """Copy a file into the store, hashing it on the way; durable when this returns.

        Always written anew (rename over any file of the same name), so adding a photo again
        also repairs a copy that went bad on the device's storage.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        temp = self.root / f"{_TEMP_PREFIX}{uuid.uuid4().hex}"
        digest, size, head = hashlib.sha256(), 0, b""
        try:
            with source.open("rb") as src, temp.open("xb") as dst:
                while chunk := src.read(chunk_size):
                    if len(head) < SNIFF_BYTES:
                        head += chunk[: SNIFF_BYTES - len(head)]
                    digest.update(chunk)
                    dst.write(chunk)
                    size += len(chunk)
                dst.flush()
                os.fsync(dst.fileno())
            media_type = sniff_media_type(head)
            if media_type is None or size == 0:  # the file changed since it was checked
                raise ValueError(f"{source}: not a JPEG, PNG, WebP, HEIC or PDF file")
            target = self.path(digest.hexdigest())
            target.parent.mkdir(exist_ok=True)
            temp.replace(target)
            _fsync_dir(target.parent)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        return BlobFile(digest.hexdigest(), size, media_type)

    def read(self, sha256: str, offset: int, length: int) -> bytes:
        """Up to ``length`` bytes of a stored blob from ``offset`` (FileNotFoundError if it is gone)."""
        with self.path(sha256).open("rb") as f:
            f.seek(offset)
            return f.read(length)

    def digest(self, sha256: str, chunk_size: int = CHUNK_SIZE) -> str | None:
        """The SHA-256 of the stored bytes now (None if the file is gone): differs from the name when they rotted."""
        digest = hashlib.sha256()
        try:
            with self.path(sha256).open("rb") as f:
                while chunk := f.read(chunk_size):
                    digest.update(chunk)
        except FileNotFoundError:
            return None
        return digest.hexdigest()

    def remove(self, sha256: str) -> None:
        """Delete a stored blob, if it is there."""
        self.path(sha256).unlink(missing_ok=True)

    def sweep(self, keep: Collection[str], *, grace: float, now: float | None = None) -> int:
        """Delete files nobody wants (and leftover temporary files) older than ``grace`` seconds.

        They come from an app killed between copying a photo and queueing its note. The grace
        period spares a photo that another process copied a moment ago and is about to queue.
        """
        if not self.root.is_dir():
            return 0
        cutoff = (time.time() if now is None else now) - grace
        removed = 0
        candidates = [*self.root.glob(f"{_TEMP_PREFIX}*"), *self.root.glob("??/*")]
        for path in candidates:
            if path.name in keep or not path.is_file():
                continue
            try:
                if path.stat().st_mtime <= cutoff:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
        return removed


def _fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable (POSIX; elsewhere the rename is as durable as it gets)."""
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class UploadResult(NamedTuple):
    """How one blob's upload ended; ``sent``: bytes moved to the server; ``detail``: why it failed."""

    outcome: UploadOutcome
    sent: int = 0
    detail: str = ""
    problem: dict[str, object] | None = None


class _BadOffsetError(Exception):
    """The server named an Upload-Offset that cannot be."""


class BlobUploader:
    """Uploads stored blobs in chunks with ``Content-Range``, always continuing from the server's offset."""

    def __init__(self, transport: Transport, store: BlobStore, path: Callable[[str], str], chunk_size: int) -> None:
        self.transport = transport
        self.store = store
        self.path = path
        self.chunk_size = max(1, chunk_size)

    def upload(self, blob: BlobFile) -> UploadResult:
        """Make the server hold ``blob``; raise OfflineError/ServerError when the network keeps failing.

        Every loop either moves the server's offset forward or counts a failure, and failures
        in a row are bounded, so an upload never loops forever. After an interruption the
        client asks the server where it got to (HEAD) and sends only the rest, never all again.
        """
        path, size = self.path(blob.sha256), blob.size
        offset: int | None = None  # the server's, as last heard; None: ask it
        start: int | None = None  # the server's offset when this call first asked
        failures = mismatches = 0
        while True:
            try:
                if offset is None:
                    response = self.transport.request("HEAD", path, attempts=1)
                    if response.status_code == 200:
                        return UploadResult("held", 0) if start is None else UploadResult("uploaded", size - start)
                    if response.status_code != 404:
                        return _refused(response)
                    offset = _offset(response, size)
                    if offset == size:  # every byte there but no blob yet: another device is finishing it
                        raise _BadOffsetError(f"the server holds all {size} bytes but not the blob")
                    start = offset if start is None else start
                chunk = self.store.read(blob.sha256, offset, self.chunk_size)
                if len(chunk) < min(self.chunk_size, size - offset):
                    return UploadResult("corrupt", 0, "the copy on this device is shorter than recorded")
                content_range = f"bytes {offset}-{offset + len(chunk) - 1}/{size}"
                response = self.transport.request(
                    "PUT",
                    path,
                    content=chunk,
                    headers={"Content-Range": content_range, "Content-Type": blob.media_type},
                    attempts=1,
                )
                status = response.status_code
                if status in (200, 201):
                    return UploadResult("uploaded", size - (start or 0))
                if status == 308:
                    moved = _offset(response, size)
                    if not offset < moved < size:
                        raise _BadOffsetError(f"the server went from offset {offset} to {moved} of {size}")
                    offset, failures = moved, 0
                    continue
                if status == 409:
                    # We were wrong about where the server is (take its word for it), or another
                    # request, perhaps our own broken one, still holds the upload: wait a little.
                    failures += 1
                    if failures >= self.transport.max_attempts:
                        return _failed("the server kept refusing the offset of the part", response)
                    offset = _offset(response, size) if "Upload-Offset" in response.headers else None
                    offset = None if offset == size else offset
                    self.transport.sleep(self.transport.delay(failures))
                    continue
                if status != 422 or not problem_of(response).type.endswith("blob-hash-mismatch"):
                    return _refused(response)
                if self.store.digest(blob.sha256) != blob.sha256:
                    return UploadResult("corrupt", 0, "the copy on this device no longer matches its hash")
                # The bytes went bad on the way: once more, from wherever the server is (it kept nothing).
                mismatches += 1
                if mismatches > 1:
                    return _failed("the server found other bytes than this device sent, twice", response)
                offset = None
                continue
            except FileNotFoundError:
                return UploadResult("corrupt", 0, "the copy on this device is gone")
            except (OfflineError, ServerError, _BadOffsetError) as exc:
                failures += 1
                if failures >= self.transport.max_attempts:
                    if isinstance(exc, _BadOffsetError):
                        return UploadResult("failed", 0, str(exc))
                    raise
                offset = None
            self.transport.sleep(self.transport.delay(failures))


def _offset(response: httpx.Response, size: int) -> int:
    try:
        offset = int(response.headers.get("Upload-Offset", "0"))
    except ValueError:
        raise _BadOffsetError(f"Upload-Offset {response.headers.get('Upload-Offset')!r} is no number") from None
    if not 0 <= offset <= size:
        raise _BadOffsetError(f"Upload-Offset {offset} is outside 0..{size}")
    return offset


def _refused(response: httpx.Response) -> UploadResult:
    """A 4xx the upload cannot work around (401/403 stop the whole sync: the token is the problem)."""
    if response.status_code in (401, 403):
        raise_for_problem(response)
    problem = problem_of(response)
    return UploadResult("refused", 0, f"{problem.status} {problem.title}", _problem_dict(response))


def _failed(detail: str, response: httpx.Response) -> UploadResult:
    return UploadResult("failed", 0, detail, _problem_dict(response))


def _problem_dict(response: httpx.Response) -> dict[str, object]:
    problem = problem_of(response)
    return {"type": problem.type, "title": problem.title, "status": problem.status, "detail": problem.detail}
