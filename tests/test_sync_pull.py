"""Pull: each role gets exactly what it may see, paged without gaps, coalesced, and summarised by checksum."""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import msgspec
import pytest
from conftest import Seeded, make_app
from litestar import Litestar
from litestar.testing import TestClient
from sync_helpers import (
    CLIENT_A,
    CLIENT_B,
    G1_SITE,
    G1_VISIT,
    G2_SITE,
    G2_VISIT,
    MSGPACK,
    PROBLEM,
    PULL_URL,
    Replica,
    feedback_put,
    mutation,
    note_put,
    pull,
    pull_all,
    push,
    site_patch,
    uid,
)

from server.storage import db as db_module
from server.storage.db import Database, migrate
from server.storage.migrations import MIGRATIONS
from server.storage.purge import purge_tombstones
from server.storage.sync_feed import purged_seq
from sync.checksum import checksum
from sync.rules import audiences

pytestmark = pytest.mark.both_backends  # CI runs it on SQLite, then on PostgreSQL

Client = TestClient[Litestar]
Headers = dict[str, str]

P1, P2, P_G2 = "p-nguyen-thi-hoa", "p-aicha-diallo", "p-fatima-zahra-amrani"
ORGANIZER, HOST_G1, HOST_G2 = "org-marta", "host-san-salvario", "host-triciclo"
ENTITY_KINDS = {"event", "site", "visit", "group", "question", "note", "feedback"}
CATALOG = {"event": 1, "site": 18, "group": 3, "visit": 21, "question": 3}

# Notes and feedback by several people, to check who sees what.
P1_PRIVATE, P1_SHARED, P2_PRIVATE, P2_SHARED, PG2_SHARED, HOST_NOTE = (uid(n) for n in range(1, 7))
F_P1, F_P2, F_PG2 = uid(0xF1), uid(0xF2), uid(0xF3)


def token(seeded: Seeded, account_id: str) -> Headers:
    return {"Authorization": f"Bearer {seeded.accounts[account_id].token}"}


@pytest.fixture
def activity(client: Client, seeded: Seeded) -> Callable[[str], Headers]:
    """Notes and feedback from two G1 participants, a G2 participant and a host; returns a token getter."""
    batches: dict[str, list[dict[str, Any]]] = {
        P1: [
            note_put(1, P1_PRIVATE, body="p1 private"),
            note_put(2, P1_SHARED, body="p1 shared", share_with_organizers=True),
            feedback_put(3, F_P1, rating=5, comment="p1 says", answers={"relevance": "very"}),
        ],
        P2: [
            note_put(1, P2_PRIVATE, body="p2 private"),
            note_put(2, P2_SHARED, body="p2 shared", share_with_organizers=True),
            feedback_put(3, F_P2, rating=3, comment="p2 says"),
        ],
        P_G2: [
            note_put(1, PG2_SHARED, visit_id=G2_VISIT, body="g2 shared", share_with_organizers=True),
            feedback_put(2, F_PG2, visit_id=G2_VISIT, rating=4),
        ],
        HOST_G1: [note_put(1, HOST_NOTE, site_id=G1_SITE, body="host private")],
    }
    for account_id, batch in batches.items():
        result = push(client, token(seeded, account_id), batch)
        assert all(r["status"] == "applied" for r in result["results"]), result
    return lambda account_id: token(seeded, account_id)


def state(replica: Replica) -> dict[tuple[str, str], tuple[int, Any]]:
    """A replica's records as (version, data), for comparing two ways of getting there."""
    return {key: (change["version"], change["data"]) for key, change in replica.records.items()}


def kinds(replica: Replica) -> dict[str, int]:
    counts: dict[str, int] = {}
    for entity, _ in replica.records:
        counts[entity] = counts.get(entity, 0) + 1
    return counts


# --- who sees what ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("account_id", "notes", "feedback"),
    [
        pytest.param(P1, {P1_PRIVATE, P1_SHARED}, {F_P1}, id="participant-own-only"),
        pytest.param(P2, {P2_PRIVATE, P2_SHARED}, {F_P2}, id="other-participant-own-only"),
        pytest.param(P_G2, {PG2_SHARED}, {F_PG2}, id="g2-participant"),
        pytest.param(ORGANIZER, {P1_SHARED, P2_SHARED, PG2_SHARED}, {F_P1, F_P2, F_PG2}, id="organizer-shared-notes-all-feedback"),
        pytest.param(HOST_G1, {HOST_NOTE}, {F_P1, F_P2}, id="host-feedback-at-own-site"),
        pytest.param(HOST_G2, set(), {F_PG2}, id="other-host"),
    ],
)  # fmt: skip
def test_full_pull_holds_the_catalog_and_only_the_notes_and_feedback_the_role_may_see(
    client: Client, activity: Callable[[str], Headers], account_id: str, notes: set[str], feedback: set[str]
) -> None:
    replica = pull_all(client, activity(account_id))

    assert {k: v for k, v in kinds(replica).items() if k in CATALOG} == CATALOG
    assert replica.ids("note") == notes
    assert replica.ids("feedback") == feedback
    assert not replica.tombstones, "a first pull has nothing to delete"
    if account_id != ORGANIZER:
        assert {replica.data("note", n)["author_id"] for n in notes} <= {account_id}


@pytest.mark.parametrize(
    ("account_id", "authors_visible"),
    [(P1, True), (ORGANIZER, True), (HOST_G1, False), (HOST_G2, False)],
)
def test_feedback_authors_are_hidden_from_hosts_only(
    client: Client, seeded: Seeded, activity: Callable[[str], Headers], account_id: str, authors_visible: bool
) -> None:
    replica = pull_all(client, activity(account_id))

    assert replica.ids("feedback")
    for feedback_id in replica.ids("feedback"):
        data = replica.data("feedback", feedback_id)
        if authors_visible:
            assert data["author_id"] in seeded.accounts
        else:
            assert "author_id" not in data  # absent, not null (§7)
            assert data["rating"] is not None  # what was said, not who said it


def test_host_sees_the_feedback_on_its_site_with_its_content(
    client: Client, activity: Callable[[str], Headers]
) -> None:
    replica = pull_all(client, activity(HOST_G1))

    data = replica.data("feedback", F_P1)
    assert (data["visit_id"], data["site_id"], data["rating"], data["comment"]) == (G1_VISIT, G1_SITE, 5, "p1 says")
    assert data["answers"] == {"relevance": "very"}
    assert "author_id" not in data


def test_unsharing_a_note_reaches_the_organizer_as_a_delete_without_content(
    client: Client, activity: Callable[[str], Headers]
) -> None:
    organizer = pull_all(client, activity(ORGANIZER))
    assert P1_SHARED in organizer.ids("note")

    result = push(
        client, activity(P1), [note_put(4, P1_SHARED, body="p1 shared", share_with_organizers=False, base_version=1)]
    )
    assert result["results"][0]["status"] == "applied"

    page = pull(client, activity(ORGANIZER), organizer.cursor)
    [change] = [c for c in page["changes"] if c["id"] == P1_SHARED]
    assert (change["entity"], change["op"], change["data"]) == ("note", "delete", None)
    organizer.apply(page)
    assert P1_SHARED not in organizer.ids("note")
    assert P1_SHARED not in pull_all(client, activity(ORGANIZER)).ids("note")
    # The author still has it.
    assert pull_all(client, activity(P1)).data("note", P1_SHARED)["share_with_organizers"] is False


def test_sharing_a_note_later_reaches_the_organizer(client: Client, activity: Callable[[str], Headers]) -> None:
    organizer = pull_all(client, activity(ORGANIZER))
    assert P1_PRIVATE not in organizer.ids("note")

    push(client, activity(P1), [note_put(4, P1_PRIVATE, body="p1 private", share_with_organizers=True, base_version=1)])

    organizer = pull_all(client, activity(ORGANIZER), organizer)
    assert organizer.data("note", P1_PRIVATE)["body"] == "p1 private"
    assert organizer.data("note", P1_PRIVATE)["conflicts"] == []


def test_others_never_see_a_participants_private_edits(client: Client, activity: Callable[[str], Headers]) -> None:
    replicas = {a: pull_all(client, activity(a)) for a in (P2, HOST_G1, ORGANIZER)}

    push(client, activity(P1), [note_put(4, P1_PRIVATE, body="still private", base_version=1)])

    for account_id, replica in replicas.items():
        page = pull(client, activity(account_id), replica.cursor)
        assert P1_PRIVATE not in {c["id"] for c in page["changes"]}, account_id


# --- paging, coalescing, checksums ------------------------------------------------------------------


@pytest.mark.parametrize("account_id", [P1, ORGANIZER, HOST_G1])
@pytest.mark.parametrize("limit", [1, 5, 7])
def test_paged_pull_reaches_exactly_the_state_of_a_full_pull(
    client: Client, activity: Callable[[str], Headers], account_id: str, limit: int
) -> None:
    full = pull_all(client, activity(account_id))
    assert len(full.pages) == 1

    paged = pull_all(client, activity(account_id), limit=limit)

    assert len(paged.pages) > 1
    assert all(len(p["changes"]) <= limit for p in paged.pages)
    assert all(p["has_more"] for p in paged.pages[:-1])
    assert all("summary" not in p for p in paged.pages[:-1])
    assert state(paged) == state(full)
    assert paged.last["summary"] == full.last["summary"]


@pytest.mark.parametrize(("limit", "page_size"), [(None, 3), (2, 2), (3, 3), (10**12, 3)])
def test_page_size_is_capped_by_the_server(
    seeded: Seeded, activity: Callable[[str], Headers], limit: int | None, page_size: int
) -> None:
    with TestClient(app=make_app(seeded, pull_default_limit=3, pull_max_limit=3)) as capped:
        paged = pull_all(capped, activity(P1), limit=limit)
        full = pull_all(capped, activity(ORGANIZER))

    assert {len(p["changes"]) for p in paged.pages[:-1]} == {page_size}
    assert paged.ids("note") == {P1_PRIVATE, P1_SHARED}
    assert len(full.pages) > 1


@pytest.mark.parametrize("account_id", [P1, P_G2, ORGANIZER, HOST_G1, HOST_G2])
def test_summary_on_the_last_page_matches_the_checksum_of_what_was_delivered(
    client: Client, activity: Callable[[str], Headers], account_id: str
) -> None:
    push(client, activity(P1), [mutation(4, "note.delete", {"id": P1_SHARED, "base_version": 1})])
    replica = pull_all(client, activity(account_id), limit=4)

    summary = replica.last["summary"]
    assert set(summary) == ENTITY_KINDS
    for entity in ENTITY_KINDS:
        pairs = replica.versions(entity)
        assert summary[entity] == {"count": len(pairs), "checksum": checksum(pairs)}, entity


def test_note_edited_three_times_since_the_cursor_comes_once_at_its_latest_version(
    client: Client, activity: Callable[[str], Headers]
) -> None:
    replica = pull_all(client, activity(P1))
    edits = [note_put(4 + i, P1_PRIVATE, body=f"edit {i}", base_version=1 + i) for i in range(3)]
    assert [r["status"] for r in push(client, activity(P1), edits)["results"]] == ["applied"] * 3

    page = pull(client, activity(P1), replica.cursor)

    assert [(c["entity"], c["id"], c["version"]) for c in page["changes"]] == [("note", P1_PRIVATE, 4)]
    assert page["changes"][0]["data"]["body"] == "edit 2"
    assert page["has_more"] is False


def test_nothing_new_gives_an_empty_page_and_the_same_cursor(
    client: Client, activity: Callable[[str], Headers]
) -> None:
    replica = pull_all(client, activity(P1))

    page = pull(client, activity(P1), replica.cursor)

    assert (page["changes"], page["cursor"], page["has_more"]) == ([], replica.cursor, False)
    assert page["summary"] == replica.last["summary"]


def test_cursor_never_skips_changes_pushed_between_pages(
    client: Client, seeded: Seeded, activity: Callable[[str], Headers]
) -> None:
    p1, p2, organizer, host = activity(P1), activity(P2), activity(ORGANIZER), activity(HOST_G1)

    def applied(headers: Headers, batch: list[dict[str, Any]]) -> Callable[[], None]:
        def run() -> None:
            result = push(client, headers, batch)
            assert [r["status"] for r in result["results"]] == ["applied"] * len(batch), result

        return run

    # Between pages: new records, edits of records already delivered, and edits of records not reached yet.
    interleaved = [
        applied(p1, [note_put(4, uid(100), body="new while paging")]),
        applied(organizer, [site_patch(1, G1_SITE, 1, accessibility="Ramp")]),
        applied(p1, [note_put(5, P1_PRIVATE, body="edited while paging", base_version=1)]),
        applied(p2, [note_put(4, uid(101), body="someone else's")]),
        applied(p1, [feedback_put(6, F_P1, rating=2, comment="changed my mind", base_version=1)]),
        applied(organizer, [site_patch(2, G2_SITE, 1, accessibility="Lift")]),
        applied(p1, [mutation(7, "note.delete", {"id": P1_SHARED, "base_version": 1})]),
        applied(host, [site_patch(2, G1_SITE, 2, meeting_point="Gate")]),
    ]
    replica = Replica()
    for page_number in range(1000):
        page = pull(client, p1, replica.cursor, limit=4)
        replica.apply(page)
        if page_number < len(interleaved):
            interleaved[page_number]()
        elif not page["has_more"]:
            break

    fresh = pull_all(client, p1)
    assert state(replica) == state(fresh)
    assert replica.data("note", uid(100))["body"] == "new while paging"
    assert replica.data("note", P1_PRIVATE)["body"] == "edited while paging"
    assert replica.data("feedback", F_P1)["comment"] == "changed my mind"
    assert replica.data("site", G1_SITE)["meeting_point"] == "Gate"
    assert replica.data("site", G2_SITE)["accessibility"] == "Lift"
    assert P1_SHARED not in replica.ids("note")
    assert uid(101) not in replica.ids("note")
    for entity, summary in replica.last["summary"].items():
        assert summary["checksum"] == checksum(replica.versions(entity)), entity


# --- purged tombstones --------------------------------------------------------------------------------


def purge_all(seeded: Seeded) -> int:
    database = seeded.store()
    try:
        with database.write() as tx:
            return purge_tombstones(tx, "9999-12-31T23:59:59Z")
    finally:
        database.close()


def test_cursor_older_than_purged_deletions_is_gone_and_an_empty_cursor_starts_over(
    client: Client, seeded: Seeded, activity: Callable[[str], Headers]
) -> None:
    p1 = activity(P1)
    replica = pull_all(client, p1)
    before_delete = replica.cursor
    push(client, p1, [mutation(4, "note.delete", {"id": P1_PRIVATE, "base_version": 1})])
    after_delete = pull_all(client, p1, replica).cursor
    assert ("note", P1_PRIVATE) in replica.tombstones

    assert purge_all(seeded) == 1

    response = client.get(PULL_URL, params={"cursor": before_delete}, headers=p1)
    assert response.status_code == 410, response.text
    assert response.json()["type"] == PROBLEM + "cursor-expired"
    assert client.get(PULL_URL, params={"cursor": after_delete}, headers=p1).status_code == 200
    restarted = pull_all(client, p1)
    assert P1_PRIVATE not in restarted.ids("note")
    assert ("note", P1_PRIVATE) not in restarted.tombstones
    for entity, summary in restarted.last["summary"].items():
        assert summary["checksum"] == checksum(restarted.versions(entity)), entity


# --- client progress and encodings ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("account_id", "client_id", "expected"),
    [
        pytest.param(P1, CLIENT_A, 3, id="the-pushing-client"),
        pytest.param(P1, CLIENT_B, 0, id="another-client-of-the-account"),
        pytest.param(P2, CLIENT_A, 3, id="same-install-id-other-account-has-its-own"),
        pytest.param(HOST_G2, CLIENT_A, 0, id="same-install-id-account-that-never-pushed"),
        pytest.param(P1, None, 0, id="no-client-id"),
    ],
)
def test_pull_reports_the_last_mutation_id_of_the_given_client(
    client: Client, activity: Callable[[str], Headers], account_id: str, client_id: str | None, expected: int
) -> None:
    page = pull(client, activity(account_id), client_id=client_id)
    assert page.get("last_mutation_id", 0) == expected


def test_msgpack_pull_carries_the_same_changes_as_json(client: Client, activity: Callable[[str], Headers]) -> None:
    headers = activity(P1)
    as_json = pull(client, headers, client_id=CLIENT_A)

    response = client.get(PULL_URL, params={"client_id": CLIENT_A}, headers={**headers, "Accept": MSGPACK})

    assert response.status_code == 200
    assert response.headers["content-type"].startswith(MSGPACK)
    assert msgspec.msgpack.decode(response.content) == as_json


def test_up_to_date_cursor_survives_a_purge_of_deletions_it_could_never_see(
    client: Client, seeded: Seeded, activity: Callable[[str], Headers]
) -> None:
    # A cursor that stopped at the last change *delivered to this caller* would sit below the seq of
    # someone else's private deletion, and the purge would send a device that missed nothing back
    # to a full re-download.
    push(client, activity(P1), [mutation(4, "note.delete", {"id": P1_PRIVATE, "base_version": 1})])
    organizer = pull_all(client, activity(ORGANIZER))

    assert purge_all(seeded) == 1

    response = client.get(PULL_URL, params={"cursor": organizer.cursor}, headers=activity(ORGANIZER))
    assert response.status_code == 200, response.text
    assert response.json()["changes"] == []


@pytest.mark.parametrize(
    ("deleted", "gone_for"),
    [
        pytest.param(P1_PRIVATE, {P1}, id="private-note-only-its-author"),
        pytest.param(P1_SHARED, {P1, ORGANIZER}, id="shared-note-author-and-organizers"),
    ],
)
def test_a_purge_expires_only_the_cursors_that_were_told_of_the_purged_tombstone(
    client: Client, seeded: Seeded, activity: Callable[[str], Headers], deleted: str, gone_for: set[str]
) -> None:
    everyone = (P1, P2, P_G2, ORGANIZER, HOST_G1, HOST_G2)
    # Every cursor stands before the deletion: none of these devices has seen it yet.
    cursors = {account_id: pull_all(client, activity(account_id)).cursor for account_id in everyone}
    push(client, activity(P1), [mutation(4, "note.delete", {"id": deleted, "base_version": 1})])

    assert purge_all(seeded) == 1

    statuses = {
        account_id: client.get(PULL_URL, params={"cursor": cursor}, headers=activity(account_id)).status_code
        for account_id, cursor in cursors.items()
    }
    assert statuses == {account_id: 410 if account_id in gone_for else 200 for account_id in everyone}


def test_feedback_follows_its_visit_to_another_site_and_its_hosts(
    client: Client, activity: Callable[[str], Headers]
) -> None:
    old_host, new_host = pull_all(client, activity(HOST_G1)), pull_all(client, activity(HOST_G2))
    assert F_P1 in old_host.ids("feedback")
    assert F_P1 not in new_host.ids("feedback")
    version = pull_all(client, activity(ORGANIZER)).data("visit", G1_VISIT)["version"]

    moved = push(
        client,
        activity(ORGANIZER),
        [mutation(1, "visit.patch", {"visit_id": G1_VISIT, "base_version": version, "fields": {"site_id": G2_SITE}})],
    )
    assert moved["results"][0]["status"] == "applied"
    # A later edit by its author reaches the new site's hosts only.
    push(client, activity(P1), [feedback_put(4, F_P1, comment="p1 says more", base_version=1)])

    old_host, new_host = pull_all(client, activity(HOST_G1), old_host), pull_all(client, activity(HOST_G2), new_host)
    assert F_P1 not in old_host.ids("feedback")
    assert old_host.tombstones[("feedback", F_P1)]["data"] is None
    data = new_host.data("feedback", F_P1)
    assert (data["site_id"], data["comment"]) == (G2_SITE, "p1 says more")
    for replica, account_id in ((old_host, HOST_G1), (new_host, HOST_G2)):
        assert replica.ids("feedback") == pull_all(client, activity(account_id)).ids("feedback")
        assert replica.last["summary"]["feedback"]["checksum"] == checksum(replica.versions("feedback"))


@pytest.mark.parametrize("account_id", [P1, ORGANIZER, HOST_G1], ids=["participant", "organizer", "host"])
def test_every_pulled_change_matches_the_published_typed_schema(
    client: Client, seeded: Seeded, activity: Callable[[str], Headers], account_id: str
) -> None:
    # Records of every kind and shape: a site with a conflict, a tombstone carrying lost values.
    host = activity(HOST_G1)
    push(client, host, [site_patch(2, G1_SITE, 1, accessibility="Ramp")], client_id=CLIENT_A)
    push(client, host, [site_patch(1, G1_SITE, 1, accessibility="Lift")], client_id=CLIENT_B)
    replica = pull_all(client, activity(account_id))
    push(client, activity(P1), [note_put(1, P1_PRIVATE, body="typed on B", base_version=1)], client_id=CLIENT_B)
    push(client, activity(P1), [mutation(4, "note.delete", {"id": P1_PRIVATE, "base_version": 1})])
    document = client.get("/schema/openapi.json").json()
    validator = jsonschema.Draft202012Validator(
        {"$ref": "#/components/schemas/PullPage", "components": document["components"]}
    )

    full = pull_all(client, activity(account_id), limit=7)
    pages = [*full.pages, *pull_all(client, activity(account_id), replica).pages]

    entities = set()
    for page in pages:
        errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(page)]
        assert errors == [], errors[:3]
        entities |= {c["entity"] for c in page["changes"]}
    assert entities == ENTITY_KINDS
    pulled = document["paths"]["/api/v1/events/{event_id}/sync/pull"]["get"]["responses"]["200"]
    assert pulled["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/PullPage"}


def test_an_event_wide_purge_mark_from_before_migration_5_still_expires_every_older_cursor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = Database(tmp_path / "old.db")
    monkeypatch.setattr(db_module, "MIGRATIONS", [m for m in MIGRATIONS if m.version < 5])
    migrate(database)
    database.conn.execute(
        "INSERT INTO events (id, title, starts_on, ends_on, timezone, purged_seq) VALUES ('e', 'E', '2025-12-10', '2025-12-12', 'Europe/Rome', 42)"
    )
    database.conn.commit()
    monkeypatch.setattr(db_module, "MIGRATIONS", MIGRATIONS)

    assert migrate(database) == [m.version for m in MIGRATIONS if m.version >= 5]

    with database.read() as conn:
        assert [
            purged_seq(conn, "e", audiences(who, role, [])) for who, role in (("a", "participant"), ("o", "organizer"))
        ] == [42, 42]
    database.close()
