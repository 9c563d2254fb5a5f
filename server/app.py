"""The Litestar application."""

from typing import Any

from litestar import Litestar
from litestar.datastructures import State
from litestar.di import Provide
from litestar.middleware.base import DefineMiddleware
from litestar.openapi.config import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.types import LifeSpanReceive, LifeSpanScope, LifeSpanSend, Receive, Scope, Send

from server.auth import PUBLIC_PATHS, BearerTokenMiddleware
from server.errors import EXCEPTION_HANDLERS
from server.observability import Metrics, observe
from server.representation import RepresentationCache
from server.routes.blobs import BlobController
from server.routes.common import provide_db
from server.routes.editing import EditingController
from server.routes.events import EventController, MeController
from server.routes.feedback import FeedbackController
from server.routes.health import health, metrics_endpoint
from server.routes.itinerary import ItineraryController
from server.routes.notes import NotesController
from server.routes.schedule import ScheduleController
from server.routes.sites import SiteController
from server.routes.sync import SyncController
from server.services.blobs import blob_files, repair_uploads
from server.settings import Settings
from server.storage.db import Database, migrate


class ObservedLitestar(Litestar):
    """Litestar, timed and logged from the outside, so that routing errors (404s) and
    authentication failures (401s) are counted with the status the client really got."""

    def __init__(self, metrics: Metrics, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._observed = observe(metrics, super().__call__)

    async def __call__(
        self, scope: Scope | LifeSpanScope, receive: Receive | LifeSpanReceive, send: Send | LifeSpanSend
    ) -> None:
        await self._observed(scope, receive, send)  # type: ignore[arg-type]


ROUTES = [
    health,
    MeController,
    EventController,
    SiteController,
    ItineraryController,
    SyncController,
    EditingController,
    FeedbackController,
    NotesController,
    ScheduleController,
    BlobController,
]


def create_app(settings: Settings | None = None) -> Litestar:
    """Build the application; the database is opened and migrated at start-up."""
    settings = settings or Settings.from_env()
    db = Database(settings.db_path)
    metrics = Metrics()
    routes = [*ROUTES, metrics_endpoint] if settings.metrics_enabled else ROUTES

    def on_startup() -> None:
        migrate(db)
        repair_uploads(db, blob_files(settings))  # uploads a crash left between their file and their row

    def on_shutdown() -> None:
        db.close()

    return ObservedLitestar(
        metrics,
        route_handlers=routes,
        on_startup=[on_startup],
        on_shutdown=[on_shutdown],
        dependencies={
            "db": Provide(provide_db, sync_to_thread=False),
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
            render_plugins=[JsonRenderPlugin()],
            components=Components(
                security_schemes={
                    "BearerToken": SecurityScheme(
                        type="http", scheme="bearer", description="The token given when the account was created"
                    )
                }
            ),
        ),
        state=State({"db": db, "cache": RepresentationCache(), "settings": settings, "metrics": metrics}),
        debug=False,
        logging_config=None,
    )
