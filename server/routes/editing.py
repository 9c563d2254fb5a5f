"""Hosts and organizers keep the programme true: site and visit edits, history, revert, groups."""

from collections.abc import Callable
from typing import Annotated, Any

import anyio
import msgspec
from litestar import Controller, Request, Response, get, post, put
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import HeaderParameter

from schemas.accounts import Account
from schemas.editing import GroupMembers, HistoryEntry
from schemas.itinerary import Visit
from schemas.places import Site
from schemas.sync import VisitPutArgs
from server.auth import same_event
from server.representation import encode_json, represent
from server.routes.bodies import BODY_OPT, JSON, MERGE_PATCH, BodySpec
from server.routes.common import AUTH_ERRORS, FRESH_OPT, ROLE_ERRORS, SECURITY, AppDatabase, problem_spec, serve_fresh
from server.services.editing import (
    create_visit,
    put_group_members,
    record_history,
    revert_change,
)
from server.storage.unit import Store

EDIT_ERRORS: dict[int, ResponseSpec] = {
    **AUTH_ERRORS,
    400: problem_spec("The patch is not valid for this record"),
    412: problem_spec("If-Match names an older version: the record changed since it was read"),
    415: problem_spec("The body is neither application/merge-patch+json nor application/json"),
    428: problem_spec("If-Match is missing"),
    422: problem_spec("The change breaks a rule (a visit ending before it starts, an unknown site...)"),
}
# Writes that take no If-Match: a new visit, a group's members.
CREATE_ERRORS: dict[int, ResponseSpec] = {
    **AUTH_ERRORS,
    400: problem_spec("The body is not valid for this request"),
    415: problem_spec("The body is not application/json"),
    422: problem_spec("The change breaks a rule (a visit ending before it starts, an unknown site...)"),
}
REVERT_ERRORS: dict[int, ResponseSpec] = {
    **AUTH_ERRORS,
    400: problem_spec("The change was reverted already"),
    422: problem_spec("Restoring the old values breaks a rule of the record as it is now"),
}
IF_MATCH_DOC = "Requires If-Match: the ETag of the version the edit is based on (from GET or the last edit)."
IF_MATCH = HeaderParameter(
    name="If-Match",
    description="The ETag of the version the edit is based on; without it the edit is refused with 428",
)
IfMatch = Annotated[str | None, IF_MATCH]


def record_response(value: Site | Visit, status_code: int = 200) -> Response[Any]:
    """A record just written, with its versioned ETag for the next If-Match."""
    rep = represent(encode_json(value), "application/json", value.version)
    return Response(
        content=rep.body, status_code=status_code, media_type=rep.media_type, headers={"ETag": f'"{rep.etag}"'}
    )


def merge_patch_body(fields: type[msgspec.Struct]) -> BodySpec:
    """An RFC 7396 merge patch of ``fields``: decoded raw, since ``null`` (restore the default) differs from absent."""
    return BodySpec(
        fields,
        (MERGE_PATCH, JSON),
        description=f"An RFC 7396 merge patch of {fields.__name__}: absent fields are unchanged, null restores"
        " a field's default.",
        raw=True,
    )


async def patch_record(
    request: Request[Account, Any, Any],
    db: Store,
    edit: Callable[[Store, Account, str, Any, str | None], Site | Visit],
    record_id: str,
    patch: Any,
    if_match: str | None,
) -> Response[Any]:
    """Apply a merge patch to one record through ``edit``, guarded by the request's If-Match."""
    record = await anyio.to_thread.run_sync(edit, db, request.user, record_id, patch, if_match)
    return record_response(record)


class EditingController(Controller):
    """Changes to sites, visits and groups, each kept in the history."""

    path = "/api/v1/events/{event_id:str}"
    guards = [same_event]
    tags = ["editing"]

    @post(
        "/visits",
        summary="Add a visit (organizers)",
        security=SECURITY,
        responses=CREATE_ERRORS,
        status_code=201,
        opt={BODY_OPT: BodySpec(VisitPutArgs)},
    )
    async def post_visit(
        self, request: Request[Account, Any, Any], db: AppDatabase, event_id: str, payload: VisitPutArgs
    ) -> Response[Visit]:
        visit = await anyio.to_thread.run_sync(create_visit, db, request.user, payload)
        return record_response(visit, 201)

    @get(
        "/sites/{site_id:str}/history",
        summary="Changes to a site",
        security=SECURITY,
        responses=ROLE_ERRORS,
        sync_to_thread=True,
        opt=FRESH_OPT,
    )
    def site_history(
        self, request: Request[Account, Any, Any], db: AppDatabase, event_id: str, site_id: str
    ) -> Response[list[HistoryEntry]]:
        return serve_fresh(request, record_history(db, request.user, "site", site_id))

    @get(
        "/visits/{visit_id:str}/history",
        summary="Changes to a visit",
        security=SECURITY,
        responses=ROLE_ERRORS,
        sync_to_thread=True,
        opt=FRESH_OPT,
    )
    def visit_history(
        self, request: Request[Account, Any, Any], db: AppDatabase, event_id: str, visit_id: str
    ) -> Response[list[HistoryEntry]]:
        return serve_fresh(request, record_history(db, request.user, "visit", visit_id))

    @post(
        "/history/{entry_id:int}/revert",
        summary="Undo a change (organizers)",
        description="Takes no body: the change's old values are restored as a new change, kept in the history.",
        security=SECURITY,
        responses=REVERT_ERRORS,
        status_code=200,
        sync_to_thread=True,
    )
    def revert(
        self, request: Request[Account, Any, Any], db: AppDatabase, event_id: str, entry_id: int
    ) -> HistoryEntry:
        return revert_change(db, request.user, entry_id)

    @put(
        "/groups/{group_id:str}/members",
        summary="Set a group's participants (organizers)",
        security=SECURITY,
        responses=CREATE_ERRORS,
        opt={BODY_OPT: BodySpec(GroupMembers)},
        sync_to_thread=True,
    )
    def put_members(
        self, request: Request[Account, Any, Any], db: AppDatabase, event_id: str, group_id: str, payload: GroupMembers
    ) -> GroupMembers:
        return GroupMembers(account_ids=put_group_members(db, request.user, group_id, payload.account_ids))
