"""Accounts of an event: adding, retiring and rotating them, the one way the CLI and the REST API both do it."""

import io
import re
import unicodedata
from datetime import UTC

import msgspec
import segno

from schemas.accounts import Account, AccountDraft, Invitation, NewAccount, People, Person
from server.errors import AccountNotFoundError, DomainError, EventNotFoundError, ForbiddenError
from server.feeds import feed_urls
from server.storage.accounts import (
    account_exists,
    create_account,
    get_access,
    get_account,
    get_person,
    list_people,
    retire_account,
    rotate_token,
)
from server.storage.catalog import get_event
from server.storage.db import rfc3339
from server.storage.engine_errors import is_integrity_error
from server.storage.records import record_exists
from server.storage.unit import Store, Tx


class AccountError(DomainError):
    """A refused change to accounts; ``index`` is the position, in a batch, of the account it is about."""

    index: int | None = None


class AccountExistsError(AccountError):
    """An account with this id exists already (in this event or another: ids are unique server-wide)."""

    status = 409
    slug = "account-exists"
    title = "An account with this id exists"


class InvalidAccountError(AccountError):
    """An account that names what its event does not have, or cannot be stored as given."""

    status = 422
    slug = "invalid-account"
    title = "The account cannot be created"

    def __init__(self, reason: str, field: str | None = None) -> None:
        super().__init__(f"{reason} ({field})" if field else reason)
        # The message without the field, and the field it is about, for callers that name inputs their way.
        self.reason = reason
        self.field = field


class AccountRetiredError(AccountError):
    """A retired account's tokens stay revoked: it cannot be given new ones."""

    status = 409
    slug = "account-retired"
    title = "The account is retired"


class OwnAccountError(AccountError):
    """Organizers do not retire or rotate the account they are signed in with: they would lock themselves out."""

    status = 422
    slug = "own-account"
    title = "This is your own account"


def invitation_link(base_url: str, token: str) -> str:
    """The field app's sign-in link: the token rides in the fragment, which browsers never send to a server."""
    return f"{base_url.rstrip('/')}/app/#t={token}"


def qr_svg(text: str) -> str:
    """``text`` as a QR code, an SVG document a phone's camera reads from a screen (dark on light)."""
    out = io.BytesIO()
    # Error level M survives a smudged screen; the quiet zone of 4 modules is what readers need.
    segno.make(text, error="m").save(out, kind="svg", scale=4, border=4, xmldecl=False, svgns=True)
    return out.getvalue().decode("utf-8")


def slugify(name: str) -> str:
    """An ASCII id from a name ("" for a name in a script with no Latin letters)."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")[:60]


def unique_id(tx: Tx, name: str, taken: set[str]) -> str:
    """An unused account id made from a name, numbered ("-2", "-3"...) when taken; added to ``taken``."""
    # Names in Arabic, Korean... have no Latin letters to slug: number them instead.
    base = slugify(name) or "account"
    candidate, n = base, 1
    while candidate in taken or account_exists(tx, candidate):
        n += 1
        candidate = f"{base}-{n}"
    taken.add(candidate)
    return candidate


def check_account(tx: Tx, account: Account) -> None:
    """Refuse an account whose id is taken, or that names an event, group or site that does not exist."""
    try:
        get_event(tx, account.event_id)
    except EventNotFoundError:
        raise InvalidAccountError(f"no event '{account.event_id}'") from None
    if account_exists(tx, account.id):
        raise AccountExistsError(f"an account '{account.id}' exists already")
    if not account.name.strip():
        raise InvalidAccountError("the name is empty", "name")
    if account.group_id and not record_exists(tx, account.event_id, "group", account.group_id):
        raise InvalidAccountError(f"no group '{account.group_id}' in event '{account.event_id}'", "group_id")
    for site_id in account.site_ids:
        if not record_exists(tx, account.event_id, "site", site_id):
            raise InvalidAccountError(f"no site '{site_id}' in event '{account.event_id}'", "site_ids")


def _create(tx: Tx, account: Account, expires_at: str | None) -> NewAccount:
    check_account(tx, account)
    try:
        return create_account(tx, account, expires_at=expires_at)
    except Exception as exc:
        if not is_integrity_error(exc):
            raise
        # Any other rule of the schema: a message, not a traceback.
        raise InvalidAccountError(f"account '{account.id}' cannot be stored: {exc}") from None


def add_accounts(db: Store, accounts: list[Account], expires_at: str | None = None) -> list[NewAccount]:
    """Create accounts in one transaction: all of them, or (on any error) none, so no token goes unshown.

    A failure is raised with ``index``, the position of the account it is about, set on the error.
    """
    created: list[NewAccount] = []
    with db.write() as tx:
        for n, account in enumerate(accounts):
            try:
                created.append(_create(tx, account, expires_at))
            except AccountError as exc:
                exc.index = n
                raise
    return created


def require_organizer(caller: Account) -> None:
    """An event's accounts are its organizers' to see and manage (the routes' guard says so first)."""
    if caller.role != "organizer":
        raise ForbiddenError(f"The accounts of an event are for its organizers; you are a {caller.role}.")


def people(db: Store, caller: Account) -> People:
    """Every account of the caller's event, retired ones included, with their last sync."""
    require_organizer(caller)
    with db.read() as tx:
        return People(event_id=caller.event_id, accounts=list_people(tx, caller.event_id))


def invitation(person: Person, token: str, feed_token: str | None, base_url: str) -> Invitation:
    """What is shown once for a fresh token: the account, the token, its sign-in link and QR code."""
    link = invitation_link(base_url, token)
    return Invitation(
        **msgspec.structs.asdict(person),
        token=token,
        app_url=link,
        qr_svg=qr_svg(link),
        feed_urls=feed_urls(base_url, feed_token) if feed_token else None,
    )


def add_person(db: Store, caller: Account, draft: AccountDraft, base_url: str) -> Invitation:
    """Add someone to the caller's event from a draft; their token is in the answer, and only there."""
    require_organizer(caller)
    expires_at = rfc3339(draft.expires_at.astimezone(UTC)) if draft.expires_at else None
    # One transaction: the id made from the name is still free when the account is stored.
    with db.write() as tx:
        account = Account(
            id=draft.id or unique_id(tx, draft.name, set()),
            name=draft.name.strip(),
            role=draft.role,
            event_id=caller.event_id,
            group_id=draft.group_id,
            site_ids=draft.site_ids,
            language=draft.language,
            country=draft.country,
            organization=draft.organization,
        )
        created = _create(tx, account, expires_at)
        person = get_person(tx, caller.event_id, created.id)
    return invitation(person, created.token, created.feed_token, base_url)


def existing_account(tx: Tx, account_id: str, event_id: str | None = None) -> Account:
    """An account that can still be changed: not retired (and of this event, when one is named)."""
    account = get_account(tx, account_id)
    access = get_access(tx, account_id)
    if event_id is not None and account.event_id != event_id:
        raise AccountNotFoundError(account_id)
    if access.retired_at is not None:
        raise AccountRetiredError(f"account '{account_id}' was retired on {access.retired_at}; its tokens stay revoked")
    return account


def retire_person(db: Store, caller: Account, account_id: str) -> Person:
    """Revoke every token of an account of the caller's event at once; retiring it again changes nothing."""
    require_organizer(caller)
    if account_id == caller.id:
        raise OwnAccountError("You cannot retire the account you are signed in with; another organizer can.")
    with db.write() as tx:
        person = get_person(tx, caller.event_id, account_id)
        if person.retired_at is None:
            retire_account(tx, account_id)
            person = get_person(tx, caller.event_id, account_id)
    return person


def rotate_person(db: Store, caller: Account, account_id: str, base_url: str) -> Invitation:
    """A new bearer token for an account of the caller's event (the old one stops working at once)."""
    require_organizer(caller)
    if account_id == caller.id:
        raise OwnAccountError(
            "You cannot replace the token you are signed in with here; use `studyvisit accounts rotate`."
        )
    with db.write() as tx:
        get_person(tx, caller.event_id, account_id)  # 404 for another event's account, before anything else
        existing_account(tx, account_id, caller.event_id)
        token = rotate_token(tx, account_id)
        person = get_person(tx, caller.event_id, account_id)
        access = get_access(tx, account_id)
    return invitation(person, token, access.feed_token, base_url)
