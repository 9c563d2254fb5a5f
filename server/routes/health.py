"""Liveness: answers without a token."""

from litestar import Response, get
from litestar.datastructures import State

from server.observability import Metrics
from server.routes.common import AppDatabase


@get("/health", summary="Liveness and database reachability", tags=["health"], sync_to_thread=True)
def health(db: AppDatabase) -> dict[str, str]:
    db.ping()
    return {"status": "ok"}


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
