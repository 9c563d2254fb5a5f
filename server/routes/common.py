"""What every route shares: the documented errors, the database dependency, cached representations."""

from collections.abc import Callable, Hashable
from functools import partial
from typing import TYPE_CHECKING, Any

from litestar import HttpMethod, Request, Response, route
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec

from schemas.accounts import Account
from schemas.problems import Problem
from server.auth import ANSWER_VERSION, CONTENT_VERSION
from server.representation import Representation, RepresentationCache, encode_json, represent, serve
from server.storage.changes import content_version
from server.storage.unit import Store, Tx

SECURITY: list[dict[str, list[str]]] = [{"BearerToken": []}]
# In a handler's opt: it answers If-None-Match with 304 (server/openapi.py documents both).
CONDITIONAL_OPT = "conditional"
# In a handler's opt: the Cache-Control its 200 answers carry (documented by server/openapi.py).
CACHE_OPT = "cache_control"
# Keep it, but ask before using it (docs/api.md, Caching); and what no cache may keep.
REVALIDATE = "private, no-cache"
NO_STORE = "no-store"

# Handler parameters filled by name from the app's dependencies (Litestar 3 requires the marker).
# Litestar checks a dependency's type with isinstance on every request, which a Protocol does not
# answer (or, made runtime-checkable, answers in ~25 µs): at run time the database is left unchecked.
if TYPE_CHECKING:
    AppDatabase = NamedDependency[Store]
else:
    AppDatabase = NamedDependency[Any]


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


_ERROR_DESCRIPTIONS = {
    # Litestar answers a path, query or body value that does not validate with a 400; without an entry it
    # documents that 400 in its own JSON error shape, which the API never sends (errors.py makes it a problem).
    400: "A path, query or body value did not validate",
    401: "Missing or invalid bearer token",
    403: "The caller's role may not do this",
    404: "No such resource in the caller's event",
}


def errors(*statuses: int) -> dict[int, ResponseSpec]:
    """The common problems an operation can answer; each lists only those it can (tests/test_openapi.py)."""
    return {status: problem_spec(_ERROR_DESCRIPTIONS[status]) for status in statuses}


# Every path under /api/v1/events/{event_id} can be a 404: the same_event guard answers so for another event.
EVENT_ERRORS = errors(401, 404)
READ_ERRORS: dict[int, ResponseSpec] = {**errors(400, 401, 404), 400: problem_spec("A query value is invalid")}
# Behind a role guard (or a service's own role check), with nothing to validate / with values to validate.
ROLE_ERRORS = errors(401, 403, 404)
AUTH_ERRORS = errors(400, 401, 403, 404)

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
    opt={CONDITIONAL_OPT: True, CACHE_OPT: REVALIDATE},
)


def provide_db(state: State) -> Store:
    """The application's database."""
    db: Store = state.db
    return db


def scope_key(account: Account) -> tuple[Hashable, ...]:
    """What about the caller changes a response: role, group and hosted sites."""
    return (account.role, account.group_id, tuple(account.site_ids))


def serve_cached(
    request: Request[Any, Any, Any],
    db: Store,
    event_id: str,
    key: tuple[Hashable, ...],
    build: Callable[[Tx], Any],
    media_type: str = "application/json",
    *,
    versioned: bool = False,
) -> Response[Any]:
    """Serve what ``build`` returns, encoded and compressed once per event content version.

    ``build`` reads in the same snapshot as the version, so what is cached under a version is that
    version's content. It returns a Struct or builtin value for JSON, or bytes for other media
    types; ``versioned`` puts the record's version in the ETag, for ``If-Match`` on edits.
    """
    cache: RepresentationCache = request.app.state.cache
    path = request.scope.get("root_path", "") + request.scope["path"]  # request.url.path, without building a URL
    # The version read with the token, in the same statement (server/auth.py): a hit needs no query.
    # An entry under a version always holds what a snapshot at that version read, so serving it is
    # as fresh as the token check. The same_event guard has made event_id the account's event.
    known: int | None = request.scope.get(CONTENT_VERSION)  # type: ignore[assignment]
    if known is not None and event_id == request.user.event_id:
        rep = cache.get((event_id, known, path, *key))
        if rep is not None:
            request.scope[ANSWER_VERSION] = known  # type: ignore[literal-required]  # server code's own key
            return serve(request, rep)
    with db.read() as tx:
        version = content_version(tx, event_id)

        def make() -> Representation:
            value = build(tx)
            body = value if isinstance(value, bytes) else encode_json(value)
            version = value.version if versioned and not isinstance(value, bytes) else None
            return represent(body, media_type, version)

        rep = cache.get_or_build((event_id, version, path, *key), make)
    request.scope[ANSWER_VERSION] = version  # type: ignore[literal-required]
    return serve(request, rep)


def serve_fresh(request: Request[Any, Any, Any], value: Any) -> Response[Any]:
    """Serve a value that is not worth caching, with the same ETag and gzip handling."""
    return serve(request, represent(encode_json(value), "application/json"), REVALIDATE)


# The opt of a GET served by serve_fresh: conditional, and revalidated.
FRESH_OPT = {CONDITIONAL_OPT: True, CACHE_OPT: REVALIDATE}
