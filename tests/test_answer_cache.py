"""Repeat reads answered before routing (server/answer_cache.py): the same bytes, never stale, never another's.

Each test reads what the answer cache sent against what the routed path sends (a first request, or
an app that has cached nothing), byte for byte: status, every header in order, the body as it went
on the wire. ``answers.hits`` shows that the second answer really came from the answer cache.
"""

import json
import logging
from collections.abc import Iterator

import pytest
from conftest import EVENT_ID, Seeded, make_app
from litestar import Litestar
from litestar.testing import TestClient

from server.answer_cache import Answer, AnswerCache
from server.storage.accounts import set_group_members

pytestmark = pytest.mark.both_backends

E = f"/api/v1/events/{EVENT_ID}"
SITE = "triciclo"
READS = (
    f"{E}/sites",
    f"{E}/sites?lang=fr&theme=food",
    f"{E}/sites.geojson",
    f"{E}/sites/{SITE}",
    f"{E}/itinerary",
    f"{E}/itinerary.ics",
    f"{E}/schedule.xml",
    E,
)
Exchange = tuple[int, list[tuple[bytes, bytes]], bytes]


def exchange(client: TestClient[Litestar], path: str, headers: dict[str, str], method: str = "GET") -> Exchange:
    """Status, the raw header list in order, and the body as sent (not decompressed)."""
    response = client.send(client.build_request(method, path, headers=headers), stream=True)
    try:
        return response.status_code, list(response.headers.raw), b"".join(response.iter_raw())
    finally:
        response.close()


def bearer(token: str, **more: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **more}


def answers(client: TestClient[Litestar]) -> AnswerCache:
    cache: AnswerCache = client.app.state.answers
    return cache


@pytest.fixture
def warm(seeded: Seeded) -> Iterator[TestClient[Litestar]]:
    with TestClient(app=make_app(seeded)) as client:
        yield client


def cold(seeded: Seeded, path: str, headers: dict[str, str], method: str = "GET") -> Exchange:
    """What an app that has cached nothing answers now."""
    with TestClient(app=make_app(seeded)) as fresh:
        got = exchange(fresh, path, headers, method)
        assert answers(fresh).hits == 0
        return got


def twice(client: TestClient[Litestar], path: str, headers: dict[str, str], method: str = "GET") -> Exchange:
    """Ask twice: the first answer is routed, the second comes from the answer cache, and they are equal."""
    first = exchange(client, path, headers, method)
    hits = answers(client).hits
    second = exchange(client, path, headers, method)
    assert answers(client).hits == hits + 1, f"{method} {path} {headers} was not answered from the cache"
    assert second == first
    return second


def etag_of(got: Exchange) -> str:
    return dict(got[1])[b"etag"].decode()


@pytest.mark.parametrize("path", READS)
def test_a_cached_answer_is_the_routed_answer_byte_for_byte(
    seeded: Seeded, warm: TestClient[Litestar], path: str
) -> None:
    token = seeded.token("participant", group="G1")
    for encoding in ("gzip", "identity", None):
        headers = bearer(token, **({"Accept-Encoding": encoding} if encoding else {}))
        full = twice(warm, path, headers)
        assert full == cold(seeded, path, headers)
        assert full[0] == 200
        if encoding == "identity":  # (None: httpx sends its own Accept-Encoding)
            assert b"content-encoding" not in dict(full[1])
        revalidation = {**headers, "If-None-Match": etag_of(full)}
        not_modified = twice(warm, path, revalidation)
        assert not_modified == cold(seeded, path, revalidation)
        assert not_modified[0] == 304
        assert twice(warm, path, headers, "HEAD") == cold(seeded, path, headers, "HEAD")


def test_a_cached_answer_writes_the_same_access_line_and_metrics_as_a_routed_one(
    seeded: Seeded, warm: TestClient[Litestar], caplog: pytest.LogCaptureFixture
) -> None:
    account = seeded.first("participant", group="G1")
    with caplog.at_level(logging.INFO, logger="studyvisit.access"):
        twice(warm, f"{E}/sites?lang=fr", bearer(account.token))
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "studyvisit.access"]
    assert len(lines) == 2
    for line in lines:
        assert line.pop("ms") >= 0
    assert (
        lines[0]
        == lines[1]
        == {
            "method": "GET",
            "route": "/api/v1/events/{event_id}/sites",
            "path": f"{E}/sites",
            "status": 200,
            "account": account.id,
            "client_id": None,
        }
    )
    registry = warm.app.state.metrics.registry
    labels = {"method": "GET", "route": "/api/v1/events/{event_id}/sites", "status": "200"}
    assert registry.get_sample_value("studyvisit_http_requests_total", labels) == 2


def test_another_account_never_gets_the_first_accounts_answer(seeded: Seeded, warm: TestClient[Litestar]) -> None:
    callers = [
        seeded.first("participant", group="G1"),
        seeded.first("participant", group="G2"),
        seeded.first("host", site=SITE),
        seeded.first("host", site="casa-quartiere-san-salvario"),
        seeded.first("organizer"),
    ]
    for path in (f"{E}/itinerary", f"{E}/itinerary.ics", f"{E}/schedule.xml"):
        seen: dict[bytes, str] = {}
        for account in callers:  # each one after the others' answers are cached
            headers = bearer(account.token, **{"Accept-Encoding": "gzip"})
            got = twice(warm, path, headers)
            assert got == cold(seeded, path, headers), f"{account.id} {path}"
            assert got[2] not in seen, f"{account.id} got {seen.get(got[2])}'s {path}"
            seen[got[2]] = account.id
            # The first caller's ETag names the first caller's answer: the others get theirs in full.
            first_tag = etag_of(twice(warm, path, bearer(callers[0].token, **{"Accept-Encoding": "gzip"})))
            if account is not callers[0]:
                assert exchange(warm, path, {**headers, "If-None-Match": first_tag})[0] == 200


def test_a_second_host_of_the_same_site_gets_a_schedule_feed_of_its_own(
    seeded: Seeded, warm: TestClient[Litestar]
) -> None:
    first = bearer(seeded.token("host", site=SITE))
    made = warm.post(
        f"{E}/accounts",
        json={"name": "Second Host", "role": "host", "site_ids": [SITE]},
        headers=bearer(seeded.token("organizer")),
    )
    assert made.status_code == 201, made.text
    second = bearer(made.json()["token"], **{"Accept-Encoding": "identity"})
    twice(warm, f"{E}/schedule.xml", {**first, "Accept-Encoding": "identity"})
    feed = twice(warm, f"{E}/schedule.xml", second)
    assert feed == cold(seeded, f"{E}/schedule.xml", second)
    assert b"Second Host" in feed[2]  # the conference title names the feed's own host
    assert f"{EVENT_ID}-{made.json()['id']}".encode() in feed[2]


def test_a_hosts_edit_changes_the_answer_and_its_etag_at_once(seeded: Seeded, warm: TestClient[Litestar]) -> None:
    participant = bearer(seeded.token("participant", group="G1"), **{"Accept-Encoding": "gzip"})
    host = bearer(seeded.token("host", site=SITE))
    before = {path: twice(warm, path, participant) for path in (f"{E}/sites", f"{E}/sites/{SITE}")}
    site = warm.get(f"{E}/sites/{SITE}", headers=host)
    edit = warm.patch(
        f"{E}/sites/{SITE}",
        content=json.dumps({"accessibility": "Step-free from the courtyard, answered fresh"}),
        headers={**host, "If-Match": site.headers["etag"], "Content-Type": "application/merge-patch+json"},
    )
    assert edit.status_code == 200, edit.text
    for path, old in before.items():
        hits = answers(warm).hits
        now = exchange(warm, path, participant)
        assert answers(warm).hits == hits  # the old answer is not sent: the version moved on
        assert now == cold(seeded, path, participant)
        assert now[2] != old[2]
        assert etag_of(now) != etag_of(old)
        assert exchange(warm, path, {**participant, "If-None-Match": etag_of(old)})[0] == 200
        assert twice(warm, path, participant) == now


def test_a_revoked_token_gets_401_at_once_and_counts_as_a_failed_attempt(seeded: Seeded) -> None:
    with TestClient(app=make_app(seeded, auth_failures_allowed=2)) as warm:
        account = seeded.first("participant", group="G1")
        old = bearer(account.token)
        organizer = bearer(seeded.token("organizer"))
        for path in READS:
            twice(warm, path, old)
            twice(warm, path, {**old, "If-None-Match": "*"})
        rotated = warm.post(f"{E}/accounts/{account.id}/token", headers=organizer)
        assert rotated.status_code == 200, rotated.text
        hits = answers(warm).hits
        statuses = [exchange(warm, path, old)[0] for path in READS[:2]]
        statuses.append(exchange(warm, READS[0], {**old, "If-None-Match": "*"})[0])
        assert statuses == [401, 401, 429]  # the failed-auth limiter counts them, as on the routed path
        assert answers(warm).hits == hits
        new = bearer(rotated.json()["token"])
        assert twice(warm, READS[0], new) == cold(seeded, READS[0], new)


@pytest.mark.parametrize("change", ["group", "role"])
def test_an_account_whose_group_or_role_changed_gets_its_new_answer_at_once(
    seeded: Seeded, warm: TestClient[Litestar], change: str
) -> None:
    account = seeded.first("participant", group="G1")
    headers = bearer(account.token, **{"Accept-Encoding": "identity"})
    before = twice(warm, f"{E}/itinerary", headers)
    store = seeded.store()
    try:
        with store.write() as tx:  # straight in the database: the event's content version may not move
            if change == "group":
                set_group_members(tx, EVENT_ID, "G2", [account.id])
            else:
                tx.execute("UPDATE accounts SET role = 'organizer', group_id = NULL WHERE id = ?", (account.id,))
    finally:
        store.close()
    after = exchange(warm, f"{E}/itinerary", headers)
    assert after == cold(seeded, f"{E}/itinerary", headers)
    assert after[2] != before[2]
    assert json.loads(after[2])["group_id"] == ("G2" if change == "group" else None)


def test_two_servers_on_one_database_each_answer_the_other_ones_change_at_once(seeded: Seeded) -> None:
    participant = bearer(seeded.token("participant", group="G1"), **{"Accept-Encoding": "gzip"})
    organizer = bearer(seeded.token("organizer"))
    path = f"{E}/sites/{SITE}"
    with TestClient(app=make_app(seeded)) as at_a, TestClient(app=make_app(seeded)) as at_b:
        before = [twice(client, path, participant) for client in (at_a, at_b)]
        assert before[0] == before[1]
        site = at_a.get(path, headers=organizer)
        edit = at_a.patch(
            path,
            content=json.dumps({"accessibility": "Lift by the gate, edited at server A"}),
            headers={**organizer, "If-Match": site.headers["etag"], "Content-Type": "application/merge-patch+json"},
        )
        assert edit.status_code == 200, edit.text
        hits_at_b = answers(at_b).hits
        at_b_now = exchange(at_b, path, participant)
        assert answers(at_b).hits == hits_at_b
        assert at_b_now == cold(seeded, path, participant) == exchange(at_a, path, participant)
        assert at_b_now[2] != before[1][2]
        retired = at_a.post(f"{E}/accounts/{seeded.first('participant', group='G1').id}/retire", headers=organizer)
        assert retired.status_code in (200, 204), retired.text
        assert exchange(at_b, path, participant)[0] == 401
        assert exchange(at_b, path, {**participant, "If-None-Match": etag_of(at_b_now)})[0] == 401


def test_what_the_cache_does_not_hold_goes_to_litestar_and_is_not_kept(
    seeded: Seeded, warm: TestClient[Litestar]
) -> None:
    token = seeded.token("participant", group="G1")
    refused = [
        ("GET", f"{E}/sites?near=north-pole", bearer(token)),  # 400: not a point
        ("GET", "/api/v1/events/another-event/sites", bearer(token)),  # 404: not this account's event
        ("GET", f"{E}/sites", bearer("sv_not-a-token")),  # 401
        ("GET", f"{E}/sites", {"Authorization": "Basic abc"}),  # 401: not a bearer token
        ("GET", f"{E}/no-such-thing", bearer(token)),  # 404
        ("GET", "/health", {}),
        ("GET", f"{E}/sites/{SITE}/visits", bearer(seeded.token("organizer"))),  # served fresh, not cached
    ]
    for method, path, headers in refused:
        first = exchange(warm, path, headers, method)
        assert exchange(warm, path, headers, method) == first
    assert answers(warm).hits == 0
    assert len(answers(warm)) == 0
    # Two Authorization headers: Litestar decides, not the cache.
    two = [("authorization", f"Bearer {token}"), ("authorization", "Bearer sv_other")]
    for _ in range(2):
        warm.get(f"{E}/sites", headers=two)
    assert answers(warm).hits == 0


def test_the_header_limits_still_apply_to_a_request_the_cache_holds(seeded: Seeded) -> None:
    with TestClient(app=make_app(seeded, max_header_count=20)) as warm:
        headers = bearer(seeded.token("participant", group="G1"))
        twice(warm, f"{E}/sites", headers)
        crowded = {**headers, **{f"X-Filler-{i}": "x" for i in range(30)}}
        assert exchange(warm, f"{E}/sites", crowded)[0] == 431


def test_the_cache_stays_within_its_entry_and_byte_caps(seeded: Seeded, warm: TestClient[Litestar]) -> None:
    cache = answers(warm)
    cache.max_entries = 5
    headers = bearer(seeded.token("participant", group="G1"))
    for i in range(12):  # a different query string is a different request
        assert warm.get(f"{E}/sites?theme=t{i}", headers=headers).status_code == 200
        assert len(cache) <= 5
    # The most recent ones are kept, the oldest forgotten.
    hits = cache.hits
    warm.get(f"{E}/sites?theme=t11", headers=headers)
    warm.get(f"{E}/sites?theme=t0", headers=headers)
    assert cache.hits == hits + 1
    cache.max_entries = 4096
    cache.max_bytes = 20_000
    cache.clear()
    for path in READS:
        warm.get(path, headers=headers)
        assert cache.bytes <= 20_000
    assert 0 < len(cache) < len(READS)


def answer(size: int) -> Answer:
    return Answer(200, (), b"x" * size, "/p", "/p", size)


def test_the_lru_forgets_the_least_recently_used_first_and_counts_bytes() -> None:
    cache = AnswerCache(max_entries=3, max_bytes=1000)
    for key in "abc":
        cache.put(key, answer(100))
    assert cache.get("a") is not None  # a is now the most recent
    cache.put("d", answer(100))
    assert cache.get("b") is None
    assert [k for k in "acd" if cache.get(k) is not None] == ["a", "c", "d"]
    assert cache.bytes == 300
    cache.put("a", answer(600))  # replaced: its old size no longer counts
    assert cache.bytes == 800
    cache.put("e", answer(300))  # past the byte cap: the oldest go until it fits
    assert cache.bytes <= 1000
    assert cache.get("e") is not None
    cache.put("huge", answer(1001))  # larger than the whole cache: not kept
    assert cache.get("huge") is None
    assert cache.bytes <= 1000
