"""The caller and their event."""

from typing import Any

from litestar import Controller, Request, Response

from schemas.accounts import Account
from schemas.places import Event
from server.auth import same_event
from server.routes.common import EVENT_ERRORS, AppDatabase, api_get, errors, require_event, serve_cached, serve_fresh


class MeController(Controller):
    """Who the bearer token belongs to."""

    path = "/api/v1/me"
    tags = ["accounts"]

    @api_get("/", summary="The caller's account", responses=errors(401))
    def me(self, request: Request[Account, Any, Any]) -> Response[Account]:
        return serve_fresh(request, request.user)


class EventController(Controller):
    """The caller's event."""

    path = "/api/v1/events/{event_id:str}"
    guards = [same_event]
    tags = ["events"]

    @api_get("/", summary="The event: title, dates, time zone and venue", responses=EVENT_ERRORS)
    def get_event(self, request: Request[Account, Any, Any], db: AppDatabase, event_id: str) -> Response[Event]:
        return serve_cached(request, db, event_id, (), lambda: require_event(db, event_id))
