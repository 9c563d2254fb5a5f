"""What participants shared with the organizers, as one zip: a spreadsheet index and the photos.

The zip is written to a pipe and handed to the client chunk by chunk as it is made (``zipfile``
supports writers that cannot seek: each member's sizes follow it in a data descriptor), so a
visit with a gigabyte of photos costs the server a megabyte of memory, not a gigabyte.
"""

import struct
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timezone
from zoneinfo import ZoneInfo

import msgspec

from schemas.accounts import Account
from server.errors import InvalidQueryError
from server.services.feedback import csv_bytes, require_role
from server.storage.blob_refs import fetchable_blobs
from server.storage.blob_store import BlobStore
from server.storage.blobs import CHUNK, get_blobs, list_export_notes
from server.storage.catalog import get_event
from server.storage.records import record_exists
from server.storage.unit import Store

INDEX_NAME = "index.csv"
INDEX_HEADER = [
    "note_id",
    "author_name",
    "visit_id",
    "visit_title",
    "site_id",
    "site_name",
    "created",
    "updated_at",
    "body",
    "tags",
    "attachments",
    "pending",
]
EXTENSIONS = {
    "image/jpeg": "jpg",
    "image/png": "png",
    "image/webp": "webp",
    "image/heic": "heic",
    "application/pdf": "pdf",
}
# A ZIP member's date is MS-DOS local time: years 1980 to 2107, in steps of two seconds.
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
_ZIP_END = (2107, 12, 31, 23, 59, 58)
# Info-ZIP's extended timestamp: the exact instant as Unix time, which unzip and file managers read.
_EXTENDED_TIMESTAMP = 0x5455
ZipTime = tuple[int, int, int, int, int, int]


class ExportMember(msgspec.Struct, frozen=True):
    """A file in the zip: its name there, the blob it is, its date (event-local) and Unix time."""

    name: str
    sha256: str
    date_time: ZipTime
    mtime: int | None = None


class SharedExport(msgspec.Struct, frozen=True):
    """Everything the zip holds, read from one snapshot of the database before streaming starts."""

    filename: str
    index: bytes
    members: list[ExportMember]
    index_time: ZipTime = _ZIP_EPOCH
    index_mtime: int | None = None


def shared_export(db: Store, files: BlobStore, account: Account, visit_id: str | None) -> SharedExport:
    """The shared notes of a visit (or of the whole event) with their photos (organizers only)."""
    require_role(account, "organizer", what="Exporting shared notes")
    with db.read() as tx:
        if visit_id is not None and not record_exists(tx, account.event_id, "visit", visit_id):
            raise InvalidQueryError(f"visit: there is no visit '{visit_id}' in this event.")
        event = get_event(tx, account.event_id)
        notes = list_export_notes(tx, account.event_id, visit_id)
        # What the organizer may fetch: attachments whose note's author uploaded the bytes.
        held = fetchable_blobs(tx, account, (a["sha256"] for note in notes for a in note.attachments))
        blobs = get_blobs(tx, held)
    # One format for every time in the index: RFC 3339 to the second, in the event's time zone,
    # which is also the local time ZIP dates are read in.
    zone = ZoneInfo(event.timezone)
    rows: list[list[str]] = []
    members: list[ExportMember] = []
    for note in notes:
        names: list[str] = []
        pending: list[str] = []
        captured = _local(note.captured_at, zone)
        updated = _local(note.updated_at, zone)
        dated = captured or updated
        for number, attachment in enumerate(note.attachments, start=1):
            blob = blobs.get(attachment["sha256"])
            if blob is None:
                pending.append(attachment["sha256"])  # not uploaded yet: named, so nobody thinks it lost
                continue
            name = f"photos/{note.id}-{number}.{EXTENSIONS.get(blob.media_type, 'bin')}"
            names.append(name)
            members.append(ExportMember(name=name, sha256=blob.sha256, date_time=_zip_time(dated), mtime=_mtime(dated)))
        rows.append(
            [
                note.id,
                note.author_name,
                note.visit_id or "",
                note.visit_title or "",
                note.site_id or "",
                note.site_name or "",
                captured.isoformat()
                if captured
                else "",  # the device's capture time: the server keeps no creation time
                updated.isoformat() if updated else "",
                note.body,
                "; ".join(note.tags),
                "; ".join(names),
                "; ".join(pending),
            ]
        )
    newest = max((u for u in (_local(n.updated_at, zone) for n in notes) if u is not None), default=None)
    scope = visit_id or "all-visits"
    return SharedExport(
        filename=f"{account.event_id}-{scope}-shared-notes.zip",
        index=csv_bytes(INDEX_HEADER, rows),
        members=members,
        index_time=_zip_time(newest),
        index_mtime=_mtime(newest),
    )


def _local(stamp: str | None, zone: ZoneInfo | timezone) -> datetime | None:
    """A stored RFC 3339 time in the event's zone, to the second (None when absent or unreadable)."""
    if not stamp:
        return None
    try:
        parsed = datetime.fromisoformat(stamp)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)  # the server writes UTC; a time without an offset is one of its
    return parsed.astimezone(zone).replace(microsecond=0)


def _zip_time(stamp: datetime | None) -> ZipTime:
    if stamp is None:
        return _ZIP_EPOCH
    wall = (stamp.year, stamp.month, stamp.day, stamp.hour, stamp.minute, stamp.second)
    return min(_ZIP_END, max(_ZIP_EPOCH, wall))  # outside what ZIP can say: its nearest date


def _mtime(stamp: datetime | None) -> int | None:
    # The extended timestamp holds a signed 32-bit Unix time; a date past 2038 keeps only the DOS one.
    if stamp is None:
        return None
    seconds = int(stamp.timestamp())
    return seconds if 0 <= seconds < 2**31 else None


def _zip_info(name: str, date_time: ZipTime, mtime: int | None) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time)
    info.external_attr = 0o644 << 16
    if mtime is not None:
        info.extra = struct.pack("<HHBl", _EXTENDED_TIMESTAMP, 5, 1, mtime)  # flags 1: modification time
    return info


class _Pipe:
    """A write-only, unseekable file: what ``zipfile`` writes is collected until drained."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        """Nothing to flush: bytes wait in memory until ``take``."""

    def drain(self) -> Iterator[bytes]:
        """What was written since the last drain, as one piece (none when nothing was)."""
        if self._parts:
            data = b"".join(self._parts)
            self._parts.clear()
            yield data


def zip_chunks(files: BlobStore, export: SharedExport) -> Iterator[bytes]:
    """The zip, in pieces of about a megabyte, made as it is read."""
    pipe = _Pipe()
    with zipfile.ZipFile(pipe, "w", compression=zipfile.ZIP_STORED) as archive:  # type: ignore[arg-type]
        index = _zip_info(INDEX_NAME, export.index_time, export.index_mtime)
        index.compress_type = zipfile.ZIP_DEFLATED
        archive.writestr(index, export.index)
        yield from pipe.drain()
        for member in export.members:
            info = _zip_info(member.name, member.date_time, member.mtime)
            # Photos are compressed already: stored as they are, they cost no CPU.
            with files.open_blob(member.sha256) as source, archive.open(info, "w") as target:
                while chunk := source.read(CHUNK):
                    target.write(chunk)
                    yield from pipe.drain()
            yield from pipe.drain()
    yield from pipe.drain()  # the central directory
