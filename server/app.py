"""The Litestar application."""

from collections.abc import Callable
from typing import Any

from litestar import Litestar
from litestar.datastructures import State
from litestar.di import Provide
from litestar.middleware.base import DefineMiddleware
from litestar.openapi.config import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme
from litestar.types import ASGIApp, LifeSpanReceive, LifeSpanScope, LifeSpanSend, Receive, Scope, Send

from server.answer_cache import AnswerCache, answer_cached_reads
from server.auth import PUBLIC_PATHS, BearerTokenMiddleware
from server.errors import EXCEPTION_HANDLERS
from server.feeds import serve_feeds
from server.http_limits import limit_headers
from server.observability import Metrics, flush_access_log, observe
from server.openapi import CompletedJsonPlugin, LocalRedocPlugin
from server.ratelimit import FailedAuthLimiter
from server.representation import RepresentationCache
from server.routes.accounts import AccountController
from server.routes.app import app_file
from server.routes.blobs import BlobController
from server.routes.bodies import provide_payload
from server.routes.common import provide_db
from server.routes.editing import EditingController
from server.routes.events import EventController, MeController
from server.routes.feedback import FeedbackController
from server.routes.health import health, metrics_endpoint, ready
from server.routes.itinerary import ItineraryController
from server.routes.notes import NotesController
from server.routes.schedule import ScheduleController
from server.routes.sites import SiteController
from server.routes.sync import SyncController
from server.services.blobs import choose_blob_store, repair_uploads
from server.services.pull import ChangeCache
from server.settings import Settings
from server.storage.stores import open_store, open_token_checks


class ObservedLitestar(Litestar):
    """Litestar inside ASGI layers: timed and logged from the outside, so that routing errors (404s)
    and authentication failures (401s) are counted with the status the client really got."""

    def __init__(self, layers: Callable[[ASGIApp], ASGIApp], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._observed = layers(super().__call__)

    async def __call__(
        self, scope: Scope | LifeSpanScope, receive: Receive | LifeSpanReceive, send: Send | LifeSpanSend
    ) -> None:
        await self._observed(scope, receive, send)  # type: ignore[arg-type]


ROUTES = [
    health,
    ready,
    MeController,
    EventController,
    SiteController,
    ItineraryController,
    SyncController,
    EditingController,
    FeedbackController,
    AccountController,
    NotesController,
    ScheduleController,
    BlobController,
    app_file,
]


def create_app(settings: Settings | None = None) -> Litestar:
    """Build the application; the database is opened and migrated at start-up."""
    settings = settings or Settings.from_env()
    db = open_store(settings.location(), lock_timeout=settings.db_lock_timeout_s)
    blobs = choose_blob_store(settings, db)
    metrics = Metrics()
    limiter = FailedAuthLimiter(settings.auth_failures_allowed, settings.auth_failure_window_seconds)
    routes = [*ROUTES, metrics_endpoint] if settings.metrics_enabled else ROUTES
    answers = AnswerCache()
    token_checks = open_token_checks(db)

    def on_startup() -> None:
        db.migrate()
        repair_uploads(db, blobs)  # uploads a crash left between their bytes and their row

    async def on_shutdown() -> None:
        await token_checks.close()  # on the loop the checks ran on
        db.close()
        flush_access_log()

    def layers(app: ASGIApp) -> ASGIApp:
        # Repeat reads are answered before routing, inside the header limits and the metrics and log.
        return observe(
            metrics, limit_headers(answer_cached_reads(serve_feeds(app, db, limiter), token_checks, answers), settings)
        )

    return ObservedLitestar(
        layers,
        route_handlers=routes,
        on_startup=[on_startup],
        on_shutdown=[on_shutdown],
        dependencies={
            "db": Provide(provide_db, sync_to_thread=False),
            # The body of every handler that declares a BodySpec, decoded one way (routes/bodies.py).
            "payload": Provide(provide_payload),
        },
        middleware=[
            DefineMiddleware(BearerTokenMiddleware, exclude=[f"^{p}" for p in PUBLIC_PATHS]),
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        openapi_config=OpenAPIConfig(
            title="studyvisit",
            version="1.0.0",
            description="Itinerary, sites and offline-first sync for study-visit participants, hosts and organizers.",
            path="/schema",
            render_plugins=[CompletedJsonPlugin(), LocalRedocPlugin()],
            components=Components(
                security_schemes={
                    "BearerToken": SecurityScheme(
                        type="http", scheme="bearer", description="The token given when the account was created"
                    )
                }
            ),
        ),
        state=State(
            {
                "db": db,
                "cache": RepresentationCache(),
                "answers": answers,
                "token_checks": token_checks,
                "change_cache": ChangeCache(max_bytes=settings.pull_cache_mb << 20),
                "settings": settings,
                "blobs": blobs,
                "metrics": metrics,
                "auth_limiter": limiter,
            }
        ),
        debug=False,
        logging_config=None,
    )
