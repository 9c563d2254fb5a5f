"""Health and readiness: answer without a token, and tell the truth about the database."""

from litestar import Response, get
from litestar.datastructures import State

from server.errors import DatabaseUnavailableError
from server.observability import Metrics
from server.routes.common import AppDatabase, problem_spec
from server.storage.db import pending_migrations

HEALTH_ERRORS = {
    503: problem_spec("The database cannot be written (read-only, busy) or is not migrated"),
    507: problem_spec("The server's storage is full"),
}


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
    sync_to_thread=False,
    include_in_schema=False,
)
def metrics_endpoint(state: State) -> Response[bytes]:
    metrics: Metrics = state.metrics
    return Response(content=metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")
