"""What a pull sends for a record, and the encoded change kept with each feed row (``changes.payload``).

``shape`` is the one definition of a change as a given viewer sees it. A feed row's payload is that
change, encoded as JSON when the row is written (at commit, from the record's final state in the
writing transaction), for the rows whose change is the same for everyone who reads the row — the
audience alone decides it:

* ``all``: event-wide records (the event, sites, visits, groups, questions) are the same for
  everyone, except a site's conflicts, which only its hosts and organizers see: a site with
  conflicts gets no payload.
* ``acct:X``: X's own note or feedback as its author sees it. Only X reads the row.
* ``org``: a shared note or any feedback as organizers see it, kept only when that is also what its
  author sees (no conflicts), so that an organizer who wrote the record gets its author's view from
  whichever of its rows a page holds.

No payload (NULL: shaped at pull time, as before) for deletes (what a delete carries depends on who
asks, and full pulls leave most out), notes with attachments (an attachment's status depends on the
blobs the viewer may fetch, which other notes decide), hosts' ``site:`` rows (hosts see feedback
without its author, but not their own), and rows written before migration 11. Readers that are
hosts, or that ask for MessagePack, are shaped at pull time too.

Why a payload never goes stale: a row with one is the change of a record its readers see, and every
write that changes such a record writes the record's rows for all the audiences that see it again
(the protocol's own invariant: otherwise their incremental pulls would miss the change), each with a
new payload from the new state. On PostgreSQL the records are read ``FOR SHARE`` before the feed
clock is taken: no concurrent writer can change one between its payload and its commit.
"""

from collections import defaultdict
from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol

import msgspec

from schemas.feedback import Question
from schemas.itinerary import Group, Visit
from schemas.places import Event, Site
from schemas.sync import Change, Conflict, Feedback, Note
from server.storage.records import load_records
from server.storage.unit import Tx
from sync.checksum import record_hash
from sync.rules import feedback_visible, note_visible

# Event-wide entities, served as their read-API Structs.
_SHAPES: dict[str, type[msgspec.Struct]] = {
    "event": Event,
    "site": Site,
    "visit": Visit,
    "group": Group,
    "question": Question,
}

FeedRow = tuple[str, str, str, str]  # event_id, entity, entity_id, audience


class Viewer(Protocol):
    """Who asks, as far as what they see of a record depends on it (an `Account` is one)."""

    @property
    def id(self) -> str: ...

    @property
    def role(self) -> str: ...

    @property
    def site_ids(self) -> Sequence[str]: ...


class _Reader(msgspec.Struct, frozen=True):
    """A stand-in reader of a feed row: someone of this role who wrote none of it."""

    id: str
    role: str
    site_ids: tuple[str, ...] = ()


_ANYONE = _Reader("", "participant")
_ORGANIZER = _Reader("", "organizer")


def may_resolve_site(viewer: Viewer, site_id: str) -> bool:
    """Whether the caller may resolve a site's conflicts, and so is sent them."""
    return viewer.role == "organizer" or (viewer.role == "host" and site_id in viewer.site_ids)


def shape(
    viewer: Viewer,
    entity: str,
    entity_id: str,
    record: dict[str, Any] | None,
    held: set[str] | frozenset[str] = frozenset(),
) -> Change:
    """What the caller gets for one record: its visible state, or a delete that carries none of it."""
    if record is None:
        return Change(entity=entity, id=entity_id, op="delete", version=0, data=None)  # type: ignore[arg-type]
    version = int(record["version"])
    gone = Change(entity=entity, id=entity_id, op="delete", version=version, data=None)  # type: ignore[arg-type]
    if entity == "note":
        if not note_visible(record, viewer.id, viewer.role):
            return gone
        if record["deleted"]:
            mine = record["author_id"] == viewer.id and record["conflicts"]
            return Change(
                entity="note",
                id=entity_id,
                op="delete",
                version=version,
                data={"conflicts": _conflicts(record["conflicts"])} if mine else None,
            )
        attachments = [
            {**a, "status": "available" if a["sha256"] in held else "pending"} for a in record["attachments"]
        ]
        data = msgspec.to_builtins(
            msgspec.convert(
                {
                    **record,
                    "share_with_organizers": bool(record["share_with_organizers"]),
                    "clock_skewed": bool(record["clock_skewed"]),
                    "attachments": attachments,
                },
                Note,
            )
        )
        if record["author_id"] != viewer.id:
            data["conflicts"] = []
        return Change(entity="note", id=entity_id, op="put", version=version, data=data)
    if entity == "feedback":
        if not feedback_visible(record, viewer.id, viewer.role, frozenset(viewer.site_ids)):
            return gone
        feedback = msgspec.convert({**record, "clock_skewed": bool(record["clock_skewed"])}, Feedback)
        if viewer.role == "host" and record["author_id"] != viewer.id:
            feedback.author_id = None  # hosts see what was said, not who said it
        if record["author_id"] != viewer.id:
            feedback.conflicts = []
        data = msgspec.to_builtins(feedback)
        if feedback.author_id is None:
            del data["author_id"]  # absent, not null: hosts are never told that there is an author to hide
        return Change(entity="feedback", id=entity_id, op="put", version=version, data=data)
    data = msgspec.to_builtins(msgspec.convert(record, _SHAPES[entity], strict=False))
    if entity == "site":
        data["conflicts"] = _conflicts(record["conflicts"]) if may_resolve_site(viewer, entity_id) else []
    return Change(entity=entity, id=entity_id, op="put", version=version, data=data)  # type: ignore[arg-type]


def _conflicts(stored: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # Stored entries omit what was a default when they were written (``reason`` among them):
    # on the wire every entry carries every field.
    return msgspec.to_builtins(msgspec.convert(stored, list[Conflict]))


def row_reader(entity: str, audience: str, record: dict[str, Any] | None) -> _Reader | None:
    """Whose view of ``record`` a feed row of ``audience`` keeps, or None when it keeps none (see the module)."""
    if record is None:
        return None
    if entity in _SHAPES:
        if audience != "all" or (entity == "site" and record["conflicts"]):
            return None
        return _ANYONE
    if entity == "note":
        if record["deleted"] or record["attachments"]:
            return None
        if audience == f"acct:{record['author_id']}":
            return _Reader(record["author_id"], "participant")
        if audience == "org" and record["share_with_organizers"] and not record["conflicts"]:
            return _ORGANIZER
        return None
    if entity == "feedback":
        if audience == f"acct:{record['author_id']}":
            return _Reader(record["author_id"], "participant")
        if audience == "org" and not record["conflicts"]:
            return _ORGANIZER
    return None


_JSON = msgspec.json.Encoder()


class FeedValues(NamedTuple):
    """What a feed row keeps of its record: the payload (None: shaped at pull time), whether the record
    counts in the audience's summary (``counts``: 0, 1, or 2 for a shared note on its author's row)
    and its share of the checksum in two 32-bit halves (None where it does not count)."""

    payload: bytes | None
    counts: int
    share_hi: int | None
    share_lo: int | None


def row_counts(entity: str, audience: str, record: dict[str, Any] | None) -> int:
    """Whether ``record`` counts in the summary of a feed row's ``audience`` (see ``summary_sums``).

    The sets are chosen so that each reader's visible records are sums and differences of its
    audiences' sets: everyone's ``all``; a participant's own ``acct:`` row; an organizer's own row,
    plus ``org``, minus its own shared notes (counted on both).
    """
    if record is None:
        return 0
    if entity in _SHAPES:
        return 1 if audience == "all" else 0
    if entity == "note":
        if record["deleted"]:
            return 0
        shared = bool(record["share_with_organizers"])
        if audience == f"acct:{record['author_id']}":
            return 2 if shared else 1
        return 1 if audience == "org" and shared else 0
    if entity == "feedback":
        return 1 if audience in (f"acct:{record['author_id']}", "org") else 0
    return 0


def feed_values(tx: Tx, rows: Sequence[FeedRow]) -> list[FeedValues]:
    """What each of these feed rows keeps, from the records' state in ``tx``."""
    return values_of(tx, rows, _records(tx, rows))


def values_of(
    tx: Tx, rows: Sequence[FeedRow], records: dict[tuple[str, str], dict[str, dict[str, Any]]]
) -> list[FeedValues]:
    """What each of these feed rows keeps, given its record's final state (as ``load_records`` gives
    it) in ``records``: a writer that holds the state it wrote passes it, and nothing is read back."""
    payloads = feed_payloads(tx, rows, records)
    values: list[FeedValues] = []
    for (event_id, entity, entity_id, audience), payload in zip(rows, payloads, strict=True):
        record = records[event_id, entity].get(entity_id)
        counts = row_counts(entity, audience, record)
        if counts and record is not None:
            share = record_hash(entity_id, int(record["version"]))
            values.append(FeedValues(payload, counts, share >> 32, share & 0xFFFFFFFF))
        else:
            values.append(FeedValues(payload, counts, None, None))
    return values


def _records(tx: Tx, rows: Sequence[FeedRow]) -> dict[tuple[str, str], dict[str, dict[str, Any]]]:
    wanted: dict[tuple[str, str], set[str]] = defaultdict(set)
    for event_id, entity, entity_id, _ in rows:
        wanted[event_id, entity].add(entity_id)
    return {
        key: load_records(tx, key[0], key[1], sorted(ids), for_share=tx.dialect == "postgresql")
        for key, ids in wanted.items()
    }


def feed_payloads(
    tx: Tx, rows: Sequence[FeedRow], records: dict[tuple[str, str], dict[str, dict[str, Any]]] | None = None
) -> list[bytes | None]:
    """The payload of each of these feed rows, from the records' state in ``tx`` (None: shaped at pull time)."""
    if records is None:
        records = _records(tx, rows)
    payloads: list[bytes | None] = []
    # A note edited and its organizers' row are the same bytes when both are kept: encoded once.
    encoded: dict[tuple[str, str, _Reader], bytes] = {}
    for event_id, entity, entity_id, audience in rows:
        record = records[event_id, entity].get(entity_id)
        reader = row_reader(entity, audience, record)
        if reader is None:
            payloads.append(None)
            continue
        key = (entity, entity_id, reader if record and record.get("conflicts") else _ANYONE)
        payload = encoded.get(key)
        if payload is None:
            try:
                payload = encoded[key] = _JSON.encode(shape(reader, entity, entity_id, record))
            except (msgspec.ValidationError, KeyError, TypeError, ValueError):
                # A row that will not shape must not fail the write that made it: the pull shapes it
                # (and answers for it) as it did before payloads were kept.
                payload = None
        payloads.append(payload)
    return payloads


def stale_payloads(tx: Tx, event_id: str) -> list[tuple[FeedRow, FeedValues, FeedValues]]:
    """Feed rows of the event whose kept values are not what their record's state gives now:
    (row, kept, now). Empty unless a write changed a record without writing its rows again."""
    found = [
        (
            (str(r[0]), str(r[1]), str(r[2]), str(r[3])),
            FeedValues(
                None if r[4] is None else bytes(r[4]),
                r[5],
                None if r[6] is None else int(r[6]),
                None if r[7] is None else int(r[7]),
            ),
        )
        for r in tx.execute(
            "SELECT event_id, entity, entity_id, audience, payload, counts, share_hi, share_lo FROM changes"
            " WHERE event_id = ? ORDER BY seq",
            (event_id,),
        )
    ]
    now = feed_values(tx, [row for row, _ in found]) if found else []
    return [(row, kept, fresh) for (row, kept), fresh in zip(found, now, strict=True) if kept != fresh]
