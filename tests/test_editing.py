"""Hosts and organizers editing sites and visits: permissions, If-Match, history, revert, groups."""

from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from tests.conftest import EVENT_ID, Seeded
from tests.sync_helpers import rows, scalar

pytestmark = pytest.mark.both_backends  # CI runs it on SQLite, then on PostgreSQL

E = f"/api/v1/events/{EVENT_ID}"
SITE = "casa-quartiere-san-salvario"  # hosted by host-san-salvario
OTHER_SITE = "triciclo"  # hosted by host-triciclo
VISIT = "d1-g1-casa-quartiere-san-salvario"

ACTORS = {
    "participant": ("participant", {}),
    "host of this site": ("host", {"site": SITE}),
    "host of another site": ("host", {"site": OTHER_SITE}),
    "organizer": ("organizer", {}),
}


def headers(seeded: Seeded, actor: str, **extra: str) -> dict[str, str]:
    role, kwargs = ACTORS[actor]
    return {**seeded.headers(role, **kwargs), **extra}


def etag(client: TestClient[Litestar], seeded: Seeded, path: str) -> str:
    return client.get(path, headers=seeded.headers("organizer")).headers["etag"]


def history_rows(seeded: Seeded) -> int:
    return int(scalar(seeded, "SELECT COUNT(*) FROM history"))


# Every cell of the permission matrix: (actor, method, path, body, expected status).
MATRIX: list[tuple[str, str, str, Any, int]] = [
    *[
        (a, "PATCH", f"/sites/{SITE}", {"accessibility": "Ramp at the back"}, s)
        for a, s in [
            ("participant", 403),
            ("host of this site", 200),
            ("host of another site", 403),
            ("organizer", 200),
        ]
    ],
    *[
        (a, "PATCH", f"/sites/{SITE}", {"name": "Renamed"}, s)
        for a, s in [
            ("participant", 403),
            ("host of this site", 403),
            ("host of another site", 403),
            ("organizer", 200),
        ]
    ],
    *[
        (a, "PATCH", f"/visits/{VISIT}", {"meeting_point": "Back gate"}, s)
        for a, s in [
            ("participant", 403),
            ("host of this site", 403),
            ("host of another site", 403),
            ("organizer", 200),
        ]
    ],
    *[
        (
            a,
            "POST",
            "/visits",
            {
                "id": "d2-extra",
                "title": "Extra",
                "starts_at": "2025-12-11T18:00:00+01:00",
                "ends_at": "2025-12-11T19:00:00+01:00",
                "group_ids": ["G1"],
                "site_id": "barrito",
            },
            s,
        )
        for a, s in [
            ("participant", 403),
            ("host of this site", 403),
            ("host of another site", 403),
            ("organizer", 201),
        ]
    ],
    *[
        (a, "GET", f"/sites/{SITE}/history", None, s)
        for a, s in [
            ("participant", 403),
            ("host of this site", 200),
            ("host of another site", 403),
            ("organizer", 200),
        ]
    ],
    *[
        (a, "GET", f"/visits/{VISIT}/history", None, s)
        for a, s in [
            ("participant", 403),
            ("host of this site", 403),
            ("host of another site", 403),
            ("organizer", 200),
        ]
    ],
    *[
        (a, "PUT", "/groups/G1/members", {"account_ids": ["p-nguyen-thi-hoa", "p-aicha-diallo"]}, s)
        for a, s in [
            ("participant", 403),
            ("host of this site", 403),
            ("host of another site", 403),
            ("organizer", 200),
        ]
    ],
]


@pytest.mark.parametrize(("actor", "method", "path", "body", "expected"), MATRIX)
def test_permission_matrix(
    client: TestClient[Litestar], seeded: Seeded, actor: str, method: str, path: str, body: Any, expected: int
) -> None:
    extra = {"If-Match": etag(client, seeded, E + path)} if method == "PATCH" else {}
    before = history_rows(seeded)
    response = client.request(method, E + path, json=body, headers=headers(seeded, actor, **extra))
    assert response.status_code == expected, response.text
    if expected == 403:
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["type"] == "urn:studyvisit:problem:forbidden"
        assert history_rows(seeded) == before


def test_revert_is_organizers_only(client: TestClient[Litestar], seeded: Seeded) -> None:
    edited = client.patch(
        E + f"/sites/{SITE}",
        json={"contact": "info@example.org"},
        headers=headers(seeded, "host of this site", **{"If-Match": etag(client, seeded, E + f"/sites/{SITE}")}),
    )
    assert edited.status_code == 200
    entry = client.get(E + f"/sites/{SITE}/history", headers=seeded.headers("organizer")).json()[0]
    for actor in ("participant", "host of this site", "host of another site"):
        refused = client.post(E + f"/history/{entry['id']}/revert", headers=headers(seeded, actor))
        assert refused.status_code == 403
    assert client.post(E + f"/history/{entry['id']}/revert", headers=seeded.headers("organizer")).status_code == 200


@pytest.mark.parametrize(
    ("if_match", "expected"),
    [(None, 428), ('"v99-deadbeef"', 412), ('"not-an-etag"', 412), ("*", 200)],
)
def test_if_match_rules(client: TestClient[Litestar], seeded: Seeded, if_match: str | None, expected: int) -> None:
    extra = {} if if_match is None else {"If-Match": if_match}
    response = client.patch(
        E + f"/sites/{SITE}", json={"accessibility": "Lift"}, headers=headers(seeded, "organizer", **extra)
    )
    assert response.status_code == expected
    if expected == 412:
        assert response.json()["current_version"] == 1
    if expected in (412, 428):
        assert client.get(E + f"/sites/{SITE}", headers=seeded.headers("participant")).json()["accessibility"] == ""


def test_stale_if_match_is_refused_with_current_version(client: TestClient[Litestar], seeded: Seeded) -> None:
    first_tag = etag(client, seeded, E + f"/sites/{SITE}")
    host = headers(seeded, "host of this site", **{"If-Match": first_tag})
    ok = client.patch(E + f"/sites/{SITE}", json={"accessibility": "Ramp"}, headers=host)
    assert ok.status_code == 200
    assert ok.headers["etag"].startswith('"v2-')
    stale = client.patch(E + f"/sites/{SITE}", json={"accessibility": "Stairs"}, headers=host)
    assert stale.status_code == 412
    assert stale.json()["type"] == "urn:studyvisit:problem:stale-version"
    assert stale.json()["current_version"] == 2
    fresh = client.patch(
        E + f"/sites/{SITE}", json={"accessibility": "Stairs"}, headers={**host, "If-Match": ok.headers["etag"]}
    )
    assert fresh.status_code == 200
    assert fresh.json()["accessibility"] == "Stairs"


def test_merge_patch_null_resets_a_field_and_removes_a_language(client: TestClient[Litestar], seeded: Seeded) -> None:
    org = headers(seeded, "organizer", **{"If-Match": "*", "Content-Type": "application/merge-patch+json"})
    client.patch(
        E + f"/sites/{SITE}", json={"contact": "x@example.org", "description": {"ko": "공동체의 집"}}, headers=org
    )
    response = client.patch(E + f"/sites/{SITE}", json={"contact": None, "description": {"ko": None}}, headers=org)
    assert response.status_code == 200
    assert response.json()["contact"] == ""
    assert "ko" not in response.json()["description"]
    assert "fr" in response.json()["description"]


@pytest.mark.parametrize(
    "body",
    [{"lat": 95}, {"lat": None}, {"opening_hours": "always"}, [], {}, {"accessibility": "x" * 501}],
)
def test_invalid_patch_is_refused_and_changes_nothing(client: TestClient[Litestar], seeded: Seeded, body: Any) -> None:
    before = history_rows(seeded)
    response = client.patch(E + f"/sites/{SITE}", json=body, headers=headers(seeded, "organizer", **{"If-Match": "*"}))
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/problem+json")
    assert history_rows(seeded) == before


def test_history_records_who_what_and_flags_a_long_move_for_review(
    client: TestClient[Litestar], seeded: Seeded
) -> None:
    host = headers(seeded, "host of this site", **{"If-Match": "*"})
    client.patch(E + f"/sites/{SITE}", json={"lat": 45.0538}, headers=host)  # about 10 m
    client.patch(E + f"/sites/{SITE}", json={"lat": 45.0700}, headers=host)  # about 1.8 km
    entries = client.get(E + f"/sites/{SITE}/history", headers=seeded.headers("organizer")).json()
    assert [e["version"] for e in entries] == [3, 2]
    assert entries[0]["account_id"] == "host-san-salvario"
    assert entries[0]["account_name"] == "Luca Ferrero"  # as readers know the author
    assert entries[0]["changes"] == {"lat": {"old": 45.0538, "new": 45.07}}
    assert "organizer should check" in entries[0]["flagged"]
    assert entries[1]["flagged"] is None


def test_revert_restores_old_values_as_a_new_version(client: TestClient[Litestar], seeded: Seeded) -> None:
    host = headers(seeded, "host of this site", **{"If-Match": "*"})
    client.patch(E + f"/sites/{SITE}", json={"lat": 45.07, "description": {"fr": "Texte erroné"}}, headers=host)
    original_fr = client.get(E + f"/sites/{SITE}/history", headers=seeded.headers("organizer")).json()[0]
    reverted = client.post(E + f"/history/{original_fr['id']}/revert", headers=seeded.headers("organizer"))
    assert reverted.status_code == 200
    assert reverted.json()["version"] == 3
    site = client.get(E + f"/sites/{SITE}?lang=fr", headers=seeded.headers("participant")).json()
    assert site["lat"] == 45.0537
    assert site["description"] != "Texte erroné"
    entries = client.get(E + f"/sites/{SITE}/history", headers=seeded.headers("organizer")).json()
    assert entries[1]["reverted_by"] == entries[0]["id"]
    again = client.post(E + f"/history/{original_fr['id']}/revert", headers=seeded.headers("organizer"))
    assert again.status_code == 400


def test_moving_a_visit_marks_it_changed_and_bumps_its_version(client: TestClient[Litestar], seeded: Seeded) -> None:
    org = headers(seeded, "organizer", **{"If-Match": etag(client, seeded, E + f"/visits/{VISIT}")})
    moved = client.patch(
        E + f"/visits/{VISIT}",
        json={"starts_at": "2025-12-10T15:30:00+01:00", "ends_at": "2025-12-10T17:30:00+01:00"},
        headers=org,
    )
    assert moved.status_code == 200
    assert moved.json()["status"] == "changed"
    assert moved.json()["version"] == 2
    cancelled = client.patch(
        E + f"/visits/{VISIT}", json={"status": "cancelled"}, headers={**org, "If-Match": moved.headers["etag"]}
    )
    assert cancelled.json()["status"] == "cancelled"


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"ends_at": "2025-12-10T14:00:00+01:00"}, "invalid-visit"),
        ({"site_id": "nowhere"}, "unknown-site"),
        ({"group_ids": ["G9"]}, "unknown-group"),
    ],
)
def test_a_visit_change_that_breaks_a_rule_is_refused(
    client: TestClient[Litestar], seeded: Seeded, body: dict[str, Any], problem: str
) -> None:
    response = client.patch(
        E + f"/visits/{VISIT}", json=body, headers=headers(seeded, "organizer", **{"If-Match": "*"})
    )
    assert response.status_code == 422
    assert response.json()["type"] == f"urn:studyvisit:problem:{problem}"
    assert client.get(E + f"/visits/{VISIT}", headers=seeded.headers("organizer")).json()["version"] == 1


def test_group_membership_replaces_the_list(client: TestClient[Litestar], seeded: Seeded) -> None:
    org = seeded.headers("organizer")
    response = client.put(E + "/groups/G1/members", json={"account_ids": ["p-kim-min-jun"]}, headers=org)
    assert response.status_code == 200
    members = {r[0] for r in rows(seeded, "SELECT id FROM accounts WHERE group_id = 'G1'")}
    assert members == {"p-kim-min-jun"}
    me = client.get(
        "/api/v1/me",
        headers=seeded.headers("participant", group="G1")
        if False
        else {"Authorization": f"Bearer {seeded.accounts['p-kim-min-jun'].token}"},
    ).json()
    assert me["group_id"] == "G1"


@pytest.mark.parametrize("account_id", ["org-marta", "nobody"])
def test_only_participants_of_the_event_join_groups(
    client: TestClient[Litestar], seeded: Seeded, account_id: str
) -> None:
    response = client.put(
        E + "/groups/G1/members", json={"account_ids": [account_id]}, headers=seeded.headers("organizer")
    )
    assert response.status_code == 400
