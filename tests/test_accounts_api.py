"""The accounts of an event over REST: only organizers, validated drafts, tokens shown once, retired at once."""

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import segno
from litestar import Litestar
from litestar.testing import TestClient
from lxml import etree

from server.services.pull import note_caught_up
from server.storage.accounts import get_account
from server.storage.db import Database
from tests.conftest import EVENT_ID, Seeded

pytestmark = pytest.mark.both_backends  # CI runs it on SQLite, then on PostgreSQL

Client = TestClient[Litestar]
E = f"/api/v1/events/{EVENT_ID}"
ACCOUNTS = f"{E}/accounts"
PROBLEM = "application/problem+json"
VISIT = "d1-g1-casa-quartiere-san-salvario"  # a visit of group G1


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def listed(client: Client, seeded: Seeded) -> dict[str, dict[str, Any]]:
    response = client.get(ACCOUNTS, headers=seeded.headers("organizer"))
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    return {a["id"]: a for a in response.json()["accounts"]}


def add(client: Client, seeded: Seeded, **draft: Any) -> dict[str, Any]:
    response = client.post(ACCOUNTS, headers=seeded.headers("organizer"), json=draft)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


@pytest.mark.parametrize("role", ["participant", "host"])
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", ACCOUNTS),
        ("POST", ACCOUNTS),
        ("POST", f"{ACCOUNTS}/p-nguyen-thi-hoa/retire"),
        ("POST", f"{ACCOUNTS}/p-nguyen-thi-hoa/token"),
    ],
)
def test_only_organizers_may_list_add_retire_or_rotate_accounts(
    client: Client, seeded: Seeded, role: str, method: str, path: str
) -> None:
    before = listed(client, seeded)
    body = {"name": "Mallory", "role": "organizer"} if method == "POST" and path == ACCOUNTS else None
    response = client.request(method, path, headers=seeded.headers(role), json=body)
    assert response.status_code == 403
    assert response.headers["content-type"].startswith(PROBLEM)
    assert response.json()["type"] == "urn:studyvisit:problem:forbidden"
    assert listed(client, seeded) == before
    assert client.get("/api/v1/me", headers=seeded.headers("participant")).status_code == 200


def test_without_a_token_the_accounts_are_a_401(client: Client) -> None:
    response = client.get(ACCOUNTS)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_the_list_shows_role_group_language_and_no_token(client: Client, seeded: Seeded) -> None:
    people = listed(client, seeded)
    assert set(people) == set(seeded.accounts)
    hoa = people["p-nguyen-thi-hoa"]
    assert (hoa["role"], hoa["group_id"], hoa["language"]) == ("participant", "G1", "vi")
    assert (hoa["last_synced_at"], hoa["devices"], hoa["retired_at"]) == (None, 0, None)
    assert people["host-san-salvario"]["site_ids"] == ["casa-quartiere-san-salvario"]
    text = client.get(ACCOUNTS, headers=seeded.headers("organizer")).text
    assert "sv_" not in text
    assert "svf_" not in text


def test_an_added_account_gets_its_token_link_and_qr_code_once_and_the_token_works(
    client: Client, seeded: Seeded
) -> None:
    made = add(client, seeded, name="Amaru Quispe Mamani", role="participant", group_id="G3", language="es")
    assert made["id"] == "amaru-quispe-mamani"
    assert (made["event_id"], made["group_id"], made["language"]) == (EVENT_ID, "G3", "es")
    assert made["token"].startswith("sv_")
    assert made["app_url"] == f"http://testserver.local/app/#t={made['token']}"
    svg = etree.fromstring(made["qr_svg"].encode())
    assert svg.tag == "{http://www.w3.org/2000/svg}svg"
    # As big as segno's code of exactly that link (scale 4, a quiet zone of 4 modules each side).
    size = segno.make(made["app_url"], error="m").symbol_size(scale=4, border=4)
    assert (int(svg.attrib["width"]), int(svg.attrib["height"])) == size
    assert made["feed_urls"]["ics"].endswith("/itinerary.ics")
    me = client.get("/api/v1/me", headers=bearer(made["token"])).json()
    assert (me["id"], me["role"], me["group_id"]) == ("amaru-quispe-mamani", "participant", "G3")
    shown = listed(client, seeded)["amaru-quispe-mamani"]
    assert "token" not in shown
    assert shown["name"] == "Amaru Quispe Mamani"
    # The same name again gets the next free id, never someone else's account.
    assert add(client, seeded, name="Amaru Quispe Mamani", role="participant")["id"] == "amaru-quispe-mamani-2"


def test_a_host_is_added_with_the_sites_it_may_edit(client: Client, seeded: Seeded) -> None:
    made = add(client, seeded, name="Chiara Rinaldi", role="host", site_ids=["barrito"], id="host-barrito")
    assert made["site_ids"] == ["barrito"]
    site = client.get(f"{E}/sites/barrito", headers=bearer(made["token"]))
    assert site.status_code == 200


@pytest.mark.parametrize(
    ("body", "status", "slug"),
    [
        pytest.param({"role": "participant"}, 400, "validation-error", id="no-name"),
        pytest.param({"name": "", "role": "participant"}, 400, "validation-error", id="empty-name"),
        pytest.param({"name": "   ", "role": "participant"}, 422, "invalid-account", id="blank-name"),
        pytest.param({"name": "X", "role": "guest"}, 400, "validation-error", id="unknown-role"),
        pytest.param({"name": "X", "role": "participant", "country": "Italy"}, 400, "validation-error", id="country"),
        pytest.param({"name": "X", "role": "participant", "id": "no spaces"}, 400, "validation-error", id="bad-id"),
        pytest.param({"name": "X", "role": "participant", "language": "?"}, 400, "validation-error", id="language"),
        pytest.param({"name": "X", "role": "participant", "expires_at": "2026-01-01T10:00"}, 400, "validation-error",
                     id="expiry-without-offset"),
        pytest.param({"name": "X", "role": "participant", "group_id": "G9"}, 422, "invalid-account", id="group"),
        pytest.param({"name": "X", "role": "host", "site_ids": ["nowhere"]}, 422, "invalid-account", id="site"),
        pytest.param({"name": "X", "role": "organizer", "id": "org-marta"}, 409, "account-exists", id="taken"),
        pytest.param([], 400, "validation-error", id="not-an-object"),
    ],
)  # fmt: skip
def test_a_draft_that_does_not_fit_is_a_problem_and_creates_nobody(
    client: Client, seeded: Seeded, body: Any, status: int, slug: str
) -> None:
    before = listed(client, seeded)
    response = client.post(ACCOUNTS, headers=seeded.headers("organizer"), json=body)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    assert response.json()["type"] == f"urn:studyvisit:problem:{slug}"
    assert listed(client, seeded) == before


@pytest.mark.parametrize(
    ("content", "content_type", "status"),
    [(b"{not json", "application/json", 400), (b"name=X", "application/x-www-form-urlencoded", 415)],
)
def test_a_body_that_is_not_json_is_refused(
    client: Client, seeded: Seeded, content: bytes, content_type: str, status: int
) -> None:
    headers = {**seeded.headers("organizer"), "Content-Type": content_type}
    response = client.post(ACCOUNTS, headers=headers, content=content)
    assert response.status_code == status
    assert response.headers["content-type"].startswith(PROBLEM)


def test_an_expiry_is_kept_in_utc(client: Client, seeded: Seeded) -> None:
    made = add(client, seeded, name="Day Visitor", role="participant", expires_at="2030-01-02T18:00:00+01:00")
    assert made["expires_at"] == "2030-01-02T17:00:00.000000Z"
    assert client.get("/api/v1/me", headers=bearer(made["token"])).json()["expires_at"] == made["expires_at"]


def test_a_retired_accounts_token_is_refused_at_once_and_what_it_wrote_stays(client: Client, seeded: Seeded) -> None:
    made = add(client, seeded, name="Leaving Soon", role="participant", group_id="G1")
    token = made["token"]
    feed = made["feed_urls"]["ics"].removeprefix("http://testserver.local")
    assert client.get(feed).status_code == 200
    note = {
        "id": 1,
        "type": "note.put",
        "args": {"id": str(uuid.uuid4()), "body": "Written before retiring", "visit_id": VISIT},
    }
    push = {"client_id": str(uuid.uuid4()), "protocol": 1, "mutations": [note]}
    pushed = client.post(f"{E}/sync/push", headers=bearer(token), json=push).json()
    assert pushed["results"][0]["status"] == "applied", pushed

    retired = client.post(f"{ACCOUNTS}/{made['id']}/retire", headers=seeded.headers("organizer"))
    assert retired.status_code == 200
    assert retired.json()["retired_at"]
    assert client.get("/api/v1/me", headers=bearer(token)).status_code == 401
    assert client.get(f"{E}/sync/pull", headers=bearer(token)).status_code == 401
    assert client.get(feed).status_code in (401, 404)
    again = client.post(f"{ACCOUNTS}/{made['id']}/retire", headers=seeded.headers("organizer"))
    assert again.json()["retired_at"] == retired.json()["retired_at"]
    rotated = client.post(f"{ACCOUNTS}/{made['id']}/token", headers=seeded.headers("organizer"))
    assert rotated.status_code == 409
    assert rotated.json()["type"] == "urn:studyvisit:problem:account-retired"
    assert listed(client, seeded)[made["id"]]["retired_at"] == retired.json()["retired_at"]
    db = seeded.store()
    try:
        with db.read() as tx:
            assert get_account(tx, made["id"]) is not None
            count = tx.execute("SELECT COUNT(*) FROM notes WHERE author_id = ?", (made["id"],)).fetchone()[0]
        assert count == 1
    finally:
        db.close()


def test_a_new_token_works_and_the_old_one_stops_at_once(client: Client, seeded: Seeded) -> None:
    old = seeded.accounts["p-wanjiru-kamau"].token
    response = client.post(f"{ACCOUNTS}/p-wanjiru-kamau/token", headers=seeded.headers("organizer"))
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    new = response.json()
    assert new["app_url"].endswith(f"#t={new['token']}")
    assert client.get("/api/v1/me", headers=bearer(old)).status_code == 401
    assert client.get("/api/v1/me", headers=bearer(new["token"])).json()["id"] == "p-wanjiru-kamau"


@pytest.mark.parametrize("action", ["retire", "token"])
def test_an_organizer_cannot_lock_themselves_out(client: Client, seeded: Seeded, action: str) -> None:
    me = seeded.first("organizer")
    response = client.post(f"{ACCOUNTS}/{me.id}/{action}", headers=seeded.headers("organizer"))
    assert response.status_code == 422
    assert response.json()["type"] == "urn:studyvisit:problem:own-account"
    assert client.get("/api/v1/me", headers=seeded.headers("organizer")).status_code == 200


@pytest.mark.parametrize("action", ["retire", "token"])
def test_an_unknown_account_is_a_404(client: Client, seeded: Seeded, action: str) -> None:
    response = client.post(f"{ACCOUNTS}/nobody-here/{action}", headers=seeded.headers("organizer"))
    assert response.status_code == 404
    assert response.headers["content-type"].startswith(PROBLEM)


def test_the_last_sync_time_appears_after_a_device_syncs(client: Client, seeded: Seeded) -> None:
    who = "p-aicha-diallo"
    token = seeded.accounts[who].token
    assert (listed(client, seeded)[who]["last_synced_at"], listed(client, seeded)[who]["devices"]) == (None, 0)
    phone = str(uuid.uuid4())
    cursor = ""
    while True:  # a whole pull, as a phone does: only catching up counts as having synced
        page = client.get(f"{E}/sync/pull", params={"cursor": cursor, "client_id": phone}, headers=bearer(token)).json()
        cursor = page["cursor"]
        if not page["has_more"]:
            break
    after_pull = listed(client, seeded)[who]
    assert after_pull["devices"] == 1
    synced = datetime.fromisoformat(after_pull["last_synced_at"])
    assert abs(datetime.now(UTC) - synced) < timedelta(minutes=1)
    # A second install that only pushes counts too.
    note = {
        "id": 1,
        "type": "note.put",
        "args": {"id": str(uuid.uuid4()), "body": "From the laptop", "visit_id": VISIT},
    }
    laptop = {"client_id": str(uuid.uuid4()), "protocol": 1, "mutations": [note]}
    assert client.post(f"{E}/sync/push", headers=bearer(token), json=laptop).json()["results"][0]["status"] == "applied"
    assert listed(client, seeded)[who]["devices"] == 2
    # Another participant's sync is not hers.
    assert listed(client, seeded)["p-nguyen-thi-hoa"]["last_synced_at"] is None


def test_a_caught_up_pull_writes_its_time_at_most_once_a_minute(db: Database, seeded: Seeded) -> None:
    account = seeded.accounts["p-nguyen-thi-hoa"]
    phone = str(uuid.uuid4())
    noon = datetime(2025, 12, 10, 12, 0, tzinfo=UTC)

    def seen() -> str:
        with db.read() as tx:
            row = tx.execute("SELECT updated_at FROM sync_clients WHERE client_id = ?", (phone,)).fetchone()
        return str(row[0])

    note_caught_up(db, account, phone, 0, None, now=noon)
    assert seen() == "2025-12-10T12:00:00.000000Z"
    note_caught_up(db, account, phone, 0, seen(), now=noon + timedelta(seconds=30))
    assert seen() == "2025-12-10T12:00:00.000000Z"
    note_caught_up(db, account, phone, 0, seen(), now=noon + timedelta(minutes=2))
    assert seen() == "2025-12-10T12:02:00.000000Z"
