"""The PostgreSQL `Store` (server/storage/pg/database.py) against the machine's real PostgreSQL, and the
storage functions' SQL run on both engines: each test on a fresh SQLite file or a fresh PostgreSQL
schema (dropped after)."""

import os
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import msgspec
import psycopg
import pytest
from psycopg import errors, sql

from schemas.accounts import Account, NewAccount
from schemas.places import Event
from schemas.sync import MutationOutcome
from server.errors import DatabaseBusyError, DatabaseUnavailableError, InsufficientStorageError
from server.fixtures import DEMO_FIXTURE, load_fixture, read_fixture
from server.storage import (
    accounts,
    blob_refs,
    blobs,
    catalog,
    feedback_store,
    notes_store,
    pull_positions,
    purge,
    records,
    sync_feed,
)
from server.storage.changes import content_version, record_change
from server.storage.db import Database, migrate, utcnow
from server.storage.pg.database import PgDatabase, pg_storage_failure, translate
from server.storage.pg.migrate import migrate as pg_migrate

SERVER = os.environ.get("STUDYVISIT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
EVENT = "turin-sse-2025"
BACKENDS = ["sqlite", "postgres"]


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A URL whose tables live in a fresh schema of this test's own."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(SERVER, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    except psycopg.OperationalError as error:  # a failure, never a skip: CI has PostgreSQL
        pytest.fail(f"PostgreSQL is not reachable at {SERVER}: {error}")
    yield f"{SERVER}?options=-csearch_path%3D{schema}"
    with psycopg.connect(SERVER, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


def open_store(backend: str, tmp_path: Path, request: pytest.FixtureRequest, **options: Any) -> Any:
    """A migrated, empty database of either engine, closed after the test."""
    if backend == "sqlite":
        store: Any = Database(tmp_path / "test.db")
        migrate(store)
    else:
        url = request.getfixturevalue("pg_url")
        pg_migrate(url)
        store = PgDatabase(url, **options)
    request.addfinalizer(store.close)
    return store


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    return open_store(request.param, tmp_path, request)


class Demo(msgspec.Struct):
    store: Any
    accounts: list[NewAccount]

    def first(self, role: str) -> NewAccount:
        return next(a for a in self.accounts if a.role == role)


@pytest.fixture(params=BACKENDS)
def demo(request: pytest.FixtureRequest, tmp_path: Path) -> Demo:
    """The Turin demo event, loaded by the fixture loader through storage functions."""
    store = open_store(request.param, tmp_path, request)
    return Demo(store, load_fixture(store, read_fixture(DEMO_FIXTURE)))


def probes(store: Any) -> list[int]:
    with store.read() as tx:
        return [int(r[0]) for r in tx.execute("SELECT id FROM health_probe ORDER BY id")]


def add_probe(tx: Any, probe_id: int) -> None:
    tx.execute("INSERT INTO health_probe (id, at) VALUES (?, ?)", (probe_id, utcnow()))


class Undone(Exception):
    """Raised by a test inside a unit of work, to see what is undone."""


def then_fail(work: Callable[[], object]) -> None:
    work()
    raise Undone


# --- the Store contract, on both engines -------------------------------------------------------


def test_a_write_is_committed_when_its_block_ends(store: Any) -> None:
    with store.write() as tx:
        add_probe(tx, 1)
    assert probes(store) == [1]


def test_an_exception_in_a_write_rolls_all_of_it_back(store: Any) -> None:
    with pytest.raises(Undone), store.write() as tx:
        then_fail(lambda: add_probe(tx, 1))
    assert probes(store) == []


def test_a_trial_keeps_nothing(store: Any) -> None:
    with store.trial() as tx:
        add_probe(tx, 1)
        assert [r[0] for r in tx.execute("SELECT id FROM health_probe")] == [1]  # seen inside it
    assert probes(store) == []


def test_a_savepoint_undoes_only_what_happened_inside_it(store: Any) -> None:
    with store.write() as tx:
        add_probe(tx, 1)
        with pytest.raises(Undone), tx.savepoint():
            then_fail(lambda: add_probe(tx, 2))
        with tx.savepoint():
            add_probe(tx, 3)
    assert probes(store) == [1, 3]


def test_a_failed_statement_in_a_savepoint_leaves_the_transaction_usable(store: Any) -> None:
    with store.write() as tx:
        add_probe(tx, 1)
        with pytest.raises(Exception, match=r"(?i)unique|duplicate"), tx.savepoint():
            add_probe(tx, 1)
        add_probe(tx, 2)
    assert probes(store) == [1, 2]


def test_a_read_sees_one_snapshot_while_a_write_commits(store: Any) -> None:
    with store.read() as tx:
        assert tx.execute("SELECT COUNT(*) FROM health_probe").fetchone()[0] == 0
        done = threading.Event()

        def write() -> None:
            with store.write() as other:
                add_probe(other, 1)
            done.set()

        writer = threading.Thread(target=write)
        writer.start()
        writer.join(30)
        assert done.is_set()
        assert tx.execute("SELECT COUNT(*) FROM health_probe").fetchone()[0] == 0
    assert probes(store) == [1]


def test_percent_signs_and_question_marks_in_literals_are_text(store: Any) -> None:
    with store.read() as tx:
        row = tx.execute("SELECT '100%' AS p, 'why?' AS q, 'it''s ?' AS r, ? AS v, 7 % 4 AS m", ("a?%",)).fetchone()
        assert (row["p"], row["q"], row["r"], row["v"], row["m"]) == ("100%", "why?", "it's ?", "a?%", 3)
        assert (row[0], row.keys()) == ("100%", ["p", "q", "r", "v", "m"])
        assert tx.execute("SELECT 'no parameters: 5%'").fetchone()[0] == "no parameters: 5%"


def test_executemany_counts_every_row_it_changed(store: Any) -> None:
    with store.write() as tx:
        tx.executemany("INSERT INTO health_probe (id, at) VALUES (?, ?)", [(i, utcnow()) for i in range(5)])
        cur = tx.executemany("UPDATE health_probe SET at = ? WHERE id = ?", [(utcnow(), i) for i in (1, 3, 9)])
        assert cur.rowcount == 2
    assert probes(store) == [0, 1, 2, 3, 4]


def test_check_writable_and_ping_answer(store: Any) -> None:
    store.ping()
    store.check_writable()
    store.check_writable()
    with store.read() as tx:
        assert tx.execute("SELECT COUNT(*) FROM health_probe").fetchone()[0] == 1


# --- PostgreSQL: placeholders, values, failures --------------------------------------------------


@pytest.mark.parametrize(
    ("storage_sql", "psycopg_sql"),
    [
        ("SELECT * FROM t WHERE a = ? AND b IN (?, ?)", "SELECT * FROM t WHERE a = %s AND b IN (%s, %s)"),
        ("SELECT '50%', 'a?b', 5 % 2 WHERE x = ?", "SELECT '50%%', 'a?b', 5 %% 2 WHERE x = %s"),
        ("SELECT 'it''s ?', \"odd?name\" FROM t", "SELECT 'it''s ?', \"odd?name\" FROM t"),
        ("SELECT 1 -- why? 100%\n, ?", "SELECT 1 -- why? 100%%\n, %s"),
        ("SELECT group_ids @> jsonb_build_array(?::text)", "SELECT group_ids @> jsonb_build_array(%s::text)"),
    ],
)
def test_placeholders_are_translated_outside_quotes_and_comments(storage_sql: str, psycopg_sql: str) -> None:
    assert translate(storage_sql) == psycopg_sql
    assert translate(storage_sql) is translate(storage_sql)  # translated once per statement text


def test_values_read_back_as_sqlite_gives_them(pg_url: str, request: pytest.FixtureRequest) -> None:
    db = PgDatabase(pg_url)
    request.addfinalizer(db.close)
    with db.write() as tx:
        tx.execute("CREATE TABLE kinds (id integer PRIMARY KEY, j jsonb, at timestamptz, d date, b boolean, t text)")
        tx.executemany(
            "INSERT INTO kinds VALUES (?, ?, ?, ?, ?, ?)",
            [
                (1, '{"ar": "مرحبا", "vi": "Tiếng Việt"}', "2025-12-01T09:00:00.123456Z", "2025-12-01", True, "مرحبا"),
                (2, "[1, 2]", "2025-12-01T10:30:00+01:30", "2026-02-28", False, "Nguyễn Thị Hoa"),
                (3, "[]", "2025-12-01T09:00:00.1Z", "2025-01-01", False, ""),
            ],
        )
    with db.read() as tx:
        rows = [dict(r) for r in tx.execute("SELECT * FROM kinds ORDER BY id")]
    assert rows == [
        {"id": 1, "j": '{"ar": "مرحبا", "vi": "Tiếng Việt"}', "at": "2025-12-01T09:00:00.123456Z",
         "d": "2025-12-01", "b": True, "t": "مرحبا"},
        {"id": 2, "j": "[1, 2]", "at": "2025-12-01T09:00:00.000000Z", "d": "2026-02-28", "b": False,
         "t": "Nguyễn Thị Hoa"},
        {"id": 3, "j": "[]", "at": "2025-12-01T09:00:00.100000Z", "d": "2025-01-01", "b": False, "t": ""},
    ]  # fmt: skip


def test_an_instant_read_back_is_what_utcnow_wrote(pg_url: str, request: pytest.FixtureRequest) -> None:
    db = PgDatabase(pg_url)
    request.addfinalizer(db.close)
    pg_migrate(pg_url)
    now = utcnow()
    with db.write() as tx:
        tx.execute("INSERT INTO health_probe (id, at) VALUES (1, ?)", (now,))
    with db.read() as tx:
        assert tx.execute("SELECT at FROM health_probe").fetchone()[0] == now


def test_a_lock_held_past_the_lock_timeout_is_database_busy(pg_url: str, request: pytest.FixtureRequest) -> None:
    db = PgDatabase(pg_url, lock_timeout=0.2)
    request.addfinalizer(db.close)
    pg_migrate(pg_url)
    db.check_writable()
    with psycopg.connect(pg_url) as holder:
        holder.execute("SELECT * FROM health_probe WHERE id = 1 FOR UPDATE")
        with pytest.raises(DatabaseBusyError):
            db.check_writable()
    db.check_writable()  # the lock is gone, and so is the failure


def test_a_killed_connection_is_unavailable_and_the_pool_recovers(pg_url: str, request: pytest.FixtureRequest) -> None:
    db = PgDatabase(pg_url, min_size=1, max_size=1)
    request.addfinalizer(db.close)
    with db.read() as tx:
        pid = tx.execute("SELECT pg_backend_pid()").fetchone()[0]
    with psycopg.connect(SERVER, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    with pytest.raises(DatabaseUnavailableError), db.read() as tx:
        tx.execute("SELECT 1").fetchone()
    db.ping()
    with db.read() as tx:
        assert tx.execute("SELECT pg_backend_pid()").fetchone()[0] != pid


def test_a_read_only_database_is_unavailable_for_writes(pg_url: str, request: pytest.FixtureRequest) -> None:
    pg_migrate(pg_url)
    db = PgDatabase(f"{pg_url}%20-cdefault_transaction_read_only%3Don")
    request.addfinalizer(db.close)
    db.ping()
    with pytest.raises(DatabaseUnavailableError):
        db.check_writable()


def test_an_unreachable_server_is_unavailable() -> None:
    with pytest.raises(DatabaseUnavailableError):
        PgDatabase("postgresql://postgres@127.0.0.1:1/test", connect_timeout=0.5)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (errors.LockNotAvailable, DatabaseBusyError),
        (errors.SerializationFailure, DatabaseBusyError),
        (errors.DeadlockDetected, DatabaseBusyError),
        (errors.DiskFull, InsufficientStorageError),
        (errors.AdminShutdown, DatabaseUnavailableError),
        (errors.ReadOnlySqlTransaction, DatabaseUnavailableError),
        (errors.UniqueViolation, type(None)),
    ],
)
def test_engine_failures_map_to_the_domain_errors_sqlite_uses(error: type[Exception], expected: type) -> None:
    assert isinstance(pg_storage_failure(error("from the server")), expected)


def test_feed_positions_are_taken_at_commit_from_the_events_clock(pg_url: str, request: pytest.FixtureRequest) -> None:
    db = open_store("postgres", Path(), request)
    load_fixture(db, read_fixture(DEMO_FIXTURE))
    with db.read() as tx:
        clock = tx.execute("SELECT seq FROM feed_clocks WHERE event_id = ?", (EVENT,)).fetchone()[0]
        head = tx.execute("SELECT MAX(seq) FROM changes WHERE event_id = ?", (EVENT,)).fetchone()[0]
    assert clock == head > 0
    with db.write() as tx:
        record_change(tx, EVENT, "site", "triciclo", ["all"])
        record_change(tx, EVENT, "site", "triciclo", ["all"])  # one row, as on SQLite
        with pytest.raises(Undone), tx.savepoint():
            then_fail(lambda: record_change(tx, EVENT, "site", "barrito", ["all"]))
        assert tx.execute("SELECT seq FROM changes WHERE entity_id = 'triciclo'").fetchone()[0] < clock + 1
    with db.read() as tx:
        assert sync_feed.feed_page(tx, EVENT, ["all"], clock, 10) == [(clock + 1, "site", "triciclo")]
        assert tx.execute("SELECT seq FROM feed_clocks WHERE event_id = ?", (EVENT,)).fetchone()[0] == clock + 1


# --- storage functions on both engines ---------------------------------------------------------


def test_the_programme_reads_back(demo: Demo) -> None:
    with demo.store.read() as tx:
        event = catalog.get_event(tx, EVENT)
        sites = catalog.list_sites(tx, EVENT)
        g1 = catalog.list_visits(tx, EVENT, group_id="G1")
        at_triciclo = catalog.list_visits(tx, EVENT, site_ids=["triciclo"])
        assert catalog.get_site(tx, EVENT, "triciclo") == next(s for s in sites if s.id == "triciclo")
        assert [g.id for g in catalog.list_groups(tx, EVENT)] == ["G1", "G2", "G3"]
        assert catalog.get_visit(tx, EVENT, g1[0].id) == g1[0]
        assert catalog.next_visit_number(tx, EVENT) == 1 + max(v.number for v in catalog.list_visits(tx, EVENT))
        questions = catalog.list_questions(tx, EVENT)
        assert content_version(tx, EVENT) is not None
    fixture = read_fixture(DEMO_FIXTURE)
    assert event is not None
    assert event.starts_on == fixture.event.starts_on
    assert [s.name for s in sites] == sorted((s.name for s in fixture.sites), key=str.lower)
    assert {v.id for v in g1} == {v.id for v in fixture.visits if "G1" in v.group_ids}
    assert [v.starts_at for v in g1] == sorted(v.starts_at for v in g1)
    assert {v.id for v in at_triciclo} == {v.id for v in fixture.visits if v.site_id == "triciclo"}
    assert [q.id for q in questions] == [q.id for q in sorted(fixture.questions, key=lambda q: (q.position, q.id))]


def test_an_event_with_arabic_and_vietnamese_text_round_trips(store: Any) -> None:
    event = msgspec.convert(
        {"id": "hanoi", "title": "Tiếng Việt · العربية", "starts_on": "2026-03-01", "ends_on": "2026-03-05",
         "timezone": "Asia/Ho_Chi_Minh", "venue": "Nhà văn hóa"},
        Event,
    )  # fmt: skip
    with store.write() as tx:
        catalog.put_event(tx, event)
    with store.read() as tx:
        got = catalog.get_event(tx, "hanoi")
    assert got is not None
    assert msgspec.structs.replace(got, updated_at=None) == msgspec.structs.replace(event, updated_at=None)
    assert got.updated_at is not None


def test_accounts_and_their_tokens(demo: Demo) -> None:
    host = demo.first("host")
    participant = demo.first("participant")
    with demo.store.read() as tx:
        assert accounts.account_by_token(tx, host.token) == accounts.get_account(tx, host.id)
        found = accounts.account_by_feed_token(tx, participant.feed_token)
        assert found is not None
        assert found.id == participant.id
        assert accounts.get_account(tx, host.id).site_ids == host.site_ids  # type: ignore[union-attr]
        people = accounts.list_people(tx, EVENT)
        sizes = accounts.group_sizes(tx, EVENT)
        usable = accounts.usable_accounts(tx, EVENT, "participant")
    assert [p.id for p in people] == sorted(a.id for a in demo.accounts)
    assert all(p.devices == 0 and p.last_synced_at is None for p in people)
    assert sum(sizes.values()) == len(usable) == sum(a.role == "participant" for a in demo.accounts)
    with demo.store.write() as tx:
        new_token = accounts.rotate_token(tx, host.id)
        accounts.set_expiry(tx, participant.id, "2000-01-01T00:00:00Z")
    with demo.store.read() as tx:
        assert accounts.account_by_token(tx, host.token) is None
        assert accounts.account_by_token(tx, new_token) is not None
        assert accounts.account_by_token(tx, participant.token) is None  # expired
        assert accounts.get_access(tx, participant.id).expires_at.startswith("2000-01-01T00:00:00")  # type: ignore[union-attr]
    with demo.store.write() as tx:
        accounts.retire_account(tx, host.id)
    with demo.store.read() as tx:
        assert accounts.account_by_token(tx, new_token) is None


def new_note(author: Account, note_id: str, *, shared: int, body: str) -> tuple[Any, ...]:
    now = utcnow()
    values = {
        "id": note_id, "event_id": EVENT, "author_id": author.id, "origin_client": "c1", "visit_id": None,
        "site_id": "triciclo", "body": body, "tags": '["ricerca"]', "lat": 45.07, "lon": 7.69,
        "captured_at": "2025-12-01T10:00:00+01:00", "share_with_organizers": shared, "updated_at": now,
        "client_time": None, "received_at": now, "clock_skewed": 0,
    }  # fmt: skip
    return tuple(values[c] for c in records.NEW_NOTE_COLUMNS)


def test_notes_are_inserted_updated_shared_and_exported_in_arrival_order(demo: Demo) -> None:
    author = demo.first("participant")
    ids = [str(uuid.UUID(int=i + 1)) for i in range(3)][::-1]  # arrival order is not id order
    with demo.store.write() as tx:
        records.insert_new_notes(
            tx, [new_note(author, i, shared=1, body=f"nota {n} — مرحبا") for n, i in enumerate(ids)]
        )
        records.update_record(tx, EVENT, "note", ids[0], {"body": "edited later", "version": 2, "deleted": 0})
        record_change(tx, EVENT, "note", ids[0], [f"acct:{author.id}", "org"])
    with demo.store.read() as tx:
        note = records.load_record(tx, EVENT, "note", ids[0])
        shared = notes_store.list_shared_notes(tx, EVENT, site_id="triciclo")
        exported = blobs.list_export_notes(tx, EVENT, None)
        assert records.note_owner(tx, ids[1]) == (EVENT, author.id)
        assert records.record_exists(tx, EVENT, "note", ids[2])
    assert note is not None
    assert (note["body"], note["version"], note["tags"], bool(note["share_with_organizers"])) == (
        "edited later", 2, ["ricerca"], True,
    )  # fmt: skip
    assert {n.id for n in shared} == set(ids)
    assert [n.id for n in exported] == ids


def test_another_events_changes_never_move_this_events_head_past_its_next_change(demo: Demo) -> None:
    # On PostgreSQL each event's feed has its own clock: a head taken from all events' positions
    # would put a cursor past this event's next change, which the pull would then skip.
    with demo.store.read() as tx:
        event = catalog.get_event(tx, EVENT)
    with demo.store.write() as tx:
        catalog.put_event(tx, msgspec.structs.replace(event, id="another-event"))
        # More changes than the demo event has, so that its positions run past this event's.
        for i in range(1000):
            record_change(tx, "another-event", "site", f"site-{i}", ["all"])
    with demo.store.read() as tx:
        head = sync_feed.feed_head(tx, EVENT)
    with demo.store.write() as tx:
        record_change(tx, EVENT, "site", "a-new-site", ["all"])
    with demo.store.read() as tx:
        after = sync_feed.feed_page(tx, EVENT, ["all"], head, 100)
    assert [entity_id for _, _, entity_id in after] == ["a-new-site"]


def test_the_change_feed_and_what_an_account_sees(demo: Demo) -> None:
    organizer = demo.first("organizer")
    with demo.store.read() as tx:
        everything = sync_feed.feed_page(tx, EVENT, ["all", "org"], 0, 10_000)
        page = sync_feed.feed_page(tx, EVENT, ["all"], 0, 5)
        visible = sync_feed.visible_versions(tx, accounts.get_account(tx, organizer.id))  # type: ignore[arg-type]
        assert sync_feed.purged_seq(tx, EVENT, ["all"]) == 0
        assert sync_feed.feed_head(tx, EVENT) == everything[-1][0]
    seqs = [seq for seq, _, _ in everything]
    assert seqs == sorted(set(seqs))
    assert page == [c for c in everything if c[1] != "note"][:5]
    assert {e for _, e, _ in everything} >= {"event", "site", "visit", "group", "question"}
    assert len(visible["site"]) == len(read_fixture(DEMO_FIXTURE).sites)
    with demo.store.write() as tx:
        record_change(tx, EVENT, "site", "triciclo", ["all"])
    with demo.store.read() as tx:
        assert sync_feed.feed_page(tx, EVENT, ["all"], seqs[-1], 10) == [(seqs[-1] + 1, "site", "triciclo")]


def test_pull_positions_never_move_back(demo: Demo) -> None:
    account = demo.first("participant")
    with demo.store.write() as tx:
        pull_positions.record_pull_position(tx, account.id, "c1", 40)
        pull_positions.record_pull_position(tx, account.id, "c1", 12)
        pull_positions.record_pull_position(tx, account.id, "c2", 7)
    with demo.store.read() as tx:
        assert pull_positions.pull_positions(tx, [account.id]) == {account.id: [40, 7]}
        assert set(pull_positions.visit_feed_positions(tx, EVENT)) == {v.id for v in catalog.list_visits(tx, EVENT)}
        assert records.client_synced_at(tx, account.id, "c1") is not None
        visit = catalog.list_visits(tx, EVENT)[0]
    with demo.store.write() as tx:  # a visit change: its history entry, then its feed row
        records.add_history(tx, EVENT, "visit", visit.id, visit.version + 1, {"title": ("a", "b")}, account_id=None)
        record_change(tx, EVENT, "visit", visit.id, ["all"])
    with demo.store.read() as tx:
        position = pull_positions.visit_feed_positions(tx, EVENT)[visit.id]
        assert list(pull_positions.visit_change_positions(tx, EVENT).values()) == [position]


def test_history_and_the_device_ledger(demo: Demo) -> None:
    account = demo.first("host")
    with demo.store.write() as tx:
        first = records.add_history(tx, EVENT, "site", "triciclo", 2, {"name": ("A", "B")}, account_id=account.id)
        second = records.add_history(tx, EVENT, "site", "triciclo", 3, {"city": ("x", "y")}, account_id=None)
        records.mark_reverted(tx, first, second)
        records.set_last_mutation_id(tx, account.id, "c1", 17)
        results = [MutationOutcome(id=i, status="applied", version=i) for i in (16, 17)]
        records.keep_mutation_results(tx, account.id, "c1", results, window=100)
        records.keep_mutation_results(tx, account.id, "c1", results[1:], window=100)  # a retry's answer again
    assert second > first
    with demo.store.read() as tx:
        entries = records.history_entries(tx, EVENT, "site", "triciclo")
        assert records.latest_history_id(tx, EVENT, "site", "triciclo") == second
        assert records.last_history_author(tx, EVENT, "site", "triciclo") == (None, None)
        assert records.last_mutation_id(tx, account.id, "c1") == 17
        assert records.mutation_results(tx, account.id, "c1", 1, 20) == {16: results[0], 17: results[1]}
        since = records.history_since(tx, EVENT, "site", "2000-01-01T00:00:00Z")
    assert [e["id"] for e in entries[:2]] == [second, first]
    assert entries[1]["changes"] == {"name": {"old": "A", "new": "B"}}
    assert entries[1]["reverted_by"] == second
    assert since[-2:] == entries[:2][::-1]


def test_a_visit_changed_twice_in_one_transaction_gives_each_change_a_feed_position(demo: Demo) -> None:
    # What participants' devices have pulled is told per change by its feed position (pull_positions).
    visit = "d1-g1-casa-quartiere-san-salvario"
    with demo.store.write() as tx:
        for version in (2, 3):
            records.add_history(tx, EVENT, "visit", visit, version, {"title": ("A", "B")}, account_id=None)
            record_change(tx, EVENT, "visit", visit, ["all"])
    with demo.store.read() as tx:
        positions = [
            r[0]
            for r in tx.execute(
                "SELECT seq FROM history WHERE event_id = ? AND entity = 'visit' AND entity_id = ? AND version > 1"
                " ORDER BY id",
                (EVENT, visit),
            )
        ]
        (feed,) = tx.execute(
            "SELECT seq FROM changes WHERE entity = 'visit' AND entity_id = ? AND audience = 'all'", (visit,)
        ).fetchone()
    assert None not in positions
    assert positions == sorted(positions)
    assert positions[-1] == feed


def test_blobs_their_owners_and_who_may_fetch_them(demo: Demo) -> None:
    author = demo.first("participant")
    organizer = demo.first("organizer")
    sha = "ab" * 32
    note_id = str(uuid.uuid4())
    with demo.store.write() as tx:
        assert blobs.record_blob(tx, sha, 1234, "image/jpeg")
        assert not blobs.record_blob(tx, sha, 1234, "image/jpeg")
        assert blob_refs.add_blob_owner(tx, EVENT, author.id, sha, 1234) is not None
        assert blob_refs.add_blob_owner(tx, EVENT, author.id, sha, 1234) is None
        records.insert_new_notes(tx, [new_note(author, note_id, shared=1, body="foto")])
        blob_refs.set_note_blobs(tx, EVENT, note_id, [{"sha256": sha}, {"sha256": sha}])
        assert blob_refs.blob_landed(tx, EVENT, sha) == 1
    with demo.store.read() as tx:
        assert blobs.get_blob(tx, sha) == blobs.get_blobs(tx, [sha, "cd" * 32])[sha]
        assert blob_refs.fetchable_blobs(tx, accounts.get_account(tx, organizer.id), [sha]) == {sha}  # type: ignore[arg-type]
        assert blob_refs.referable_blobs(tx, accounts.get_account(tx, author.id), [sha]) == {sha}  # type: ignore[arg-type]
        assert blob_refs.blob_usage(tx, EVENT, author.id) == (1234, 1234)
    with demo.store.write() as tx:
        records.update_record(tx, EVENT, "note", note_id, {"deleted": True, "updated_at": "2001-01-01T00:00:00Z"})
        assert blob_refs.purge_unreferenced_blobs(tx, "2999-01-01T00:00:00Z") == [sha]
        assert purge.purge_tombstones(tx, "2002-01-01T00:00:00Z") == 1
    with demo.store.read() as tx:
        assert blobs.get_blob(tx, sha) is None
        assert sync_feed.purged_seq(tx, EVENT, [f"acct:{author.id}"]) > 0


def test_feedback_its_switch_and_its_site(demo: Demo) -> None:
    participant = demo.first("participant")
    with demo.store.read() as tx:
        visit = next(v for v in catalog.list_visits(tx, EVENT) if v.site_id)
    now = utcnow()
    with demo.store.write() as tx:
        records.insert_record(tx, "feedback", {
            "id": str(uuid.uuid4()), "event_id": EVENT, "author_id": participant.id, "visit_id": visit.id,
            "site_id": visit.site_id, "rating": 5, "answers": {"q": "Rất hay — ممتاز"}, "comment": "",
            "updated_at": now, "clock_skewed": 0,
        })  # fmt: skip
        feedback_store.set_feedback_closed(tx, EVENT, visit.id, True, visit.version + 1)
        moved = feedback_store.move_visit_feedback(tx, EVENT, visit.id, None)
        assert feedback_store.move_visit_feedback(tx, EVENT, visit.id, None) == []
    with demo.store.read() as tx:
        listed = feedback_store.list_feedback(tx, EVENT, [visit.id, "no-such-visit"])
        assert feedback_store.list_feedback(tx, EVENT, []) == []
        assert feedback_store.feedback_closed(tx, EVENT, visit.id) == (True, visit.version + 1)
        assert feedback_store.closed_visits(tx, EVENT) == {visit.id}
        assert participant.id in feedback_store.list_authors(tx, EVENT)
    assert [(f.answers, f.site_id) for f in listed] == [({"q": "Rất hay — ممتاز"}, None)]
    assert [m[2] for m in moved] == [visit.site_id]


def test_a_fixture_loaded_into_both_engines_reads_back_the_same(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    def programme(store: Any) -> list[Any]:
        with store.read() as tx:
            return [
                catalog.list_sites(tx, EVENT),
                catalog.list_visits(tx, EVENT),
                catalog.list_groups(tx, EVENT),
                catalog.list_questions(tx, EVENT),
                accounts.list_accounts(tx, EVENT),
                sorted(sync_feed.visible_versions(tx, accounts.list_accounts(tx, EVENT)[0]).items()),
            ]

    def without_times(value: Any) -> Any:
        builtins: Any = msgspec.to_builtins(value)
        strip: Callable[[Any], Any] = lambda v: (  # noqa: E731
            {k: strip(x) for k, x in v.items() if k != "updated_at"} if isinstance(v, dict)
            else [strip(x) for x in v] if isinstance(v, list) else v
        )  # fmt: skip
        return strip(builtins)

    fixture = read_fixture(DEMO_FIXTURE)
    stores = [open_store(backend, tmp_path, request) for backend in BACKENDS]
    for store in stores:
        load_fixture(store, fixture)
    sqlite_side, pg_side = (without_times(programme(cast(Any, s))) for s in stores)
    assert sqlite_side == pg_side
