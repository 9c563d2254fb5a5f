"""Calendar feed URLs: a secret, read-only path token for apps that cannot send a header."""

import json
import logging
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import icalendar
import pytest
from conftest import EVENT_ID, LiveServer, Seeded, make_app
from litestar import Litestar
from litestar.testing import TestClient
from lxml import etree

from server.storage.accounts import retire_account, revoke_feed_token, rotate_feed_token, rotate_token, set_expiry

pytestmark = pytest.mark.both_backends  # CI runs it on SQLite, then on PostgreSQL

E = f"/api/v1/events/{EVENT_ID}"
Client = TestClient[Litestar]
FEED_FILES = ("itinerary.ics", "schedule.xml")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def feed_urls(client: Client, token: str) -> dict[str, str]:
    response = client.get("/api/v1/me", headers=bearer(token))
    assert response.status_code == 200, response.text
    urls: dict[str, str] = response.json()["feed_urls"]
    return urls


def feed_path(client: Client, token: str, name: str = "itinerary.ics") -> str:
    """The path of one of the account's feeds, as /api/v1/me gives it."""
    key = "ics" if name == "itinerary.ics" else "schedule_xml"
    return urlsplit(feed_urls(client, token)[key]).path


def feed_token_of(path: str) -> str:
    return path.split("/")[4]


def raw_get(url: str, path: str) -> tuple[int, dict[str, str], bytes]:
    """A GET with no header at all, HTTP/1.0 as the simplest calendar fetchers send it; status, headers, body."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port or 80), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.0\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, body


def test_me_gives_http_and_webcal_feed_urls_with_a_feed_token_that_is_not_the_bearer_token(
    client: Client, seeded: Seeded
) -> None:
    token = seeded.token("participant", group="G1")
    urls = feed_urls(client, token)
    assert set(urls) == {"ics", "schedule_xml", "webcal"}
    ics = urlsplit(urls["ics"])
    assert (ics.scheme, ics.path.split("/")[:4]) == ("http", ["", "api", "v1", "feeds"])
    assert ics.path.endswith("/itinerary.ics")
    assert urls["schedule_xml"] == urls["ics"].removesuffix("itinerary.ics") + "schedule.xml"
    assert urls["webcal"] == "webcal://" + urls["ics"].partition("://")[2]
    feed_token = feed_token_of(ics.path)
    assert feed_token.startswith("svf_")
    assert token not in urls["ics"]
    assert feed_token != token
    # Every account has a feed token of its own.
    others = {feed_token_of(feed_path(client, a.token)) for a in seeded.accounts.values()}
    assert len(others) == len(seeded.accounts)


def test_feed_urls_use_the_public_url_setting(seeded: Seeded) -> None:
    with TestClient(app=make_app(seeded, public_url="https://visit.example.org/")) as client:
        urls = feed_urls(client, seeded.token("host"))
    assert urls["ics"].startswith("https://visit.example.org/api/v1/feeds/svf_")
    assert urls["webcal"].startswith("webcal://visit.example.org/api/v1/feeds/svf_")


@pytest.mark.parametrize("role", ["participant", "host", "organizer"])
@pytest.mark.parametrize("name", FEED_FILES)
def test_feed_is_exactly_what_the_account_reads_with_its_bearer_token(
    client: Client, seeded: Seeded, role: str, name: str
) -> None:
    token = seeded.token(role)
    by_feed = client.get(feed_path(client, token, name))
    by_token = client.get(f"{E}/{name}", headers=bearer(token))
    assert by_feed.status_code == by_token.status_code == 200
    assert by_feed.content == by_token.content
    assert by_feed.headers["content-type"] == by_token.headers["content-type"]
    assert by_feed.headers["etag"] == by_token.headers["etag"]
    # Calendar apps revalidate on refresh.
    again = client.get(feed_path(client, token, name), headers={"If-None-Match": by_feed.headers["etag"]})
    assert again.status_code == 304


def test_each_participant_feed_has_its_own_groups_visits(client: Client, seeded: Seeded) -> None:
    def uids(token: str) -> set[str]:
        calendar = icalendar.Calendar.from_ical(client.get(feed_path(client, token)).content)
        return {str(e["UID"]) for e in calendar.walk("VEVENT")}

    g1, g2 = uids(seeded.token("participant", group="G1")), uids(seeded.token("participant", group="G2"))
    assert g1
    assert g2
    assert g1 != g2


@pytest.fixture
def log_server(seeded: Seeded, tmp_path: Path) -> Iterator[LiveServer]:
    server = LiveServer(seeded, log_path=tmp_path / "server.log").start()
    yield server
    server.stop()


@pytest.mark.parametrize("name", FEED_FILES)
def test_feed_url_answers_a_raw_get_without_any_header_on_a_live_server_and_is_never_logged(
    log_server: LiveServer, seeded: Seeded, name: str
) -> None:
    token = seeded.token("participant", group="G1")
    me = httpx.get(log_server.url + "/api/v1/me", headers=bearer(token)).json()
    url = me["feed_urls"]["ics" if name == "itinerary.ics" else "schedule_xml"]
    assert url.startswith(log_server.url + "/api/v1/feeds/")
    path = urlsplit(url).path
    status, headers, body = raw_get(log_server.url, path)
    assert status == 200, body
    expected = httpx.get(f"{log_server.url}{E}/{name}", headers=bearer(token))
    assert body == expected.content
    if name == "itinerary.ics":
        assert headers["content-type"].startswith("text/calendar")
        calendar = icalendar.Calendar.from_ical(body)
        assert calendar.walk("VEVENT")
        assert all(e.get("UID") and e.get("SEQUENCE") is not None for e in calendar.walk("VEVENT"))
    else:
        assert headers["content-type"].startswith("application/xml")
        assert etree.fromstring(body).tag == "schedule"
    log_server.stop()  # flush and close its stderr
    assert log_server.log_path is not None
    log = log_server.log_path.read_text(encoding="utf-8")
    feed_token = feed_token_of(path)
    assert feed_token not in log
    assert feed_token[4:20] not in log  # not even the part that selects the row
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    feed_line = next(line for line in lines if line["route"] == "/api/v1/feeds/{feed_token}/" + name)
    assert feed_line["path"] == "/api/v1/feeds/{feed_token}/" + name
    assert (feed_line["status"], feed_line["account"]) == (200, seeded.first("participant", group="G1").id)


def test_unknown_feed_tokens_are_not_logged_either(
    client: Client, caplog: pytest.LogCaptureFixture, seeded: Seeded
) -> None:
    guess = "svf_" + "ab" * 32
    with caplog.at_level(logging.INFO, logger="studyvisit.access"):
        response = client.get(f"/api/v1/feeds/{guess}/itinerary.ics")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert guess not in caplog.text
    assert "/api/v1/feeds/{feed_token}/itinerary.ics" in caplog.text


def other_endpoints() -> list[tuple[str, str]]:
    return [
        ("GET", "/api/v1/me"),
        ("GET", f"{E}/itinerary.ics"),
        ("GET", f"{E}/schedule.xml"),
        ("GET", f"{E}/itinerary"),
        ("GET", f"{E}/sites"),
        ("GET", f"{E}/sync/pull"),
        ("GET", f"{E}/feedback.csv"),
    ]


@pytest.mark.parametrize(("method", "path"), other_endpoints())
def test_a_feed_token_is_no_bearer_token(client: Client, seeded: Seeded, method: str, path: str) -> None:
    feed_token = feed_token_of(feed_path(client, seeded.token("organizer")))
    response = client.request(method, path, headers=bearer(feed_token))
    assert response.status_code == 401


@pytest.mark.parametrize(
    ("method", "suffix"),
    [
        ("GET", "itinerary"),
        ("GET", "sites"),
        ("GET", "me"),
        ("GET", "feedback.csv"),
        ("GET", "itinerary.ics/extra"),
        ("GET", ""),
        ("POST", "itinerary.ics"),
        ("PUT", "schedule.xml"),
        ("DELETE", "itinerary.ics"),
    ],
)
def test_a_feed_url_opens_nothing_but_the_two_feeds(client: Client, seeded: Seeded, method: str, suffix: str) -> None:
    feed_token = feed_token_of(feed_path(client, seeded.token("organizer")))
    response = client.request(method, f"/api/v1/feeds/{feed_token}/{suffix}")
    assert response.status_code in (404, 405)
    assert response.headers["content-type"] == "application/problem+json"


def test_the_bearer_token_in_a_feed_path_opens_nothing(client: Client, seeded: Seeded) -> None:
    token = seeded.token("organizer")
    assert client.get(f"/api/v1/feeds/{token}/itinerary.ics").status_code == 404


def change(seeded: Seeded, account_id: str, action: str) -> None:
    db = seeded.store()
    with db.write() as conn:
        if action == "rotate-feed":
            rotate_feed_token(conn, account_id)
        elif action == "revoke-feed":
            revoke_feed_token(conn, account_id)
        elif action == "retire":
            retire_account(conn, account_id)
        elif action == "expire":
            set_expiry(conn, account_id, "2000-01-01T00:00:00.000000Z")
        elif action == "rotate-token":
            rotate_token(conn, account_id)
    db.close()


@pytest.mark.parametrize(
    ("action", "feed_works"),
    [("rotate-feed", False), ("revoke-feed", False), ("retire", False), ("expire", False), ("rotate-token", True)],
)
def test_an_old_feed_url_stops_working_when_the_feed_is_rotated_or_revoked_or_the_account_ends(
    client: Client, seeded: Seeded, action: str, feed_works: bool
) -> None:
    account = seeded.first("participant", group="G2")
    path = feed_path(client, account.token)
    assert client.get(path).status_code == 200
    change(seeded, account.id, action)
    assert client.get(path).status_code == (200 if feed_works else 404)
    if action in ("rotate-feed", "revoke-feed"):
        me: Any = client.get("/api/v1/me", headers=bearer(account.token)).json()
        new = me["feed_urls"]
        if action == "revoke-feed":
            assert new is None
        else:
            assert urlsplit(new["ics"]).path != path
            assert client.get(urlsplit(new["ics"]).path).status_code == 200


def test_a_subscribed_feed_updates_a_changed_visit_in_place(client: Client, seeded: Seeded) -> None:
    path = feed_path(client, seeded.token("participant", group="G1"))

    def events() -> dict[str, tuple[int, str]]:
        calendar = icalendar.Calendar.from_ical(client.get(path).content)
        return {str(e["UID"]): (int(e["SEQUENCE"]), str(e["LOCATION"])) for e in calendar.walk("VEVENT")}

    before = events()
    visit = "d1-g1-casa-quartiere-san-salvario"
    organizer = {**bearer(seeded.token("organizer")), "If-Match": "*"}
    changed = client.patch(f"{E}/visits/{visit}", json={"meeting_point": "Via Morgari 14, cortile"}, headers=organizer)
    assert changed.status_code == 200, changed.text
    after = events()
    assert set(after) == set(before)  # the same events: updated, not added
    uid = next(u for u in after if u.startswith(visit + "@"))
    assert after[uid][0] == before[uid][0] + 1
    assert all(after[u] == before[u] for u in after if u != uid)
