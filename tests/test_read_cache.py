"""The read cache never answers with stale data or another account's data, on one server or several.

A cached read is served after one query that checks the token and reads the event's content version
together (server/auth.py, server/routes/common.py). Two servers over one database (a SQLite file, or
PostgreSQL with ``--backend postgres``) each keep a cache of their own: after every change made through
one of them, or straight in the database, both answer exactly what a server with an empty cache
answers, and an old ETag no longer revalidates where the data changed.
"""

import gzip
import json
from collections.abc import Iterator

import httpx
import pytest
from conftest import EVENT_ID, LiveServer, Seeded, make_app
from litestar.testing import TestClient

from server.storage.accounts import set_group_members

pytestmark = pytest.mark.both_backends

E = f"/api/v1/events/{EVENT_ID}"
SITE = "triciclo"
READS = (f"{E}/sites", f"{E}/itinerary", f"{E}/sites/{SITE}")


def bearer(token: str, **more: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **more}


@pytest.fixture
def servers(seeded: Seeded) -> Iterator[tuple[httpx.Client, httpx.Client]]:
    """Clients of two `studyvisit serve` processes over the same database."""
    a, b = LiveServer(seeded).start(), LiveServer(seeded).start()
    at_a, at_b = httpx.Client(base_url=a.url, timeout=30), httpx.Client(base_url=b.url, timeout=30)
    try:
        yield at_a, at_b
    finally:
        at_a.close()
        at_b.close()
        a.stop()
        b.stop()


def cold(seeded: Seeded, path: str, headers: dict[str, str]) -> tuple[int, bytes, str | None]:
    """What a server that has cached nothing answers now."""
    with TestClient(app=make_app(seeded)) as fresh:
        response = fresh.get(path, headers=headers)
        return response.status_code, response.content, response.headers.get("etag")


def warm(client: httpx.Client, path: str, headers: dict[str, str]) -> tuple[int, bytes, str | None]:
    """Ask twice, so that the second answer is the cached one."""
    client.get(path, headers=headers)
    response = client.get(path, headers=headers)
    return response.status_code, response.content, response.headers.get("etag")


def assert_fresh_everywhere(
    seeded: Seeded, clients: tuple[httpx.Client, ...], path: str, headers: dict[str, str]
) -> tuple[int, bytes, str | None]:
    expected = cold(seeded, path, headers)
    for client in clients:
        assert warm(client, path, headers) == expected, f"{client.base_url}{path}"
    return expected


def test_an_edit_at_one_server_changes_every_read_and_etag_at_both_at_once(
    seeded: Seeded, servers: tuple[httpx.Client, httpx.Client]
) -> None:
    at_a, at_b = servers
    participant = bearer(seeded.token("participant", group="G1"))
    organizer = bearer(seeded.token("organizer"))
    before = {path: assert_fresh_everywhere(seeded, servers, path, participant) for path in READS}
    site = at_a.get(f"{E}/sites/{SITE}", headers=organizer)
    edit = at_a.patch(
        f"{E}/sites/{SITE}",
        json={"accessibility": "Ramp at the side door, cached nowhere"},
        headers={**organizer, "If-Match": site.headers["etag"], "Content-Type": "application/merge-patch+json"},
    )
    assert edit.status_code == 200, edit.text
    for path in (f"{E}/sites", f"{E}/sites/{SITE}"):
        after = assert_fresh_everywhere(seeded, servers, path, participant)
        assert b"cached nowhere" in after[1]
        assert after[2] != before[path][2]
        for client in servers:
            assert client.get(path, headers={**participant, "If-None-Match": str(before[path][2])}).status_code == 200
    # The itinerary names the site but not its accessibility: what it serves is still right, and the same.
    assert assert_fresh_everywhere(seeded, servers, f"{E}/itinerary", participant)[1] == before[f"{E}/itinerary"][1]
    same = {**participant, "If-None-Match": str(before[f"{E}/itinerary"][2])}
    assert at_b.get(f"{E}/itinerary", headers=same).status_code == 304


@pytest.mark.parametrize("how", ["rotate", "retire"])
def test_a_token_revoked_at_one_server_stops_working_at_both_at_once(
    seeded: Seeded, servers: tuple[httpx.Client, httpx.Client], how: str
) -> None:
    at_a, _ = servers
    account = seeded.first("participant", group="G1")
    old = bearer(account.token)
    for path in READS:
        assert_fresh_everywhere(seeded, servers, path, old)  # cached at both under this account
    organizer = bearer(seeded.token("organizer"))
    answer = at_a.post(f"{E}/accounts/{account.id}/{'token' if how == 'rotate' else 'retire'}", headers=organizer)
    assert answer.status_code in (200, 204), answer.text
    for client in servers:
        for path in READS:
            assert client.get(path, headers=old).status_code == 401
            assert client.get(path, headers={**old, "If-None-Match": "*"}).status_code == 401
    if how == "rotate":
        new = bearer(answer.json()["token"])
        for path in READS:
            assert assert_fresh_everywhere(seeded, servers, path, new)[0] == 200


@pytest.mark.parametrize("change", ["group", "role"])
def test_a_changed_group_or_role_is_served_its_own_itinerary_at_once(
    seeded: Seeded, servers: tuple[httpx.Client, httpx.Client], change: str
) -> None:
    account = seeded.first("participant", group="G1")
    headers = bearer(account.token)
    before = assert_fresh_everywhere(seeded, servers, f"{E}/itinerary", headers)
    store = seeded.store()
    try:
        with store.write() as tx:
            if change == "group":
                set_group_members(tx, EVENT_ID, "G2", [account.id])
            else:  # no API makes a participant an organizer: the test changes the row itself
                tx.execute("UPDATE accounts SET role = 'organizer', group_id = NULL WHERE id = ?", (account.id,))
    finally:
        store.close()
    after = assert_fresh_everywhere(seeded, servers, f"{E}/itinerary", headers)
    assert after[1] != before[1]
    assert after[2] != before[2]
    assert json.loads(after[1])["group_id"] == ("G2" if change == "group" else None)


def test_another_account_never_gets_what_was_cached_for_the_first(
    seeded: Seeded, servers: tuple[httpx.Client, httpx.Client]
) -> None:
    g1 = bearer(seeded.token("participant", group="G1"))
    g2 = bearer(seeded.token("participant", group="G2"))
    first = assert_fresh_everywhere(seeded, servers, f"{E}/itinerary", g1)
    second = assert_fresh_everywhere(seeded, servers, f"{E}/itinerary", g2)
    assert first[1] != second[1]
    assert first[2] != second[2]
    for client in servers:  # G1's ETag names G1's itinerary: G2 gets its own in full
        assert client.get(f"{E}/itinerary", headers={**g2, "If-None-Match": str(first[2])}).status_code == 200


def test_each_accept_encoding_gets_its_own_representation_from_a_warm_cache(
    seeded: Seeded, servers: tuple[httpx.Client, httpx.Client]
) -> None:
    token = seeded.token("participant", group="G1")
    for path in (f"{E}/sites", f"{E}/itinerary"):
        plain = bearer(token, **{"Accept-Encoding": "identity"})
        zipped = bearer(token, **{"Accept-Encoding": "gzip"})
        for client in servers:
            for first, second in ((zipped, plain), (plain, zipped)):
                client.get(path, headers=first)  # the other encoding is cached now
                response = client.get(path, headers=second)
                compressed = second is zipped
                assert (response.headers.get("content-encoding") == "gzip") is compressed
                assert response.headers["etag"].endswith('-gz"') is compressed
            # The gzip bytes on the wire (httpx would undo them) are the plain body, compressed.
            got_plain = client.get(path, headers=plain)
            raw = client.send(client.build_request("GET", path, headers=zipped), stream=True)
            body = gzip.decompress(b"".join(raw.iter_raw()))
            raw.close()
            assert body == got_plain.content
