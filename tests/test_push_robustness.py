"""One mutation never wedges a device; a device's clock never loses its work; a busy or full
database is answered 503/507 promptly with nothing written.

Failures are caused for real where SQLite can cause them: a trigger that raises inside the
database (an unexpected constraint failure), another connection holding the write lock, and
SQLite's own size limit (`PRAGMA max_page_count`), which fails a write exactly as a full disk does
(SQLITE_FULL).
"""

import contextlib
import errno
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec
import psycopg
import pytest
from litestar import Litestar
from litestar.testing import TestClient

from schemas.sync import Feedback, Note, PushRequest
from server.errors import DatabaseBusyError, DatabaseUnavailableError, InsufficientStorageError
from server.services.push import push as push_service
from server.settings import Settings
from server.storage.accounts import get_account
from server.storage.db import Database, storage_failure
from tests.conftest import Seeded, make_app
from tests.sqlite_connections import on_each_connection
from tests.sync_helpers import (
    CLIENT_A,
    CLIENT_B,
    G1_SITE,
    G1_VISIT,
    PROBLEM,
    PUSH_URL,
    Client,
    execute,
    feedback_put,
    mutation,
    note_put,
    pull,
    push,
    rows,
    scalar,
    snapshot,
    uid,
)

pytestmark = pytest.mark.both_backends  # CI runs it on SQLite, then on PostgreSQL

OTHER_EVENT = "lisbon-2026"
ARABIC = "ملاحظة من الزيارة"
VIETNAMESE = "Ghi chú của Nguyễn Thị Thu Hà"


def statuses(result: dict[str, Any]) -> list[str]:
    return [r["status"] for r in result["results"]]


@pytest.fixture
def other_event(seeded: Seeded) -> None:
    """A second event on the same server, holding a note and a feedback of its own participant."""
    execute(  # its account rows are not needed for the clash: foreign keys off
        seeded,
        (
            "INSERT INTO events (id, title, starts_on, ends_on, timezone) VALUES (?, 'Lisboa', '2026-05-04',"
            " '2026-05-06', 'Europe/Lisbon')",
            (OTHER_EVENT,),
        ),
        (
            "INSERT INTO feedback (id, event_id, author_id, visit_id, rating, updated_at) VALUES (?, ?, 'lx-p1',"
            " 'lx-visit', 2, '2026-05-04T10:00:00Z')",
            (uid(0xF00D), OTHER_EVENT),
        ),
        (
            "INSERT INTO notes (id, event_id, author_id, visit_id, body, updated_at) VALUES (?, ?, 'lx-p1',"
            " 'lx-visit', 'segredo', '2026-05-04T10:00:00Z')",
            (uid(0xBEEF), OTHER_EVENT),
        ),
        checked=False,
    )


# --- item 1: one mutation never wedges the device ------------------------------------------------------


@pytest.mark.parametrize(
    "clash",
    [
        pytest.param(feedback_put(1, uid(0xF00D), rating=5), id="feedback-id-of-another-event"),
        pytest.param(note_put(1, uid(0xBEEF), body="x"), id="note-id-of-another-event"),
    ],
)
def test_an_id_taken_in_another_event_is_rejected_not_found_without_saying_where(
    client: Client, seeded: Seeded, other_event: None, clash: dict[str, Any]
) -> None:
    headers = seeded.headers("participant", group="G1")
    before = snapshot(seeded)
    result = push(client, headers, [clash, note_put(2, uid(2), body=VIETNAMESE)])
    assert statuses(result) == ["rejected", "applied"]
    error = result["results"][0]["error"]
    assert (error["type"], error["status"]) == (PROBLEM + "not-found", 404)
    assert OTHER_EVENT not in error["detail"]
    assert "of yours" in error["detail"]  # the same words as for a record that does not exist at all
    # The other event's records are untouched; the batch went on.
    after = snapshot(seeded)
    assert after["feedback"] == before["feedback"]
    assert scalar(seeded, "SELECT body FROM notes WHERE id = ?", uid(2)) == VIETNAMESE
    # Retrying answers duplicates: the device is not wedged.
    again = push(client, headers, [clash, note_put(2, uid(2), body=VIETNAMESE), note_put(3, uid(3))])
    assert statuses(again) == ["duplicate", "duplicate", "applied"]


@pytest.mark.parametrize(
    ("starts_at", "ends_at"),
    [
        pytest.param("9999-12-31T23:00:00-12:00", "9999-12-31T23:30:00-12:00", id="past-year-9999-in-utc"),
        pytest.param("0001-01-01T00:30:00+14:00", "0001-01-01T01:00:00+14:00", id="before-year-1-in-utc"),
    ],
)
def test_a_visit_whose_utc_instant_does_not_exist_is_rejected_and_the_batch_goes_on(
    client: Client, seeded: Seeded, starts_at: str, ends_at: str
) -> None:
    headers = seeded.headers("organizer")
    visit = {"id": "far-away", "title": "Molto lontano", "starts_at": starts_at, "ends_at": ends_at, "group_ids": []}
    result = push(client, headers, [mutation(1, "visit.put", visit), note_put(2, uid(2), visit_id=G1_VISIT)])
    assert statuses(result) == ["rejected", "applied"]
    assert result["results"][0]["error"]["type"] == PROBLEM + "invalid-visit"
    assert scalar(seeded, "SELECT COUNT(*) FROM visits WHERE id = 'far-away'") == 0


def _fail_inside_the_database(seeded: Seeded, table: str, when: str) -> None:
    # A trigger raising an integrity error from inside the database (SQLite's RAISE(ABORT),
    # PostgreSQL's SQLSTATE 23000): the kind of failure no applier expects, raised by the real
    # database at the real statement.
    if not seeded.url:
        execute(
            seeded,
            f"CREATE TRIGGER wedge_{table} BEFORE INSERT ON {table} WHEN {when}"
            " BEGIN SELECT RAISE(ABORT, 'constraint failed inside the database'); END",
        )
        return
    execute(
        seeded,
        f"CREATE FUNCTION wedge_{table}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
        " RAISE EXCEPTION 'constraint failed inside the database' USING ERRCODE = 'integrity_constraint_violation';"
        " END $$",
        f"CREATE TRIGGER wedge_{table} BEFORE INSERT ON {table} FOR EACH ROW"
        f" WHEN ({'true' if when == '1' else when}) EXECUTE FUNCTION wedge_{table}()",
    )


@pytest.mark.parametrize(
    ("table", "when", "batch", "expected"),
    [
        pytest.param(
            "notes",
            "NEW.body = 'boom'",
            [note_put(1, uid(1), body=ARABIC), note_put(2, uid(2), body="boom"), note_put(3, uid(3))],
            ["applied", "rejected", "applied"],
            id="plain-new-notes-written-together",
        ),
        pytest.param(
            "feedback",
            "1",
            [note_put(1, uid(1)), feedback_put(2, uid(2), rating=4, comment="Très bien"), note_put(3, uid(3))],
            ["applied", "rejected", "applied"],
            id="feedback-through-its-applier",
        ),
        pytest.param(
            "notes",
            "NEW.body = 'boom'",
            [
                note_put(
                    1, uid(1), body="boom", attachments=[{"sha256": "a" * 64, "media_type": "image/png", "bytes": 9}]
                )
            ],
            ["rejected"],
            id="note-with-a-photo",
        ),
    ],
)
def test_an_unexpected_failure_rejects_that_mutation_only_with_a_correlation_id_in_the_log(
    client: Client,
    seeded: Seeded,
    caplog: pytest.LogCaptureFixture,
    table: str,
    when: str,
    batch: list[dict[str, Any]],
    expected: list[str],
) -> None:
    _fail_inside_the_database(seeded, table, when)
    headers = seeded.headers("participant", group="G1")
    with caplog.at_level(logging.ERROR, logger="studyvisit.push"):
        result = push(client, headers, batch)
    assert statuses(result) == expected
    assert result["last_mutation_id"] == len(batch)
    [failed] = [r for r in result["results"] if r["status"] == "rejected"]
    error = failed["error"]
    assert error["type"] == PROBLEM + "internal-error"
    assert "inside the database" not in error["detail"]  # nothing of the server's insides
    assert error["instance"] == f"urn:uuid:{error['correlation_id']}"
    [record] = [r for r in caplog.records if error["correlation_id"] in r.getMessage()]
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None  # the traceback is in the log
    applied = [
        m["args"]["id"] for m, s in zip(batch, expected, strict=True) if s == "applied" and m["type"] == "note.put"
    ]
    assert sorted(r[0] for r in rows(seeded, "SELECT id FROM notes")) == sorted(applied)
    # Its id is used up: the retry is all duplicates, later mutations go through.
    again = push(client, headers, [*batch, note_put(len(batch) + 1, uid(99))])
    assert statuses(again) == ["duplicate"] * len(batch) + ["applied"]


# --- item 2: the device clock is displayed, never a reason to refuse ------------------------------------

RECEIVED = "2025-12-10T14:00:00.000000Z"


@pytest.mark.parametrize(
    ("client_time", "skewed"),
    [
        pytest.param("2999-01-01T00:00:00+00:00", True, id="years-ahead"),
        pytest.param("2025-12-12T15:00:00+01:00", True, id="two-days-ahead"),
        pytest.param("1970-01-01T00:00:00Z", True, id="before-2000"),
        pytest.param("2025-12-10T10:00:00", True, id="no-offset"),
        pytest.param("last tuesday", True, id="unparseable"),
        pytest.param("2025-13-40T25:61:00Z", True, id="impossible-date"),
        pytest.param("9999-12-31T23:00:00-12:00", True, id="past-year-9999-in-utc"),
        pytest.param("2025-12-10T15:02:11+01:00", False, id="plausible-europe-rome"),
        pytest.param("2025-12-03T09:00:00+07:00", False, id="a-week-old-from-offline-vietnam"),
    ],
)
def test_a_mutation_is_applied_whatever_the_device_clock_says_and_its_time_is_kept_as_sent(
    seeded: Seeded, client_time: str, skewed: bool
) -> None:
    account = next(a for a in seeded.accounts.values() if a.role == "participant" and a.group_id == "G1")
    request = msgspec.convert(
        {
            "client_id": CLIENT_A,
            "protocol": 1,
            "mutations": [
                mutation(1, "note.put", {"id": uid(1), "visit_id": G1_VISIT, "body": ARABIC}, client_time),
                mutation(2, "feedback.put", {"id": uid(2), "visit_id": G1_VISIT, "rating": 4}, client_time),
            ],
        },
        PushRequest,
    )
    db = seeded.store()
    try:
        with db.read() as conn:
            me = get_account(conn, account.id)
        assert me is not None
        result = push_service(db, me, request, now=datetime.fromisoformat(RECEIVED))
    finally:
        db.close()
    assert [r.status for r in result.results] == ["applied", "applied"]
    for table in ("notes", "feedback"):
        [row] = rows(seeded, f"SELECT client_time, received_at, clock_skewed FROM {table}")
        assert tuple(row) == (client_time, RECEIVED, skewed)  # SQLite's 0/1 equal PostgreSQL's booleans


def test_pulled_notes_and_feedback_carry_the_device_time_the_receive_time_and_the_skew_flag(
    client: Client, seeded: Seeded
) -> None:
    headers = seeded.headers("participant", group="G1")
    far = "2999-01-01T00:00:00+00:00"
    push(
        client,
        headers,
        [
            mutation(1, "note.put", {"id": uid(1), "visit_id": G1_VISIT, "body": VIETNAMESE}, far),
            mutation(2, "feedback.put", {"id": uid(2), "visit_id": G1_VISIT, "rating": 5}, far),
            mutation(3, "note.put", {"id": uid(3), "site_id": G1_SITE}, "2025-12-10T15:02:11+01:00"),
        ],
    )
    pulled: dict[str, dict[str, Any]] = {}
    cursor = ""
    while True:
        page = pull(client, headers, cursor)
        pulled |= {c["id"]: c["data"] for c in page["changes"] if c["entity"] in ("note", "feedback")}
        cursor = page["cursor"]
        if not page["has_more"]:
            break
    note, feedback, fine = (
        msgspec.convert(pulled[uid(1)], Note),
        msgspec.convert(pulled[uid(2)], Feedback),
        pulled[uid(3)],
    )
    assert (note.client_time, note.clock_skewed, note.body) == (far, True, VIETNAMESE)
    assert (feedback.client_time, feedback.clock_skewed) == (far, True)
    assert note.received_at
    assert note.received_at.endswith("Z")
    assert note.received_at < far
    assert (fine["clock_skewed"], fine["client_time"]) == (False, "2025-12-10T15:02:11+01:00")
    # An old client's Note type, without the new fields, still decodes the record.
    legacy = msgspec.defstruct("LegacyNote", [("id", str), ("body", str)])
    assert msgspec.convert(pulled[uid(1)], legacy).body == VIETNAMESE  # type: ignore[attr-defined]


# --- item 11: busy and full answer 503/507 promptly, nothing written --------------------------------------


@pytest.fixture
def client_with(seeded: Seeded) -> Iterator[Callable[..., Client]]:
    clients: list[TestClient[Litestar]] = []

    def build(**settings: Any) -> Client:
        test_client = TestClient(app=make_app(seeded, **settings))
        clients.append(test_client)
        return test_client.__enter__()

    yield build
    for test_client in clients:
        test_client.__exit__(None, None, None)


def test_a_write_lock_held_elsewhere_is_answered_503_with_retry_after_and_nothing_written(
    client_with: Callable[..., Client], seeded: Seeded
) -> None:
    client = client_with(db_lock_timeout_s=0.2)
    headers = seeded.headers("participant", group="G1")
    push(client, headers, [note_put(1, uid(1))])
    before = snapshot(seeded)
    holder = _hold_the_write_lock(seeded)  # another process's long write transaction
    try:
        response = client.post(
            PUSH_URL,
            json={"client_id": CLIENT_A, "protocol": 1, "mutations": [note_put(2, uid(2), body=ARABIC)]},
            headers=headers,
        )
        health = client.get("/health")
    finally:
        holder.close()  # rolls back
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["type"] == PROBLEM + "database-busy"
    assert int(response.headers["retry-after"]) > 0
    assert (health.status_code, health.json()["type"]) == (503, PROBLEM + "database-busy")
    assert snapshot(seeded) == before
    # The lock is free again: the same push goes through, once.
    retry = push(client, headers, [note_put(2, uid(2), body=ARABIC)])
    assert statuses(retry) == ["applied"]


def _hold_the_write_lock(seeded: Seeded) -> sqlite3.Connection | psycopg.Connection[Any]:
    """Another connection in a write transaction that blocks every writer: SQLite's one write lock;
    on PostgreSQL, the tables a push and the health probe write, locked against writers (readers go on)."""
    if not seeded.url:
        holder = sqlite3.connect(seeded.path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        return holder
    pg_holder = psycopg.connect(seeded.url)
    pg_holder.execute("LOCK TABLE sync_clients, notes, health_probe IN EXCLUSIVE MODE")
    return pg_holder


@pytest.mark.sqlite_only  # one process's writers queue on its own lock before SQLite's; PostgreSQL's pool has no queue
def test_a_write_queued_behind_a_long_one_in_this_process_is_answered_503_not_held(
    client_with: Callable[..., Client], seeded: Seeded
) -> None:
    # Writers of one process queue on a lock before SQLite's: that wait is bounded too.
    client = client_with(db_lock_timeout_s=0.2)
    db: Database = client.app.state.db
    inside, release = threading.Event(), threading.Event()

    def long_write() -> None:
        with db.write():
            inside.set()
            release.wait(30)

    holder = threading.Thread(target=long_write)
    holder.start()
    assert inside.wait(30)
    try:
        response = client.post(
            PUSH_URL,
            json={"client_id": CLIENT_A, "protocol": 1, "mutations": [note_put(1, uid(1))]},
            headers=seeded.headers("participant", group="G1"),
        )
    finally:
        release.set()
        holder.join(30)
    assert response.status_code == 503, response.text
    assert response.json()["type"] == PROBLEM + "database-busy"
    assert "retry-after" in response.headers
    assert scalar(seeded, "SELECT COUNT(*) FROM notes") == 0


def test_the_lock_timeout_is_a_setting_of_a_few_seconds() -> None:
    assert 0 < Settings().db_lock_timeout_s <= 10
    assert Settings.from_env(db_lock_timeout_s="0.5").db_lock_timeout_s == 0.5


class SizeLimit:
    """Every connection the app opens is capped at the file's current size, as if the disk were full."""

    def __init__(self) -> None:
        self.full = True
        self.opened: list[sqlite3.Connection] = []

    def cap(self, conn: sqlite3.Connection) -> None:
        """While the disk is full, a new connection may not grow the file past its current size."""
        if self.full:
            conn.execute(f"PRAGMA max_page_count = {conn.execute('PRAGMA page_count').fetchone()[0]}")
            self.opened.append(conn)

    def free(self) -> None:
        """Make room again: new connections are not capped, open ones are lifted."""
        self.full = False
        for conn in self.opened:
            with contextlib.suppress(sqlite3.ProgrammingError):  # closed since
                conn.execute("PRAGMA max_page_count = 1073741823")


@pytest.fixture
def size_limit(monkeypatch: pytest.MonkeyPatch) -> SizeLimit:
    limit = SizeLimit()
    on_each_connection(monkeypatch, limit.cap)
    return limit


@pytest.mark.sqlite_only  # SQLite's max_page_count stands in for a full disk (test_pg_database maps 53100)
def test_a_full_disk_is_answered_507_and_nothing_is_written(
    size_limit: SizeLimit, client_with: Callable[..., Client], seeded: Seeded
) -> None:
    client = client_with()
    headers = seeded.headers("participant", group="G1")
    before = snapshot(seeded)
    big = [note_put(i, uid(i), body=f"{ARABIC} {i} " * 400) for i in range(1, 21)]
    response = client.post(PUSH_URL, json={"client_id": CLIENT_B, "protocol": 1, "mutations": big}, headers=headers)
    assert response.status_code == 507, response.text
    assert response.json()["type"] == PROBLEM + "insufficient-storage"
    assert snapshot(seeded) == before
    size_limit.free()
    assert statuses(push(client, headers, big, client_id=CLIENT_B)) == ["applied"] * 20


@pytest.mark.sqlite_only  # SQLite's max_page_count stands in for a full disk (test_pg_database maps 53100)
def test_a_full_disk_in_the_middle_of_an_applier_fails_the_batch_not_the_mutation(
    size_limit: SizeLimit, client_with: Callable[..., Client], seeded: Seeded
) -> None:
    # A note with a photo goes through its applier under a savepoint: disk full there must not
    # be mistaken for a bug in that mutation (rejected, its id used up, the user's note lost).
    client = client_with()
    headers = seeded.headers("participant", group="G1")
    photo = [{"sha256": "b" * 64, "media_type": "image/jpeg", "bytes": 1234, "caption": "Ảnh"}]
    batch = [note_put(i, uid(i), body="x" * 15_000, attachments=photo) for i in range(1, 11)]
    response = client.post(PUSH_URL, json={"client_id": CLIENT_A, "protocol": 1, "mutations": batch}, headers=headers)
    assert response.status_code == 507, response.text
    assert scalar(seeded, "SELECT COUNT(*) FROM sync_clients") == 0
    size_limit.free()
    assert statuses(push(client, headers, batch)) == ["applied"] * 10


@pytest.mark.sqlite_only  # SQLite's own errors (PostgreSQL's: tests/test_pg_database.py)
@pytest.mark.parametrize(
    ("make", "expected"),
    [
        pytest.param(lambda p: _locked(p), DatabaseBusyError, id="sqlite-busy"),
        pytest.param(lambda p: _read_only(p), DatabaseUnavailableError, id="sqlite-readonly"),
        pytest.param(lambda p: _full(p), InsufficientStorageError, id="sqlite-full"),
        pytest.param(lambda p: OSError(errno.ENOSPC, "No space left on device"), InsufficientStorageError, id="enospc"),
        pytest.param(lambda p: _constraint(p), type(None), id="constraint-is-a-bug-not-an-outage"),
        pytest.param(lambda p: OSError(errno.ENOENT, "gone"), type(None), id="other-oserror"),
    ],
)
def test_storage_failures_are_told_apart_from_bugs(
    tmp_path: Path, make: Callable[[Path], BaseException], expected: type
) -> None:
    path = tmp_path / "x.db"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE t (x TEXT PRIMARY KEY)")
        conn.execute("INSERT INTO t VALUES ('a')")
    assert isinstance(storage_failure(make(path)), expected)


def _error_of(conn: sqlite3.Connection, sql: str, *params: Any) -> sqlite3.Error:
    try:
        conn.execute(sql, params)
    except sqlite3.Error as exc:
        return exc
    raise AssertionError(f"{sql} did not fail")


def _locked(path: Path) -> sqlite3.Error:
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    return _error_of(sqlite3.connect(path, timeout=0, isolation_level=None), "BEGIN IMMEDIATE")


def _read_only(path: Path) -> sqlite3.Error:
    return _error_of(sqlite3.connect(f"file:{path}?mode=ro", uri=True), "INSERT INTO t VALUES ('b')")


def _full(path: Path) -> sqlite3.Error:
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA max_page_count = {conn.execute('PRAGMA page_count').fetchone()[0]}")
    return _error_of(conn, "INSERT INTO t VALUES (?)", "z" * 100_000)


def _constraint(path: Path) -> sqlite3.Error:
    return _error_of(sqlite3.connect(path), "INSERT INTO t VALUES ('a')")
