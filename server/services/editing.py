"""Editing through REST: JSON merge patches guarded by If-Match, history, revert, group membership."""

from typing import Any

import msgspec

from schemas.accounts import Account
from schemas.editing import HistoryEntry
from schemas.itinerary import Visit
from schemas.places import Site
from schemas.sync import SiteFieldsPatch, SitePatchArgs, VisitFields, VisitPatchArgs, VisitPutArgs
from server.errors import (
    AccountNotFoundError,
    BadRequestError,
    ForbiddenError,
    NotFoundError,
    PreconditionRequiredError,
    StaleVersionError,
)
from server.representation import version_from_etag
from server.services.mutations import Context, site_patch, write_merge
from server.services.visits import require_organizer, visit_patch, visit_put
from server.storage.accounts import get_account, list_accounts, set_group_members
from server.storage.catalog import get_group, get_site, get_visit
from server.storage.records import (
    history_entries,
    history_entry,
    latest_history_id,
    load_record,
    mark_reverted,
    record_exists,
    record_value,
)
from server.storage.unit import Store


def check_if_match(if_match: str | None, version: int) -> None:
    """RFC 9110 §13.1.1: edits name the version they were based on; none → 428, an old one → 412."""
    if if_match is None:
        raise PreconditionRequiredError("Send If-Match with the ETag of the version you edited (GET it first).")
    if if_match.strip() == "*":
        return
    if version not in version_from_etag(if_match):
        raise StaleVersionError(
            f"The record is at version {version}; get it again and reapply your change.", current_version=version
        )


def merge_patch(
    body: Any, target: type[msgspec.Struct], record: type[msgspec.Struct], nullable_maps: tuple[str, ...]
) -> msgspec.Struct:
    """Read an RFC 7396 merge patch into a fields Struct; ``null`` resets a field to its default."""
    if not isinstance(body, dict) or not body:
        raise BadRequestError("The body must be a non-empty JSON object of the fields to change.")
    defaults = _defaults(record)
    fields: dict[str, Any] = {}
    for name, value in body.items():
        if value is None and name not in nullable_maps:
            if name not in defaults:
                raise BadRequestError(f"{name} cannot be removed.")
            value = defaults[name]
        fields[name] = value
    try:
        return msgspec.convert(fields, target)
    except msgspec.ValidationError as exc:
        raise BadRequestError(f"Invalid patch: {exc}.") from None


def _defaults(record: type[msgspec.Struct]) -> dict[str, Any]:
    """The default of every field of a record that has one: what ``null`` resets it to."""
    info = msgspec.inspect.type_info(record)
    assert isinstance(info, msgspec.inspect.StructType)
    return {
        f.name: (f.default if f.default is not msgspec.NODEFAULT else f.default_factory())
        for f in info.fields
        if f.default is not msgspec.NODEFAULT or f.default_factory is not msgspec.NODEFAULT
    }


def edit_site(db: Store, account: Account, site_id: str, body: Any, if_match: str | None) -> Site:
    """Apply a merge patch to a site on behalf of its host or an organizer."""
    fields = merge_patch(body, SiteFieldsPatch, Site, ("description",))
    with db.write() as tx:
        site = get_site(tx, account.event_id, site_id)
        check_if_match(if_match, site.version)
        args = SitePatchArgs(site_id=site_id, base_version=site.version, fields=fields)  # type: ignore[arg-type]
        site_patch(Context(tx, account, None, None), args)
        return get_site(tx, account.event_id, site_id)


def create_visit(db: Store, account: Account, args: VisitPutArgs) -> Visit:
    """Add a visit to the itinerary."""
    with db.write() as tx:
        if record_exists(tx, account.event_id, "visit", args.id):
            raise BadRequestError(f"A visit '{args.id}' exists already; PATCH it instead.")
        visit_put(Context(tx, account, None, None), args)
        return get_visit(tx, account.event_id, args.id)


def edit_visit(db: Store, account: Account, visit_id: str, body: Any, if_match: str | None) -> Visit:
    """Apply a merge patch to a visit (organizers)."""
    fields = merge_patch(body, VisitFields, Visit, ("notes", "site_id"))
    with db.write() as tx:
        visit = get_visit(tx, account.event_id, visit_id)
        check_if_match(if_match, visit.version)
        args = VisitPatchArgs(visit_id=visit_id, base_version=visit.version, fields=fields)  # type: ignore[arg-type]
        visit_patch(Context(tx, account, None, None), args)
        return get_visit(tx, account.event_id, visit_id)


def record_history(db: Store, account: Account, entity: str, entity_id: str) -> list[HistoryEntry]:
    """The changes of a site (its hosts and organizers) or a visit (organizers), newest first."""
    if account.role == "participant" or (
        account.role == "host" and (entity != "site" or entity_id not in account.site_ids)
    ):
        raise ForbiddenError("History is for organizers and the site's hosts.")
    with db.read() as tx:
        if not record_exists(tx, account.event_id, entity, entity_id):
            raise NotFoundError(f"No {entity} '{entity_id}' in this event.")
        names = {a.id: a.name for a in list_accounts(tx, account.event_id)}
        entries = history_entries(tx, account.event_id, entity, entity_id)
    return [msgspec.convert({**e, "account_name": names.get(e["account_id"] or "")}, HistoryEntry) for e in entries]


def revert_change(db: Store, account: Account, entry_id: int) -> HistoryEntry:
    """Undo one recorded change by restoring its old values as a new change; returns the new entry."""
    with db.write() as tx:
        ctx = Context(tx, account, None, None)
        require_organizer(ctx)
        entry = history_entry(tx, account.event_id, entry_id)
        if entry["entity"] not in ("site", "visit"):
            raise NotFoundError(f"No change {entry_id} to a site or visit in this event.")
        if entry["reverted_by"] is not None:
            raise BadRequestError(f"Change {entry_id} was reverted already, by change {entry['reverted_by']}.")
        entity, entity_id = entry["entity"], entry["entity_id"]
        record = load_record(tx, account.event_id, entity, entity_id)
        assert record is not None
        restore = {name: change["old"] for name, change in entry["changes"].items()}
        current = {name: record_value(record, name) for name in restore}
        if current == restore:
            raise BadRequestError(f"Change {entry_id} is undone already: the values are as before it.")
        write_merge(ctx, entity, record, current, restore, {}, record["version"], False, audiences=["all"])
        new_id = latest_history_id(tx, account.event_id, entity, entity_id)
        assert new_id is not None
        mark_reverted(tx, entry_id, new_id)
        reverted = history_entry(tx, account.event_id, new_id)
    return msgspec.convert(reverted, HistoryEntry)


def put_group_members(db: Store, account: Account, group_id: str, account_ids: list[str]) -> list[str]:
    """Assign exactly these participants to a group (organizers)."""
    with db.write() as tx:
        require_organizer(Context(tx, account, None, None))
        get_group(tx, account.event_id, group_id)  # or 404
        for member_id in account_ids:
            try:
                member = get_account(tx, member_id)
            except AccountNotFoundError:
                member = None
            if member is None or member.event_id != account.event_id:
                raise BadRequestError(f"No account '{member_id}' in this event.")
            if member.role != "participant":
                raise BadRequestError(f"'{member_id}' is a {member.role}; only participants belong to groups.")
        set_group_members(tx, account.event_id, group_id, account_ids)
    return sorted(set(account_ids))
