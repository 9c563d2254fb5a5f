"""What a site's hosts read about the visits they receive: times, groups and their sizes."""

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from tests.conftest import EVENT_ID, Seeded

pytestmark = pytest.mark.both_backends  # CI runs it on SQLite, then on PostgreSQL

E = f"/api/v1/events/{EVENT_ID}"
SITE = "casa-quartiere-san-salvario"  # hosted by host-san-salvario; G1 visits it


def test_a_host_reads_the_visits_at_their_site_with_each_groups_size(
    client: TestClient[Litestar], seeded: Seeded
) -> None:
    answer = client.get(E + f"/sites/{SITE}/visits", headers=seeded.headers("host", site=SITE))
    assert answer.status_code == 200
    assert answer.headers["etag"]
    body = answer.json()
    assert (body["site_id"], body["timezone"]) == (SITE, "Europe/Rome")
    in_g1 = sum(1 for a in seeded.accounts.values() if a.role == "participant" and a.group_id == "G1")
    assert in_g1 > 0
    assert [(v["visit"]["id"], v["participants"]) for v in body["visits"]] == [
        ("d1-g1-casa-quartiere-san-salvario", in_g1)
    ]
    [group] = body["visits"][0]["groups"]
    assert group == {"id": "G1", "name": "Community houses and neighbourhood welfare", "participants": in_g1}


def test_group_sizes_follow_a_change_of_members(client: TestClient[Litestar], seeded: Seeded) -> None:
    organizer = seeded.headers("organizer")
    moved = client.put(E + "/groups/G1/members", json={"account_ids": ["p-nguyen-thi-hoa"]}, headers=organizer)
    assert moved.status_code == 200
    body = client.get(E + f"/sites/{SITE}/visits", headers=organizer).json()
    assert body["visits"][0]["participants"] == 1
    assert body["visits"][0]["groups"][0]["participants"] == 1


@pytest.mark.parametrize(
    ("role", "kwargs", "site", "status"),
    [
        ("participant", {}, SITE, 403),
        ("host", {"site": "triciclo"}, SITE, 403),
        ("organizer", {}, "triciclo", 200),
        ("organizer", {}, "no-such-site", 404),
    ],
)
def test_only_the_sites_hosts_and_organizers_read_group_sizes(
    client: TestClient[Litestar], seeded: Seeded, role: str, kwargs: dict[str, str], site: str, status: int
) -> None:
    answer = client.get(E + f"/sites/{site}/visits", headers=seeded.headers(role, **kwargs))
    assert answer.status_code == status
    if status != 200:
        assert answer.headers["content-type"].startswith("application/problem+json")
