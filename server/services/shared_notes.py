"""Notes participants share with the organizers, per visit and per site, as JSON or a spreadsheet."""

from schemas.accounts import Account
from schemas.reports import SharedNote
from server.errors import InvalidQueryError
from server.services.feedback import csv_bytes, require_role
from server.storage.notes_store import list_shared_notes
from server.storage.records import record_exists
from server.storage.unit import Store

SHARED_NOTES_CSV_HEADER = [
    "note_id",
    "author_id",
    "author_name",
    "visit_id",
    "visit_title",
    "site_id",
    "site_name",
    "body",
    "tags",
    "captured_at",
    "updated_at",
]


def shared_notes(db: Store, account: Account, visit_id: str | None, site_id: str | None) -> list[SharedNote]:
    """Shared, live notes, optionally of one visit and/or at one site (organizers only)."""
    require_role(account, "organizer", what="Reading shared notes")
    with db.read() as tx:
        if visit_id is not None and not record_exists(tx, account.event_id, "visit", visit_id):
            raise InvalidQueryError(f"visit: there is no visit '{visit_id}' in this event.")
        if site_id is not None and not record_exists(tx, account.event_id, "site", site_id):
            raise InvalidQueryError(f"site: there is no site '{site_id}' in this event.")
        return list_shared_notes(tx, account.event_id, visit_id=visit_id, site_id=site_id)


def shared_notes_csv(db: Store, account: Account, visit_id: str | None, site_id: str | None) -> bytes:
    """The same notes as spreadsheet rows; tags are joined with "; "."""
    rows = [
        [
            n.id,
            n.author_id,
            n.author_name,
            n.visit_id or "",
            n.visit_title or "",
            n.site_id or "",
            n.site_name or "",
            n.body,
            "; ".join(n.tags),
            n.captured_at or "",
            n.updated_at,
        ]
        for n in shared_notes(db, account, visit_id, site_id)
    ]
    return csv_bytes(SHARED_NOTES_CSV_HEADER, rows)
