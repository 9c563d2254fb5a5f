"""Applying one sync mutation inside the push transaction: permissions, merging, history, change feed."""

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import msgspec
from msgspec import UNSET

from schemas.accounts import Account
from schemas.sync import (
    Conflict,
    FeedbackPutArgs,
    Mutation,
    MutationResult,
    NoteDeleteArgs,
    NotePutArgs,
    SitePatchArgs,
)
from server.errors import DomainError
from server.geo import distance_m
from server.storage.blob_refs import grants_changed, referable_blobs, set_note_blobs
from server.storage.catalog import list_questions
from server.storage.changes import record_change
from server.storage.db import utcnow
from server.storage.feedback_store import move_visit_feedback
from server.storage.records import (
    add_feedback_alias,
    add_history,
    changed_since,
    existing_ids,
    feedback_of,
    feedback_owner,
    insert_record,
    load_record,
    note_owner,
    note_owners,
    record_exists,
    record_value,
    resolve_feedback_alias,
    scrub_history,
    update_record,
)
from server.storage.rows import encode_json
from server.storage.unit import Tx
from sync.rules import (
    FEEDBACK_DEFAULTS,
    HOST_SITE_FIELDS,
    NOTE_DEFAULTS,
    ORGANIZER_SITE_FIELDS,
    created_fields,
    edited_fields,
    feedback_audiences,
    flatten_translations,
    merge_fields,
)

# Records that keep the device time of their last change beside the server's (migration 8).
DEVICE_TIMED = frozenset({"note", "feedback"})
# A host moving a site further than this is asked to be checked by an organizer.
REVIEW_DISTANCE_M = 500.0


class MutationRejectedError(DomainError):
    """A valid mutation that may not be applied. Through sync it is ``rejected`` (its id used up);
    through REST it is the problem document of its status."""

    def __init__(self, slug: str, detail: str, status: int = 422) -> None:
        super().__init__(detail)
        self.slug = slug  # type: ignore[misc]
        self.status = status  # type: ignore[misc]
        self.title = "Not allowed" if status == 403 else "Not found" if status == 404 else "Change refused"  # type: ignore[misc]


class Known:
    """What a batch's notes are checked against, read for the whole batch at once: who owns each note
    id it names, and which visits and sites it names exist (two queries, not two per note).

    Good until the batch itself changes it: a note id the batch has written is asked again, and after
    any mutation other than ``note.put`` (a ``visit.put`` may create the visit a later note names)
    everything is.
    """

    def __init__(self, tx: Tx, event_id: str, mutations: list[Mutation]) -> None:
        notes = [m.args for m in mutations if m.type == "note.put"]
        ids = {a["id"] for a in notes if isinstance(a.get("id"), str)}
        places = {
            (entity, a[f"{entity}_id"])
            for a in notes
            for entity in ("visit", "site")
            if isinstance(a.get(f"{entity}_id"), str)
        }
        self.owners = note_owners(tx, ids)
        self.notes: frozenset[str] = frozenset(ids)
        self.asked = frozenset(places)
        self.places = {
            (entity, found)
            for entity in ("visit", "site")
            for found in existing_ids(tx, event_id, entity, (i for e, i in places if e == entity))
        }
        self.touched: set[str] = set()
        self.valid = True

    def applied(self, mutation: Mutation) -> None:
        """A mutation of the batch took effect (or was tried): forget what it may have changed."""
        note_id = mutation.args.get("id")
        if mutation.type != "note.put":
            self.valid = False
        elif isinstance(note_id, str):
            self.touched.add(note_id)


@dataclass(frozen=True)
class Context:
    """Who is pushing, from which install, in which event."""

    tx: Tx
    account: Account
    client_id: str | None
    mutation_id: int | None
    # The device's clock as sent (display only), the server's when it arrived, and whether the
    # device time is implausible (sync.mutations.clock_skewed). REST writes have no device time.
    client_time: str | None = None
    received_at: str | None = None
    clock_skewed: bool = False
    known: Known | None = field(default=None, repr=False)  # a push's lookups, read once per batch

    def owner_of(self, note_id: str) -> tuple[str, str] | None:
        """(event id, author id) of a note with this id in any event, or None."""
        k = self.known
        if k is None or not k.valid or note_id not in k.notes or note_id in k.touched:
            return note_owner(self.tx, note_id)
        return k.owners.get(note_id)

    def exists(self, entity: Literal["visit", "site"], record_id: str) -> bool:
        """Whether the event has this visit or site."""
        k = self.known
        if k is None or not k.valid or (entity, record_id) not in k.asked:
            return record_exists(self.tx, self.event_id, entity, record_id)
        return (entity, record_id) in k.places

    @property
    def event_id(self) -> str:
        return self.account.event_id

    def device_times(self) -> dict[str, Any]:
        """The device-time columns of a note or feedback written by this mutation."""
        return {
            "client_time": self.client_time,
            "received_at": self.received_at or utcnow(),
            "clock_skewed": int(self.clock_skewed),
        }

    @property
    def own_client(self) -> tuple[str, str | None]:
        """Whose earlier changes are this caller's own: never a conflict with themselves."""
        return (self.account.id, self.client_id)

    def conflict(
        self, name: str, value: Any, base_version: int, version: int, reason: str = "concurrent_edit"
    ) -> Conflict:
        return Conflict(
            field=name,
            value=value,
            client_id=self.client_id,
            account_id=self.account.id,
            mutation_id=self.mutation_id,
            base_version=base_version,
            version=version,
            at=utcnow(),
            reason=reason,
        )


Status = Literal["applied", "conflict"]


def _result(
    ctx: Context, status: Status, version: int, entity_id: str | None = None, conflicts: list[str] | None = None
) -> MutationResult:
    return MutationResult(
        id=ctx.mutation_id or 0, status=status, version=version, entity_id=entity_id, conflicts=conflicts or None
    )


def _kept_conflicts(existing: list[Any], resolve: bool, base_version: int) -> list[Any]:
    # Resolving clears only the conflicts the owner had seen: those recorded at or before their base.
    if not resolve:
        return list(existing)
    return [c for c in existing if c.get("version", 0) > base_version]


def _check_place(ctx: Context, visit_id: str | None, site_id: str | None) -> None:
    if visit_id is None and site_id is None:
        raise MutationRejectedError("invalid-mutation", "A note needs a visit_id or a site_id.")
    if visit_id is not None and not ctx.exists("visit", visit_id):
        raise MutationRejectedError("unknown-visit", f"No visit '{visit_id}' in this event.")
    if site_id is not None and not ctx.exists("site", site_id):
        raise MutationRejectedError("unknown-site", f"No site '{site_id}' in this event.")


def _note_audiences(author_id: str, *shared: bool) -> list[str]:
    # Organizers are told whenever the note is or was shared, so unsharing reaches them as a delete.
    return [f"acct:{author_id}", *(["org"] if any(shared) else [])]


def _own_note(ctx: Context, note_id: str) -> dict[str, Any] | None:
    owner = ctx.owner_of(note_id)
    if owner is not None and owner != (ctx.event_id, ctx.account.id):
        # Someone else's note (in any event) does not exist for this caller.
        raise MutationRejectedError("not-found", f"No note '{note_id}' of yours.", 404)
    return None if owner is None else load_record(ctx.tx, ctx.event_id, "note", note_id)


def _sent_note_fields(args: NotePutArgs) -> dict[str, Any]:
    """The note fields a ``note.put`` carries, as stored (RFC 3339 text, plain dicts); UNSET left out."""
    sent = {name: getattr(args, name) for name in NOTE_DEFAULTS if getattr(args, name) is not UNSET}
    if isinstance(captured := sent.get("captured_at"), datetime):
        sent["captured_at"] = captured.isoformat()
    if sent.get("attachments") is not None:
        sent["attachments"] = msgspec.to_builtins(sent["attachments"])
    if ("lat" in sent) != ("lon" in sent):
        raise MutationRejectedError("invalid-mutation", "lat and lon come together or not at all.")
    return sent


def _check_position(values: dict[str, Any]) -> None:
    if (values.get("lat") is None) != (values.get("lon") is None):
        raise MutationRejectedError("invalid-mutation", "lat and lon come together or not at all.")


def new_note_row(ctx: Context, args: NotePutArgs, taken: set[str]) -> tuple[Any, ...] | None:
    """The row of a plain new note (no photos, an id never seen), checked like ``note_put`` would;
    None when the mutation needs the general path. Writes nothing, so it needs no savepoint."""
    if args.attachments or args.id in taken or ctx.owner_of(args.id) is not None:
        return None
    values = created_fields(_sent_note_fields(args), NOTE_DEFAULTS)
    _check_position(values)
    _check_place(ctx, values["visit_id"], values["site_id"])
    return (
        args.id, ctx.event_id, ctx.account.id, ctx.client_id, values["visit_id"], values["site_id"], values["body"],
        encode_json(values["tags"]), values["lat"], values["lon"], values["captured_at"],
        int(values["share_with_organizers"]), utcnow(), *ctx.device_times().values(),
    )  # fmt: skip


def note_put(ctx: Context, args: NotePutArgs) -> MutationResult:
    """Create one of the caller's notes, or change the fields an edit sends (omitted: unchanged)."""
    sent = _sent_note_fields(args)
    note = _own_note(ctx, args.id)
    now = utcnow()
    if note is None:
        values = created_fields(sent, NOTE_DEFAULTS)
        _check_position(values)
        _check_place(ctx, values["visit_id"], values["site_id"])
        insert_record(
            ctx.tx,
            "note",
            {
                **values,
                "id": args.id,
                "event_id": ctx.event_id,
                "author_id": ctx.account.id,
                "origin_client": ctx.client_id,
                "version": 1,
                "conflicts": [],
                "updated_at": now,
                **ctx.device_times(),
            },
        )
        record_change(
            ctx.tx, ctx.event_id, "note", args.id, _note_audiences(ctx.account.id, values["share_with_organizers"])
        )
        set_note_blobs(ctx.tx, ctx.event_id, args.id, values["attachments"])
        _grants_changed(ctx, args.id, values["attachments"], [bool(values["share_with_organizers"])])
        return _with_pending(ctx, _result(ctx, "applied", 1), values["attachments"])
    values = edited_fields(sent, NOTE_DEFAULTS)
    if args.base_version > note["version"]:
        raise MutationRejectedError("invalid-base-version", f"base_version {args.base_version} is newer than the note.")
    if note["deleted"]:
        # The delete stands; what was typed is kept on the tombstone for its author.
        lost = [
            ctx.conflict(k, v, args.base_version, note["version"] + 1, "edited_after_delete")
            for k, v in values.items()
            if v != NOTE_DEFAULTS[k]
        ]
        if not lost:
            return _result(ctx, "applied", note["version"])  # nothing typed, nothing lost: no conflict
        version = note["version"] + 1
        update_record(
            ctx.tx,
            ctx.event_id,
            "note",
            args.id,
            {
                "conflicts": [*note["conflicts"], *map(msgspec.to_builtins, lost)],
                "version": version,
                "updated_at": now,
                **ctx.device_times(),
            },
        )
        record_change(ctx.tx, ctx.event_id, "note", args.id, _note_audiences(ctx.account.id))
        return _result(ctx, "conflict", version, conflicts=[c.field for c in lost])
    _check_position({"lat": note["lat"], "lon": note["lon"], **values})
    values.setdefault("visit_id", note["visit_id"])
    values.setdefault("site_id", note["site_id"])
    if values["visit_id"] != note["visit_id"] or values["site_id"] != note["site_id"]:
        _check_place(ctx, values["visit_id"], values["site_id"])
    current = {k: note[k] for k in NOTE_DEFAULTS}
    current["share_with_organizers"] = bool(current["share_with_organizers"])
    merge = merge_fields(
        current,
        values,
        changed_since(ctx.tx, ctx.event_id, "note", note, args.base_version, NOTE_DEFAULTS, ctx.own_client),
    )
    result = write_merge(
        ctx,
        "note",
        note,
        current,
        merge.apply,
        merge.conflicts,
        args.base_version,
        args.resolve_conflicts,
        audiences=_note_audiences(
            ctx.account.id,
            bool(note["share_with_organizers"]),
            bool(merge.apply.get("share_with_organizers", note["share_with_organizers"])),
        ),
    )
    attachments = merge.apply.get("attachments", note["attachments"])
    if "attachments" in merge.apply:
        set_note_blobs(ctx.tx, ctx.event_id, args.id, attachments)
    if "attachments" in merge.apply or "share_with_organizers" in merge.apply:
        shared_before = bool(note["share_with_organizers"])
        shared_after = bool(merge.apply.get("share_with_organizers", shared_before))
        _grants_changed(ctx, args.id, [*note["attachments"], *attachments], [shared_before, shared_after])
    return _with_pending(ctx, result, attachments)


def _grants_changed(ctx: Context, note_id: str, attachments: list[dict[str, Any]], shared: list[bool]) -> None:
    # Who may reference a blob through this note may have changed: their notes are pulled again.
    seen_by = [{"author_id": ctx.account.id, "share_with_organizers": s} for s in shared]
    grants_changed(ctx.tx, ctx.event_id, note_id, ctx.account.id, (a["sha256"] for a in attachments), seen_by)


def _with_pending(ctx: Context, result: MutationResult, attachments: list[dict[str, Any]]) -> MutationResult:
    # The note never waits for its photos: it is stored now, and the client is told what to upload.
    # Knowing a hash is no proof of holding the bytes: pending until the author uploads them.
    hashes = {a["sha256"] for a in attachments}
    missing = hashes - referable_blobs(ctx.tx, ctx.account, hashes)
    result.pending_blobs = sorted(missing) or None
    return result


def note_delete(ctx: Context, args: NoteDeleteArgs) -> MutationResult:
    """Delete one of the caller's notes; edits it did not see are kept as conflicts on the tombstone."""
    note = _own_note(ctx, args.id)
    if note is None:
        raise MutationRejectedError("not-found", f"No note '{args.id}' of yours.", 404)
    if note["deleted"]:
        return _result(ctx, "applied", note["version"])
    version = note["version"] + 1
    unseen = (
        changed_since(ctx.tx, ctx.event_id, "note", note, args.base_version, NOTE_DEFAULTS, ctx.own_client)
        if args.base_version
        else {}
    )
    lost = [ctx.conflict(k, record_value(note, k), args.base_version, version, "edited_before_delete") for k in unseen]
    update_record(
        ctx.tx,
        ctx.event_id,
        "note",
        args.id,
        {
            "deleted": 1,
            "version": version,
            "updated_at": utcnow(),
            "body": "",
            "tags": [],
            "lat": None,
            "lon": None,
            "attachments": [],
            "conflicts": [*note["conflicts"], *map(msgspec.to_builtins, lost)],
            **ctx.device_times(),
        },
    )
    set_note_blobs(ctx.tx, ctx.event_id, args.id, [])  # a deleted note shares no photo
    _grants_changed(ctx, args.id, note["attachments"], [bool(note["share_with_organizers"])])
    scrub_history(ctx.tx, ctx.event_id, "note", args.id)  # nor keeps its text in the audit trail
    record_change(
        ctx.tx, ctx.event_id, "note", args.id, _note_audiences(ctx.account.id, bool(note["share_with_organizers"]))
    )
    # Edits the delete erased unseen are a conflict like any other lost value: the client shows them.
    return _result(ctx, "conflict" if lost else "applied", version, conflicts=[c.field for c in lost])


def _check_answers(ctx: Context, answers: dict[str, Any]) -> None:
    questions = {q.id: q for q in list_questions(ctx.tx, ctx.event_id)}
    for qid, answer in answers.items():
        if answer is None:
            continue  # removes an answer; even one to a question deleted since
        question = questions.get(qid)
        if question is None:
            raise MutationRejectedError("invalid-answer", f"No question '{qid}' in this event.")
        ok = {
            "rating": isinstance(answer, int) and 1 <= answer <= 5,
            "choice": isinstance(answer, str) and answer in {c.id for c in question.choices},
            "text": isinstance(answer, str),
        }[question.kind]
        if not ok:
            shown = msgspec.json.encode(answer).decode()  # as the client sent it, not as Python shows it
            raise MutationRejectedError("invalid-answer", f"Question '{qid}' ({question.kind}): {shown} does not fit.")


def feedback_put(ctx: Context, args: FeedbackPutArgs) -> MutationResult:
    """One participant's feedback on a visit of their group, created or changed field by field;
    a second device's feedback merges into the first."""
    account = ctx.account
    if account.role != "participant":
        raise MutationRejectedError("forbidden", "Only participants give feedback on visits.", 403)
    visit = load_record(ctx.tx, ctx.event_id, "visit", args.visit_id)
    if visit is None:
        raise MutationRejectedError("unknown-visit", f"No visit '{args.visit_id}' in this event.")
    if account.group_id is None or account.group_id not in visit["group_ids"]:
        raise MutationRejectedError("forbidden", f"Visit '{args.visit_id}' is not in your group's programme.", 403)
    if visit["feedback_closed"]:
        raise MutationRejectedError("feedback-closed", f"Feedback on '{args.visit_id}' was closed by the organizers.")
    answers: dict[str, Any] = {} if args.answers is UNSET else dict(args.answers)
    _check_answers(ctx, answers)
    owner = feedback_owner(ctx.tx, args.id)
    if owner is not None and owner != (ctx.event_id, account.id):
        # Someone else's feedback (in any event: ids are unique across events) does not exist for this caller.
        raise MutationRejectedError("not-found", f"No feedback '{args.id}' of yours.", 404)
    feedback = load_record(ctx.tx, ctx.event_id, "feedback", resolve_feedback_alias(ctx.tx, args.id))
    if feedback is not None and feedback["visit_id"] != args.visit_id:
        raise MutationRejectedError("invalid-mutation", "Feedback cannot move to another visit.")
    if feedback is None:
        first_id = feedback_of(ctx.tx, account.id, args.visit_id)
        if first_id is not None:
            # Two devices of one person both answered offline: same record, merged by the usual rules.
            add_feedback_alias(ctx.tx, args.id, first_id)
            feedback = load_record(ctx.tx, ctx.event_id, "feedback", first_id)
    audiences = feedback_audiences(account.id, visit["site_id"])
    sent = {name: getattr(args, name) for name in FEEDBACK_DEFAULTS if getattr(args, name) is not UNSET}
    # Each answer is a field of its own; null removes it (its default is "no answer").
    values = {**edited_fields(sent, FEEDBACK_DEFAULTS), **{f"answers.{q}": a for q, a in answers.items()}}
    if feedback is None:
        created = created_fields(sent, FEEDBACK_DEFAULTS)
        insert_record(
            ctx.tx,
            "feedback",
            {
                "id": args.id,
                "event_id": ctx.event_id,
                "author_id": account.id,
                "visit_id": args.visit_id,
                "site_id": visit["site_id"],
                "rating": created["rating"],
                "answers": {q: a for q, a in answers.items() if a is not None},
                "comment": created["comment"],
                "origin_client": ctx.client_id,
                "version": 1,
                "conflicts": [],
                "updated_at": utcnow(),
                **ctx.device_times(),
            },
        )
        record_change(ctx.tx, ctx.event_id, "feedback", args.id, audiences)
        return _result(ctx, "applied", 1)
    if args.base_version > feedback["version"]:
        raise MutationRejectedError(
            "invalid-base-version", f"base_version {args.base_version} is newer than the feedback."
        )
    current = flatten_translations({k: feedback[k] for k in ("rating", "comment", "answers")}, "answers")
    defaults = {**FEEDBACK_DEFAULTS, **{k: None for k in current if k.startswith("answers.")}}
    changed = changed_since(ctx.tx, ctx.event_id, "feedback", feedback, args.base_version, defaults, ctx.own_client)
    merge = merge_fields(current, values, changed)
    result = write_merge(
        ctx,
        "feedback",
        feedback,
        current,
        merge.apply,
        merge.conflicts,
        args.base_version,
        args.resolve_conflicts,
        audiences=audiences,
    )
    result.entity_id = feedback["id"] if feedback["id"] != args.id else None
    return result


def site_patch(ctx: Context, args: SitePatchArgs) -> MutationResult:
    """Change some fields of a site: hosts their own site's descriptive fields, organizers any field."""
    account = ctx.account
    site = load_record(ctx.tx, ctx.event_id, "site", args.site_id)
    if site is None:
        raise MutationRejectedError("unknown-site", f"No site '{args.site_id}' in this event.", 404)
    fields = msgspec.to_builtins(args.fields)
    if account.role == "participant" or (account.role == "host" and args.site_id not in account.site_ids):
        raise MutationRejectedError("forbidden", f"You may not edit site '{args.site_id}'.", 403)
    allowed = HOST_SITE_FIELDS if account.role == "host" else ORGANIZER_SITE_FIELDS
    if forbidden := sorted(set(fields) - allowed):
        raise MutationRejectedError("forbidden", f"Organizers own these fields: {', '.join(forbidden)}.", 403)
    if args.base_version > site["version"]:
        raise MutationRejectedError("invalid-base-version", f"base_version {args.base_version} is newer than the site.")
    incoming = flatten_translations(fields)
    current = {k: record_value(site, k) for k in incoming}
    changed = changed_since(ctx.tx, ctx.event_id, "site", site, args.base_version, {}, ctx.own_client)
    merge = merge_fields(current, incoming, changed, touched=frozenset(incoming))
    moved = None
    if "lat" in merge.apply or "lon" in merge.apply:
        to = (merge.apply.get("lat", site["lat"]), merge.apply.get("lon", site["lon"]))
        if (metres := distance_m((site["lat"], site["lon"]), to)) > REVIEW_DISTANCE_M:
            moved = f"coordinates moved {metres:.0f} m: an organizer should check them"
    return write_merge(
        ctx,
        "site",
        site,
        current,
        merge.apply,
        merge.conflicts,
        args.base_version,
        args.resolve_conflicts,
        audiences=["all"],
        flagged=moved,
    )


def write_merge(
    ctx: Context,
    entity: str,
    record: dict[str, Any],
    current: dict[str, Any],
    apply: dict[str, Any],
    conflicts: dict[str, Any],
    base_version: int,
    resolve: bool,
    *,
    audiences: list[str],
    flagged: str | None = None,
) -> MutationResult:
    """Write a merge's outcome: new values, kept and new conflicts, history, the change feed."""
    kept = _kept_conflicts(record["conflicts"], resolve, base_version)
    version = record["version"] + 1
    new_conflicts = [msgspec.to_builtins(ctx.conflict(k, v, base_version, version)) for k, v in conflicts.items()]
    if not apply and not new_conflicts and kept == record["conflicts"]:
        return _result(ctx, "applied", record["version"])
    columns: dict[str, Any] = {"version": version, "updated_at": utcnow(), "conflicts": [*kept, *new_conflicts]}
    if entity in DEVICE_TIMED:
        columns.update(ctx.device_times())
    for name, value in apply.items():
        if "." in name:
            outer, inner = name.split(".", 1)
            mapping = columns.setdefault(outer, dict(record[outer]))
            if value is None:
                mapping.pop(inner, None)  # a merge patch's null removes the entry
            else:
                mapping[inner] = value
        else:
            columns[name] = value
    update_record(ctx.tx, ctx.event_id, entity, record["id"], columns)
    if entity == "visit" and "site_id" in apply:
        # Every change of a visit goes through here: its feedback follows it to the new site's hosts.
        for feedback_id, author_id, former in move_visit_feedback(ctx.tx, ctx.event_id, record["id"], apply["site_id"]):
            record_change(
                ctx.tx, ctx.event_id, "feedback", feedback_id, feedback_audiences(author_id, apply["site_id"], former)
            )
    if apply:
        add_history(
            ctx.tx,
            ctx.event_id,
            entity,
            record["id"],
            version,
            {k: (current.get(k), v) for k, v in apply.items()},
            account_id=ctx.account.id,
            client_id=ctx.client_id,
            flagged=flagged,
        )
    record_change(ctx.tx, ctx.event_id, entity, record["id"], audiences)
    return _result(ctx, "conflict" if new_conflicts else "applied", version, conflicts=sorted(conflicts))
