"""Health, readiness and metrics: answered without an account's token; health tells the truth about the database."""

import hmac
import ipaddress

from litestar import Request, Response, get
from litestar.datastructures import State

from server.errors import DatabaseUnavailableError, ForbiddenError, UnauthorizedError
from server.observability import Metrics
from server.routes.common import AppDatabase, problem_spec
from server.settings import Settings
from server.storage.db import pending_migrations

HEALTH_ERRORS = {
    503: problem_spec("The database cannot be written (read-only, busy) or is not migrated"),
    507: problem_spec("The server's storage is full"),
}

# Prometheus text format 0.0.4; Litestar adds the one charset parameter itself to every text/* type.
METRICS_MEDIA_TYPE = "text/plain; version=0.0.4"


@get(
    "/health",
    summary="Healthy: the database accepts a committed write",
    tags=["health"],
    sync_to_thread=True,
    responses=HEALTH_ERRORS,
)
def health(db: AppDatabase) -> dict[str, str]:
    # A read (SELECT 1) succeeds on a read-only file or a full disk; only a write finds them.
    # Failures are raised as the storage's domain errors: 503 (with Retry-After) or 507.
    db.check_writable()
    return {"status": "ok"}


def check_metrics_access(request: Request[object, object, State], settings: Settings) -> None:
    """Refuse a scrape that the settings do not allow: from another network, or without the metrics token."""
    if settings.metrics_allow_from:
        client = request.client.host if request.client else ""
        try:
            address = ipaddress.ip_address(client)
        except ValueError:
            address = None
        if address is None or not any(address in net for net in settings.metrics_networks()):
            raise ForbiddenError("Metrics are served only to the networks in STUDYVISIT_METRICS_ALLOW_FROM.")
    if settings.metrics_token:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        # compare_digest: the comparison takes as long whatever prefix of the token is right.
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            token.strip().encode(), settings.metrics_token.encode()
        ):
            raise UnauthorizedError("Send 'Authorization: Bearer <STUDYVISIT_METRICS_TOKEN>' to read the metrics.")


@get(
    "/health/ready",
    summary="Ready: the database answers reads and every migration is applied",
    tags=["health"],
    sync_to_thread=True,
    responses=HEALTH_ERRORS,
)
def ready(db: AppDatabase) -> dict[str, str]:
    # Readiness, not health: a server whose file is read-only can still serve reads.
    if pending := pending_migrations(db):
        raise DatabaseUnavailableError(f"Migrations not applied yet: {', '.join(map(str, pending))}.")
    return {"status": "ready"}


@get(
    "/metrics",
    summary="Prometheus metrics of this server process",
    tags=["health"],
    # Rendering walks every series: in a worker thread, so a scrape never stalls other requests.
    sync_to_thread=True,
    include_in_schema=False,
)
def metrics_endpoint(request: Request[object, object, State], state: State) -> Response[bytes]:
    settings: Settings = state.settings
    check_metrics_access(request, settings)
    metrics: Metrics = state.metrics
    return Response(content=metrics.render(), media_type=METRICS_MEDIA_TYPE)
