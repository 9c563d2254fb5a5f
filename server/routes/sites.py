"""Sites: descriptions in the caller's language, distances, and a map layer."""

from typing import Any

from litestar import Controller, Request, Response, get, patch
from litestar.params import Parameter

from schemas.accounts import Account
from schemas.itinerary import SiteVisits
from schemas.places import Site, SiteView
from schemas.sync import SiteFieldsPatch
from server.auth import same_event
from server.geo import parse_point
from server.routes.bodies import BODY_OPT
from server.routes.common import FRESH_OPT, ROLE_ERRORS, SECURITY, AppDatabase, api_get, serve_cached, serve_fresh
from server.routes.editing import EDIT_ERRORS, IF_MATCH_DOC, IfMatch, merge_patch_body, patch_record
from server.services.editing import edit_site
from server.services.site_visits import site_visits
from server.services.sites import feature_collection, parse_language, site_view, site_views
from server.storage.catalog import get_site, list_sites
from server.storage.unit import Tx

LANG = Parameter(
    default=None,
    description="BCP 47 language tag; falls back to English when the site has no text in it",
)


class SiteController(Controller):
    """Sites of the caller's event."""

    path = "/api/v1/events/{event_id:str}"
    guards = [same_event]
    tags = ["sites"]

    @api_get("/sites", summary="Sites, optionally filtered by theme or sorted by distance")
    def list_sites(
        self,
        request: Request[Account, Any, Any],
        db: AppDatabase,
        event_id: str,
        lang: str | None = LANG,
        theme: str | None = Parameter(default=None, description="Keep sites with this theme (case-insensitive)"),
        near: str | None = Parameter(default=None, description="LAT,LON: sort by geodesic distance, adding distance_m"),
    ) -> Response[list[SiteView]]:
        language = parse_language(lang)
        point = parse_point(near) if near is not None else None
        return serve_cached(
            request,
            db,
            event_id,
            ("list", language, theme, point),
            lambda tx: site_views(list_sites(tx, event_id), language, theme, point),
        )

    @api_get(
        "/sites.geojson",
        summary="Sites as an RFC 7946 GeoJSON FeatureCollection",
        media_type="application/geo+json",
    )
    def sites_geojson(
        self,
        request: Request[Account, Any, Any],
        db: AppDatabase,
        event_id: str,
        lang: str | None = LANG,
    ) -> Response[dict[str, Any]]:
        language = parse_language(lang)
        return serve_cached(
            request,
            db,
            event_id,
            ("geojson", language),
            lambda tx: feature_collection(site_views(list_sites(tx, event_id), language, None, None)),
            media_type="application/geo+json",
        )

    @api_get("/sites/{site_id:str}", summary="One site")
    def get_site(
        self,
        request: Request[Account, Any, Any],
        db: AppDatabase,
        event_id: str,
        site_id: str,
        lang: str | None = LANG,
    ) -> Response[SiteView]:
        language = parse_language(lang)

        def build(tx: Tx) -> SiteView:
            return site_view(get_site(tx, event_id, site_id), language)

        return serve_cached(request, db, event_id, ("site", site_id, language), build, versioned=True)

    @get(
        "/sites/{site_id:str}/visits",
        summary="The visits at a site, with each group's size (the site's hosts and organizers)",
        description="Every visit at the site in time order, with the groups that come and how many participants"
        " each has (participants now assigned), and their sum. Participants and other sites' hosts get 403.",
        security=SECURITY,
        responses=ROLE_ERRORS,
        sync_to_thread=True,
        opt=FRESH_OPT,
    )
    def get_site_visits(
        self, request: Request[Account, Any, Any], db: AppDatabase, event_id: str, site_id: str
    ) -> Response[SiteVisits]:
        return serve_fresh(request, site_visits(db, request.user, site_id))

    @patch(
        "/sites/{site_id:str}",
        summary="Edit a site (its hosts: descriptive fields; organizers: any field)",
        description="Body: an RFC 7396 JSON merge patch (application/merge-patch+json) of SiteFieldsPatch. "
        + IF_MATCH_DOC,
        security=SECURITY,
        responses=EDIT_ERRORS,
        opt={BODY_OPT: merge_patch_body(SiteFieldsPatch)},
    )
    async def patch_site(
        self,
        request: Request[Account, Any, Any],
        db: AppDatabase,
        event_id: str,
        site_id: str,
        payload: Any,
        if_match: IfMatch = None,
    ) -> Response[Site]:
        return await patch_record(request, db, edit_site, site_id, payload, if_match)
