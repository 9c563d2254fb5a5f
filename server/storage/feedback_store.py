"""Feedback, its questions and the visits' feedback switch, as organizers and hosts read and manage them."""

from collections.abc import Collection

from schemas.feedback import Question
from schemas.reports import Author
from schemas.sync import Feedback
from server.errors import VisitNotFoundError
from server.storage.changes import record_change
from server.storage.db import utcnow
from server.storage.rows import to_struct
from server.storage.unit import Dialect, Tx

# "Differs from, NULL being a value": SQLite's IS NOT is the standard's IS DISTINCT FROM (SQLite has
# that spelling only from 3.39).
_DIFFERS: dict[Dialect, str] = {"sqlite": "IS NOT", "postgresql": "IS DISTINCT FROM"}


def get_question(tx: Tx, event_id: str, question_id: str) -> Question | None:
    """One feedback question, or None."""
    row = tx.execute("SELECT * FROM questions WHERE event_id = ? AND id = ?", (event_id, question_id)).fetchone()
    return None if row is None else to_struct("questions", row, Question)


def delete_question(tx: Tx, event_id: str, question_id: str) -> bool:
    """Remove a question; devices learn of it as a delete on their next pull. False if there was none."""
    cur = tx.execute("DELETE FROM questions WHERE event_id = ? AND id = ?", (event_id, question_id))
    if cur.rowcount == 0:
        return False
    record_change(tx, event_id, "question", question_id, ["all"])
    return True


def list_feedback(tx: Tx, event_id: str, visit_ids: Collection[str] | None = None) -> list[Feedback]:
    """Feedback of the event (or of some visits), by visit then oldest first."""
    sql = "SELECT * FROM feedback WHERE event_id = ?"
    params: list[object] = [event_id]
    if visit_ids is not None:
        sql += f" AND visit_id IN ({', '.join('?' for _ in visit_ids) or 'NULL'})"
        params.extend(visit_ids)
    sql += " ORDER BY visit_id, updated_at, id"
    return [to_struct("feedback", row, Feedback) for row in tx.execute(sql, params)]


def feedback_of(tx: Tx, event_id: str, author_id: str, visit_id: str) -> Feedback | None:
    """One participant's feedback on one visit (there is at most one), or None."""
    row = tx.execute(
        "SELECT * FROM feedback WHERE event_id = ? AND author_id = ? AND visit_id = ?", (event_id, author_id, visit_id)
    ).fetchone()
    return None if row is None else to_struct("feedback", row, Feedback)


def list_authors(tx: Tx, event_id: str) -> dict[str, Author]:
    """Every account of the event by id, with the name and country organizers see beside their words."""
    rows = tx.execute("SELECT id, name, country, language FROM accounts WHERE event_id = ?", (event_id,))
    return {
        str(r["id"]): Author(id=str(r["id"]), name=str(r["name"]), country=r["country"], language=r["language"])
        for r in rows
    }


def feedback_closed(tx: Tx, event_id: str, visit_id: str) -> tuple[bool, int]:
    """Whether feedback on a visit is closed, and the visit's version; VisitNotFoundError if there is no such visit."""
    row = tx.execute(
        "SELECT feedback_closed, version FROM visits WHERE event_id = ? AND id = ?", (event_id, visit_id)
    ).fetchone()
    if row is None:
        raise VisitNotFoundError(visit_id)
    return bool(row[0]), int(row[1])


def set_feedback_closed(tx: Tx, event_id: str, visit_id: str, closed: bool, version: int) -> None:
    """Close or reopen feedback on a visit at a new version, and tell every device."""
    tx.execute(
        "UPDATE visits SET feedback_closed = ?, version = ?, updated_at = ? WHERE event_id = ? AND id = ?",
        (closed, version, utcnow(), event_id, visit_id),
    )
    record_change(tx, event_id, "visit", visit_id, ["all"])


def move_visit_feedback(tx: Tx, event_id: str, visit_id: str, site_id: str | None) -> list[tuple[str, str, str | None]]:
    """Point every feedback on a visit at the visit's new site, each at a new version; returns
    (id, author id, former site id) of each feedback moved."""
    differs = _DIFFERS[tx.dialect]
    moved = [
        (str(r[0]), str(r[1]), r[2])
        for r in tx.execute(
            f"SELECT id, author_id, site_id FROM feedback WHERE event_id = ? AND visit_id = ? AND site_id {differs} ?",
            (event_id, visit_id, site_id),
        )
    ]
    tx.execute(
        "UPDATE feedback SET site_id = ?, version = version + 1, updated_at = ?"
        f" WHERE event_id = ? AND visit_id = ? AND site_id {differs} ?",
        (site_id, utcnow(), event_id, visit_id, site_id),
    )
    return moved


def closed_visits(tx: Tx, event_id: str) -> set[str]:
    """Ids of the event's visits whose feedback is closed."""
    rows = tx.execute("SELECT id FROM visits WHERE event_id = ? AND feedback_closed", (event_id,))
    return {str(r[0]) for r in rows}
