"""Notes participants shared with the organizers, with their authors and places."""

from schemas.reports import SharedNote
from server.storage.rows import row_dict
from server.storage.unit import Tx

# A note's place is its own site or, for a note on a visit, the visit's site.
_SHARED = """
SELECT n.id, n.author_id, a.name AS author_name, n.visit_id, v.title AS visit_title,
       COALESCE(n.site_id, v.site_id) AS site_id, s.name AS site_name,
       n.body, n.tags, n.lat, n.lon, n.captured_at, n.updated_at
FROM notes n
JOIN accounts a ON a.id = n.author_id
LEFT JOIN visits v ON v.event_id = n.event_id AND v.id = n.visit_id
LEFT JOIN sites s ON s.event_id = n.event_id AND s.id = COALESCE(n.site_id, v.site_id)
WHERE n.event_id = ? AND n.share_with_organizers AND NOT n.deleted
"""


def list_shared_notes(
    tx: Tx, event_id: str, *, visit_id: str | None = None, site_id: str | None = None
) -> list[SharedNote]:
    """Shared, live notes of the event, optionally on one visit and/or at one site, oldest first."""
    sql = _SHARED
    params: list[object] = [event_id]
    if visit_id is not None:
        sql += " AND n.visit_id = ?"
        params.append(visit_id)
    if site_id is not None:
        sql += " AND COALESCE(n.site_id, v.site_id) = ?"
        params.append(site_id)
    sql += " ORDER BY v.starts_utc, n.updated_at, n.id"
    rows = tx.execute(sql, params).fetchall()
    return [SharedNote(**row_dict("notes", row)) for row in rows]
