"""Accounts and their bearer tokens."""

import hashlib
import secrets
import sqlite3

from schemas.accounts import Account, NewAccount
from server.storage.db import utcnow


def hash_token(token: str) -> str:
    """SHA-256 of a token. Tokens carry 256 random bits, so a plain hash cannot be brute-forced."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    """A fresh bearer token."""
    return "sv_" + secrets.token_urlsafe(32)


def create_account(conn: sqlite3.Connection, account: Account, token: str | None = None) -> NewAccount:
    """Store an account and return it with its token; the token is never readable again."""
    token = token or new_token()
    conn.execute(
        "INSERT INTO accounts (id, event_id, name, role, group_id, language, country, organization, token_hash,"
        " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
        ),
    )
    conn.executemany(
        "INSERT INTO account_sites (account_id, event_id, site_id) VALUES (?, ?, ?)",
        [(account.id, account.event_id, site_id) for site_id in account.site_ids],
    )
    return NewAccount(**{f: getattr(account, f) for f in account.__struct_fields__}, token=token)


_SELECT_ACCOUNT = (
    "SELECT a.*, (SELECT group_concat(site_id, char(31)) FROM account_sites s WHERE s.account_id = a.id) AS sites"
    " FROM accounts a"
)


def _account(row: sqlite3.Row) -> Account:
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


def account_by_token(conn: sqlite3.Connection, token: str) -> Account | None:
    """The account a bearer token belongs to, or None.

    The lookup is by hash, so comparing does not leak the token through timing: an attacker
    controls the input of SHA-256, not the bytes compared.
    """
    row = conn.execute(f"{_SELECT_ACCOUNT} WHERE a.token_hash = ?", (hash_token(token),)).fetchone()
    return None if row is None else _account(row)


def get_account(conn: sqlite3.Connection, account_id: str) -> Account | None:
    """One account, or None."""
    row = conn.execute(f"{_SELECT_ACCOUNT} WHERE a.id = ?", (account_id,)).fetchone()
    return None if row is None else _account(row)


def list_accounts(conn: sqlite3.Connection, event_id: str) -> list[Account]:
    """Every account of an event."""
    rows = conn.execute(f"{_SELECT_ACCOUNT} WHERE a.event_id = ? ORDER BY a.id", (event_id,)).fetchall()
    return [_account(row) for row in rows]


def rotate_token(conn: sqlite3.Connection, account_id: str) -> str:
    """Give an account a new token, invalidating the old one; returns the new token."""
    token = new_token()
    conn.execute("UPDATE accounts SET token_hash = ? WHERE id = ?", (hash_token(token), account_id))
    return token


def set_group_members(conn: sqlite3.Connection, event_id: str, group_id: str, account_ids: list[str]) -> None:
    """Make exactly these participants the group's members; former members are left without a group."""
    conn.execute(
        "UPDATE accounts SET group_id = NULL WHERE event_id = ? AND group_id = ? AND role = 'participant'",
        (event_id, group_id),
    )
    conn.executemany(
        "UPDATE accounts SET group_id = ? WHERE event_id = ? AND id = ?",
        [(group_id, event_id, account_id) for account_id in account_ids],
    )


def group_sizes(conn: sqlite3.Connection, event_id: str) -> dict[str, int]:
    """How many participants each group of the event has (groups with none are absent)."""
    rows = conn.execute(
        "SELECT group_id, COUNT(*) FROM accounts WHERE event_id = ? AND role = 'participant' AND group_id IS NOT NULL"
        " GROUP BY group_id",
        (event_id,),
    )
    return {str(r[0]): int(r[1]) for r in rows}
