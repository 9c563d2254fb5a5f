"""Bearer-token authentication and the guards that enforce roles and event boundaries."""

from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult

from schemas.accounts import Account, Role
from server.errors import ForbiddenError, NotFoundError, UnauthorizedError
from server.storage.accounts import account_by_token
from server.storage.db import Database

PUBLIC_PATHS = {"/health", "/metrics", "/schema"}


class BearerTokenMiddleware(AbstractAuthenticationMiddleware):
    """Resolves ``Authorization: Bearer <token>`` to an Account, or refuses with 401."""

    async def authenticate_request(self, connection: ASGIConnection[Any, Any, Any, Any]) -> AuthenticationResult:
        header = connection.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise UnauthorizedError("Send 'Authorization: Bearer <token>' with the token you were given.")
        db: Database = connection.app.state.db
        account = account_by_token(db.conn, token.strip())
        if account is None:
            raise UnauthorizedError("This token is not valid.")
        return AuthenticationResult(user=account, auth=None)


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
