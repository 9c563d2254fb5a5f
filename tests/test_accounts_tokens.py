"""Tokens that end: retire, rotate, expire, and a limit on failed authentications per address."""

import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from conftest import EVENT_ID, Seeded, make_app
from litestar import Litestar
from litestar.testing import TestClient

from server.ratelimit import FailedAuthLimiter
from server.storage import db as db_module
from server.storage.accounts import get_access, set_expiry
from server.storage.db import Database, SqliteTx, migrate
from server.storage.migrations import MIGRATIONS

pytestmark = pytest.mark.both_backends  # CI runs it on SQLite, then on PostgreSQL

ROOT = Path(__file__).resolve().parent.parent
E = f"/api/v1/events/{EVENT_ID}"
Client = TestClient[Litestar]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def studyvisit(*args: str | Path, on: Seeded | None = None) -> subprocess.CompletedProcess[str]:
    """The CLI, on the seeded database of either engine when given (through its environment)."""
    return subprocess.run(
        [sys.executable, "-m", "server.cli", *map(str, args)],
        cwd=ROOT,
        env={**os.environ, **on.env()} if on else None,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
        check=False,
    )


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- the limiter ----------------------------------------------------------------------------


def test_limiter_refuses_an_address_past_its_allowance_until_the_window_ends() -> None:
    clock = Clock()
    limiter = FailedAuthLimiter(3, 60, clock=clock)
    for _ in range(3):
        assert limiter.retry_after("192.0.2.1") is None
        limiter.record_failure("192.0.2.1")
    assert limiter.retry_after("192.0.2.1") == 60
    assert limiter.retry_after("192.0.2.2") is None  # another address is not affected
    clock.now += 59.5
    assert limiter.retry_after("192.0.2.1") == 1
    clock.now += 0.5
    assert limiter.retry_after("192.0.2.1") is None
    limiter.record_failure("192.0.2.1")
    assert limiter.retry_after("192.0.2.1") is None  # a new window, with one failure in it


def test_limiter_memory_is_bounded_by_its_number_of_addresses() -> None:
    limiter = FailedAuthLimiter(1, 60, clock=Clock(), max_addresses=100)
    for i in range(10_000):
        limiter.record_failure(f"2001:db8::{i:x}")
    assert len(limiter._windows) <= 100  # the bound is the point of the test
    assert limiter.retry_after("2001:db8::270f") == 60  # the latest addresses are kept


# --- over HTTP ------------------------------------------------------------------------------


@pytest.fixture
def limited(seeded: Seeded) -> Any:
    with TestClient(app=make_app(seeded, auth_failures_allowed=3, auth_failure_window_seconds=3600)) as client:
        yield client


def test_failed_authentications_from_one_address_get_429_with_retry_after(limited: Client, seeded: Seeded) -> None:
    for i in range(3):
        assert limited.get(f"{E}/sites", headers=bearer(f"sv_guess{i}")).status_code == 401
    refused = limited.get(f"{E}/sites", headers=bearer("sv_guess3"))
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["type"] == "urn:studyvisit:problem:too-many-requests"
    retry_after = int(refused.headers["retry-after"])
    assert 3500 < retry_after <= 3600
    # Guessing feed URLs counts against the same allowance.
    assert limited.get(f"/api/v1/feeds/svf_{'0' * 64}/itinerary.ics").status_code == 429


def test_a_valid_token_from_a_limited_address_still_works(limited: Client, seeded: Seeded) -> None:
    for i in range(5):
        limited.get(f"{E}/sites", headers=bearer(f"sv_guess{i}"))
    assert limited.get(f"{E}/sites", headers=bearer("sv_guess9")).status_code == 429
    token = seeded.token("participant")
    for _ in range(3):
        assert limited.get(f"{E}/sites", headers=bearer(token)).status_code == 200
    feed = urlsplit(limited.get("/api/v1/me", headers=bearer(token)).json()["feed_urls"]["ics"]).path
    assert limited.get(feed).status_code == 200


def test_requests_without_a_token_do_not_count_as_failed_authentications(limited: Client) -> None:
    for _ in range(10):
        assert limited.get(f"{E}/sites").status_code == 401
    assert limited.get(f"{E}/sites", headers=bearer("sv_first-guess")).status_code == 401


# --- expiry, retirement, rotation -------------------------------------------------------------


@pytest.mark.parametrize(
    ("expires_at", "status"),
    [("2000-01-01T00:00:00.000000Z", 401), ("2999-01-01T00:00:00.000000Z", 200), (None, 200)],
)
def test_tokens_stop_working_when_the_account_expires(
    seeded: Seeded, client: Client, expires_at: str | None, status: int
) -> None:
    account = seeded.first("host")
    db = seeded.store()
    with db.write() as tx:
        set_expiry(tx, account.id, expires_at)
    db.close()
    response = client.get("/api/v1/me", headers=bearer(account.token))
    assert response.status_code == status
    if status == 200:
        assert response.json()["expires_at"] == expires_at


def cli_lines(result: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def test_accounts_rotate_prints_a_new_token_once_and_the_old_one_stops_working(seeded: Seeded) -> None:
    account = seeded.first("organizer")
    (printed,) = cli_lines(studyvisit("accounts", "rotate", account.id, "--json", on=seeded))
    assert printed["id"] == account.id
    assert printed["token"] != account.token
    with TestClient(app=make_app(seeded)) as client:
        assert client.get("/api/v1/me", headers=bearer(account.token)).status_code == 401
        me = client.get("/api/v1/me", headers=bearer(printed["token"])).json()
        assert me["id"] == account.id
        # Rotating the bearer token leaves the calendar subscription alone.
        assert urlsplit(me["feed_urls"]["ics"]).path == urlsplit(printed["feed_urls"]["ics"]).path


def test_accounts_rotate_feed_gives_a_new_feed_url_and_keeps_the_bearer_token(seeded: Seeded) -> None:
    account = seeded.first("participant")
    with TestClient(app=make_app(seeded)) as client:
        old = client.get("/api/v1/me", headers=bearer(account.token)).json()["feed_urls"]
    (printed,) = cli_lines(studyvisit("accounts", "rotate", account.id, "--feed", "--json", on=seeded))
    assert "token" not in printed
    assert printed["feed_urls"]["ics"] != old["ics"]
    with TestClient(app=make_app(seeded)) as client:
        assert client.get(urlsplit(old["ics"]).path).status_code == 404
        assert client.get(urlsplit(printed["feed_urls"]["ics"]).path).status_code == 200
        assert client.get("/api/v1/me", headers=bearer(account.token)).status_code == 200


def test_accounts_retire_revokes_every_token_and_keeps_the_account(seeded: Seeded) -> None:
    account = seeded.first("participant", group="G3")
    with TestClient(app=make_app(seeded)) as client:
        feed = urlsplit(client.get("/api/v1/me", headers=bearer(account.token)).json()["feed_urls"]["ics"]).path
    result = studyvisit("accounts", "retire", account.id, on=seeded)
    assert result.returncode == 0, result.stderr
    with TestClient(app=make_app(seeded)) as client:
        assert client.get("/api/v1/me", headers=bearer(account.token)).status_code == 401
        assert client.get(feed).status_code == 404
    # Retired for good: rotating cannot bring it back.
    again = studyvisit("accounts", "rotate", account.id, on=seeded)
    assert again.returncode == 1
    assert "retired" in again.stderr
    assert "Traceback" not in again.stderr
    db = seeded.store()
    with db.read() as tx:
        access = get_access(tx, account.id)
    db.close()
    assert access is not None
    assert access.retired_at is not None
    assert access.feed_token is None


def test_accounts_retire_feed_revokes_only_the_feed_url(seeded: Seeded) -> None:
    account = seeded.first("host")
    assert studyvisit("accounts", "retire", account.id, "--feed", on=seeded).returncode == 0
    with TestClient(app=make_app(seeded)) as client:
        me = client.get("/api/v1/me", headers=bearer(account.token))
    assert me.status_code == 200
    assert me.json()["feed_urls"] is None


@pytest.mark.parametrize(
    ("when", "stored", "status"),
    [
        ("2001-02-03", "2001-02-03T00:00:00.000000Z", 401),
        ("2999-12-20T18:00:00+01:00", "2999-12-20T17:00:00.000000Z", 200),
        ("never", None, 200),
    ],
)
def test_accounts_expire_sets_when_the_tokens_stop_working(
    seeded: Seeded, when: str, stored: str | None, status: int
) -> None:
    account = seeded.first("organizer")
    result = studyvisit("accounts", "expire", account.id, when, on=seeded)
    assert result.returncode == 0, result.stderr
    db = seeded.store()
    with db.read() as tx:
        access = get_access(tx, account.id)
    db.close()
    assert access is not None
    assert access.expires_at == stored
    with TestClient(app=make_app(seeded)) as client:
        assert client.get("/api/v1/me", headers=bearer(account.token)).status_code == status


@pytest.mark.parametrize("args", [["no-such-account", "never"], ["p-nguyen-thi-hoa", "next tuesday"]])
def test_accounts_expire_refuses_bad_input_cleanly(seeded: Seeded, args: list[str]) -> None:
    result = studyvisit("accounts", "expire", *args, on=seeded)
    assert result.returncode in (1, 2)
    assert "Traceback" not in result.stderr
    assert result.stderr.strip()


def test_accounts_add_with_expires_prints_feed_urls_that_work(seeded: Seeded) -> None:
    (printed,) = cli_lines(
        studyvisit(
            "accounts", "add", "--event", EVENT_ID, "--name", "Kim Min-jun", "--role", "participant",
            "--group", "G3", "--expires", "2999-01-01", "--json", on=seeded,
        )
    )  # fmt: skip
    assert printed["feed_urls"]["webcal"].startswith("webcal://127.0.0.1:8000/api/v1/feeds/svf_")
    with TestClient(app=make_app(seeded)) as client:
        me = client.get("/api/v1/me", headers=bearer(printed["token"])).json()
        assert me["expires_at"] == "2999-01-01T00:00:00.000000Z"
        assert client.get(urlsplit(printed["feed_urls"]["ics"]).path).status_code == 200


def test_demo_prints_feed_urls_and_keeps_them_across_runs(blank: Seeded) -> None:
    text = studyvisit("demo", "--no-serve", "--port", "8123", on=blank).stdout
    urls = re.findall(r"webcal://127\.0\.0\.1:8123/api/v1/feeds/svf_[0-9a-f]{64}/itinerary\.ics", text)
    assert len(urls) == 4  # one per role, and the participant's again under "Subscribe"
    assert "curl http://127.0.0.1:8123/api/v1/feeds/svf_" in text
    second = cli_lines(studyvisit("demo", "--json", "--no-serve", "--port", "8123", on=blank))
    assert [a["feed_urls"]["webcal"] for a in second] == urls[:3]
    with TestClient(app=make_app(blank)) as client:
        for account in second:
            assert client.get(urlsplit(account["feed_urls"]["schedule_xml"]).path).status_code == 200


@pytest.mark.sqlite_only  # SQLite's migration 7 on a SQLite file; PostgreSQL's schema starts with feed tokens
def test_migration_gives_existing_accounts_distinct_feed_tokens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "old.db"
    monkeypatch.setattr(db_module, "MIGRATIONS", [m for m in MIGRATIONS if m.version < 7])
    db = Database(path)
    migrate(db)
    with db.write() as conn:
        conn.execute(
            "INSERT INTO events (id, title, starts_on, ends_on, timezone) VALUES ('e', 'E', '2025-12-10', "
            "'2025-12-12', 'Europe/Rome')"
        )
        for i in range(3):
            conn.execute(
                "INSERT INTO accounts (id, event_id, name, role, token_hash, created_at) VALUES (?, 'e', ?, "
                "'participant', ?, '2025-01-01T00:00:00Z')",
                (f"a{i}", f"Người {i}", f"hash{i}"),
            )
    monkeypatch.setattr(db_module, "MIGRATIONS", MIGRATIONS)
    assert migrate(db) == [m.version for m in MIGRATIONS if m.version >= 7]
    tokens = [get_access(SqliteTx(db.conn), f"a{i}") for i in range(3)]
    db.close()
    feed_tokens = [t.feed_token for t in tokens if t is not None]
    assert len(set(feed_tokens)) == 3
    assert all(t is not None and re.fullmatch(r"svf_[0-9a-f]{64}", t) for t in feed_tokens)
    conn = sqlite3.connect(path)
    with pytest.raises(sqlite3.IntegrityError):  # the selector is unique
        conn.execute("UPDATE accounts SET feed_token = ? WHERE id = 'a1'", (feed_tokens[0],))
    conn.close()
