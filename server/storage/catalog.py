"""Events, sites, groups, visits and questions: the programme everyone in an event can read."""

from schemas.feedback import Question
from schemas.itinerary import Group, Visit
from schemas.places import Event, Site
from server.errors import EventNotFoundError, GroupNotFoundError, SiteNotFoundError, VisitNotFoundError
from server.storage.changes import record_change
from server.storage.db import utcnow
from server.storage.records import start_utc
from server.storage.rows import insert_sql, to_row, to_struct
from server.storage.unit import Dialect, Tx

# By name, ignoring the case of ASCII letters only, as SQLite's NOCASE does (and so the same order on
# both engines; lower() of a C-collated value folds only ASCII on PostgreSQL).
_BY_NAME: dict[Dialect, str] = {"sqlite": "name COLLATE NOCASE", "postgresql": 'lower(name COLLATE "C")'}
# Visits one group goes on: its id is in the visit's JSON list of groups.
_HAS_GROUP: dict[Dialect, str] = {
    "sqlite": "EXISTS (SELECT 1 FROM json_each(visits.group_ids) WHERE value = ?)",
    "postgresql": "group_ids @> jsonb_build_array(?::text)",
}


def get_event(tx: Tx, event_id: str) -> Event:
    """The event; EventNotFoundError if there is none."""
    row = tx.execute("SELECT * FROM events WHERE id = ?", (event_id,)).fetchone()
    if row is None:
        raise EventNotFoundError(event_id)
    return to_struct("events", row, Event)


def list_sites(tx: Tx, event_id: str) -> list[Site]:
    """Every site of the event, by name."""
    rows = tx.execute(f"SELECT * FROM sites WHERE event_id = ? ORDER BY {_BY_NAME[tx.dialect]}", (event_id,))
    return [to_struct("sites", row, Site) for row in rows]


def get_site(tx: Tx, event_id: str, site_id: str) -> Site:
    """One site; SiteNotFoundError if the event has none with this id."""
    row = tx.execute("SELECT * FROM sites WHERE event_id = ? AND id = ?", (event_id, site_id)).fetchone()
    if row is None:
        raise SiteNotFoundError(site_id)
    return to_struct("sites", row, Site)


def list_groups(tx: Tx, event_id: str) -> list[Group]:
    """Every group of the event."""
    rows = tx.execute("SELECT * FROM groups WHERE event_id = ? ORDER BY id", (event_id,))
    return [to_struct("groups", row, Group) for row in rows]


def get_group(tx: Tx, event_id: str, group_id: str) -> Group:
    """One group; GroupNotFoundError if the event has none with this id."""
    row = tx.execute("SELECT * FROM groups WHERE event_id = ? AND id = ?", (event_id, group_id)).fetchone()
    if row is None:
        raise GroupNotFoundError(group_id)
    return to_struct("groups", row, Group)


def list_visits(
    tx: Tx, event_id: str, *, group_id: str | None = None, site_ids: list[str] | None = None
) -> list[Visit]:
    """Visits in time order, optionally only one group's or only those at some sites."""
    sql = "SELECT * FROM visits WHERE event_id = ?"
    params: list[object] = [event_id]
    if group_id is not None:
        sql += f" AND {_HAS_GROUP[tx.dialect]}"
        params.append(group_id)
    if site_ids is not None:
        sql += f" AND site_id IN ({', '.join('?' for _ in site_ids)})"
        params.extend(site_ids)
    sql += " ORDER BY starts_utc, number"
    return [to_struct("visits", row, Visit) for row in tx.execute(sql, params)]


def get_visit(tx: Tx, event_id: str, visit_id: str) -> Visit:
    """One visit; VisitNotFoundError if the event has none with this id."""
    row = tx.execute("SELECT * FROM visits WHERE event_id = ? AND id = ?", (event_id, visit_id)).fetchone()
    if row is None:
        raise VisitNotFoundError(visit_id)
    return to_struct("visits", row, Visit)


def list_questions(tx: Tx, event_id: str) -> list[Question]:
    """The event's feedback questions, in order."""
    rows = tx.execute("SELECT * FROM questions WHERE event_id = ? ORDER BY position, id", (event_id,))
    return [to_struct("questions", row, Question) for row in rows]


def put_event(tx: Tx, event: Event) -> None:
    """Create or replace an event with its given content (used by fixture loading)."""
    row = to_row("events", event, updated_at=utcnow())
    columns = list(row)
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c != "id")
    tx.execute(f"{insert_sql('events', columns)} ON CONFLICT (id) DO UPDATE SET {updates}", list(row.values()))
    record_change(tx, event.id, "event", event.id, ["all"])


def put_site(tx: Tx, event_id: str, site: Site) -> None:
    """Create or replace a site."""
    _upsert(tx, "sites", to_row("sites", site, event_id=event_id, updated_at=utcnow()))
    record_change(tx, event_id, "site", site.id, ["all"])


def put_group(tx: Tx, event_id: str, group: Group) -> None:
    """Create or replace a group."""
    _upsert(tx, "groups", to_row("groups", group, event_id=event_id))
    record_change(tx, event_id, "group", group.id, ["all"])


def put_visit(tx: Tx, event_id: str, visit: Visit) -> None:
    """Create or replace a visit."""
    row = to_row("visits", visit, event_id=event_id, updated_at=utcnow())
    row["starts_utc"] = start_utc(row["starts_at"])
    _upsert(tx, "visits", row)
    record_change(tx, event_id, "visit", visit.id, ["all"])


def put_question(tx: Tx, event_id: str, question: Question) -> None:
    """Create or replace a feedback question."""
    _upsert(tx, "questions", to_row("questions", question, event_id=event_id))
    record_change(tx, event_id, "question", question.id, ["all"])


def _upsert(tx: Tx, table: str, row: dict[str, object]) -> None:
    columns = list(row)
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in ("event_id", "id"))
    tx.execute(f"{insert_sql(table, columns)} ON CONFLICT (event_id, id) DO UPDATE SET {updates}", list(row.values()))


def next_visit_number(tx: Tx, event_id: str) -> int:
    """The stable number a new visit gets (frab schedule ids): one more than the highest so far."""
    return int(
        tx.execute("SELECT COALESCE(MAX(number), 0) + 1 FROM visits WHERE event_id = ?", (event_id,)).fetchone()[0]
    )
