"""The accounts of an event, for its organizers: list them with their last sync, add one, retire one, rotate a token."""

from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.datastructures import CacheControlHeader, State
from litestar.openapi.datastructures import ResponseSpec

from schemas.accounts import Account, AccountDraft, Invitation, People, Person
from server.auth import requires, same_event
from server.routes.bodies import BODY_OPT, BodySpec
from server.routes.common import AUTH_ERRORS, CACHE_OPT, ROLE_ERRORS, SECURITY, AppDatabase, problem_spec
from server.services.accounts import add_person, people, retire_person, rotate_person
from server.settings import Settings

ORGANIZERS = [requires("organizer")]
# Names, and once a token: no cache may keep them.
NO_STORE = CacheControlHeader(no_store=True)
CREATE_ERRORS: dict[int, ResponseSpec] = {
    **AUTH_ERRORS,
    400: problem_spec("The body is not a valid account"),
    409: problem_spec("account-exists: an account with this id exists already"),
    415: problem_spec("The body is not application/json"),
    422: problem_spec("invalid-account: an empty name, or a group or site the event does not have"),
}
RETIRE_ERRORS: dict[int, ResponseSpec] = {
    **ROLE_ERRORS,
    422: problem_spec("own-account: organizers do not retire the account they are signed in with"),
}
ROTATE_ERRORS: dict[int, ResponseSpec] = {
    **ROLE_ERRORS,
    409: problem_spec("account-retired: a retired account gets no new token"),
    422: problem_spec("own-account: organizers do not replace the token they are signed in with"),
}


def base_url(request: Request[Any, Any, Any], state: State) -> str:
    """Where invitation links point: the deployment's public URL, else the address the caller reached."""
    settings: Settings = state.settings
    return settings.public_url or str(request.base_url)


class AccountController(Controller):
    """Participants, hosts and organizers of an event, as its organizers manage them."""

    path = "/api/v1/events/{event_id:str}/accounts"
    guards = [same_event, *ORGANIZERS]
    tags = ["accounts"]

    @get(
        "/",
        summary="Every account of the event, with its role, group, language and last sync (organizers)",
        description="`last_synced_at` is the last push, or pull that caught up, of any of the account's devices"
        " (to the minute); retired accounts are listed with `retired_at`. Tokens are never shown again.",
        security=SECURITY,
        responses=ROLE_ERRORS,
        sync_to_thread=True,
        cache_control=NO_STORE,
        opt={CACHE_OPT: NO_STORE.to_header()},
    )
    def list_accounts(self, request: Request[Account, Any, Any], db: AppDatabase, event_id: str) -> People:
        return people(db, request.user)

    @post(
        "/",
        summary="Add someone to the event; the answer holds their token, sign-in link and QR code, shown only now",
        description="The id is made from the name when absent. The token is stored only as a hash: keep the"
        " `app_url` (or its `qr_svg`) for the person, or rotate the token later to get a new one.",
        security=SECURITY,
        responses={**CREATE_ERRORS, 201: ResponseSpec(data_container=Invitation, description="The new account")},
        opt={BODY_OPT: BodySpec(AccountDraft), CACHE_OPT: NO_STORE.to_header()},
        cache_control=NO_STORE,
        sync_to_thread=True,
    )
    def add_account(
        self, request: Request[Account, Any, Any], db: AppDatabase, state: State, event_id: str, payload: AccountDraft
    ) -> Response[Invitation]:
        created = add_person(db, request.user, payload, base_url(request, state))
        return Response(created, status_code=201)

    @post(
        "/{account_id:str}/retire",
        summary="Retire an account: every token of it stops working at once, for good (what it wrote stays)",
        description="Retiring a retired account again changes nothing.",
        security=SECURITY,
        responses=RETIRE_ERRORS,
        status_code=200,
        sync_to_thread=True,
    )
    def retire(self, request: Request[Account, Any, Any], db: AppDatabase, event_id: str, account_id: str) -> Person:
        return retire_person(db, request.user, account_id)

    @post(
        "/{account_id:str}/token",
        summary="Give an account a new bearer token (shown only now); the old one stops working at once",
        description="The calendar feed URLs stay as they were.",
        security=SECURITY,
        responses=ROTATE_ERRORS,
        status_code=200,
        cache_control=NO_STORE,
        opt={CACHE_OPT: NO_STORE.to_header()},
        sync_to_thread=True,
    )
    def rotate(
        self, request: Request[Account, Any, Any], db: AppDatabase, state: State, event_id: str, account_id: str
    ) -> Invitation:
        return rotate_person(db, request.user, account_id, base_url(request, state))
