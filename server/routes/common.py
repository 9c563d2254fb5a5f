"""What every route shares: the documented errors, the database dependency, cached representations."""

from collections.abc import Callable, Hashable
from functools import partial
from typing import Any

from litestar import HttpMethod, Request, Response, route
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec

from schemas.accounts import Account
from schemas.places import Event
from schemas.problems import Problem
from server.errors import NotFoundError
from server.representation import Representation, RepresentationCache, encode_json, represent, serve
from server.storage.catalog import get_event
from server.storage.changes import content_version
from server.storage.db import Database

SECURITY: list[dict[str, list[str]]] = [{"BearerToken": []}]
# In a handler's opt: it answers If-None-Match with 304 (server/openapi.py documents both).
CONDITIONAL_OPT = "conditional"

# Handler parameters filled by name from the app's dependencies (Litestar 3 requires the marker).
AppDatabase = NamedDependency[Database]


def problem_spec(description: str) -> ResponseSpec:
    """An error response in OpenAPI: a problem document."""
    # Litestar would otherwise invent random examples (a status of 5352, a type that is no URN), and
    # differently on each start, so the published document would change without the API changing.
    return ResponseSpec(
        data_container=Problem,
        description=description,
        media_type="application/problem+json",
        generate_examples=False,
    )


AUTH_ERRORS: dict[int, ResponseSpec] = {
    # Litestar answers a path, query or body value that does not validate with a 400; without this entry it
    # documents that 400 in its own JSON error shape, which the API never sends (errors.py makes it a problem).
    400: problem_spec("A path, query or body value did not validate"),
    401: problem_spec("Missing or invalid bearer token"),
    403: problem_spec("The caller's role may not do this"),
    404: problem_spec("No such resource in the caller's event"),
}
READ_ERRORS: dict[int, ResponseSpec] = {**AUTH_ERRORS, 400: problem_spec("A query value is invalid")}

# A GET in the API: authenticated, with documented errors. It runs on the event loop, not in a
# worker thread: almost every answer is a cached representation found after one indexed SQLite
# read of a few microseconds, and the hop to a thread cost more than the work (bench/RESULTS.md).
# HEAD is answered like GET without the body (RFC 9110 §9.3.2): clients check ETags and sizes with it.
api_get = partial(
    route,
    http_method=[HttpMethod.GET, HttpMethod.HEAD],
    security=SECURITY,
    responses=READ_ERRORS,
    sync_to_thread=False,
    opt={CONDITIONAL_OPT: True},
)


def provide_db(state: State) -> Database:
    """The application's database."""
    db: Database = state.db
    return db


def require_event(db: Database, event_id: str) -> Event:
    """The event, or 404."""
    event = get_event(db.conn, event_id)
    if event is None:
        raise NotFoundError(f"No event '{event_id}'.")
    return event


def scope_key(account: Account) -> tuple[Hashable, ...]:
    """What about the caller changes a response: role, group and hosted sites."""
    return (account.role, account.group_id, tuple(account.site_ids))


def serve_cached(
    request: Request[Any, Any, Any],
    db: Database,
    event_id: str,
    key: tuple[Hashable, ...],
    build: Callable[[], Any],
    media_type: str = "application/json",
    *,
    versioned: bool = False,
) -> Response[Any]:
    """Serve what ``build`` returns, encoded and compressed once per event content version.

    ``build`` returns a Struct or builtin value for JSON, or bytes for other media types;
    ``versioned`` puts the record's version in the ETag, for ``If-Match`` on edits.
    """
    version = content_version(db.conn, event_id)
    if version is None:
        raise NotFoundError(f"No event '{event_id}'.")

    def make() -> Representation:
        value = build()
        body = value if isinstance(value, bytes) else encode_json(value)
        version = value.version if versioned and not isinstance(value, bytes) else None
        return represent(body, media_type, version)

    cache: RepresentationCache = request.app.state.cache
    rep = cache.get_or_build((event_id, version, request.url.path, *key), make)
    return serve(request, rep)


def serve_fresh(request: Request[Any, Any, Any], value: Any) -> Response[Any]:
    """Serve a value that is not worth caching, with the same ETag and gzip handling."""
    return serve(request, represent(encode_json(value), "application/json"))
