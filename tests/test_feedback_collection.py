"""Feedback collection: questions, answers online and through sync, closing per visit, the summary and the CSV."""

import csv
import io
import unicodedata
from collections.abc import Callable
from typing import Any

import pytest
from conftest import Seeded
from litestar import Litestar
from litestar.testing import TestClient
from sync_helpers import (
    CLIENT_A,
    CLIENT_B,
    G1_SITE,
    G1_VISIT,
    G2_SITE,
    G2_VISIT,
    PROBLEM,
    feedback_put,
    note_put,
    pull,
    pull_all,
    push,
    uid,
)

from server.fixtures import DEMO_FIXTURE, read_fixture

pytestmark = pytest.mark.both_backends  # CI runs it on SQLite, then on PostgreSQL

Client = TestClient[Litestar]
EVENT = "/api/v1/events/turin-sse-2025"
DEMO = read_fixture(DEMO_FIXTURE)
CAMPUS = "itcilo-campus"
PLENARY = "d1-plenary-opening"
HOA, AICHA, WANJIRU = "p-nguyen-thi-hoa", "p-aicha-diallo", "p-wanjiru-kamau"  # group G1
FATIMA, JOSE = "p-fatima-zahra-amrani", "p-jose-maria-nunez"  # group G2
NAMES = {a.id: a.name for a in DEMO.accounts}
# A comment a spreadsheet must not split or mangle.
TRICKY_COMMENT = 'Great host, "very" open;\nsecond line, with commas\r\nand a CRLF'

# Who calls, by the role the matrix names.
CALLERS: dict[str, Callable[[Seeded], dict[str, str]]] = {
    "participant": lambda s: s.headers("participant", group="G1"),
    "participant-other-group": lambda s: s.headers("participant", group="G2"),
    "host-of-site": lambda s: s.headers("host", site=G1_SITE),
    "host-elsewhere": lambda s: s.headers("host", site=G2_SITE),
    "organizer": lambda s: s.headers("organizer"),
}
QUESTION_BODY = {"kind": "text", "texts": {"en": "Anything else?", "fr": "Autre chose ?"}, "position": 9}
# (method, path, body) of each endpoint, and the status each caller gets, in CALLERS order.
MATRIX: list[tuple[str, str, str, dict[str, Any] | None, tuple[int, ...]]] = [
    ("put-question", "PUT", "/questions/extra", QUESTION_BODY, (403, 403, 403, 403, 201)),
    ("delete-question", "DELETE", "/questions/takeaway", None, (403, 403, 403, 403, 204)),
    ("put-feedback", "PUT", f"/visits/{G1_VISIT}/feedback", {"rating": 4}, (201, 403, 403, 403, 403)),
    ("close-feedback", "POST", f"/visits/{G1_VISIT}/feedback/close", None, (403, 403, 403, 403, 200)),
    ("open-feedback", "POST", f"/visits/{G1_VISIT}/feedback/open", None, (403, 403, 403, 403, 200)),
    ("summary", "GET", "/feedback/summary", None, (403, 403, 200, 200, 200)),
    ("feedback-csv", "GET", "/feedback.csv", None, (403, 403, 403, 403, 200)),
    ("shared-notes", "GET", "/notes/shared", None, (403, 403, 403, 403, 200)),
    ("shared-notes-csv", "GET", "/notes/shared.csv", None, (403, 403, 403, 403, 200)),
]
MATRIX_CASES = [
    pytest.param(method, path, body, caller, status, id=f"{name}-{caller}")
    for name, method, path, body, expected in MATRIX
    for caller, status in zip(CALLERS, expected, strict=True)
]


def headers_of(seeded: Seeded, account_id: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {seeded.accounts[account_id].token}"}


def give(client: Client, seeded: Seeded, account_id: str, visit_id: str, **body: Any) -> dict[str, Any]:
    """Feedback through the online endpoint, asserting it was stored."""
    response = client.put(f"{EVENT}/visits/{visit_id}/feedback", json=body, headers=headers_of(seeded, account_id))
    assert response.status_code in (200, 201), response.text
    return response.json()  # type: ignore[no-any-return]


def read_csv(response: Any) -> list[dict[str, str]]:
    """A CSV download as rows, checking it is UTF-8 with a BOM."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"].startswith("attachment; filename=")
    assert response.content.startswith(b"\xef\xbb\xbf")
    return list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"), newline="")))


@pytest.mark.parametrize(("method", "path", "body", "caller", "status"), MATRIX_CASES)
def test_each_role_gets_its_status_on_every_feedback_and_notes_endpoint(
    client: Client, seeded: Seeded, method: str, path: str, body: dict[str, Any] | None, caller: str, status: int
) -> None:
    response = client.request(method, EVENT + path, json=body, headers=CALLERS[caller](seeded))
    assert response.status_code == status, response.text
    if status == 403:
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["type"] == PROBLEM + "forbidden"


def test_hosts_summary_covers_only_their_own_sites(client: Client, seeded: Seeded) -> None:
    give(client, seeded, HOA, G1_VISIT, rating=5)
    mine = client.get(f"{EVENT}/feedback/summary", headers=seeded.headers("host", site=G1_SITE)).json()
    elsewhere = client.get(f"{EVENT}/feedback/summary", headers=seeded.headers("host", site=G2_SITE)).json()
    assert {v["site_id"] for v in mine["visits"]} == {G1_SITE}
    assert [s["site_id"] for s in mine["sites"]] == [G1_SITE]
    assert mine["visits"][0]["responses"] == 1
    assert {v["site_id"] for v in elsewhere["visits"]} == {G2_SITE}
    assert all(v["responses"] == 0 for v in elsewhere["visits"])


# --- closing ---------------------------------------------------------------------------------


def put_via_sync(client: Client, seeded: Seeded, mutation_id: int, rating: int) -> dict[str, Any]:
    # After the first put, the phone edits the version it created (1).
    base = 0 if mutation_id == 1 else 1
    result = push(
        client, headers_of(seeded, HOA), [feedback_put(mutation_id, uid(0xF1), rating=rating, base_version=base)]
    )
    return result["results"][0]  # type: ignore[no-any-return]


def put_online(client: Client, seeded: Seeded, mutation_id: int, rating: int) -> dict[str, Any]:
    response = client.put(
        f"{EVENT}/visits/{G1_VISIT}/feedback", json={"rating": rating}, headers=headers_of(seeded, HOA)
    )
    if response.status_code in (200, 201):
        return {"status": "applied", "version": response.json()["version"]}
    return {"status": "rejected", "error": response.json(), "http_status": response.status_code}


@pytest.mark.parametrize("put", [put_via_sync, put_online], ids=["sync", "online"])
def test_closed_feedback_is_rejected_and_reopening_accepts_it_again(
    client: Client, seeded: Seeded, put: Callable[[Client, Seeded, int, int], dict[str, Any]]
) -> None:
    organizer = seeded.headers("organizer")
    assert put(client, seeded, 1, 3)["status"] == "applied"

    closed = client.post(f"{EVENT}/visits/{G1_VISIT}/feedback/close", headers=organizer)
    assert closed.json() == {"visit_id": G1_VISIT, "feedback_closed": True, "version": 2}
    refused = put(client, seeded, 2, 5)
    assert refused["status"] == "rejected"
    assert refused["error"]["type"] == PROBLEM + "feedback-closed"
    assert refused.get("http_status", 422) == 422

    reopened = client.post(f"{EVENT}/visits/{G1_VISIT}/feedback/open", headers=organizer)
    assert reopened.json() == {"visit_id": G1_VISIT, "feedback_closed": False, "version": 3}
    accepted = put(client, seeded, 3, 5)
    assert accepted["status"] == "applied"
    assert accepted["version"] == 2  # the refused rating left nothing behind


def test_closing_twice_changes_nothing_the_second_time(client: Client, seeded: Seeded) -> None:
    organizer = seeded.headers("organizer")
    first = client.post(f"{EVENT}/visits/{G1_VISIT}/feedback/close", headers=organizer).json()
    second = client.post(f"{EVENT}/visits/{G1_VISIT}/feedback/close", headers=organizer).json()
    assert first == second == {"visit_id": G1_VISIT, "feedback_closed": True, "version": 2}
    history = client.get(f"{EVENT}/visits/{G1_VISIT}/history", headers=organizer).json()
    assert [(h["version"], h["changes"]) for h in history] == [(2, {"feedback_closed": {"old": False, "new": True}})]


def test_phones_pull_the_visit_again_when_its_feedback_closes(client: Client, seeded: Seeded) -> None:
    participant = headers_of(seeded, HOA)
    replica = pull_all(client, participant)
    client.post(f"{EVENT}/visits/{G1_VISIT}/feedback/close", headers=seeded.headers("organizer"))
    page = pull(client, participant, replica.cursor)
    assert [(c["entity"], c["id"], c["version"]) for c in page["changes"]] == [("visit", G1_VISIT, 2)]


@pytest.mark.parametrize(
    ("visit_id", "body", "status", "problem"),
    [
        pytest.param("no-such-visit", {"rating": 3}, 404, "not-found", id="unknown-visit"),
        pytest.param(G2_VISIT, {"rating": 3}, 403, "forbidden", id="another-groups-visit"),
        pytest.param(G1_VISIT, {"rating": 6}, 400, "validation-error", id="rating-out-of-range"),
        pytest.param(G1_VISIT, {"answers": {"overall": 9}}, 400, "validation-error", id="rating-answer-out-of-range"),
        pytest.param(G1_VISIT, {"answers": {"relevance": "maybe"}}, 422, "invalid-answer", id="unknown-choice"),
        pytest.param(G1_VISIT, {"answers": {"nope": "x"}}, 422, "invalid-answer", id="unknown-question"),
        pytest.param(G1_VISIT, {"id": "not-a-uuid"}, 400, "validation-error", id="id-not-a-uuid"),
    ],
)
def test_online_feedback_follows_the_sync_rules(
    client: Client, seeded: Seeded, visit_id: str, body: dict[str, Any], status: int, problem: str
) -> None:
    response = client.put(f"{EVENT}/visits/{visit_id}/feedback", json=body, headers=headers_of(seeded, HOA))
    assert response.status_code == status, response.text
    assert response.json()["type"] == PROBLEM + problem


def test_online_and_synced_feedback_of_one_participant_is_one_record(client: Client, seeded: Seeded) -> None:
    online = give(client, seeded, HOA, G1_VISIT, rating=4, answers={"relevance": "very"})
    result = push(client, headers_of(seeded, HOA), [feedback_put(1, uid(0xF2), answers={"takeaway": "Time banks"})])
    assert result["results"][0]["entity_id"] == online["id"]
    again = give(client, seeded, HOA, G1_VISIT, rating=5)
    assert again["id"] == online["id"]
    assert again["rating"] == 5
    assert again["answers"] == {"relevance": "very", "takeaway": "Time banks"}


# --- questions -------------------------------------------------------------------------------


def test_questions_are_versioned_and_reach_phones_on_their_next_pull(client: Client, seeded: Seeded) -> None:
    organizer, participant = seeded.headers("organizer"), headers_of(seeded, HOA)
    replica = pull_all(client, participant)
    created = client.put(f"{EVENT}/questions/extra", json=QUESTION_BODY, headers=organizer)
    assert (created.status_code, created.json()["version"]) == (201, 1)
    replaced = client.put(f"{EVENT}/questions/extra", json={**QUESTION_BODY, "position": 4}, headers=organizer)
    assert (replaced.status_code, replaced.json()["version"], replaced.json()["position"]) == (200, 2, 4)
    replica = pull_all(client, participant, replica)
    assert replica.data("question", "extra")["texts"] == QUESTION_BODY["texts"]
    assert replica.records[("question", "extra")]["version"] == 2

    assert client.delete(f"{EVENT}/questions/extra", headers=organizer).status_code == 204
    replica = pull_all(client, participant, replica)
    assert "extra" not in replica.ids("question")
    assert client.delete(f"{EVENT}/questions/extra", headers=organizer).status_code == 404


@pytest.mark.parametrize(
    ("question_id", "body", "status", "problem"),
    [
        pytest.param(
            "q", {"kind": "choice", "texts": {"en": "?"}}, 422, "invalid-question", id="choice-without-choices"
        ),
        pytest.param(
            "q",
            {"kind": "rating", "texts": {"en": "?"}, "choices": [{"id": "a", "texts": {"en": "A"}}]},
            422,
            "invalid-question",
            id="rating-with-choices",
        ),
        pytest.param(
            "q",
            {"kind": "choice", "texts": {"en": "?"}, "choices": [{"id": "a", "texts": {}}, {"id": "a", "texts": {}}]},
            422,
            "invalid-question",
            id="repeated-choice-ids",
        ),
        pytest.param("q", {"kind": "text", "texts": {"en": "  "}}, 422, "invalid-question", id="blank-text"),
        pytest.param("q", {"kind": "scale", "texts": {"en": "?"}}, 400, "validation-error", id="unknown-kind"),
        pytest.param("-q", {"kind": "text", "texts": {"en": "?"}}, 400, "bad-request", id="id-not-a-slug"),
    ],
)
def test_invalid_questions_are_refused(
    client: Client, seeded: Seeded, question_id: str, body: dict[str, Any], status: int, problem: str
) -> None:
    response = client.put(f"{EVENT}/questions/{question_id}", json=body, headers=seeded.headers("organizer"))
    assert response.status_code == status, response.text
    assert response.json()["type"] == PROBLEM + problem


# --- summary ---------------------------------------------------------------------------------


@pytest.fixture
def answered(client: Client, seeded: Seeded) -> None:
    """Two of G1's three participants answer on the G1 visit (one through sync), one G2 participant on a plenary."""
    give(
        client,
        seeded,
        HOA,
        G1_VISIT,
        rating=5,
        answers={"overall": 4, "relevance": "very", "takeaway": "A neighbourhood fund"},
        comment="Thank you",
    )
    push(
        client,
        headers_of(seeded, AICHA),
        [feedback_put(1, uid(0xA1), rating=2, answers={"overall": 3, "relevance": "little"})],
        client_id=CLIENT_B,
    )
    give(client, seeded, FATIMA, PLENARY, rating=3)


def by_id(items: list[dict[str, Any]], key: str, value: str) -> dict[str, Any]:
    return next(i for i in items if i[key] == value)


def campus_expected() -> int:
    """Participants expected at the campus: each visit there counts every member of its groups (3 per group)."""
    return sum(3 * len(v.group_ids) for v in DEMO.visits if v.site_id == CAMPUS)


SUMMARY_CASES = [
    pytest.param("visits", G1_VISIT, "responses", 2, id="visit-responses"),
    pytest.param("visits", G1_VISIT, "expected", 3, id="visit-expected-is-group-size"),
    pytest.param("visits", G1_VISIT, "response_rate", 0.667, id="visit-response-rate"),
    pytest.param(
        "visits",
        G1_VISIT,
        "rating",
        {"count": 2, "mean": 3.5, "distribution": {"1": 0, "2": 1, "3": 0, "4": 0, "5": 1}},
        id="visit-overall-rating",
    ),
    pytest.param("visits", G2_VISIT, "response_rate", 0.0, id="visit-without-answers"),
    pytest.param("sites", G1_SITE, "responses", 2, id="site-responses"),
    pytest.param("sites", G1_SITE, "visit_ids", [G1_VISIT], id="site-visits"),
    pytest.param("sites", CAMPUS, "responses", 1, id="site-with-many-visits-responses"),
    pytest.param("sites", CAMPUS, "expected", campus_expected(), id="site-with-many-visits-expected"),
    pytest.param("sites", CAMPUS, "response_rate", round(1 / campus_expected(), 3), id="site-with-many-visits-rate"),
]


@pytest.mark.usefixtures("answered")
@pytest.mark.parametrize(("section", "record_id", "field", "expected"), SUMMARY_CASES)
def test_summary_counts_responses_against_group_size(
    client: Client, seeded: Seeded, section: str, record_id: str, field: str, expected: Any
) -> None:
    summary = client.get(f"{EVENT}/feedback/summary", headers=seeded.headers("organizer")).json()
    key = "visit_id" if section == "visits" else "site_id"
    assert by_id(summary[section], key, record_id)[field] == expected


@pytest.mark.usefixtures("answered")
@pytest.mark.parametrize("section", ["visits", "sites"])
def test_summary_gives_per_question_stats_and_texts(client: Client, seeded: Seeded, section: str) -> None:
    summary = client.get(f"{EVENT}/feedback/summary", headers=seeded.headers("organizer")).json()
    entry = by_id(
        summary[section], "visit_id" if section == "visits" else "site_id", G1_VISIT if section == "visits" else G1_SITE
    )
    questions = {q["id"]: q for q in entry["questions"]}
    assert questions["overall"]["rating"] == {
        "count": 2,
        "mean": 3.5,
        "distribution": {"1": 0, "2": 0, "3": 1, "4": 1, "5": 0},
    }
    assert questions["relevance"]["choices"] == {"very": 1, "somewhat": 0, "little": 1}
    assert [(t["author_name"], t["text"]) for t in questions["takeaway"]["texts"]] == [
        (NAMES[HOA], "A neighbourhood fund")
    ]
    assert [(c["author_id"], c["text"]) for c in entry["comments"]] == [(HOA, "Thank you")]


@pytest.mark.usefixtures("answered")
def test_hosts_summary_has_the_words_but_not_who_said_them(client: Client, seeded: Seeded) -> None:
    response = client.get(f"{EVENT}/feedback/summary", headers=seeded.headers("host", site=G1_SITE))
    visit = by_id(response.json()["visits"], "visit_id", G1_VISIT)
    assert visit["comments"] == [{"feedback_id": visit["comments"][0]["feedback_id"], "text": "Thank you"}]
    assert "A neighbourhood fund" in response.text
    for account_id in (HOA, AICHA):
        assert account_id not in response.text
        assert NAMES[account_id] not in response.text
    assert "author" not in response.text


# --- CSV -------------------------------------------------------------------------------------


def test_feedback_csv_keeps_every_script_and_awkward_comment(client: Client, seeded: Seeded) -> None:
    hoa = give(client, seeded, HOA, G1_VISIT, rating=4, answers={"relevance": "somewhat"}, comment=TRICKY_COMMENT)
    fatima = give(client, seeded, FATIMA, G2_VISIT, answers={"takeaway": "تعاونيات إعادة التدوير"}, comment="شكرا")
    jose = give(client, seeded, JOSE, G2_VISIT, rating=1, comment='=HYPERLINK("http://x")')
    rows = read_csv(client.get(f"{EVENT}/feedback.csv", headers=seeded.headers("organizer")))

    assert list(rows[0]) == [
        "feedback_id",
        "visit_id",
        "visit_title",
        "site",
        "participant_name",
        "country",
        "question_id",
        "question_text",
        "answer",
    ]
    got = {(r["feedback_id"], r["question_id"]): r for r in rows}
    assert len(got) == len(rows) == 7
    hoa_comment = got[(hoa["id"], "comment")]
    assert (hoa_comment["participant_name"], hoa_comment["country"]) == ("Nguyễn Thị Hoa", "VN")
    assert hoa_comment["answer"] == TRICKY_COMMENT
    assert hoa_comment["visit_id"] == G1_VISIT
    assert got[(hoa["id"], "rating")]["answer"] == "4"
    assert got[(hoa["id"], "relevance")]["answer"] == "Somewhat relevant"
    assert got[(hoa["id"], "relevance")]["question_text"].startswith("How relevant")
    assert got[(fatima["id"], "takeaway")]["participant_name"] == "فاطمة الزهراء العمراني"
    assert got[(fatima["id"], "takeaway")]["answer"] == "تعاونيات إعادة التدوير"
    assert got[(fatima["id"], "comment")]["answer"] == "شكرا"
    assert got[(jose["id"], "rating")]["participant_name"] == "José María Núñez"
    # A spreadsheet would run a cell starting with "=": it is written as text.
    assert got[(jose["id"], "comment")]["answer"] == '\'=HYPERLINK("http://x")'


# Texts a spreadsheet would run as a formula, in any locale; each row: the comment, what the cell must hold.
FORMULA_COMMENTS = [
    ("great visit;=1+1", "great visit;'=1+1"),
    ("  =1+1", "'  =1+1"),
    ("\u3000@SUM(A1)", "'\u3000@SUM(A1)"),
    ('fine\n=HYPERLINK("http://x")', 'fine\n\'=HYPERLINK("http://x")'),
    ("\uff1d1+1 全角", "'\uff1d1+1 全角"),
    ("-2+3, +cmd|' /C calc'!A0", "'-2+3, '+cmd|' /C calc'!A0"),
    ("\t=1", "'\t'=1"),  # a tab splits cells too, when the file is read as tab-separated
    ("Bravi; grazie, a presto", "Bravi; grazie, a presto"),
]


@pytest.mark.parametrize(("comment", "cell"), FORMULA_COMMENTS)
def test_feedback_csv_quotes_every_cell_and_neutralises_formulas_in_any_locale(
    client: Client, seeded: Seeded, comment: str, cell: str
) -> None:
    give(client, seeded, JOSE, G2_VISIT, comment=comment)
    response = client.get(f"{EVENT}/feedback.csv", headers=seeded.headers("organizer"))
    answers = [r["answer"] for r in read_csv(response) if r["question_id"] == "comment"]
    assert answers == [cell]
    text = response.content.decode("utf-8-sig")
    # Read as a comma locale and as a semicolon locale would: no cell begins a formula in either.
    for delimiter in (",", ";"):
        for row in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter):
            for value in row:
                starts = unicodedata.normalize("NFKC", value).lstrip()[:1]
                assert starts not in ("=", "+", "-", "@"), (delimiter, value)
    # Every cell is quoted: each line is a quoted cell, then quoted cells after each comma.
    for row in csv.reader(io.StringIO(text, newline="")):
        line = ",".join('"' + v.replace('"', '""') + '"' for v in row)
        assert line in text


def test_feedback_csv_of_no_feedback_is_its_header(client: Client, seeded: Seeded) -> None:
    rows = read_csv(client.get(f"{EVENT}/feedback.csv", headers=seeded.headers("organizer")))
    assert rows == []


def test_notes_never_count_as_feedback(client: Client, seeded: Seeded) -> None:
    push(
        client,
        headers_of(seeded, WANJIRU),
        [note_put(1, uid(0xB1), body="x", share_with_organizers=True)],
        client_id=CLIENT_A,
    )
    summary = client.get(f"{EVENT}/feedback/summary", headers=seeded.headers("organizer")).json()
    assert by_id(summary["visits"], "visit_id", G1_VISIT)["responses"] == 0
