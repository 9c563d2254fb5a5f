"""Group commit: concurrent pushes share SQLite's transaction and fsync (`Store.write_grouped`).

Each batch is answered only after the COMMIT that holds it returned, so what a device was told is
on disk; each is stored exactly once; a batch that fails undoes only itself, a failure of the
database itself the whole group. On PostgreSQL each batch has its own transaction (its WAL
flush combines concurrent commits): the same properties hold there without a queue.
"""

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import msgspec
import pytest

from schemas.accounts import Account
from schemas.sync import PushRequest, PushResponse
from server.errors import InsufficientStorageError
from server.services.push import push
from server.storage import db as storage_db
from server.storage.accounts import get_account
from server.storage.db import Database
from server.storage.pg.database import PgDatabase
from server.storage.unit import Tx
from tests.conftest import Seeded
from tests.sqlite_connections import on_each_connection
from tests.sync_helpers import note_put, rows, scalar, uid

PLENARY = "d1-plenary-opening"  # a visit every participant's notes may name
BATCHES = 3
PER_BATCH = 40


def _participants(store: Database | PgDatabase, seeded: Seeded) -> list[Account]:
    found = []
    with store.read() as tx:
        for a in seeded.accounts.values():
            if a.role == "participant":
                account = get_account(tx, a.id)
                assert account is not None
                found.append(account)
    return found


def _batch(client_id: str, mutations: list[dict[str, Any]]) -> PushRequest:
    return msgspec.convert({"client_id": client_id, "protocol": 1, "mutations": mutations}, PushRequest)


def _device_batches(device: int) -> list[list[dict[str, Any]]]:
    """A device's notes: ids unique across devices (device number in the high bits)."""
    return [
        [
            note_put(b * PER_BATCH + i + 1, uid(device << 32 | b * PER_BATCH + i + 1), visit_id=PLENARY)
            for i in range(PER_BATCH)
        ]
        for b in range(BATCHES)
    ]


def _run_at_once(jobs: list[Callable[[], None]]) -> list[BaseException]:
    """Start every job on its own thread at the same moment; the exceptions they raised."""
    start = threading.Barrier(len(jobs))
    failures: list[BaseException] = []

    def run(job: Callable[[], None]) -> None:
        start.wait()
        try:
            job()
        except BaseException as exc:  # reported to the test, not lost in a thread
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(job,)) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a push never returned"
    return failures


@pytest.mark.both_backends
def test_concurrent_pushes_of_many_devices_are_each_stored_once_and_committed_before_their_answer(
    seeded: Seeded,
) -> None:
    store = seeded.store()
    try:
        accounts = _participants(store, seeded)
        devices = [(accounts[d % len(accounts)], str(uid(0xD0000 + d)), _device_batches(d)) for d in range(16)]

        def device(account: Account, client_id: str, batches: list[list[dict[str, Any]]]) -> None:
            for batch in batches:
                request = _batch(client_id, batch)
                # Sent twice at once, as a phone that timed out and retried: one applies, one is duplicates.
                answers: list[PushResponse] = []
                _run_at_twice(lambda r=request, into=answers: into.append(push(store, account, r)))
                statuses = sorted(tuple(sorted({x.status for x in a.results})) for a in answers)
                assert statuses == [("applied",), ("duplicate",)], statuses
                # The answer came after the COMMIT: another connection already sees every note of it.
                ids = [m["args"]["id"] for m in batch]
                marks = ", ".join("?" for _ in ids)
                seen = scalar(seeded, f"SELECT COUNT(*) FROM notes WHERE id IN ({marks})", *ids)
                assert seen == len(ids)

        failures = _run_at_once([lambda d=d: device(*d) for d in devices])
        assert failures == []
    finally:
        store.close()
    total = 16 * BATCHES * PER_BATCH
    assert scalar(seeded, "SELECT COUNT(*) FROM notes WHERE visit_id = ?", PLENARY) == total
    assert scalar(seeded, "SELECT COUNT(*) FROM notes WHERE visit_id = ? AND version = 1", PLENARY) == total
    # One feed row per note (unshared: its author's audience only), none twice.
    feed = [tuple(r) for r in rows(seeded, "SELECT entity_id, audience FROM changes WHERE entity = 'note'")]
    assert len(feed) == len(set(feed)) == total
    ledger = [tuple(r) for r in rows(seeded, "SELECT client_id, last_mutation_id FROM sync_clients")]
    assert sorted(ledger) == sorted((client_id, BATCHES * PER_BATCH) for _, client_id, _ in devices)


def _run_at_twice(job: Callable[[], None]) -> None:
    failures = _run_at_once([job, job])
    assert failures == []


# --- the group itself (SQLite's queue) ------------------------------------------------------


class Commits:
    """Counts the COMMIT statements run on every connection the store opens."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    def saw(self, statement: str) -> None:
        if statement.strip().upper() == "COMMIT":
            with self._lock:
                self.count += 1


@pytest.fixture
def commits(monkeypatch: pytest.MonkeyPatch) -> Commits:
    seen = Commits()
    on_each_connection(monkeypatch, lambda conn: conn.set_trace_callback(seen.saw))
    return seen


@pytest.fixture
def store(seeded: Seeded) -> Iterator[Database]:
    database = Database(seeded.path)
    yield database
    database.close()


def _grouped(store: Database, jobs: list[Callable[[], Any]]) -> list[Any]:
    """Run each job (a caller of ``write_grouped``) on a thread of its own, all queued behind one write
    that holds the lock until every one is waiting: they join its group. What each returned or raised."""
    held, release = threading.Event(), threading.Event()
    outcomes: list[Any] = [None] * len(jobs)

    def hold(tx: Tx) -> None:
        held.set()
        release.wait(timeout=30)

    def holding() -> None:
        # Its piece is in the group, and shares its end (a full disk fails it too): not the test's to judge.
        with contextlib.suppress(Exception):
            store.write_grouped(hold)

    holder = threading.Thread(target=holding)
    holder.start()
    assert held.wait(timeout=30)

    def run(index: int) -> None:
        try:
            outcomes[index] = jobs[index]()
        except Exception as exc:
            outcomes[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while len(store._waiting) < len(jobs) and time.monotonic() < deadline:
        time.sleep(0.001)
    assert len(store._waiting) == len(jobs)
    release.set()
    holder.join(timeout=30)
    for t in threads:
        t.join(timeout=30)
    return outcomes


def _pieces(store: Database, pieces: list[Callable[[Tx], Any]]) -> list[Callable[[], Any]]:
    return [lambda piece=piece: store.write_grouped(piece) for piece in pieces]


def _note(n: int, body: str = "x") -> Callable[[Tx], str]:
    def write(tx: Tx) -> str:
        tx.execute(
            "INSERT INTO notes (id, event_id, author_id, visit_id, body, updated_at)"
            " SELECT ?, event_id, id, ?, ?, '2026-01-01T00:00:00Z' FROM accounts WHERE role = 'participant' LIMIT 1",
            (uid(n), PLENARY, body),
        )
        return uid(n)

    return write


@pytest.mark.sqlite_only  # SQLite's own queue in front of its single writer (PostgreSQL commits each on its own)
def test_waiting_writes_share_one_commit_and_a_failing_one_undoes_only_itself(
    commits: Commits, store: Database, seeded: Seeded
) -> None:
    def bad(tx: Tx) -> None:
        _note(2)(tx)
        raise ValueError("a bug in this batch's work")

    before = commits.count
    outcomes = _grouped(store, _pieces(store, [_note(1), bad, _note(3), _note(4)]))
    assert [outcomes[0], outcomes[2], outcomes[3]] == [uid(1), uid(3), uid(4)]
    assert isinstance(outcomes[1], ValueError)
    assert commits.count - before == 1  # the holder and all four: one group, one COMMIT
    assert sorted(r[0] for r in rows(seeded, "SELECT id FROM notes WHERE visit_id = ?", PLENARY)) == sorted(
        [uid(1), uid(3), uid(4)]
    )


@pytest.mark.sqlite_only  # SQLite's own queue; max_page_count stands in for a full disk
def test_a_full_disk_in_one_piece_fails_the_whole_group_and_writes_nothing(store: Database, seeded: Seeded) -> None:
    def filling(tx: Tx) -> None:
        pages = tx.execute("PRAGMA page_count").fetchone()[0]
        tx.execute(f"PRAGMA max_page_count = {pages}")
        try:
            _note(2, "y" * 200_000)(tx)
        finally:
            tx.execute("PRAGMA max_page_count = 1073741823")

    outcomes = _grouped(store, _pieces(store, [_note(1), filling, _note(3)]))
    assert all(isinstance(o, InsufficientStorageError) for o in outcomes), outcomes
    assert rows(seeded, "SELECT id FROM notes WHERE visit_id = ?", PLENARY) == []
    # The store is fine afterwards: the next group commits.
    assert _grouped(store, _pieces(store, [_note(5)])) == [uid(5)]


@pytest.mark.sqlite_only  # SQLite's own queue in front of its single writer
def test_concurrent_pushes_one_with_bad_mutations_only_those_are_rejected_and_the_rest_commit(
    commits: Commits, store: Database, seeded: Seeded
) -> None:
    accounts = _participants(store, seeded)
    good = [
        _batch(str(uid(0xC0 + d)), [note_put(i + 1, uid(d << 32 | i + 1), visit_id=PLENARY) for i in range(5)])
        for d in range(1, 4)
    ]
    mixed = _batch(
        str(uid(0xBAD)),
        [
            note_put(1, uid(0xBAD << 32 | 1), visit_id=PLENARY),
            note_put(2, uid(0xBAD << 32 | 2), visit_id="no-such-visit"),
            {"id": 3, "type": "note.put", "args": {"id": "not-a-uuid", "visit_id": PLENARY}},
            note_put(4, uid(0xBAD << 32 | 4), visit_id=PLENARY),
        ],
    )
    requests = [good[0], mixed, good[1], good[2]]
    before = commits.count
    outcomes = _grouped(store, [lambda r=r, a=accounts[i]: push(store, a, r) for i, r in enumerate(requests)])
    assert commits.count - before == 1  # they joined the holder's group: one COMMIT
    answers = [o for o in outcomes if isinstance(o, PushResponse)]
    assert len(answers) == 4, outcomes
    assert [r.status for r in answers[1].results] == ["applied", "rejected", "rejected", "applied"]
    for answer in (answers[0], answers[2], answers[3]):
        assert [r.status for r in answer.results] == ["applied"] * 5
    assert scalar(seeded, "SELECT COUNT(*) FROM notes WHERE visit_id = ?", PLENARY) == 3 * 5 + 2
    assert scalar(seeded, "SELECT last_mutation_id FROM sync_clients WHERE client_id = ?", str(uid(0xBAD))) == 4


@pytest.mark.both_backends
def test_notes_written_together_keep_their_arrival_order_beside_notes_written_one_by_one(seeded: Seeded) -> None:
    # Plain new notes are inserted together with their arrival given (SQLite: their rowid, as its
    # trigger would set it); a note with a photo goes through its applier and the trigger or identity.
    photo = [{"sha256": "c" * 64, "media_type": "image/jpeg", "bytes": 10}]
    ids = [uid(0xA000 + n) for n in range(7)][::-1]  # arrival order is not id order
    store = seeded.store()
    try:
        [account, *_] = _participants(store, seeded)
        for first, last in ((0, 3), (3, 4), (4, 7)):
            extra = {"attachments": photo} if first == 3 else {}
            batch = [note_put(n + 1, ids[n], visit_id=PLENARY, **extra) for n in range(first, last)]
            answer = push(store, account, _batch(str(uid(0xA11)), batch))
            assert [r.status for r in answer.results] == ["applied"] * (last - first)
    finally:
        store.close()
    arrived = [r[0] for r in rows(seeded, "SELECT id FROM notes WHERE visit_id = ? ORDER BY arrival", PLENARY)]
    assert arrived == ids
    if not seeded.url:  # SQLite: arrival is the rowid, whichever way the note was written
        assert scalar(seeded, "SELECT COUNT(*) FROM notes WHERE arrival IS NOT rowid") == 0


@pytest.mark.sqlite_only  # SQLite's own queue in front of its single writer
def test_past_the_group_limit_the_rest_commit_in_the_next_groups_and_every_caller_is_answered(
    commits: Commits, store: Database, seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(storage_db, "GROUP_MAX", 2)
    before = commits.count
    outcomes = _grouped(store, _pieces(store, [_note(n) for n in range(1, 6)]))
    assert outcomes == [uid(n) for n in range(1, 6)]
    assert commits.count - before == 3  # the holder and five, two at a time
    assert scalar(seeded, "SELECT COUNT(*) FROM notes WHERE visit_id = ?", PLENARY) == 5
