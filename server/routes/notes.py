"""Notes participants shared with the organizers, per visit and per site."""

from typing import Any

from litestar import Controller, Request, Response, get
from litestar.params import Parameter

from schemas.accounts import Account
from schemas.reports import SharedNote
from server.auth import same_event
from server.routes.common import AUTH_ERRORS, CACHE_OPT, SECURITY, AppDatabase
from server.routes.feedback import CSV_MEDIA_TYPE, NO_STORE, ORGANIZERS, csv_response
from server.services.shared_notes import shared_notes, shared_notes_csv

VISIT = Parameter(default=None, description="Only notes on this visit")
SITE = Parameter(default=None, description="Only notes at this site (their own, or their visit's)")


class NotesController(Controller):
    """What participants chose to share with the organizers (organizers only)."""

    path = "/api/v1/events/{event_id:str}/notes"
    guards = [same_event, *ORGANIZERS]
    tags = ["notes"]

    @get(
        "/shared",
        summary="Shared notes with author, visit and site (organizers)",
        security=SECURITY,
        responses=AUTH_ERRORS,
        sync_to_thread=True,
        cache_control=NO_STORE,
        opt={CACHE_OPT: NO_STORE.to_header()},
    )
    def list_shared(
        self,
        request: Request[Account, Any, Any],
        db: AppDatabase,
        event_id: str,
        visit: str | None = VISIT,
        site: str | None = SITE,
    ) -> list[SharedNote]:
        return shared_notes(db, request.user, visit, site)

    @get(
        "/shared.csv",
        summary="Shared notes as a spreadsheet (organizers)",
        media_type=CSV_MEDIA_TYPE,
        security=SECURITY,
        responses=AUTH_ERRORS,
        sync_to_thread=True,
        opt={CACHE_OPT: NO_STORE.to_header()},
    )
    def export_shared(
        self,
        request: Request[Account, Any, Any],
        db: AppDatabase,
        event_id: str,
        visit: str | None = VISIT,
        site: str | None = SITE,
    ) -> Response[bytes]:
        return csv_response(shared_notes_csv(db, request.user, visit, site), f"{event_id}-shared-notes.csv")
