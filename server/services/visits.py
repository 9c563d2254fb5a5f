"""Changing the itinerary: organizers create, change and cancel visits, online or through sync."""

from datetime import UTC, datetime
from typing import Any

import msgspec

from schemas.sync import MutationResult, VisitFields, VisitPatchArgs, VisitPutArgs
from server.services.mutations import Context, MutationRejectedError, write_merge
from server.storage.catalog import next_visit_number
from server.storage.changes import record_change
from server.storage.db import utcnow
from server.storage.records import changed_since, insert_record, load_record, record_value
from sync.rules import flatten_translations, merge_fields

# A change to any of these tells participants their plan moved: the visit's status becomes "changed".
PLAN_FIELDS = frozenset({"starts_at", "ends_at", "site_id", "venue", "meeting_point", "transport"})


def require_organizer(ctx: Context) -> None:
    if ctx.account.role != "organizer":
        raise MutationRejectedError("forbidden", "Only organizers change the itinerary.", 403)


def check_visit(ctx: Context, values: dict[str, Any]) -> None:
    """A visit must end after it starts and point at sites and groups of its event."""
    starts, ends = datetime.fromisoformat(values["starts_at"]), datetime.fromisoformat(values["ends_at"])
    for name, moment in (("starts_at", starts), ("ends_at", ends)):
        try:
            moment.astimezone(UTC)  # visits sort by their UTC instant, which must exist
        except OverflowError:
            raise MutationRejectedError("invalid-visit", f"{name} {values[name]} is out of range.") from None
    if ends <= starts:
        raise MutationRejectedError("invalid-visit", "A visit must end after it starts.")
    site_id = values.get("site_id")
    if site_id is not None and load_record(ctx.tx, ctx.event_id, "site", site_id) is None:
        raise MutationRejectedError("unknown-site", f"No site '{site_id}' in this event.")
    for group_id in values.get("group_ids") or []:
        if load_record(ctx.tx, ctx.event_id, "group", group_id) is None:
            raise MutationRejectedError("unknown-group", f"No group '{group_id}' in this event.")


def visit_put(ctx: Context, args: VisitPutArgs) -> MutationResult:
    """Create a visit, or change an existing one to these values (merged like a patch)."""
    require_organizer(ctx)
    values = msgspec.to_builtins(args)
    base_version = values.pop("base_version")
    existing = load_record(ctx.tx, ctx.event_id, "visit", args.id)
    if existing is not None:
        if base_version == 0:
            raise MutationRejectedError(
                "visit-exists", f"Visit '{args.id}' exists already; send the version you edited."
            )
        fields = {k: v for k, v in values.items() if k != "id"}
        patch = VisitPatchArgs(visit_id=args.id, base_version=base_version, fields=msgspec.convert(fields, VisitFields))
        return visit_patch(ctx, patch)
    check_visit(ctx, values)
    insert_record(
        ctx.tx,
        "visit",
        {
            **values,
            "event_id": ctx.event_id,
            "number": next_visit_number(ctx.tx, ctx.event_id),
            "version": 1,
            "conflicts": [],
            "updated_at": utcnow(),
        },
    )
    record_change(ctx.tx, ctx.event_id, "visit", args.id, ["all"])
    return MutationResult(id=ctx.mutation_id or 0, status="applied", version=1)


def visit_patch(ctx: Context, args: VisitPatchArgs) -> MutationResult:
    """Change some fields of a visit; moving it in time or place marks it "changed"."""
    require_organizer(ctx)
    visit = load_record(ctx.tx, ctx.event_id, "visit", args.visit_id)
    if visit is None:
        raise MutationRejectedError("unknown-visit", f"No visit '{args.visit_id}' in this event.", 404)
    if args.base_version > visit["version"]:
        raise MutationRejectedError(
            "invalid-base-version", f"base_version {args.base_version} is newer than the visit."
        )
    incoming = flatten_translations(msgspec.to_builtins(args.fields), "notes")
    current = {k: record_value(visit, k) for k in incoming}
    changed = changed_since(ctx.tx, ctx.event_id, "visit", visit, args.base_version, {}, ctx.own_client)
    merge = merge_fields(current, incoming, changed, touched=frozenset(incoming))
    after = {**visit, **{k: v for k, v in merge.apply.items() if "." not in k}}
    check_visit(ctx, after)
    if PLAN_FIELDS & set(merge.apply) and "status" not in incoming and visit["status"] == "scheduled":
        merge.apply["status"] = "changed"
        current["status"] = visit["status"]
    return write_merge(
        ctx,
        "visit",
        visit,
        current,
        merge.apply,
        merge.conflicts,
        args.base_version,
        False,
        audiences=["all"],
    )
