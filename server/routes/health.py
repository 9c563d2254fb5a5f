"""Liveness: answers without a token."""

from litestar import get

from server.routes.common import AppDatabase


@get("/health", summary="Liveness and database reachability", tags=["health"], sync_to_thread=True)
def health(db: AppDatabase) -> dict[str, str]:
    db.query("SELECT 1")
    return {"status": "ok"}
