"""Visits and itineraries, as JSON, as an iCalendar feed and as a frab schedule."""

from typing import Any

import msgspec
from litestar import Controller, Request, Response, patch
from litestar.params import Parameter

from schemas.accounts import Account
from schemas.itinerary import Itinerary, Visit
from schemas.sync import VisitFields
from server.auth import same_event
from server.errors import GroupNotFoundError, InvalidQueryError
from server.routes.bodies import BODY_OPT
from server.routes.common import EVENT_ERRORS, SECURITY, AppDatabase, api_get, scope_key, serve_cached
from server.routes.editing import EDIT_ERRORS, IF_MATCH_DOC, IfMatch, merge_patch_body, patch_record
from server.services.calendar import itinerary_ics
from server.services.editing import edit_visit
from server.services.frab import schedule_xml
from server.services.itinerary import build_itinerary
from server.storage.catalog import get_event, get_group, get_visit, list_sites, list_visits
from server.storage.unit import Tx

GROUP = Parameter(
    default=None,
    description="A group id. Without it: a participant's own group, a host's sites, or everything for an organizer",
)


class Programme(msgspec.Struct, frozen=True):
    """The visits a caller asked for (see GROUP), and whose they are."""

    visits: list[Visit]
    group_id: str | None
    # What a feed of these visits is called after the event's own name and id; None for the whole programme.
    label: str | None
    key: str | None


def programme_for(tx: Tx, account: Account, event_id: str, group: str | None) -> Programme:
    """One rule for the itinerary, its calendar and the schedule feed: which visits the caller gets."""
    if group is not None:
        try:
            found = get_group(tx, event_id, group)
        except GroupNotFoundError:
            raise InvalidQueryError(f"group: there is no group '{group}' in this event.") from None
        return Programme(list_visits(tx, event_id, group_id=group), group, found.name, group)
    if account.role == "participant" and account.group_id is not None:
        try:
            name = get_group(tx, event_id, account.group_id).name
        except GroupNotFoundError:
            name = account.group_id
        return Programme(list_visits(tx, event_id, group_id=account.group_id), account.group_id, name, account.group_id)
    if account.role == "host":
        # Named after the host (feed_owner): two hosts of the same sites get feeds of their own.
        return Programme(list_visits(tx, event_id, site_ids=account.site_ids), None, account.name, account.id)
    return Programme(list_visits(tx, event_id), None, None, None)


def feed_owner(account: Account, group: str | None) -> tuple[str, str] | None:
    """What of the caller, besides scope_key, a schedule feed names (programme_for): a host's id and name."""
    return (account.id, account.name) if group is None and account.role == "host" else None


def itinerary_for(tx: Tx, account: Account, event_id: str, group: str | None) -> Itinerary:
    """The itinerary the caller asked for (see GROUP)."""
    event = get_event(tx, event_id)
    programme = programme_for(tx, account, event_id, group)
    sites = {s.id: s for s in list_sites(tx, event_id)}
    # Walking legs only make sense along one group's path.
    group_id = programme.group_id
    return build_itinerary(event, programme.visits, sites, group_id, with_legs=group_id is not None)


class ItineraryController(Controller):
    """The programme of the caller's event."""

    path = "/api/v1/events/{event_id:str}"
    guards = [same_event]
    tags = ["itinerary"]

    @api_get("/visits/{visit_id:str}", summary="One visit", responses=EVENT_ERRORS)
    def get_visit(
        self,
        request: Request[Account, Any, Any],
        db: AppDatabase,
        event_id: str,
        visit_id: str,
    ) -> Response[Visit]:
        return serve_cached(
            request, db, event_id, ("visit", visit_id), lambda tx: get_visit(tx, event_id, visit_id), versioned=True
        )

    @api_get("/itinerary", summary="Ordered itinerary with walking estimates between places")
    def itinerary(
        self,
        request: Request[Account, Any, Any],
        db: AppDatabase,
        event_id: str,
        group: str | None = GROUP,
    ) -> Response[Itinerary]:
        account = request.user
        return serve_cached(
            request,
            db,
            event_id,
            ("itinerary", group, *scope_key(account)),
            lambda tx: itinerary_for(tx, account, event_id, group),
        )

    @api_get("/itinerary.ics", summary="The itinerary as an RFC 5545 calendar", media_type="text/calendar")
    def itinerary_calendar(
        self,
        request: Request[Account, Any, Any],
        db: AppDatabase,
        event_id: str,
        group: str | None = GROUP,
    ) -> Response[str]:
        account = request.user

        def build(tx: Tx) -> bytes:
            return itinerary_ics(get_event(tx, event_id), itinerary_for(tx, account, event_id, group))

        key = ("ics", group, *scope_key(account))
        return serve_cached(request, db, event_id, key, build, media_type="text/calendar")

    @api_get(
        "/schedule.xml",
        summary="The programme as frab schedule XML, for ConfClerk, EventFahrplan and Giggity",
        description="The same visits as the itinerary (see `group`): one group's day in a schedule app."
        " Tracks are visit kinds; the conference title and acronym name the group, and stay the same"
        " on every fetch, so a schedule app updates the conference it has (docs/api.md).",
        media_type="application/xml",
    )
    def schedule(
        self,
        request: Request[Account, Any, Any],
        db: AppDatabase,
        event_id: str,
        group: str | None = GROUP,
    ) -> Response[str]:
        account = request.user

        def build(tx: Tx) -> bytes:
            event = get_event(tx, event_id)
            programme = programme_for(tx, account, event_id, group)
            sites = {s.id: s for s in list_sites(tx, event_id)}
            feed = None if programme.key is None else (programme.key, programme.label or programme.key)
            return schedule_xml(event, programme.visits, sites, feed)

        key = ("frab", group, *scope_key(account), feed_owner(account, group))
        return serve_cached(request, db, event_id, key, build, media_type="application/xml")

    @patch(
        "/visits/{visit_id:str}",
        summary="Change, move or cancel a visit (organizers)",
        description="Body: an RFC 7396 JSON merge patch (application/merge-patch+json) of VisitFields. " + IF_MATCH_DOC,
        security=SECURITY,
        responses=EDIT_ERRORS,
        opt={BODY_OPT: merge_patch_body(VisitFields)},
    )
    async def patch_visit(
        self,
        request: Request[Account, Any, Any],
        db: AppDatabase,
        event_id: str,
        visit_id: str,
        payload: Any,
        if_match: IfMatch = None,
    ) -> Response[Visit]:
        return await patch_record(request, db, edit_visit, visit_id, payload, if_match)
