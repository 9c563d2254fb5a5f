"""Accounts and their bearer tokens."""

import hashlib
import hmac
import secrets
from typing import NamedTuple, Protocol

import msgspec

from schemas.accounts import Account, NewAccount, Person
from server.errors import AccountNotFoundError
from server.storage.db import utcnow
from server.storage.unit import Dialect, Row, Store, Tx

FEED_TOKEN_PREFIX = "svf_"  # noqa: S105 - the public marker of a feed token, not a secret
# The feed token's first characters after the prefix find the row (an index); the whole token is
# then compared in constant time, so that a lookup's timing reveals nothing of the secret part.
_SELECTOR = slice(len(FEED_TOKEN_PREFIX), len(FEED_TOKEN_PREFIX) + 16)
# Tokens work while the account is not retired and has not expired.
_USABLE = "a.retired_at IS NULL AND (a.expires_at IS NULL OR a.expires_at > ?)"


def hash_token(token: str) -> str:
    """SHA-256 of a token. Tokens carry 256 random bits, so a plain hash cannot be brute-forced."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    """A fresh bearer token."""
    return "sv_" + secrets.token_urlsafe(32)


def new_feed_token() -> str:
    """A fresh feed token: 256 random bits in lowercase hex, which every URL and calendar app keeps intact."""
    return FEED_TOKEN_PREFIX + secrets.token_hex(32)


class Access(NamedTuple):
    """What decides whether an account's tokens work, and its feed token (None: revoked)."""

    expires_at: str | None
    retired_at: str | None
    feed_token: str | None


def create_account(tx: Tx, account: Account, token: str | None = None, expires_at: str | None = None) -> NewAccount:
    """Store an account and return it with its tokens; the bearer token is never readable again."""
    token = token or new_token()
    feed_token = new_feed_token()
    tx.execute(
        "INSERT INTO accounts (id, event_id, name, role, group_id, language, country, organization, token_hash,"
        " created_at, expires_at, feed_token) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            account.id,
            account.event_id,
            account.name,
            account.role,
            account.group_id,
            account.language,
            account.country,
            account.organization,
            hash_token(token),
            utcnow(),
            expires_at,
            feed_token,
        ),
    )
    tx.executemany(
        "INSERT INTO account_sites (account_id, event_id, site_id) VALUES (?, ?, ?)",
        [(account.id, account.event_id, site_id) for site_id in account.site_ids],
    )
    fields = {f: getattr(account, f) for f in account.__struct_fields__}
    return NewAccount(**fields, token=token, feed_token=feed_token)


# An account's sites in one column, joined by the unit separator and split again in _account: each
# engine names its string aggregate its own way.
_SITES: dict[Dialect, str] = {
    "sqlite": "(SELECT group_concat(site_id, char(31)) FROM account_sites s WHERE s.account_id = a.id) AS sites",
    "postgresql": "(SELECT string_agg(site_id, chr(31)) FROM account_sites s WHERE s.account_id = a.id) AS sites",
}
_SELECT_ACCOUNT: dict[Dialect, str] = {d: f"SELECT a.*, {sites} FROM accounts a" for d, sites in _SITES.items()}


def _account(row: Row) -> Account:
    sites = row["sites"]
    return Account(
        id=row["id"],
        name=row["name"],
        role=row["role"],
        event_id=row["event_id"],
        group_id=row["group_id"],
        site_ids=sorted(sites.split("\x1f")) if sites else [],
        language=row["language"],
        country=row["country"],
        organization=row["organization"],
    )


def account_by_token(tx: Tx, token: str, now: str | None = None) -> Account | None:
    """The account a bearer token belongs to, or None (also when it is retired or expired).

    The lookup is by hash, so comparing does not leak the token through timing: an attacker
    controls the input of SHA-256, not the bytes compared.
    """
    row = tx.execute(
        f"{_SELECT_ACCOUNT[tx.dialect]} WHERE a.token_hash = ? AND {_USABLE}",
        (hash_token(token), now or utcnow()),
    ).fetchone()
    return None if row is None else _account(row)


# The same lookup with the account's event's content version (server/storage/changes.py), read in the
# same statement: a cached read then needs no second query (server/routes/common.py, serve_cached).
_SELECT_ACCOUNT_AND_VERSION: dict[Dialect, str] = {
    d: f"SELECT a.*, {sites}, (SELECT e.content_version FROM events e WHERE e.id = a.event_id) AS content_version"
    " FROM accounts a"
    for d, sites in _SITES.items()
}


def account_and_version_by_token(tx: Tx, token: str, now: str | None = None) -> tuple[Account, int] | None:
    """`account_by_token` and the content version of the account's event, in one query."""
    row = tx.execute(
        f"{_SELECT_ACCOUNT_AND_VERSION[tx.dialect]} WHERE a.token_hash = ? AND {_USABLE}",
        (hash_token(token), now or utcnow()),
    ).fetchone()
    return None if row is None else account_and_version(row)


# Many tokens checked in one statement (PostgreSQL; server/storage/pg/token_checks.py runs it with the
# hashes of the tokens as one array): each row names the hash it was found by, and holds only what
# `account_and_version` reads (no timestamps to convert). A hash absent from the answer is not valid.
SELECT_BY_TOKEN_HASHES = (
    "SELECT a.token_hash, a.id, a.name, a.role, a.event_id, a.group_id, a.language, a.country, a.organization,"
    f" {_SITES['postgresql']},"
    " (SELECT e.content_version FROM events e WHERE e.id = a.event_id) AS content_version"
    f" FROM accounts a WHERE a.token_hash = ANY(?) AND {_USABLE}"
)


def account_and_version(row: Row) -> tuple[Account, int]:
    """The account and its event's content version, of a row that holds both (as the statements above do)."""
    return _account(row), int(row["content_version"])


class TokenChecks(Protocol):
    """Bearer-token checks for the requests of a server's event loop: `account_and_version_by_token`,
    awaited. Each check reads the database after the request arrived, never a copy kept in memory,
    so every server over one database refuses a revoked token and sees a new version alike."""

    async def check(self, token: str) -> tuple[Account, int] | None:
        """The token's account and its event's content version, or None when the token is not valid."""
        ...

    async def close(self) -> None:
        """Close what the checks opened (on the loop they ran on)."""
        ...


class StatementTokenChecks:
    """Each check one statement on the store, run where it is awaited: on SQLite an in-process call of
    microseconds, cheaper than any hand-over to another thread."""

    def __init__(self, db: Store) -> None:
        self.db = db

    async def check(self, token: str) -> tuple[Account, int] | None:
        """The token's account and content version, or None (see `TokenChecks`)."""
        with self.db.statement() as tx:
            return account_and_version_by_token(tx, token)

    async def close(self) -> None:
        """Nothing to close: the store's connections are the store's."""


def account_by_feed_token(tx: Tx, feed_token: str, now: str | None = None) -> Account | None:
    """The account a feed token belongs to, or None (also when revoked, retired or expired)."""
    if not feed_token.startswith(FEED_TOKEN_PREFIX) or len(feed_token) < _SELECTOR.stop:
        return None
    row = tx.execute(
        f"{_SELECT_ACCOUNT[tx.dialect]} WHERE substr(a.feed_token, 5, 16) = ? AND {_USABLE}",
        (feed_token[_SELECTOR], now or utcnow()),
    ).fetchone()
    if row is None or not hmac.compare_digest(str(row["feed_token"]).encode(), feed_token.encode()):
        return None
    return _account(row)


def get_access(tx: Tx, account_id: str) -> Access:
    """An account's expiry, retirement and feed token."""
    row = tx.execute("SELECT expires_at, retired_at, feed_token FROM accounts WHERE id = ?", (account_id,)).fetchone()
    if row is None:
        raise AccountNotFoundError(account_id, in_event=False)
    return Access(row["expires_at"], row["retired_at"], row["feed_token"])


def account_exists(tx: Tx, account_id: str) -> bool:
    """Whether an account has this id (in any event: ids are unique across events)."""
    return tx.execute("SELECT 1 FROM accounts WHERE id = ?", (account_id,)).fetchone() is not None


def get_account(tx: Tx, account_id: str) -> Account:
    """One account, of any event."""
    row = tx.execute(f"{_SELECT_ACCOUNT[tx.dialect]} WHERE a.id = ?", (account_id,)).fetchone()
    if row is None:
        raise AccountNotFoundError(account_id, in_event=False)
    return _account(row)


def list_accounts(tx: Tx, event_id: str) -> list[Account]:
    """Every account of an event."""
    rows = tx.execute(f"{_SELECT_ACCOUNT[tx.dialect]} WHERE a.event_id = ? ORDER BY a.id", (event_id,)).fetchall()
    return [_account(row) for row in rows]


# An account with what organizers see of it: sync_clients holds one row per install of the app, its
# updated_at the last push or caught-up pull of that install (server/services/pull.py).
_SELECT_PERSON: dict[Dialect, str] = {
    d: f"SELECT a.*, {sites},"
    " (SELECT MAX(c.updated_at) FROM sync_clients c WHERE c.account_id = a.id) AS last_synced_at,"
    " (SELECT COUNT(*) FROM sync_clients c WHERE c.account_id = a.id) AS devices"
    " FROM accounts a WHERE a.event_id = ?"
    for d, sites in _SITES.items()
}


def _person(row: Row) -> Person:
    return Person(
        **msgspec.structs.asdict(_account(row)),
        expires_at=row["expires_at"],
        retired_at=row["retired_at"],
        last_synced_at=row["last_synced_at"],
        devices=int(row["devices"]),
    )


def list_people(tx: Tx, event_id: str) -> list[Person]:
    """Every account of an event with its expiry, retirement, and when and from how many devices it synced."""
    rows = tx.execute(f"{_SELECT_PERSON[tx.dialect]} ORDER BY a.id", (event_id,)).fetchall()
    return [_person(row) for row in rows]


def get_person(tx: Tx, event_id: str, account_id: str) -> Person:
    """One account of an event as organizers list it (another event's is not found)."""
    row = tx.execute(f"{_SELECT_PERSON[tx.dialect]} AND a.id = ?", (event_id, account_id)).fetchone()
    if row is None:
        raise AccountNotFoundError(account_id)
    return _person(row)


def rotate_token(tx: Tx, account_id: str) -> str:
    """Give an account a new token, invalidating the old one; returns the new token."""
    token = new_token()
    tx.execute("UPDATE accounts SET token_hash = ? WHERE id = ?", (hash_token(token), account_id))
    return token


def rotate_feed_token(tx: Tx, account_id: str) -> str:
    """Give an account a new feed token (the old feed URL stops working); returns it."""
    feed_token = new_feed_token()
    tx.execute("UPDATE accounts SET feed_token = ? WHERE id = ?", (feed_token, account_id))
    return feed_token


def revoke_feed_token(tx: Tx, account_id: str) -> None:
    """Make the account's feed URL stop working, without giving it a new one."""
    tx.execute("UPDATE accounts SET feed_token = NULL WHERE id = ?", (account_id,))


def retire_account(tx: Tx, account_id: str, now: str | None = None) -> None:
    """Revoke every token of an account for good; what it wrote stays, signed with its name."""
    # The hash becomes a value no SHA-256 hex digest equals (and stays unique), so the old token
    # fails even where a lookup forgot the retired_at condition.
    tx.execute(
        "UPDATE accounts SET retired_at = ?, feed_token = NULL, token_hash = 'retired:' || id WHERE id = ?",
        (now or utcnow(), account_id),
    )


def set_expiry(tx: Tx, account_id: str, expires_at: str | None) -> None:
    """Make an account's tokens stop working at this RFC 3339 UTC time (None: never)."""
    tx.execute("UPDATE accounts SET expires_at = ? WHERE id = ?", (expires_at, account_id))


def set_group_members(tx: Tx, event_id: str, group_id: str, account_ids: list[str]) -> None:
    """Make exactly these participants the group's members; former members are left without a group."""
    tx.execute(
        "UPDATE accounts SET group_id = NULL WHERE event_id = ? AND group_id = ? AND role = 'participant'",
        (event_id, group_id),
    )
    tx.executemany(
        "UPDATE accounts SET group_id = ? WHERE event_id = ? AND id = ?",
        [(group_id, event_id, account_id) for account_id in account_ids],
    )


def group_sizes(tx: Tx, event_id: str) -> dict[str, int]:
    """How many participants each group of the event has (groups with none are absent)."""
    rows = tx.execute(
        "SELECT group_id, COUNT(*) FROM accounts WHERE event_id = ? AND role = 'participant' AND group_id IS NOT NULL"
        " GROUP BY group_id",
        (event_id,),
    )
    return {str(r[0]): int(r[1]) for r in rows}


def usable_accounts(tx: Tx, event_id: str, role: str, now: str | None = None) -> list[Account]:
    """The accounts of an event with this role whose tokens still work (not retired, not expired)."""
    rows = tx.execute(
        f"{_SELECT_ACCOUNT[tx.dialect]} WHERE a.event_id = ? AND a.role = ? AND {_USABLE} ORDER BY a.id",
        (event_id, role, now or utcnow()),
    ).fetchall()
    return [_account(row) for row in rows]
