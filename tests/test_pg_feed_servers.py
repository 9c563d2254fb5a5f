"""The change feed's no-skip guarantee through real servers (issue 13, docs/sync-protocol.md §5.2).

Two server processes on one PostgreSQL database, eight writers pushing at once across both, every
write transaction made to wait a random while between its last statement and its commit (the
test-only hook of server/faults.py), and an organizer tailing the feed in small pages from either
server: once everything is written, what the organizer's replica holds must be what the database
holds for it, and it must never have been sent back to a full pull. The same scenario against the
test-only naive feed (positions from a sequence, taken before commit) must catch a skipped change:
that is what shows the property can fail.
"""

import itertools
import threading
import time
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sync.checksum import checksum
from sync.cursor import decode_cursor
from tests.conftest import LiveServer
from tests.databases import Seeded, pg_demo
from tests.sync_helpers import EVENT_ID, G1_VISIT, PULL_URL, PUSH_URL, Replica, rows, uid

READER = "org-marta"
WRITERS = 8
# Every write transaction waits up to this long before it commits (server/faults.py).
DELAY_MS = 25
# The naive feed's test: longer waits, so that a late commit behind a served page is all but certain
# in one round; the rounds bound it if not.
NAIVE_DELAY_MS = 80
NAIVE_ROUNDS = 6

# Each example writes notes of its own on the same database: ids are numbered on from here.
_numbers = itertools.count(1)


@contextmanager
def demo_database(tmp_path: Path) -> Generator[Seeded]:
    """A PostgreSQL database of its own holding the Turin demo event, dropped after."""
    with pg_demo(tmp_path / "x.db", "sv_feed_servers") as seeded:
        yield seeded


@contextmanager
def two_servers(tmp_path: Path, env: dict[str, str]) -> Generator[tuple[Seeded, list[LiveServer]]]:
    """Two server processes over one fresh demo database, both with this test-only environment."""
    with demo_database(tmp_path) as seeded:
        servers: list[LiveServer] = []
        try:
            for _ in range(2):  # one after the other: the first migrates, the second finds it done
                servers.append(LiveServer(seeded, env=env, log_path=tmp_path / "access.log").start())
            yield seeded, servers
        finally:
            for server in servers:
                server.stop()


@pytest.fixture(scope="module")
def commit_order_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Seeded, list[LiveServer]]]:
    """The real feed, with every commit delayed: shared by the property's examples."""
    env = {"STUDYVISIT_TEST_COMMIT_DELAY_MS": str(DELAY_MS)}
    with two_servers(tmp_path_factory.mktemp("feed"), env) as found:
        yield found


@dataclass
class Plan:
    """One scenario: per writer, its pushes, each a list of (edit an earlier note?, shared?)."""

    pushes: list[list[list[tuple[bool, bool]]]]
    page: int  # the reader's page size
    pause_ms: int  # how long a writer waits between its pushes


@dataclass
class Outcome:
    replica: Replica
    expected: dict[str, int]  # note id -> version, as the database holds what the reader may see
    statuses: list[int] = field(default_factory=list)  # of every pull the reader made

    def summary_disagrees(self) -> list[str]:
        """Entity kinds whose count or checksum in the last page's summary is not the replica's:
        a client seeing one would have to pull everything again."""
        summary: dict[str, Any] = self.replica.last["summary"]
        return [
            entity
            for entity, told in summary.items()
            if (told["count"], told["checksum"]) != (len(mine := self.replica.versions(entity)), checksum(mine))
        ]

    def went_back(self) -> bool:
        """Whether any cursor the reader was given lies behind the one before it (a reset)."""
        seqs = [cursor.seq for page in self.replica.pages if (cursor := decode_cursor(page["cursor"]))]
        return any(b < a for a, b in itertools.pairwise(seqs))

    def held(self) -> dict[str, int]:
        return dict(self.replica.versions("note"))

    def missed(self) -> dict[str, tuple[int | None, int | None]]:
        """Notes whose version in the replica is not the database's: id -> (replica, database)."""
        held = self.held()
        return {
            i: (held.get(i), self.expected.get(i))
            for i in held.keys() | self.expected.keys()
            if held.get(i) != self.expected.get(i)
        }


def send(client: httpx.Client, method: str, url: str, **kwargs: Any) -> httpx.Response:
    """One request, retried while the server says it is busy (503/429): busy is no answer yet."""
    response = client.request(method, url, **kwargs)
    for _ in range(50):
        if response.status_code not in (429, 503):
            break
        time.sleep(0.05)
        response = client.request(method, url, **kwargs)
    return response


def write(servers: list[LiveServer], token: str, n: int, plan: list[list[tuple[bool, bool]]], pause: float,
          failures: list[str]) -> None:  # fmt: skip
    """One writer: its pushes in turn, alternating servers; creates and edits of its own notes."""
    with httpx.Client(timeout=30) as client:
        _write(client, servers, token, n, plan, pause, failures)


def _write(client: httpx.Client, servers: list[LiveServer], token: str, n: int, plan: list[list[tuple[bool, bool]]],
           pause: float, failures: list[str]) -> None:  # fmt: skip
    headers = {"Authorization": f"Bearer {token}"}
    client_id = uid(next(_numbers))  # a device of its own in each example: its mutation ids start at 1
    versions: dict[str, int] = {}
    mutation_id = 0
    for k, batch in enumerate(plan):
        mutations: list[dict[str, Any]] = []
        for edit, shared in batch:
            mutation_id += 1
            mine = sorted(versions)
            if edit and mine:
                note_id = mine[mutation_id % len(mine)]
                args: dict[str, Any] = {"base_version": versions[note_id], "body": f"edit {mutation_id}"}
            else:
                note_id = uid(next(_numbers))
                args = {"visit_id": G1_VISIT, "body": f"note {mutation_id}"}
            mutations.append({"id": mutation_id, "type": "note.put",
                              "args": {"id": note_id, "share_with_organizers": shared, **args}})  # fmt: skip
        server = servers[(n + k) % len(servers)]
        body = {"client_id": client_id, "protocol": 1, "mutations": mutations}
        response = send(client, "POST", server.url + PUSH_URL, json=body, headers=headers)
        if response.status_code != 200:
            failures.append(f"push {response.status_code}: {response.text}")
            return
        for mutation, result in zip(mutations, response.json()["results"], strict=True):
            if result["status"] != "applied":
                failures.append(f"mutation {result}")
                return
            versions[mutation["args"]["id"]] = result["version"]
        time.sleep(pause)


def pull_page(client: httpx.Client, server: LiveServer, headers: dict[str, str], replica: Replica, limit: int,
              statuses: list[int]) -> dict[str, Any]:  # fmt: skip
    params: dict[str, Any] = {"limit": limit, "client_id": uid(99_999_999)}
    if replica.cursor:
        params["cursor"] = replica.cursor
    response = send(client, "GET", server.url + PULL_URL, params=params, headers=headers)
    statuses.append(response.status_code)
    assert response.status_code == 200, response.text  # 410 would be a full re-sync
    page: dict[str, Any] = response.json()
    replica.apply(page)
    return page


def run(seeded: Seeded, servers: list[LiveServer], plan: Plan) -> Outcome:
    """Write the plan with eight writers at once while the organizer tails the feed; then catch up."""
    reader = {"Authorization": f"Bearer {seeded.accounts[READER].token}"}
    writers = [a for a in seeded.accounts.values() if a.role == "participant"][:WRITERS]
    replica, statuses, failures = Replica(), [], []
    outcome = Outcome(replica, {}, statuses)
    done = threading.Event()
    with httpx.Client(timeout=30) as client:
        # The replica starts as a device's does, from a full pull, before the writers begin.
        while pull_page(client, servers[0], reader, replica, 50, statuses)["has_more"]:
            pass
        threads = [
            threading.Thread(
                target=write,
                args=(servers, account.token, n, plan.pushes[n], plan.pause_ms / 1000, failures),
            )
            for n, account in enumerate(writers)
        ]
        for thread in threads:
            thread.start()

        def wait_for_writers() -> None:
            for thread in threads:
                thread.join(120)
            done.set()

        threading.Thread(target=wait_for_writers).start()
        # Tail throughout, alternating servers; a caught-up page is followed by a short rest.
        for turn in itertools.count():
            if done.is_set():
                break
            page = pull_page(client, servers[turn % 2], reader, replica, plan.page, statuses)
            if not page["has_more"]:
                time.sleep(0.005)
        assert not failures, failures
        # Quiescent: a final catch-up from each server.
        for server in servers:
            while pull_page(client, server, reader, replica, plan.page, statuses)["has_more"]:
                pass
    outcome.expected = {
        str(r[0]): int(r[1])
        for r in rows(
            seeded,
            "SELECT id, version FROM notes WHERE event_id = ? AND NOT deleted AND (author_id = ? OR share_with_organizers)",
            EVENT_ID,
            READER,
        )
    }
    return outcome


mutations = st.lists(st.tuples(st.booleans(), st.booleans()), min_size=1, max_size=4)
plans = st.builds(
    Plan,
    pushes=st.lists(st.lists(mutations, min_size=2, max_size=6), min_size=WRITERS, max_size=WRITERS),
    page=st.integers(min_value=5, max_value=10),
    pause_ms=st.integers(min_value=0, max_value=20),
)


@settings(max_examples=5, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(plan=plans)
def test_a_reader_tailing_both_servers_misses_no_change_of_writers_committing_out_of_order(
    commit_order_servers: tuple[Seeded, list[LiveServer]], plan: Plan
) -> None:
    seeded, servers = commit_order_servers
    outcome = run(seeded, servers, plan)
    assert outcome.missed() == {}
    assert set(outcome.statuses) == {200}  # never a 410: no full re-sync was needed
    assert not outcome.went_back()
    assert outcome.summary_disagrees() == []


def test_the_same_scenario_catches_the_skip_of_a_feed_numbered_before_commit(tmp_path: Path) -> None:
    # Only creates, each shared: a note skipped is never changed again, so the skip stays visible.
    plan = Plan(pushes=[[[(False, True)]] * 8 for _ in range(WRITERS)], page=5, pause_ms=0)
    env = {"STUDYVISIT_TEST_COMMIT_DELAY_MS": str(NAIVE_DELAY_MS), "STUDYVISIT_TEST_NAIVE_FEED": "1"}
    with two_servers(tmp_path, env) as (seeded, servers):
        outcomes: list[Outcome] = []
        for _ in range(NAIVE_ROUNDS):
            outcomes.append(run(seeded, servers, plan))
            if outcomes[-1].missed():
                break
    missed = outcomes[-1].missed()
    assert missed, f"the naive feed skipped nothing in {NAIVE_ROUNDS} rounds: the property test could not fail"
    # Skipped notes are in the database and not in the replica; every pull was answered 200 all the
    # same, and only the summary's checksum gives the loss away.
    assert all(held is None and expected is not None for held, expected in missed.values())
    assert set(outcomes[-1].statuses) == {200}
    assert outcomes[-1].summary_disagrees() == ["note"]
