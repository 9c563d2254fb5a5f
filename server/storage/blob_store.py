"""Where blob bytes live, behind one interface: the data directory (server/storage/blobs.py, the
default) or PostgreSQL (server/storage/pg/blobs.py: chunked ``bytea`` rows, no shared disk).

The upload service (server/services/blobs.py) keeps what does not depend on where bytes go: the
quotas, the offsets a part must start at, checking the hash and sniffing the media type, and the
rows that record a blob. A store keeps the bytes, and lands them: it makes the bytes whole under
the blob's name and runs the service's ``record`` in the database transaction that follows (the
directory store) or in the very transaction in which the bytes become whole (the database store).
"""

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import BinaryIO, Protocol, TypeVar

from server.storage.blobs import PartialState, UploadOwner
from server.storage.unit import Store, Tx

T = TypeVar("T")
# The service's check of bytes that are all there: (their SHA-256, their first bytes) -> their media type,
# or a DomainError, upon which the store forgets them.
Check = Callable[[str, bytes], str]


class UploadRaceError(Exception):
    """Another request (on this server or another) appended to the same upload first: nothing was kept
    of this one's bytes past ``offset``, where the upload stands now."""

    def __init__(self, offset: int) -> None:
        super().__init__(f"the upload stands at byte {offset}")
        self.offset = offset


class WholeUpload(Protocol):
    """A whole upload being received: hashed while it is written, so the bytes are read once."""

    @property
    def size(self) -> int: ...

    @property
    def head(self) -> bytes: ...

    def write(self, chunk: bytes) -> None:
        """Append bytes."""
        ...

    def finish(self) -> str:
        """No more bytes come; the SHA-256 of everything written."""
        ...

    def land(self, db: Store, sha256: str, owner: UploadOwner, record: Callable[[Tx], T]) -> T:
        """Keep the (verified) bytes as the blob, unless it is held already, and record it with ``record``."""
        ...

    def discard(self) -> None:
        """Forget the bytes (a no-op once they landed)."""
        ...


class ResumableUpload(Protocol):
    """One account's resumable upload of one blob, opened for one request."""

    owner: UploadOwner
    sha256: str
    # The blob's declared size (0 before the first part fixed it); the service sets it from Content-Range.
    total: int

    @property
    def offset(self) -> int:
        """The bytes this upload holds, acknowledged or appended by this request."""
        ...

    @property
    def unfinished_landing(self) -> bool:
        """Every byte arrived, but a crash kept the blob from being recorded: ``land`` finishes it."""
        ...

    def append(self, chunk: bytes) -> None:
        """Add bytes at the offset (acknowledged by ``commit``, or by a store that commits as it goes)."""
        ...

    def rollback(self, offset: int) -> None:
        """Forget what this request appended past ``offset``: a refused part keeps nothing."""
        ...

    def commit(self) -> None:
        """Acknowledge what was appended: durable when this returns (a store may keep the last bytes
        of a complete upload for ``land``, so they become whole in the transaction that records them)."""
        ...

    def land(self, db: Store, check: Check, record: Callable[[Tx, str], T]) -> T | None:
        """Check the complete bytes, make them the blob's and record it (``record`` gets the media type);
        None when the bytes turned out lost and the upload starts over from byte 0."""
        ...

    def close(self) -> None:
        """Done with it for this request; an upload that holds nothing leaves nothing behind."""
        ...


class BlobStore(Protocol):
    """Complete blobs, their previews, and unfinished uploads."""

    def new_temp(self) -> WholeUpload:
        """A new whole upload."""
        ...

    def open_partial(self, owner: UploadOwner, sha256: str, wait_s: float = ...) -> ResumableUpload | None:
        """The account's upload of this blob, for one request; None if another request held it for ``wait_s``
        (a store that serialises appends chunk by chunk instead never says None)."""
        ...

    def partial_state(self, owner: UploadOwner, sha256: str) -> PartialState | None:
        """The account's unfinished upload of this blob: its total and acknowledged offset."""
        ...

    def partial_uploads(self, event_id: str | None = None) -> Iterator[tuple[UploadOwner, str, PartialState]]:
        """Every unfinished upload (of one event, when given) with acknowledged bytes."""
        ...

    def partial_bytes(self, owner: UploadOwner, *, event_wide: bool = False, besides: str = "") -> int:
        """Bytes held by unfinished uploads of this account (or of its whole event), except of one blob."""
        ...

    def open_blob(self, sha256: str) -> AbstractContextManager[BinaryIO]:
        """A complete blob's bytes, as a seekable file read as it goes."""
        ...

    def read_range(self, sha256: str, first: int, last: int) -> Iterator[bytes]:
        """Bytes ``first`` to ``last`` (inclusive) of a complete blob, in chunks of at most 1 MiB."""
        ...

    def read_preview(self, sha256: str, width: int, extension: str) -> bytes | None:
        """A preview made before, if any."""
        ...

    def save_preview(self, sha256: str, width: int, extension: str, data: bytes) -> None:
        """Keep a preview; two requests making it at once both succeed."""
        ...

    def purge_stale(self, older_than_s: float, now: float | None = None) -> int:
        """Remove unfinished uploads untouched for this long (not one being appended to); how many."""
        ...

    def unrecorded_blobs(self, recorded: Callable[[str], bool]) -> Iterator[tuple[str, int, bytes]]:
        """Complete blobs whose row a crash kept from being written: hash, size, first bytes."""
        ...

    def file_digest(self, sha256: str) -> str | None:
        """The SHA-256 of a complete blob's bytes as they are stored now (None when there are none)."""
        ...

    def remove_blob(self, sha256: str) -> None:
        """Delete a blob's bytes and its previews (its row is gone already)."""
        ...
