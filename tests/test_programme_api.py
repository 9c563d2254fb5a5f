"""The organizers' Programme and "What participants see": a drafted visit change checked before it is
published (POST …/itinerary/check), and how far each change reached participants' devices
(GET …/changes/delivery, from the position each device last pulled)."""

import uuid
from typing import Any

import pytest
from conftest import EVENT_ID, Seeded
from litestar import Litestar
from litestar.testing import TestClient

from tests.sync_helpers import rows

pytestmark = pytest.mark.both_backends  # CI runs it on SQLite, then on PostgreSQL

E = f"/api/v1/events/{EVENT_ID}"
TRICICLO = "d1-g2-triciclo"  # G2, 14:30-15:45 on 10 December
IMPACT_HUB = "d1-g2-impact-hub-torino"  # G2's next stop, 16:00-16:45
PROBLEM = "application/problem+json"
SINCE = "2025-12-01T00:00:00Z"  # after the demo programme was published (20 November)
# A G2 participant, another G2 participant, a G1 participant (G1 does not follow G2's visits).
ANANYA, JOSE, HOA = "p-ananya-iyer", "p-jose-maria-nunez", "p-nguyen-thi-hoa"


def rome(day: int, hhmm: str) -> str:
    return f"2025-12-{day}T{hhmm}:00+01:00"


ONE_HOUR_LATER = {"starts_at": rome(10, "15:30"), "ends_at": rome(10, "16:45")}


def auth(seeded: Seeded, reader: str) -> dict[str, str]:
    account = seeded.accounts.get(reader) or seeded.first(reader)
    return {"Authorization": f"Bearer {account.token}"}


def edit(client: TestClient[Litestar], seeded: Seeded, visit_id: str, fields: dict[str, Any]) -> dict[str, Any]:
    org = auth(seeded, "organizer")
    etag = client.get(f"{E}/visits/{visit_id}", headers=org).headers["etag"]
    response = client.patch(f"{E}/visits/{visit_id}", json=fields, headers={**org, "If-Match": etag})
    assert response.status_code == 200, response.text
    visit: dict[str, Any] = response.json()
    return visit


def draft(client: TestClient[Litestar], seeded: Seeded, visit_id: str, fields: dict[str, Any]) -> dict[str, Any]:
    response = client.post(
        f"{E}/itinerary/check", json={"visit_id": visit_id, "fields": fields}, headers=auth(seeded, "organizer")
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def pull_all(client: TestClient[Litestar], seeded: Seeded, who: str, client_id: str, cursor: str = "") -> str:
    """A device's pull until it is caught up; returns its cursor."""
    while True:
        page = client.get(
            f"{E}/sync/pull", params={"cursor": cursor, "client_id": client_id, "limit": 50}, headers=auth(seeded, who)
        )
        assert page.status_code == 200, page.text
        cursor = page.json()["cursor"]
        if not page.json()["has_more"]:
            return cursor


def delivery(client: TestClient[Litestar], seeded: Seeded, **query: str) -> list[dict[str, Any]]:
    response = client.get(f"{E}/changes/delivery", params={"since": SINCE, **query}, headers=auth(seeded, "organizer"))
    assert response.status_code == 200, response.text
    changes: list[dict[str, Any]] = response.json()["changes"]
    return changes


def of(changes: list[dict[str, Any]], visit_id: str) -> dict[str, Any]:
    return next(c for c in changes if c["change"]["visit_id"] == visit_id)


def pending(change: dict[str, Any]) -> set[str]:
    return {a["id"] for a in change["accounts_pending"]}


def device() -> str:
    return str(uuid.uuid4())


def versions(seeded: Seeded) -> dict[str, int]:
    return {r[0]: r[1] for r in rows(seeded, "SELECT id, version FROM visits WHERE event_id = ?", EVENT_ID)}


# --- a drafted change, checked before it is published ------------------------------------------


def test_a_draft_moving_a_visit_into_an_overlap_is_told_as_a_new_error_and_nothing_is_written(
    client: TestClient[Litestar], seeded: Seeded
) -> None:
    before = versions(seeded)
    checked = draft(client, seeded, TRICICLO, ONE_HOUR_LATER)
    overlap = [p for p in checked["problems"] if p["kind"] == "overlap" and TRICICLO in p["visit_ids"]]
    assert overlap == [
        {
            "kind": "overlap",
            "severity": "error",
            "visit_ids": [TRICICLO, IMPACT_HUB],
            "group_id": "G2",
            "message": "Group G2 cannot be at 'Visit: Triciclo / TriCircolo Reuse Centre' (Wed 15:30–16:45) and"
            " 'Visit: Impact Hub Torino' (Wed 16:00–16:45): they overlap by 45 min.",
            "new": True,
        }
    ]
    # The same rules as publishing: the moved visit is "changed", its old minibus time is stale.
    assert (checked["visit"]["starts_at"], checked["visit"]["status"]) == (ONE_HOUR_LATER["starts_at"], "changed")
    assert any(p["kind"] == "stale_time_in_text" and p["new"] for p in checked["problems"])
    assert versions(seeded) == before
    assert client.get(f"{E}/itinerary/check", headers=auth(seeded, "organizer")).json()["problems"] == [
        {k: v for k, v in p.items() if k != "new"} for p in checked["problems"] if not p["new"]
    ]


def test_a_draft_that_undoes_a_published_overlap_lists_it_as_resolved(
    client: TestClient[Litestar], seeded: Seeded
) -> None:
    edit(client, seeded, TRICICLO, ONE_HOUR_LATER)
    checked = draft(client, seeded, TRICICLO, {"starts_at": rome(10, "14:30"), "ends_at": rome(10, "15:45")})
    assert [p["kind"] for p in checked["resolved"]] == ["overlap"]
    assert not [p for p in checked["problems"] if p["kind"] == "overlap"]


def test_a_draft_cancelling_a_visit_resolves_its_overlap(client: TestClient[Litestar], seeded: Seeded) -> None:
    edit(client, seeded, TRICICLO, ONE_HOUR_LATER)
    checked = draft(client, seeded, IMPACT_HUB, {"status": "cancelled"})
    assert checked["visit"]["status"] == "cancelled"
    assert [p["visit_ids"] for p in checked["resolved"] if p["kind"] == "overlap"] == [[TRICICLO, IMPACT_HUB]]


@pytest.mark.parametrize(
    ("fields", "status", "slug"),
    [
        pytest.param(
            {"starts_at": rome(10, "16:00"), "ends_at": rome(10, "15:00")}, 422, "invalid-visit", id="ends-first"
        ),
        pytest.param({"site_id": "no-such-site"}, 422, "unknown-site", id="unknown-site"),
        pytest.param({"group_ids": ["G9"]}, 422, "unknown-group", id="unknown-group"),
        pytest.param({"starts_at": "tomorrow"}, 400, "validation-error", id="not-a-time"),
    ],
)
def test_a_draft_that_publishing_would_refuse_is_refused_the_same_way(
    client: TestClient[Litestar], seeded: Seeded, fields: dict[str, Any], status: int, slug: str
) -> None:
    before = versions(seeded)
    response = client.post(
        f"{E}/itinerary/check", json={"visit_id": TRICICLO, "fields": fields}, headers=auth(seeded, "organizer")
    )
    assert (response.status_code, response.headers["content-type"]) == (status, PROBLEM), response.text
    assert response.json()["type"].endswith(slug)
    assert versions(seeded) == before


def test_a_draft_of_an_unknown_visit_is_not_found(client: TestClient[Litestar], seeded: Seeded) -> None:
    response = client.post(
        f"{E}/itinerary/check", json={"visit_id": "no-such-visit", "fields": {}}, headers=auth(seeded, "organizer")
    )
    assert response.status_code == 404, response.text


@pytest.mark.parametrize("reader", ["participant", "host"])
@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/itinerary/check"), ("GET", f"/changes/delivery?since={SINCE}")],
    ids=["draft-check", "delivery"],
)
def test_participants_and_hosts_may_not_use_the_organizers_tools(
    client: TestClient[Litestar], seeded: Seeded, reader: str, method: str, path: str
) -> None:
    body = {"visit_id": TRICICLO, "fields": ONE_HOUR_LATER} if method == "POST" else None
    response = client.request(method, E + path, json=body, headers=auth(seeded, reader))
    assert (response.status_code, response.headers["content-type"]) == (403, PROBLEM), response.text


# --- how far a change reached participants' devices --------------------------------------------


def test_a_change_counts_a_participants_device_once_it_pulled_past_it(
    client: TestClient[Litestar], seeded: Seeded
) -> None:
    phone = device()
    cursor = pull_all(client, seeded, ANANYA, phone)
    edit(client, seeded, TRICICLO, ONE_HOUR_LATER)
    moved = of(delivery(client, seeded), TRICICLO)
    assert moved["change"]["kind"] == "moved"
    assert (moved["devices_pulled"], moved["devices"], moved["accounts"]) == (0, 1, 3)  # G2's three
    assert ANANYA in pending(moved)
    assert seeded.accounts[HOA].group_id == "G1"
    assert HOA not in pending(moved), "G1 does not follow G2's visit"
    assert all(seeded.accounts[a].group_id == "G2" for a in pending(moved))

    pull_all(client, seeded, ANANYA, phone, cursor)
    moved = of(delivery(client, seeded), TRICICLO)
    assert (moved["devices_pulled"], moved["devices"]) == (1, 1)
    assert ANANYA not in pending(moved)
    assert moved["accounts_pulled"] == 1
    assert moved["accounts"] == moved["accounts_pulled"] + len(moved["accounts_pending"])


def test_a_device_that_pulled_a_move_still_has_it_after_a_later_edit_of_the_visit(
    client: TestClient[Litestar], seeded: Seeded
) -> None:
    phone = device()
    edit(client, seeded, TRICICLO, ONE_HOUR_LATER)
    pull_all(client, seeded, ANANYA, phone)
    # A later edit the change list does not tell moves the visit's feed row on, not the move's position.
    edit(client, seeded, TRICICLO, {"notes": {"en": "Minibus leaves at 14:45."}})
    moved = of(delivery(client, seeded), TRICICLO)
    assert moved["devices_pulled"] == 1
    # A later move is a new state of the change told: the device does not have that yet.
    edit(client, seeded, TRICICLO, {"starts_at": rome(10, "15:00"), "ends_at": rome(10, "16:15")})
    moved = of(delivery(client, seeded), TRICICLO)
    assert (moved["devices_pulled"], moved["change"]["text"].endswith("14:30 → 15:00")) == (0, True)


def test_only_a_caught_up_pull_counts_and_a_full_pull_counts_at_its_end(
    client: TestClient[Litestar], seeded: Seeded
) -> None:
    edit(client, seeded, TRICICLO, ONE_HOUR_LATER)
    phone = device()
    first = client.get(f"{E}/sync/pull", params={"client_id": phone, "limit": 1}, headers=auth(seeded, ANANYA)).json()
    assert first["has_more"]
    assert of(delivery(client, seeded), TRICICLO)["devices"] == 0, "a full pull paging on holds nothing yet"
    pull_all(client, seeded, ANANYA, phone, first["cursor"])
    assert of(delivery(client, seeded), TRICICLO)["devices_pulled"] == 1


def test_organizers_and_hosts_devices_never_count_and_a_second_device_does(
    client: TestClient[Litestar], seeded: Seeded
) -> None:
    edit(client, seeded, TRICICLO, ONE_HOUR_LATER)
    pull_all(client, seeded, "organizer", device())
    pull_all(client, seeded, "host-triciclo", device())
    moved = of(delivery(client, seeded), TRICICLO)
    assert (moved["devices_pulled"], moved["devices"]) == (0, 0)
    pull_all(client, seeded, JOSE, device())
    pull_all(client, seeded, JOSE, device())
    moved = of(delivery(client, seeded), TRICICLO)
    assert (moved["devices_pulled"], moved["devices"], moved["accounts_pulled"]) == (2, 2, 1)
    assert JOSE not in pending(moved)


def test_a_410_leaves_the_devices_position_as_it_was(client: TestClient[Litestar], seeded: Seeded) -> None:
    edit(client, seeded, TRICICLO, ONE_HOUR_LATER)
    phone = device()
    cursor = pull_all(client, seeded, ANANYA, phone)
    database = seeded.store()
    with database.write() as tx:
        tx.execute(
            "INSERT INTO purge_marks (event_id, audience, seq) VALUES (?, 'all', ?)"
            " ON CONFLICT (event_id, audience) DO UPDATE SET seq = excluded.seq",
            (EVENT_ID, 10**9),
        )
    database.close()
    gone = client.get(f"{E}/sync/pull", params={"cursor": cursor, "client_id": phone}, headers=auth(seeded, ANANYA))
    assert gone.status_code == 410
    assert of(delivery(client, seeded), TRICICLO)["devices_pulled"] == 1


def test_delivery_tells_each_change_in_the_language_asked_for(client: TestClient[Litestar], seeded: Seeded) -> None:
    edit(client, seeded, TRICICLO, ONE_HOUR_LATER)
    told = client.get(f"{E}/changes", params={"since": SINCE, "lang": "ar"}, headers=auth(seeded, "organizer"))
    assert [d["change"] for d in delivery(client, seeded, lang="ar")] == told.json()["changes"]


def test_delivery_needs_a_valid_since(client: TestClient[Litestar], seeded: Seeded) -> None:
    response = client.get(f"{E}/changes/delivery", params={"since": "yesterday"}, headers=auth(seeded, "organizer"))
    assert (response.status_code, response.json()["type"].rsplit(":", 1)[-1]) == (400, "invalid-query")
