"""The encoded change each feed row keeps (changes.payload): pulls assembled from it send the very
bytes that shaping every change at pull time sends, for every kind of reader, on full and
incremental pulls, after edits, sharing and unsharing, deletes, conflicts and a visit moving site;
and no kept payload is ever behind its record.
"""

from collections.abc import Iterator
from typing import Any

import pytest
from conftest import Seeded
from litestar import Litestar
from litestar.testing import TestClient
from sync_helpers import (
    CLIENT_A,
    CLIENT_B,
    EVENT_ID,
    G1_SITE,
    G1_VISIT,
    G2_SITE,
    PULL_URL,
    execute,
    feedback_put,
    mutation,
    note_put,
    pull_all,
    push,
    site_patch,
    uid,
)

from server.services import pull as pull_service
from server.services.push import _insert_notes as insert_notes  # pyright: ignore[reportPrivateUsage]
from server.storage.accounts import get_account
from server.storage.changes import record_change
from server.storage.feed_payloads import stale_payloads
from server.storage.records import NEW_NOTE_COLUMNS
from server.storage.sync_feed import summary_sums

pytestmark = pytest.mark.both_backends

Client = TestClient[Litestar]
P1, P2, ORGANIZER, HOST_G1, HOST_G2 = (
    "p-nguyen-thi-hoa",
    "p-aicha-diallo",
    "org-marta",
    "host-san-salvario",
    "host-triciclo",
)
READERS = (P1, P2, ORGANIZER, HOST_G1, HOST_G2)
NOTE, SHARED, ORG_NOTE, PHOTO_NOTE, FEEDBACK = uid(1), uid(2), uid(3), uid(4), uid(0xF1)


def auth(seeded: Seeded, account_id: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {seeded.accounts[account_id].token}"}


def bodies(client: Client, headers: dict[str, str], cursor: str = "", *, limit: int = 2) -> tuple[list[bytes], str]:
    """The bodies of a paged pull from ``cursor`` as sent (uncompressed), and the cursor it ends at."""
    sent: list[bytes] = []
    while True:
        params = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        response = client.get(PULL_URL, params=params, headers={**headers, "Accept-Encoding": "identity"})
        assert response.status_code == 200, response.text
        sent.append(response.content)
        page = response.json()
        cursor = page["cursor"]
        if not page["has_more"]:
            return sent, cursor


def shaped(client: Client, headers: dict[str, str], cursor: str = "") -> tuple[list[bytes], str]:
    """The same pull with every change shaped at pull time (the payloads ignored)."""
    pull_service.USE_PAYLOADS = False
    try:
        return bodies(client, headers, cursor)
    finally:
        pull_service.USE_PAYLOADS = True


def assert_payloads_current(seeded: Seeded) -> None:
    database = seeded.store()
    try:
        with database.write() as tx:  # a write: PostgreSQL reads the records FOR SHARE
            assert stale_payloads(tx, EVENT_ID) == []
    finally:
        database.close()


@pytest.fixture
def readers(seeded: Seeded) -> dict[str, dict[str, str]]:
    for account_id in READERS:
        assert account_id in seeded.accounts
    return {account_id: auth(seeded, account_id) for account_id in READERS}


def applied(response: dict[str, Any]) -> None:
    assert {r["status"] for r in response["results"]} <= {"applied", "conflict"}, response


def steps(client: Client, seeded: Seeded) -> Iterator[str]:
    """Writes of every kind that changes what someone sees, one step at a time (each named)."""
    p1, p2, organizer = auth(seeded, P1), auth(seeded, P2), auth(seeded, ORGANIZER)
    host = auth(seeded, HOST_G1)
    applied(
        push(
            client,
            p1,
            [note_put(1, NOTE, body="private"), note_put(2, SHARED, body="shared", share_with_organizers=True)],
        )
    )
    applied(push(client, p1, [feedback_put(3, FEEDBACK, rating=4)]))
    applied(push(client, organizer, [note_put(1, ORG_NOTE, site_id=G1_SITE, body="mine", share_with_organizers=True)]))
    yield "created"
    # Two of P1's devices edit the shared note's body at once: the author alone sees the conflict.
    applied(push(client, p1, [note_put(1, SHARED, body="from laptop", base_version=1)], client_id=CLIENT_B))
    applied(push(client, p1, [note_put(4, SHARED, body="from phone", base_version=1)]))
    # The same for an organizer's own shared note: organizers read it through two rows (theirs and
    # everyone's of the organizers), and must get the author's view whichever a page holds.
    applied(push(client, organizer, [note_put(1, ORG_NOTE, body="from laptop", base_version=1)], client_id=CLIENT_B))
    applied(push(client, organizer, [note_put(2, ORG_NOTE, body="from phone", base_version=1)]))
    yield "conflict on a shared note"
    applied(push(client, p1, [note_put(5, NOTE, body="now shared", share_with_organizers=True, base_version=1)]))
    yield "shared"
    applied(push(client, p1, [note_put(6, NOTE, share_with_organizers=False, base_version=2)]))
    applied(push(client, p1, [note_put(7, NOTE, body="edited while unshared", base_version=3)]))
    yield "unshared, then edited"
    sha = "ab" * 32
    attachment = {"sha256": sha, "media_type": "image/jpeg", "bytes": 10, "caption": ""}
    applied(
        push(client, p2, [note_put(1, PHOTO_NOTE, body="photo", share_with_organizers=True, attachments=[attachment])])
    )
    yield "a note with an attachment"
    applied(push(client, host, [site_patch(1, G1_SITE, 1, meeting_point="Gate A")]))
    applied(push(client, organizer, [site_patch(3, G1_SITE, 1, meeting_point="Gate B")]))
    yield "a site conflict"
    version = pull_all(client, organizer).data("visit", G1_VISIT)["version"]
    moved = push(
        client,
        organizer,
        [mutation(4, "visit.patch", {"visit_id": G1_VISIT, "base_version": version, "fields": {"site_id": G2_SITE}})],
    )
    assert moved["results"][0]["status"] == "applied"
    applied(push(client, p1, [feedback_put(8, FEEDBACK, comment="more", base_version=2)]))
    yield "feedback moved with its visit"
    applied(push(client, p1, [mutation(9, "note.delete", {"id": SHARED, "base_version": 3})]))
    applied(push(client, p1, [mutation(10, "note.delete", {"id": NOTE, "base_version": 4})]))
    yield "deleted"


def test_pulls_from_stored_payloads_send_what_shaping_every_change_sends(
    client: Client, seeded: Seeded, readers: dict[str, dict[str, str]]
) -> None:
    cursors: dict[str, list[str]] = {account_id: [""] for account_id in READERS}
    for step in steps(client, seeded):
        assert_payloads_current(seeded)
        for account_id, headers in readers.items():
            # From nothing, and from where this reader stood after each earlier step.
            for cursor in cursors[account_id]:
                assert bodies(client, headers, cursor) == shaped(client, headers, cursor), (step, account_id, cursor)
            cursors[account_id].append(bodies(client, headers, cursors[account_id][-1])[1])


def test_an_edit_sends_the_new_payload_and_a_visibility_change_the_new_view(
    client: Client, seeded: Seeded, readers: dict[str, dict[str, str]]
) -> None:
    p1, organizer = auth(seeded, P1), readers[ORGANIZER]
    push(client, p1, [note_put(1, NOTE, body="first", share_with_organizers=True)])
    before = pull_all(client, organizer)
    assert before.data("note", NOTE)["body"] == "first"
    push(client, p1, [note_put(2, NOTE, body="second", base_version=1)])
    edited = pull_all(client, organizer, before)
    assert (edited.data("note", NOTE)["body"], edited.records[("note", NOTE)]["version"]) == ("second", 2)
    push(client, p1, [note_put(3, NOTE, share_with_organizers=False, base_version=2)])
    unshared = pull_all(client, organizer, edited)
    assert ("note", NOTE) not in unshared.records
    assert unshared.tombstones[("note", NOTE)]["data"] is None
    assert ("note", NOTE) not in pull_all(client, organizer).records
    assert pull_all(client, p1).data("note", NOTE)["body"] == "second"
    assert_payloads_current(seeded)


def test_rows_written_before_payloads_are_shaped_and_summed_as_before(
    client: Client, seeded: Seeded, readers: dict[str, dict[str, str]]
) -> None:
    for _ in steps(client, seeded):
        pass
    # As migration 11 leaves every row that was there before it: nothing kept.
    execute(seeded, "UPDATE changes SET payload = NULL, counts = NULL, share_hi = NULL, share_lo = NULL")
    for account_id, headers in readers.items():
        assert bodies(client, headers) == shaped(client, headers), account_id
    database = seeded.store()
    try:
        with database.read() as tx:
            accounts = [get_account(tx, a) for a in (P1, ORGANIZER)]
            assert [summary_sums(tx, a) for a in accounts] == [None, None]
    finally:
        database.close()


def test_notes_created_in_a_batch_keep_the_payload_of_their_final_state(
    client: Client, seeded: Seeded, readers: dict[str, dict[str, str]]
) -> None:
    # Push writes new notes' payloads from the values it inserted, not from the rows read back: every
    # field must come out as a read-back gives it (whole-number coordinates, tags, device times), and a
    # later mutation of the same batch (same transaction) on one of them must leave its final state.
    p1 = auth(seeded, P1)
    kept, edited, unshared, deleted, photo = (uid(0x50 + n) for n in range(5))
    sha = "cd" * 32
    attachment = {"sha256": sha, "media_type": "image/jpeg", "bytes": 10, "caption": ""}
    batch = [
        mutation(
            1,
            "note.put",
            {
                "id": kept,
                "site_id": G1_SITE,
                "body": "kept as created",
                "tags": ["b", "a"],
                "lat": 45,
                "lon": 7.5,
                "captured_at": "2026-05-01T10:00:00+02:00",
                "share_with_organizers": True,
            },
            client_time="2026-05-01T10:00:01+02:00",
        ),
        note_put(2, edited, body="first", share_with_organizers=True),
        note_put(3, unshared, body="shared at first", share_with_organizers=True),
        note_put(4, deleted, body="gone soon"),
        note_put(5, photo, body="a photo later", share_with_organizers=True),
        note_put(6, edited, body="second", base_version=1),
        note_put(7, edited, tags=["x"], base_version=2),
        note_put(8, unshared, share_with_organizers=False, base_version=1),
        mutation(9, "note.delete", {"id": deleted, "base_version": 1}),
        note_put(10, photo, attachments=[attachment], base_version=1),
    ]
    applied(push(client, p1, batch))
    assert_payloads_current(seeded)
    for account_id, headers in readers.items():
        assert bodies(client, headers) == shaped(client, headers), account_id
    database = seeded.store()
    try:
        with database.read() as tx:
            rows = tx.execute(
                "SELECT entity_id, audience, payload IS NOT NULL FROM changes"
                " WHERE entity = 'note' AND entity_id IN (?, ?)",
                (kept, edited),
            ).fetchall()
    finally:
        database.close()
    # The notes left as created, and the one edited twice, are pulled from their kept bytes.
    assert sorted((r[0], r[1], bool(r[2])) for r in rows) == sorted(
        [(kept, f"acct:{P1}", True), (kept, "org", True), (edited, f"acct:{P1}", True), (edited, "org", True)]
    )
    notes = pull_all(client, readers[ORGANIZER])
    assert notes.data("note", edited)["body"] == "second"
    assert notes.data("note", edited)["tags"] == ["x"]
    assert ("note", unshared) not in notes.records
    assert ("note", deleted) not in notes.records
    assert notes.data("note", kept)["lat"] == 45.0


def test_a_created_note_changed_later_in_its_transaction_gets_every_row_from_its_final_state(seeded: Seeded) -> None:
    # The rows push gives values when it creates a note stand only while the note stays as created: once
    # a later write of the same transaction records any of its rows again, all of them are built at commit
    # from its final state (here the organizers' row too, though only the author's was written again).
    note_id = uid(0x60)
    now = "2026-12-08T00:00:00.000000Z"
    row = (
        note_id, EVENT_ID, P1, CLIENT_A, G1_VISIT, None, "as created", '["t"]', None, None, None, 1, now, None, now, 0,
    )  # fmt: skip
    assert len(row) == len(NEW_NOTE_COLUMNS)
    database = seeded.store()
    try:
        with database.write() as tx:
            insert_notes(tx, [row])
            tx.execute("UPDATE notes SET body = 'changed', version = 2 WHERE id = ?", (note_id,))
            record_change(tx, EVENT_ID, "note", note_id, [f"acct:{P1}"])
        with database.write() as tx:
            assert stale_payloads(tx, EVENT_ID) == []
            kept = tx.execute(
                "SELECT audience, payload FROM changes WHERE entity = 'note' AND entity_id = ? ORDER BY audience",
                (note_id,),
            ).fetchall()
    finally:
        database.close()
    assert [(audience, b'"changed"' in bytes(payload)) for audience, payload in kept] == [
        (f"acct:{P1}", True),
        ("org", True),
    ]
