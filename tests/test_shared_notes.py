"""Notes shared with the organizers: only shared, live notes, per visit and per site, as JSON and CSV."""

import csv
import io
from typing import Any

import pytest
from conftest import Seeded
from litestar import Litestar
from litestar.testing import TestClient
from sync_helpers import CLIENT_A, G1_SITE, G1_VISIT, G2_SITE, PROBLEM, mutation, note_put, push, uid

pytestmark = pytest.mark.both_backends  # CI runs it on SQLite, then on PostgreSQL

Client = TestClient[Litestar]
EVENT = "/api/v1/events/turin-sse-2025"
HOA, FATIMA = "p-nguyen-thi-hoa", "p-fatima-zahra-amrani"
# A body a spreadsheet must not split or mangle.
TRICKY_BODY = 'Ask about the "time bank", the fund, and rotas;\nsecond line\r\nthird line'
SHARED_ON_VISIT, PRIVATE, DELETED, UNSHARED, SHARED_AT_SITE = (uid(0xC1), uid(0xC2), uid(0xC3), uid(0xC4), uid(0xC5))


def headers_of(seeded: Seeded, account_id: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {seeded.accounts[account_id].token}"}


@pytest.fixture
def notes(client: Client, seeded: Seeded) -> None:
    """Hoa: a shared note on the G1 visit, a private one, a shared one deleted, a shared one unshared.
    Fatima: a shared note on the Triciclo site itself, in Arabic."""
    push(
        client,
        headers_of(seeded, HOA),
        [
            note_put(1, SHARED_ON_VISIT, body=TRICKY_BODY, tags=["finance", "welfare"], share_with_organizers=True),
            note_put(2, PRIVATE, body="just for me"),
            note_put(3, DELETED, body="oops", share_with_organizers=True),
            mutation(4, "note.delete", {"id": DELETED, "base_version": 1}),
            note_put(5, UNSHARED, body="second thoughts", share_with_organizers=True),
            note_put(6, UNSHARED, body="second thoughts", share_with_organizers=False, base_version=1),
        ],
        client_id=CLIENT_A,
    )
    push(
        client,
        headers_of(seeded, FATIMA),
        [note_put(1, SHARED_AT_SITE, site_id=G2_SITE, body="فرز النفايات في المصدر", share_with_organizers=True)],
        client_id=CLIENT_A,
    )


@pytest.mark.usefixtures("notes")
@pytest.mark.parametrize(
    ("query", "expected"),
    [
        pytest.param("", [SHARED_ON_VISIT, SHARED_AT_SITE], id="all"),
        pytest.param(f"?visit={G1_VISIT}", [SHARED_ON_VISIT], id="by-visit"),
        pytest.param(f"?site={G1_SITE}", [SHARED_ON_VISIT], id="by-site-through-the-visit"),
        pytest.param(f"?site={G2_SITE}", [SHARED_AT_SITE], id="by-site-itself"),
        pytest.param(f"?visit={G1_VISIT}&site={G2_SITE}", [], id="visit-and-other-site"),
        pytest.param("?visit=d1-g3-cascina-roccafranca", [], id="visit-without-notes"),
    ],
)
def test_organizers_see_only_shared_live_notes(client: Client, seeded: Seeded, query: str, expected: list[str]) -> None:
    response = client.get(f"{EVENT}/notes/shared{query}", headers=seeded.headers("organizer"))
    assert response.status_code == 200, response.text
    assert sorted(n["id"] for n in response.json()) == sorted(expected)


@pytest.mark.usefixtures("notes")
def test_shared_notes_carry_author_visit_and_site(client: Client, seeded: Seeded) -> None:
    listed = client.get(f"{EVENT}/notes/shared", headers=seeded.headers("organizer")).json()
    by_id = {n["id"]: n for n in listed}
    on_visit, at_site = by_id[SHARED_ON_VISIT], by_id[SHARED_AT_SITE]
    assert (on_visit["author_id"], on_visit["author_name"]) == (HOA, "Nguyễn Thị Hoa")
    assert (on_visit["visit_id"], on_visit["site_id"]) == (G1_VISIT, G1_SITE)
    assert on_visit["visit_title"] == "Visit: Casa del Quartiere San Salvario"
    assert on_visit["site_name"] == "Casa del Quartiere San Salvario"
    assert (on_visit["body"], on_visit["tags"]) == (TRICKY_BODY, ["finance", "welfare"])
    assert at_site["author_name"] == "فاطمة الزهراء العمراني"
    assert (at_site["visit_id"], at_site["visit_title"], at_site["site_id"]) == (None, None, G2_SITE)
    assert "conflicts" not in on_visit


@pytest.mark.usefixtures("notes")
def test_shared_notes_csv_has_the_same_notes_in_utf8_with_bom(client: Client, seeded: Seeded) -> None:
    response = client.get(f"{EVENT}/notes/shared.csv", headers=seeded.headers("organizer"))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"] == 'attachment; filename="turin-sse-2025-shared-notes.csv"'
    assert response.content.startswith(b"\xef\xbb\xbf")
    rows: list[dict[str, Any]] = list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"), newline="")))
    by_id = {r["note_id"]: r for r in rows}
    assert sorted(by_id) == sorted([SHARED_ON_VISIT, SHARED_AT_SITE])
    assert by_id[SHARED_ON_VISIT]["body"] == TRICKY_BODY
    assert by_id[SHARED_ON_VISIT]["author_name"] == "Nguyễn Thị Hoa"
    assert by_id[SHARED_ON_VISIT]["tags"] == "finance; welfare"
    assert by_id[SHARED_AT_SITE]["author_name"] == "فاطمة الزهراء العمراني"
    assert by_id[SHARED_AT_SITE]["body"] == "فرز النفايات في المصدر"
    assert (by_id[SHARED_AT_SITE]["visit_id"], by_id[SHARED_AT_SITE]["site_id"]) == ("", G2_SITE)


@pytest.mark.parametrize(
    ("path", "query"),
    [
        pytest.param("/notes/shared", "?visit=no-such-visit", id="json-unknown-visit"),
        pytest.param("/notes/shared", "?site=no-such-site", id="json-unknown-site"),
        pytest.param("/notes/shared.csv", "?site=no-such-site", id="csv-unknown-site"),
    ],
)
def test_unknown_filters_are_invalid_queries(client: Client, seeded: Seeded, path: str, query: str) -> None:
    response = client.get(EVENT + path + query, headers=seeded.headers("organizer"))
    assert response.status_code == 400
    assert response.json()["type"] == PROBLEM + "invalid-query"


@pytest.mark.usefixtures("notes")
@pytest.mark.parametrize("path", ["/notes/shared", "/notes/shared.csv"])
@pytest.mark.parametrize("role", ["participant", "host"])
def test_only_organizers_read_shared_notes(client: Client, seeded: Seeded, path: str, role: str) -> None:
    response = client.get(EVENT + path, headers=seeded.headers(role))
    assert response.status_code == 403
    assert "فرز" not in response.text
