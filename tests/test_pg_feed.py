"""The change-feed designs measured in bench/pg_feed.py, on the real PostgreSQL: which one skips a
change whose transaction commits after a later one (docs/sync-protocol.md §5.3)."""

import os
import threading
import time
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from bench.pg_feed import DESIGNS, Cursor, Load, connect, drop, reset, run

# The machine's PostgreSQL (trust authentication); .ci/run starts it when it is down.
URL = os.environ.get("STUDYVISIT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture
def schema() -> Iterator[str]:
    """A schema of this test's own: tests on other xdist workers use the same database."""
    name = f"feed_{uuid.uuid4().hex[:12]}"
    try:
        reset(URL, name)
    except psycopg.OperationalError as error:  # a failure, never a skip: CI has PostgreSQL
        pytest.fail(f"PostgreSQL is not reachable at {URL}: {error}")
    yield name
    drop(URL, name)


def pull_all(conn: psycopg.Connection[object], design: str, cursor: Cursor) -> tuple[list[str], Cursor]:
    seen: list[str] = []
    while True:
        ids, cursor = DESIGNS[design].pull(conn, cursor, 100)
        if not ids:
            return seen, cursor
        seen += ids


def waiting_on_a_lock() -> int:
    with psycopg.connect(URL, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%feed_clock%'"
        ).fetchone()
        return int(row[0]) if row else 0


@pytest.mark.parametrize(("design", "skipped"), [("naive", ["early"]), ("horizon", []), ("lock", [])])
def test_a_change_committed_after_a_later_one_is_skipped_only_by_the_naive_cursor(
    schema: str, design: str, skipped: list[str]
) -> None:
    writes = DESIGNS[design]
    held, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def wait_for_release() -> None:
        held.set()
        release.wait(30)

    def write(entity_id: str, hold: bool) -> None:
        try:
            with connect(URL, schema) as conn:
                writes.write(conn, [entity_id], lambda: None, wait_for_release if hold else lambda: None)
        except BaseException as error:
            errors.append(error)

    early = threading.Thread(target=write, args=("early", True))
    early.start()
    assert held.wait(30), "the first transaction never reached its commit"
    late = threading.Thread(target=write, args=("late", False))
    late.start()
    if design == "lock":
        # The second writer cannot take a feed position while the first holds the clock: it waits.
        deadline = time.monotonic() + 30
        while waiting_on_a_lock() == 0:
            assert time.monotonic() < deadline, "the second writer never waited for the clock"
            time.sleep(0.01)
    else:
        late.join(30)
        assert not late.is_alive()
    with connect(URL, schema, autocommit=True) as reader:
        first, cursor = pull_all(reader, design, (0, 0))
        release.set()
        early.join(30)
        late.join(30)
        assert errors == []
        second, _ = pull_all(reader, design, cursor)
    seen = first + second
    assert sorted({"early", "late"} - set(seen)) == skipped
    assert len(seen) == len(set(seen)), "a change served twice"
    if design != "naive":
        # Nothing is served while an earlier transaction is still open.
        assert first == []


@pytest.mark.parametrize("design", ["horizon", "lock"])
def test_under_concurrent_writers_the_sound_cursors_serve_every_change_once(design: str) -> None:
    name = f"feed_{uuid.uuid4().hex[:12]}"
    reset(URL, name)
    try:
        outcome = run(URL, DESIGNS[design], Load(writers=4, duration=1.0, batch=5, work_ms=1.0), schema=name)
    finally:
        drop(URL, name)
    assert outcome.rows > 0
    assert (outcome.skipped, outcome.duplicates, outcome.seen) == (0, 0, outcome.rows)
