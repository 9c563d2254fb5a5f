"""Domain errors and the one handler that turns every error into an RFC 9457 problem document."""

import logging
from typing import Any, ClassVar

import msgspec
from litestar import Request, Response
from litestar.exceptions import (
    HTTPException,
    InternalServerException,
    NotAuthorizedException,
    PermissionDeniedException,
    ValidationException,
)
from litestar.types import HTTPResponseBodyEvent, HTTPResponseStartEvent, HTTPScope, Send

from schemas.problems import Problem

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_BASE = "urn:studyvisit:problem:"
# RFC 9110 §15.5.2: a 401 must say, in WWW-Authenticate, which scheme would be accepted.
BEARER_CHALLENGE = 'Bearer realm="studyvisit"'
log = logging.getLogger("studyvisit")
# Litestar's message when the body's stream ends with http.disconnect (litestar/connection/request.py).
CLIENT_DISCONNECTED = "client disconnected prematurely"


class DomainError(Exception):
    """An error a client can act on. Subclasses fix the status, the problem type and the title."""

    status: ClassVar[int] = 400
    slug: ClassVar[str] = "bad-request"
    title: ClassVar[str] = "Bad request"
    # RFC 9110 §10.2.3: seconds after which a retry may succeed (a busy or briefly unwritable database).
    retry_after: int | None = None

    def __init__(self, detail: str, **extensions: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extensions = extensions

    def problem(self, instance: str | None = None) -> Problem:
        """This error as a problem document."""
        return Problem(
            type=PROBLEM_BASE + self.slug,
            title=self.title,
            status=self.status,
            detail=self.detail,
            instance=instance,
            **self.extensions,
        )


class BadRequestError(DomainError):
    """A query value or body that cannot be used."""


class InvalidQueryError(DomainError):
    slug = "invalid-query"
    title = "Invalid query parameter"


class UnauthorizedError(DomainError):
    status = 401
    slug = "unauthorized"
    title = "Missing or invalid bearer token"


class ForbiddenError(DomainError):
    status = 403
    slug = "forbidden"
    title = "Your role may not do this"


class NotFoundError(DomainError):
    status = 404
    slug = "not-found"
    title = "Not found"


class EventNotFoundError(NotFoundError):
    """No event with this id."""

    def __init__(self, event_id: str) -> None:
        super().__init__(f"No event '{event_id}'.")


class SiteNotFoundError(NotFoundError):
    """No site with this id in the event."""

    def __init__(self, site_id: str) -> None:
        super().__init__(f"No site '{site_id}' in this event.")


class VisitNotFoundError(NotFoundError):
    """No visit with this id in the event."""

    def __init__(self, visit_id: str) -> None:
        super().__init__(f"No visit '{visit_id}' in this event.")


class GroupNotFoundError(NotFoundError):
    """No group with this id in the event."""

    def __init__(self, group_id: str) -> None:
        super().__init__(f"No group '{group_id}' in this event.")


class AccountNotFoundError(NotFoundError):
    """No account with this id (in the event, when one is named)."""

    def __init__(self, account_id: str, *, in_event: bool = True) -> None:
        super().__init__(f"No account '{account_id}' in this event." if in_event else f"No account '{account_id}'.")


class HistoryEntryNotFoundError(NotFoundError):
    """No recorded change with this id in the event."""

    def __init__(self, entry_id: int) -> None:
        super().__init__(f"No change {entry_id} in this event.")


class GoneError(DomainError):
    status = 410
    slug = "cursor-expired"
    title = "Cursor expired: pull again from an empty cursor"


class StaleVersionError(DomainError):
    status = 412
    slug = "stale-version"
    title = "The record changed since you read it"


class PreconditionRequiredError(DomainError):
    status = 428
    slug = "precondition-required"
    title = "If-Match is required"


class PayloadTooLargeError(DomainError):
    status = 413
    slug = "payload-too-large"
    title = "Request too large"


class UnsupportedProtocolError(DomainError):
    slug = "unsupported-protocol"
    title = "Unsupported sync protocol version"


class UnsupportedMediaTypeError(DomainError):
    status = 415
    slug = "unsupported-media-type"
    title = "Unsupported media type"


class DatabaseBusyError(DomainError):
    """Another writer held the database longer than the lock timeout: nothing was written."""

    status = 503
    slug = "database-busy"
    title = "The database is busy"
    retry_after = 2


class DatabaseUnavailableError(DomainError):
    """The database cannot be written just now (read-only file, I/O error): nothing was written."""

    status = 503
    slug = "database-unavailable"
    title = "The database cannot be written"
    retry_after = 10


class InsufficientStorageError(DomainError):
    """The server's disk (or the database's size limit) is full: nothing was written."""

    status = 507
    slug = "insufficient-storage"
    title = "The server has no space left"


class TooManyAuthFailuresError(DomainError):
    """Too many invalid tokens from one address: it must wait ``retry_after`` seconds (RFC 6585 §4)."""

    status = 429
    slug = "too-many-requests"
    title = "Too many requests"

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


_LITESTAR: dict[int, tuple[str, str]] = {
    400: ("invalid-request", "Invalid request"),
    401: ("unauthorized", "Missing or invalid bearer token"),
    403: ("forbidden", "Your role may not do this"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    413: ("payload-too-large", "Request too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
    429: ("too-many-requests", "Too many requests"),
}


def problem_response(problem: Problem, headers: dict[str, str] | None = None) -> Response[bytes]:
    """Serve a problem document."""
    return Response(
        content=msgspec.json.encode(problem),
        status_code=problem.status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=headers,
    )


async def send_problem(scope: HTTPScope, send: Send, problem: Problem, headers: dict[str, str] | None = None) -> None:
    """Answer with a problem document straight from ASGI, for layers that run before Litestar's handlers."""
    body = msgspec.json.encode(problem)
    raw = [(b"content-type", PROBLEM_MEDIA_TYPE.encode()), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    start: HTTPResponseStartEvent = {"type": "http.response.start", "status": problem.status, "headers": raw}
    await send(start)
    content: HTTPResponseBodyEvent = {
        "type": "http.response.body",
        "body": b"" if scope["method"] == "HEAD" else body,
        "more_body": False,
    }
    await send(content)


def handle_domain_error(request: Request[Any, Any, Any], exc: DomainError) -> Response[bytes]:
    """Map a domain error to its problem document."""
    headers = {"WWW-Authenticate": BEARER_CHALLENGE} if exc.status == 401 else None
    if exc.retry_after is not None:
        headers = {"Retry-After": str(exc.retry_after)}
    return problem_response(exc.problem(request.url.path), headers)


def handle_http_exception(
    request: Request[Any, Any, Any], exc: HTTPException, *, validation_slug: str = "validation-error"
) -> Response[bytes]:
    """Map Litestar's own errors (routing, validation, auth) to the same problem shape."""
    status = exc.status_code
    if isinstance(exc, InternalServerException) and exc.detail == CLIENT_DISCONNECTED:
        # The client left before its body was all sent (out of signal, or dropped as too slow): no
        # bug, and nobody to answer. Counted as the client's error, not logged as the server's.
        problem = Problem(
            type=PROBLEM_BASE + "client-disconnected",
            title="The client disconnected",
            status=400,
            detail="The connection closed before the request body was complete; nothing was changed.",
        )
        return problem_response(problem)
    if status >= 500:
        return handle_unexpected(request, exc)  # the framework's own message may describe its insides
    slug, title = _LITESTAR.get(status, ("http-error", "HTTP error"))
    errors: list[str] | None = None
    detail = exc.detail
    if isinstance(exc, ValidationException):
        slug, title = validation_slug, "The request did not validate"
        errors = [_describe(e) for e in (exc.extra or [])] if isinstance(exc.extra, list) else None
    if isinstance(exc, NotAuthorizedException):
        slug, title = _LITESTAR[401]
    if isinstance(exc, PermissionDeniedException):
        slug, title = _LITESTAR[403]
    headers = {"WWW-Authenticate": BEARER_CHALLENGE} if status == 401 else None
    problem = Problem(
        type=PROBLEM_BASE + slug, title=title, status=status, detail=detail, instance=request.url.path, errors=errors
    )
    if exc.headers:
        headers = {**(headers or {}), **exc.headers}
    return problem_response(problem, headers)


def handle_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    """A bug or an outage: log it with its trace, tell the client nothing of its insides."""
    # Imported here: storage raises the errors defined above, so it cannot be imported at the top.
    from server.storage.engine_errors import storage_failure

    if (failure := storage_failure(exc)) is not None:
        # A full disk, a held lock or an unwritable file is the server's state, not a bug: say so.
        log.warning("storage failure on %s %s: %s", request.method, request.url.path, exc)
        return handle_domain_error(request, failure)
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    problem = Problem(
        type=PROBLEM_BASE + "internal-error",
        title="Internal server error",
        status=500,
        detail="The server failed to handle this request; nothing was changed. Retrying is safe.",
        instance=request.url.path,
    )
    return problem_response(problem)


def _describe(error: Any) -> str:
    if isinstance(error, dict):
        key = error.get("key")
        message = error.get("message", "")
        return f"{key}: {message}" if key else str(message)
    return str(error)


EXCEPTION_HANDLERS: dict[Any, Any] = {
    DomainError: handle_domain_error,
    HTTPException: handle_http_exception,
    Exception: handle_unexpected,
}
