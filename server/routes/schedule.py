"""Keeping a programme workable: what changed since a time, the organizers' itinerary check, reordering a day."""

from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.params import Parameter

from schemas.accounts import Account
from schemas.schedule import (
    ChangeDeliveries,
    ItineraryCheck,
    ProposalCheck,
    ProposedVisitChange,
    ReorderedVisits,
    ReorderRequest,
    ScheduleChanges,
)
from server.auth import requires, same_event
from server.routes.bodies import BODY_OPT, BodySpec
from server.routes.common import (
    AUTH_ERRORS,
    FRESH_OPT,
    READ_ERRORS,
    ROLE_ERRORS,
    SECURITY,
    AppDatabase,
    problem_spec,
    serve_fresh,
)
from server.services.change_delivery import change_deliveries
from server.services.itinerary_check import check_event
from server.services.proposals import check_proposal
from server.services.schedule_changes import list_changes, reorder_visits
from server.services.sites import parse_language
from server.storage.catalog import get_event

SINCE = Parameter(
    description="An RFC 3339 time with an offset (2025-12-10T12:00:00Z); send the last answer's next_since to poll",
)
LANG = Parameter(
    default=None,
    description="BCP 47 language tag of the texts (en, fr, es, it, ar); else the account's language, else English",
)
REORDER_ERRORS = {
    **AUTH_ERRORS,
    400: problem_spec("The body is not a list of distinct visit ids"),
    415: problem_spec("The body is not application/json"),
    422: problem_spec("The visits are on different days, or a move breaks a rule of visits"),
}

PROPOSAL_ERRORS = {
    **AUTH_ERRORS,
    400: problem_spec("The body is not a visit id and fields of a visit"),
    415: problem_spec("The body is not application/json"),
    422: problem_spec("The change breaks a rule of visits (ending before it starts, an unknown site or group)"),
}


class ScheduleController(Controller):
    """Schedule changes told to everyone, and the organizers' tools to keep a programme workable."""

    path = "/api/v1/events/{event_id:str}"
    guards = [same_event]
    tags = ["schedule"]

    @get(
        "/changes",
        summary="What changed in the caller's programme since a time, one sentence each",
        description=(
            "Net changes to visits after `since`: new, moved, cancelled, back on, new place, meeting point, "
            "transport or groups, as sentences in the caller's language (en, fr, es, it, ar). Organizers read "
            "every visit, hosts their sites' visits, participants their group's."
        ),
        security=SECURITY,
        responses=READ_ERRORS,
        sync_to_thread=True,
        opt=FRESH_OPT,
    )
    def changes(
        self,
        request: Request[Account, Any, Any],
        db: AppDatabase,
        event_id: str,
        since: str = SINCE,
        lang: str | None = LANG,
    ) -> Response[ScheduleChanges]:
        result = list_changes(db, request.user, event_id, since, parse_language(lang))
        return serve_fresh(request, result)

    @get(
        "/changes/delivery",
        summary="How far each change reached participants' devices (organizers)",
        description=(
            "The changes of GET …/changes after `since`, each with the participants who follow its visit, how "
            "many of their devices have pulled it (from each device's last caught-up pull) and which accounts "
            "have no device that has it yet. Organizers' and hosts' devices never count."
        ),
        guards=[requires("organizer")],
        security=SECURITY,
        responses={**AUTH_ERRORS, 400: problem_spec("since or lang is not valid")},
        sync_to_thread=True,
        opt=FRESH_OPT,
    )
    def delivery(
        self,
        request: Request[Account, Any, Any],
        db: AppDatabase,
        event_id: str,
        since: str = SINCE,
        lang: str | None = LANG,
    ) -> Response[ChangeDeliveries]:
        result = change_deliveries(db, request.user, event_id, since, parse_language(lang))
        return serve_fresh(request, result)

    @post(
        "/itinerary/check",
        summary="Problems the programme would have after a drafted visit change (organizers)",
        description=(
            "Runs the checks of GET …/itinerary/check on the programme as the change would leave it (the fields "
            "as in PATCH …/visits/{visit_id}), marking the problems it would bring in and listing those it would "
            "remove. Nothing is written."
        ),
        guards=[requires("organizer")],
        security=SECURITY,
        responses=PROPOSAL_ERRORS,
        status_code=200,
        opt={BODY_OPT: BodySpec(ProposedVisitChange)},
        sync_to_thread=True,
    )
    def check_draft(
        self, request: Request[Account, Any, Any], db: AppDatabase, event_id: str, payload: ProposedVisitChange
    ) -> ProposalCheck:
        return check_proposal(db, request.user, payload)

    @get(
        "/itinerary/check",
        summary="Problems in the programme (organizers)",
        description=(
            "Overlapping visits of a group, transfers shorter than the walk or ride they need, visits outside "
            "their site's opening hours, groups with no participants. Errors first."
        ),
        guards=[requires("organizer")],
        security=SECURITY,
        responses=ROLE_ERRORS,
        sync_to_thread=True,
        opt=FRESH_OPT,
    )
    def check(self, request: Request[Account, Any, Any], db: AppDatabase, event_id: str) -> Response[ItineraryCheck]:
        # Not cached: a group's members change without changing the event's content version.
        with db.read() as tx:
            result = check_event(tx, get_event(tx, event_id))
        return serve_fresh(request, result)

    @post(
        "/itinerary/reorder",
        summary="Reorder one day's visits (organizers)",
        description=(
            "The visits named take the existing start times of the set, earliest first, in the order given; "
            "each keeps its duration. Every move is a versioned visit change, kept in the history and synced."
        ),
        guards=[requires("organizer")],
        security=SECURITY,
        responses=REORDER_ERRORS,
        status_code=200,
        opt={BODY_OPT: BodySpec(ReorderRequest)},
        sync_to_thread=True,
    )
    def reorder(
        self, request: Request[Account, Any, Any], db: AppDatabase, event_id: str, payload: ReorderRequest
    ) -> ReorderedVisits:
        return reorder_visits(db, request.user, payload.visit_ids)
