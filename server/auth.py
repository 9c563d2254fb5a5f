"""Bearer-token authentication and the guards that enforce roles and event boundaries."""

from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult

from schemas.accounts import Account, Role
from server.errors import ForbiddenError, NotFoundError, TooManyAuthFailuresError, UnauthorizedError
from server.ratelimit import FailedAuthLimiter
from server.storage.accounts import TokenChecks

PUBLIC_PATHS = {"/health", "/metrics", "/schema"}
# The ASGI scope key under which server.feeds hands over the account of a valid feed token. Only
# server code writes scope keys, so a client cannot forge it; it is set for the two feed routes only.
FEED_ACCOUNT = "studyvisit.feed_account"
# The scope key holding the content version of the account's event, read with the token (one query):
# serve_cached answers from its cache under that version without asking the database again.
CONTENT_VERSION = "studyvisit.content_version"
# The scope key under which server.answer_cache hands over what the statement for this request's token
# found (``(account, version)``, or None for a token that is not valid): the statement runs once.
CHECKED_BEARER = "studyvisit.checked_bearer"
# The scope key under which serve_cached says that its answer is the representation made at this
# content version for this request and account, and so may be sent again (server/answer_cache.py).
ANSWER_VERSION = "studyvisit.answer_version"


def bearer_token(authorization: str) -> str:
    """The token of an ``Authorization: Bearer <token>`` value, or "" for any other value."""
    scheme, _, token = authorization.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def count_failed_auth(limiter: FailedAuthLimiter, address: str) -> None:
    """Record an invalid token from this address, or refuse with 429 when it has sent too many already."""
    retry_after = limiter.retry_after(address)
    if retry_after is not None:
        raise TooManyAuthFailuresError(
            f"Too many invalid tokens from this address; try again in {retry_after} s.", retry_after=retry_after
        )
    limiter.record_failure(address)


class BearerTokenMiddleware(AbstractAuthenticationMiddleware):
    """Resolves ``Authorization: Bearer <token>`` to an Account, or refuses with 401 (429 after many)."""

    async def authenticate_request(self, connection: ASGIConnection[Any, Any, Any, Any]) -> AuthenticationResult:
        feed_account: Account | None = connection.scope.get(FEED_ACCOUNT)
        if feed_account is not None:
            return AuthenticationResult(user=feed_account, auth="feed")
        token = bearer_token(connection.headers.get("authorization", ""))
        if not token:
            raise UnauthorizedError("Send 'Authorization: Bearer <token>' with the token you were given.")
        checked: tuple[tuple[Account, int] | None] | None = connection.scope.get(CHECKED_BEARER)
        if checked is not None:
            (found,) = checked  # the same statement, for this request's own header, run by server.answer_cache
        else:
            checks: TokenChecks = connection.app.state.token_checks
            found = await checks.check(token)  # one query: the token, the account and the event's content version
        if found is None:
            # Only here, after the token failed: a valid token never waits for the limiter.
            count_failed_auth(connection.app.state.auth_limiter, connection.client.host if connection.client else "")
            raise UnauthorizedError("This token is not valid.")
        account, version = found
        connection.scope[CONTENT_VERSION] = version  # type: ignore[literal-required]  # server code's own key
        return AuthenticationResult(user=account, auth="bearer")


def current_account(connection: ASGIConnection[Any, Any, Any, Any]) -> Account:
    """The authenticated account of a request."""
    return connection.user  # type: ignore[no-any-return]


def is_preflight(connection: ASGIConnection[Any, Any, Any, Any]) -> bool:
    """An OPTIONS request: no token is sent with it, and Litestar answers it with what is allowed."""
    scope = connection.scope
    return scope["type"] == "http" and scope["method"] == "OPTIONS"


async def same_event(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Another event's data does not exist for this token: 404, not 403, so ids do not leak."""
    if is_preflight(connection):
        return  # CORS preflight carries no token and reveals nothing: Litestar answers it
    event_id = connection.path_params.get("event_id")
    if event_id is not None and event_id != current_account(connection).event_id:
        raise NotFoundError(f"No event '{event_id}' for this account.")


def requires(*roles: Role) -> Any:
    """A guard that lets only these roles through (403 for the others)."""

    # async: Litestar would run a plain function in a worker thread on every request.
    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        if is_preflight(connection):
            return
        role = current_account(connection).role
        if role not in roles:
            raise ForbiddenError(f"A {role} may not do this; it needs the role {' or '.join(roles)}.")

    return guard
