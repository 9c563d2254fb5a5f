"""The pull's cache of encoded changes: never stale, never one viewer's change served to another.

Two apps over one database stand for two servers: each keeps its own cache, and writes through one
must reach pulls through the other, however much the other cached before.
"""

from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
from conftest import Seeded, make_app
from litestar import Litestar
from litestar.testing import TestClient
from sync_helpers import (
    CLIENT_B,
    G1_SITE,
    MSGPACK,
    PULL_URL,
    feedback_put,
    mutation,
    note_put,
    pull_all,
    push,
    site_patch,
    uid,
)

from server.storage.purge import purge_tombstones

pytestmark = pytest.mark.both_backends

Client = TestClient[Litestar]
P1, ORGANIZER, HOST_G1 = "p-nguyen-thi-hoa", "org-marta", "host-san-salvario"
SHARED, FEEDBACK = uid(1), uid(0xF1)


@pytest.fixture
def other(seeded: Seeded) -> Iterator[Client]:
    """A second server over the same database, with a cache of its own."""
    with TestClient(app=make_app(seeded)) as second:
        yield second


def auth(seeded: Seeded, account_id: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {seeded.accounts[account_id].token}"}


def pages(client: Client, headers: dict[str, str], *, limit: int = 7) -> list[bytes]:
    """The bodies of a whole paged pull, as sent (uncompressed)."""
    bodies: list[bytes] = []
    cursor = ""
    while True:
        params: dict[str, Any] = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        response = client.get(PULL_URL, params=params, headers={**headers, "Accept-Encoding": "identity"})
        assert response.status_code == 200, response.text
        bodies.append(response.content)
        page = msgspec.msgpack.decode(response.content) if MSGPACK in headers.get("Accept", "") else response.json()
        cursor = page["cursor"]
        if not page["has_more"]:
            return bodies


def note_of(replica: Any, note_id: str) -> dict[str, Any]:
    return replica.records[("note", note_id)]  # type: ignore[no-any-return]


@pytest.fixture
def shared_note(client: Client, seeded: Seeded) -> None:
    """P1's shared note with a conflict of its own (two of P1's devices edited its body at once), and
    P1's feedback on the G1 visit."""
    p1 = auth(seeded, P1)
    push(client, p1, [note_put(1, SHARED, body="first", share_with_organizers=True)])
    push(client, p1, [note_put(1, SHARED, body="from laptop", base_version=1)], client_id=CLIENT_B)
    push(client, p1, [note_put(2, SHARED, body="from phone", base_version=1), feedback_put(3, FEEDBACK, rating=4)])


@pytest.mark.usefixtures("shared_note")
@pytest.mark.parametrize("accept", ["application/json", MSGPACK])
def test_a_warm_server_sends_the_same_bytes_as_a_cold_one(client: Client, seeded: Seeded, accept: str) -> None:
    readers = [auth(seeded, a) | {"Accept": accept} for a in (ORGANIZER, HOST_G1, P1)]
    cold: list[list[bytes]] = []
    for headers in readers:  # each on a server that has served nobody else
        with TestClient(app=make_app(seeded)) as fresh:
            cold.append(pages(fresh, headers))
    for headers in readers:  # each after the others filled the cache with their views of the same versions
        pages(client, headers)
    assert [pages(client, headers) for headers in readers] == cold


@pytest.mark.usefixtures("shared_note")
def test_viewers_of_one_version_get_each_their_own_view(client: Client, seeded: Seeded) -> None:
    organizer = pull_all(client, auth(seeded, ORGANIZER))
    host = pull_all(client, auth(seeded, HOST_G1))
    author = pull_all(client, auth(seeded, P1))
    # The author is shown the conflict; an organizer reading the shared note is not.
    assert [c["value"] for c in note_of(author, SHARED)["data"]["conflicts"]] == ["from phone"]
    assert note_of(organizer, SHARED)["data"]["conflicts"] == []
    assert note_of(organizer, SHARED)["version"] == note_of(author, SHARED)["version"]
    # Hosts are not told who gave feedback; organizers are.
    assert organizer.data("feedback", FEEDBACK)["author_id"] == P1
    assert "author_id" not in host.data("feedback", FEEDBACK)
    assert organizer.records[("feedback", FEEDBACK)]["version"] == host.records[("feedback", FEEDBACK)]["version"]
    assert ("note", SHARED) not in host.records


def test_a_site_conflict_reaches_who_may_resolve_it_whoever_pulled_first(client: Client, seeded: Seeded) -> None:
    participant, organizer = auth(seeded, P1), auth(seeded, ORGANIZER)
    host = auth(seeded, HOST_G1)
    push(client, host, [site_patch(1, G1_SITE, 1, meeting_point="Gate A")])
    push(client, organizer, [site_patch(1, G1_SITE, 1, meeting_point="Gate B")])
    seen = pull_all(client, participant).data("site", G1_SITE)
    resolver = pull_all(client, host).data("site", G1_SITE)
    assert seen["meeting_point"] == resolver["meeting_point"] == "Gate A"
    assert seen["conflicts"] == []
    assert [c["value"] for c in resolver["conflicts"]] == ["Gate B"]
    assert [c["value"] for c in pull_all(client, organizer).data("site", G1_SITE)["conflicts"]] == ["Gate B"]


@pytest.mark.usefixtures("shared_note")
def test_an_edit_through_another_server_reaches_pulls_of_one_that_cached_the_record(
    client: Client, other: Client, seeded: Seeded
) -> None:
    organizer = auth(seeded, ORGANIZER)
    before = pull_all(client, organizer)
    version = note_of(before, SHARED)["version"]
    push(other, auth(seeded, P1), [note_put(4, SHARED, body="edited elsewhere", base_version=version)])
    incremental = pull_all(client, organizer, before)
    full = pull_all(client, organizer)
    for replica in (incremental, full):
        assert note_of(replica, SHARED)["version"] == version + 1
        assert note_of(replica, SHARED)["data"]["body"] == "edited elsewhere"


def test_a_note_purged_and_created_again_at_the_same_version_is_sent_as_it_is_now(
    client: Client, seeded: Seeded
) -> None:
    p1 = auth(seeded, P1)
    note = uid(2)
    push(client, p1, [note_put(1, note, body="before the purge")])
    assert note_of(pull_all(client, p1), note)["data"]["body"] == "before the purge"  # now cached at version 1
    push(client, p1, [mutation(2, "note.delete", {"id": note, "base_version": 1})])
    database = seeded.store()
    try:
        with database.write() as tx:
            assert purge_tombstones(tx, "9999-12-31T23:59:59Z") == 1
    finally:
        database.close()
    push(client, p1, [note_put(1, note, body="after the purge")], client_id="00000000-0000-4000-8000-00000000000c")
    again = note_of(pull_all(client, p1), note)
    assert again["version"] == 1
    assert again["data"]["body"] == "after the purge"
