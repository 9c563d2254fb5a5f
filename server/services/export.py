"""What participants shared with the organizers, as one zip: a spreadsheet index and the photos.

The zip is written to a pipe and handed to the client chunk by chunk as it is made (``zipfile``
supports writers that cannot seek: each member's sizes follow it in a data descriptor), so a
visit with a gigabyte of photos costs the server a megabyte of memory, not a gigabyte.
"""

import zipfile
from collections.abc import Iterator
from datetime import datetime

import msgspec

from schemas.accounts import Account
from server.errors import InvalidQueryError
from server.services.feedback import csv_bytes, require_role
from server.storage.blobs import CHUNK, BlobFiles, ExportNote, get_blobs, list_export_notes
from server.storage.catalog import get_visit
from server.storage.db import Database

INDEX_NAME = "index.csv"
INDEX_HEADER = ["note_id", "author_name", "created", "updated_at", "body", "tags", "attachments", "pending"]
EXTENSIONS = {
    "image/jpeg": "jpg",
    "image/png": "png",
    "image/webp": "webp",
    "image/heic": "heic",
    "application/pdf": "pdf",
}
# ZIP cannot date a member before 1980.
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


class ExportMember(msgspec.Struct, frozen=True):
    """A photo in the zip: its name there and the blob it is."""

    name: str
    sha256: str
    date_time: tuple[int, int, int, int, int, int]


class SharedExport(msgspec.Struct, frozen=True):
    """Everything the zip holds, read from one snapshot of the database before streaming starts."""

    filename: str
    index: bytes
    members: list[ExportMember]


def shared_export(db: Database, files: BlobFiles, account: Account, visit_id: str | None) -> SharedExport:
    """The shared notes of a visit (or of the whole event) with their photos (organizers only)."""
    require_role(account, "organizer", what="Exporting shared notes")
    with db.read() as conn:
        if visit_id is not None and get_visit(conn, account.event_id, visit_id) is None:
            raise InvalidQueryError(f"visit: there is no visit '{visit_id}' in this event.")
        notes = list_export_notes(conn, account.event_id, visit_id)
        blobs = get_blobs(conn, (a["sha256"] for note in notes for a in note.attachments))
    rows: list[list[str]] = []
    members: list[ExportMember] = []
    for note in notes:
        names: list[str] = []
        pending: list[str] = []
        for number, attachment in enumerate(note.attachments, start=1):
            blob = blobs.get(attachment["sha256"])
            if blob is None:
                pending.append(attachment["sha256"])  # not uploaded yet: named, so nobody thinks it lost
                continue
            name = f"photos/{note.id}-{number}.{EXTENSIONS.get(blob.media_type, 'bin')}"
            names.append(name)
            members.append(ExportMember(name=name, sha256=blob.sha256, date_time=_zip_time(note)))
        rows.append(
            [
                note.id,
                note.author_name,
                note.captured_at or "",  # the device's capture time: the server keeps no creation time
                note.updated_at,
                note.body,
                "; ".join(note.tags),
                "; ".join(names),
                "; ".join(pending),
            ]
        )
    scope = visit_id or "all-visits"
    return SharedExport(
        filename=f"{account.event_id}-{scope}-shared-notes.zip",
        index=csv_bytes(INDEX_HEADER, rows),
        members=members,
    )


def _zip_time(note: ExportNote) -> tuple[int, int, int, int, int, int]:
    try:
        stamp = datetime.fromisoformat(note.captured_at or note.updated_at)
    except ValueError:
        return _ZIP_EPOCH
    return max(_ZIP_EPOCH, (stamp.year, stamp.month, stamp.day, stamp.hour, stamp.minute, stamp.second))


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


def zip_chunks(files: BlobFiles, export: SharedExport) -> Iterator[bytes]:
    """The zip, in pieces of about a megabyte, made as it is read."""
    pipe = _Pipe()
    with zipfile.ZipFile(pipe, "w", compression=zipfile.ZIP_STORED) as archive:  # type: ignore[arg-type]
        index = zipfile.ZipInfo(INDEX_NAME, _ZIP_EPOCH)
        index.compress_type = zipfile.ZIP_DEFLATED
        index.external_attr = 0o644 << 16
        archive.writestr(index, export.index)
        yield from pipe.drain()
        for member in export.members:
            info = zipfile.ZipInfo(member.name, member.date_time)
            info.external_attr = 0o644 << 16
            # Photos are compressed already: stored as they are, they cost no CPU.
            with files.open_blob(member.sha256) as source, archive.open(info, "w") as target:
                while chunk := source.read(CHUNK):
                    target.write(chunk)
                    yield from pipe.drain()
            yield from pipe.drain()
    yield from pipe.drain()  # the central directory
