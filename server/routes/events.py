"""The caller and their event."""

from typing import Any

import msgspec
from litestar import Controller, Request, Response
from litestar.datastructures import State

from schemas.accounts import Account, Me
from schemas.places import Event
from server.auth import same_event
from server.feeds import feed_urls
from server.routes.common import EVENT_ERRORS, AppDatabase, api_get, errors, serve_cached, serve_fresh
from server.settings import Settings
from server.storage.accounts import get_access
from server.storage.catalog import get_event


class MeController(Controller):
    """Who the bearer token belongs to."""

    path = "/api/v1/me"
    tags = ["accounts"]

    @api_get(
        "/",
        summary="The caller's account, when its tokens expire, and its secret calendar feed URLs",
        description=(
            "`feed_urls` are read-only URLs of the caller's own itinerary.ics and schedule.xml for calendar apps "
            "that cannot send a header; they carry a feed token, not the bearer token (null: revoked)."
        ),
        responses=errors(401),
    )
    def me(self, request: Request[Account, Any, Any], db: AppDatabase, state: State) -> Response[Me]:
        account = request.user
        settings: Settings = state.settings
        with db.read() as tx:
            access = get_access(tx, account.id)
        feed_token = access.feed_token
        # The address the caller reached, unless the deployment names its public one.
        base = settings.public_url or str(request.base_url)
        me = Me(
            **msgspec.structs.asdict(account),
            expires_at=access.expires_at,
            feed_urls=feed_urls(base, feed_token) if feed_token else None,
        )
        return serve_fresh(request, me)


class EventController(Controller):
    """The caller's event."""

    path = "/api/v1/events/{event_id:str}"
    guards = [same_event]
    tags = ["events"]

    @api_get("/", summary="The event: title, dates, time zone and venue", responses=EVENT_ERRORS)
    def get_event(self, request: Request[Account, Any, Any], db: AppDatabase, event_id: str) -> Response[Event]:
        return serve_cached(request, db, event_id, (), lambda tx: get_event(tx, event_id))
