"""Schedule changes told to each reader in their language, and reordering a day."""

import re
from typing import Any

import pytest
from conftest import EVENT_ID, Seeded
from icalendar import Calendar
from litestar import Litestar
from litestar.testing import TestClient

from tests.sync_helpers import rows

pytestmark = pytest.mark.both_backends  # CI runs it on SQLite, then on PostgreSQL

E = f"/api/v1/events/{EVENT_ID}"
TRICICLO = "d1-g2-triciclo"  # G2, 14:30-15:45 on 10 December, hosted by host-triciclo
IMPACT_HUB = "d1-g2-impact-hub-torino"  # G2's next stop, 16:00-16:45
CASCINA = "d1-g3-cascina-roccafranca"  # G3, 14:30-16:30
SAN_SALVARIO = "d1-g1-casa-quartiere-san-salvario"  # G1, 14:30-16:30, hosted by host-san-salvario
G1 = "Community houses and neighbourhood welfare"
G2 = "Work integration and circular economy"
VISIT_TO_TRICICLO = "visit to Triciclo / TriCircolo Reuse Centre"
PROBLEM = "application/problem+json"


def rome(day: int, hhmm: str) -> str:
    """A time of December 2025 in Turin."""
    return f"2025-12-{day}T{hhmm}:00+01:00"


ONE_HOUR_LATER = {"starts_at": rome(10, "15:30"), "ends_at": rome(10, "16:45")}


def auth(seeded: Seeded, reader: str) -> dict[str, str]:
    """Headers of an account by id, or of the first account of a role."""
    account = seeded.accounts.get(reader) or seeded.first(reader)
    return {"Authorization": f"Bearer {account.token}"}


def edit(client: TestClient[Litestar], seeded: Seeded, visit_id: str, fields: dict[str, Any]) -> dict[str, Any]:
    """PATCH a visit as an organizer, with the If-Match of its current version."""
    org = auth(seeded, "organizer")
    etag = client.get(f"{E}/visits/{visit_id}", headers=org).headers["etag"]
    response = client.patch(f"{E}/visits/{visit_id}", json=fields, headers={**org, "If-Match": etag})
    assert response.status_code == 200, response.text
    visit: dict[str, Any] = response.json()
    return visit


def changes(client: TestClient[Litestar], headers: dict[str, str], since: str, **query: str) -> dict[str, Any]:
    response = client.get(f"{E}/changes", params={"since": since, **query}, headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def texts(client: TestClient[Litestar], seeded: Seeded, since: str, reader: str = "organizer") -> list[str]:
    return [c["text"] for c in changes(client, auth(seeded, reader), since, lang="en")["changes"]]


def versions(seeded: Seeded) -> dict[str, int]:
    return {r[0]: r[1] for r in rows(seeded, "SELECT id, version FROM visits WHERE event_id = ?", EVENT_ID)}


@pytest.fixture
def since(client: TestClient[Litestar], seeded: Seeded) -> str:
    """When the demo programme was loaded: the last time participants read it."""
    items = client.get(f"{E}/itinerary", headers=auth(seeded, "organizer")).json()["items"]
    return max(str(i["visit"]["updated_at"]) for i in items)


# --- what changed since ---------------------------------------------------------------------


def test_a_move_is_one_item_with_the_old_and_new_time_in_rome(
    client: TestClient[Litestar], seeded: Seeded, since: str
) -> None:
    edit(client, seeded, TRICICLO, ONE_HOUR_LATER)
    history = client.get(f"{E}/visits/{TRICICLO}/history", headers=auth(seeded, "organizer")).json()
    told = changes(client, auth(seeded, "organizer"), since, lang="en")
    assert told["changes"] == [
        {
            "at": history[0]["at"],
            "visit_id": TRICICLO,
            "group_ids": ["G2"],
            "kind": "moved",
            "text": f"{G2}: {VISIT_TO_TRICICLO} moved 14:30 → 15:30",
            "lang": "en",
        }
    ]
    assert told["next_since"] == history[0]["at"]
    assert (told["event_id"], told["lang"]) == (EVENT_ID, "en")


MOVE_IN_EACH_LANGUAGE = {
    "en": f"{G2}: {VISIT_TO_TRICICLO} moved 14:30 → 15:30",
    "fr": f"{G2}\u00a0: visite chez Triciclo / TriCircolo Reuse Centre, nouvel horaire 14:30 → 15:30",
    "es": f"{G2}: visita a Triciclo / TriCircolo Reuse Centre, cambio de horario 14:30 → 15:30",
    "it": f"{G2}: visita a Triciclo / TriCircolo Reuse Centre, orario spostato 14:30 → 15:30",
    "ar": f"{G2}: تغيير موعد زيارة Triciclo / TriCircolo Reuse Centre من 14:30 إلى 15:30",
}


@pytest.mark.parametrize(("lang", "text"), MOVE_IN_EACH_LANGUAGE.items(), ids=list(MOVE_IN_EACH_LANGUAGE))
def test_a_move_is_told_in_the_language_asked_for(
    client: TestClient[Litestar], seeded: Seeded, since: str, lang: str, text: str
) -> None:
    edit(client, seeded, TRICICLO, ONE_HOUR_LATER)
    told = changes(client, auth(seeded, "organizer"), since, lang=lang)
    assert (told["lang"], [(c["lang"], c["text"]) for c in told["changes"]]) == (lang, [(lang, text)])


@pytest.mark.parametrize(
    ("reader", "query", "visit_id", "lang"),
    [
        pytest.param("p-jose-maria-nunez", {}, TRICICLO, "es", id="account-in-spanish"),
        pytest.param("p-fatima-zahra-amrani", {}, TRICICLO, "ar", id="account-in-arabic"),
        pytest.param("p-aicha-diallo", {}, SAN_SALVARIO, "fr", id="account-in-french"),
        pytest.param("org-marta", {}, TRICICLO, "it", id="account-in-italian"),
        pytest.param("host-triciclo", {}, TRICICLO, "it", id="host-in-italian"),
        pytest.param("p-ananya-iyer", {"lang": "fr-CA"}, TRICICLO, "fr", id="lang-overrides-account-by-primary-tag"),
        pytest.param("p-jose-maria-nunez", {"lang": "ko"}, TRICICLO, "es", id="untranslated-lang-falls-to-account"),
        pytest.param("p-kim-min-jun", {}, CASCINA, "en", id="untranslated-account-falls-to-english"),
        pytest.param(
            "p-joao-goncalves", {"lang": ""}, CASCINA, "en", id="empty-lang-and-untranslated-pt-BR-fall-to-english"
        ),
    ],
)
def test_the_language_is_lang_else_the_accounts_else_english(
    client: TestClient[Litestar],
    seeded: Seeded,
    since: str,
    reader: str,
    query: dict[str, str],
    visit_id: str,
    lang: str,
) -> None:
    original = client.get(f"{E}/visits/{visit_id}", headers=auth(seeded, "organizer")).json()
    edit(client, seeded, visit_id, {"starts_at": rome(10, "15:30"), "ends_at": original["ends_at"]})
    told = changes(client, auth(seeded, reader), since, **query)
    assert told["lang"] == lang
    [item] = told["changes"]
    assert (item["lang"], item["kind"]) == (lang, "moved")
    assert tuple(re.findall(r"\d\d:\d\d", item["text"])[:2]) == ("14:30", "15:30")


# (patches applied in turn, visit, what organizers are told in English). Net changes since `since`.
EDITS = [
    pytest.param(
        [{"status": "cancelled"}], TRICICLO, [("cancelled", f"{G2}: {VISIT_TO_TRICICLO} cancelled")], id="cancel"
    ),
    pytest.param(
        [ONE_HOUR_LATER, {"status": "cancelled"}],
        TRICICLO,
        [("cancelled", f"{G2}: {VISIT_TO_TRICICLO} cancelled")],
        id="moved-then-cancelled-is-only-cancelled",
    ),
    pytest.param(
        [{"site_id": "impact-hub-torino"}],
        TRICICLO,
        [("place", f"{G2}: {VISIT_TO_TRICICLO} now at Impact Hub Torino")],
        id="site",
    ),
    pytest.param(
        [{"venue": "Workshop hall"}],
        TRICICLO,
        [("place", f"{G2}: {VISIT_TO_TRICICLO} now at Triciclo / TriCircolo Reuse Centre, Workshop hall")],
        id="venue",
    ),
    pytest.param(
        [{"meeting_point": "Corso Vigevano 41, courtyard"}],
        TRICICLO,
        [("meeting_point", f"{G2}: {VISIT_TO_TRICICLO}, meeting point changed to Corso Vigevano 41, courtyard")],
        id="meeting-point",
    ),
    pytest.param(
        [{"transport": "public_transport"}],
        TRICICLO,
        [("transport", f"{G2}: {VISIT_TO_TRICICLO}, getting there: by public transport")],
        id="transport",
    ),
    pytest.param(
        [{"ends_at": rome(10, "16:00")}],
        TRICICLO,
        [("ends", f"{G2}: {VISIT_TO_TRICICLO} now ends at 16:00 (was 15:45)")],
        id="end-only",
    ),
    pytest.param(
        [{"starts_at": rome(10, "15:00")}],
        TRICICLO,
        [("moved", f"{G2}: {VISIT_TO_TRICICLO} moved 14:30 → 15:00 (until 15:45)")],
        id="start-only-says-the-end",
    ),
    pytest.param(
        [{"starts_at": rome(11, "09:00"), "ends_at": rome(11, "10:15")}],
        TRICICLO,
        [("moved", f"{G2}: {VISIT_TO_TRICICLO} moved 2025-12-10 14:30 → 2025-12-11 09:00")],
        id="to-another-day",
    ),
    pytest.param(
        [ONE_HOUR_LATER, {"starts_at": rome(10, "16:00"), "ends_at": rome(10, "17:15")}],
        TRICICLO,
        [("moved", f"{G2}: {VISIT_TO_TRICICLO} moved 14:30 → 16:00")],
        id="moved-twice-is-one-move",
    ),
    pytest.param(
        [ONE_HOUR_LATER, {"starts_at": rome(10, "14:30"), "ends_at": rome(10, "15:45")}], TRICICLO, [], id="moved-back"
    ),
    pytest.param([{"status": "cancelled"}, {"status": "scheduled"}], TRICICLO, [], id="cancelled-and-back"),
    pytest.param([{"title": "Triciclo, renamed"}], TRICICLO, [], id="title-is-not-news"),
    pytest.param(
        [{"group_ids": ["G2", "G3"]}],
        TRICICLO,
        [("groups", f"{VISIT_TO_TRICICLO}, now for: Groups G2, G3 (before: {G2})")],
        id="groups",
    ),
    pytest.param(
        [{"site_id": "barrito", "meeting_point": "Barrito gate", "transport": "walk"}],
        SAN_SALVARIO,
        [
            ("place", f"{G1}: visit to Casa del Quartiere San Salvario now at Barrito"),
            ("meeting_point", f"{G1}: visit to Casa del Quartiere San Salvario, meeting point changed to Barrito gate"),
            ("transport", f"{G1}: visit to Casa del Quartiere San Salvario, getting there: on foot"),
        ],
        id="several-fields-at-once",
    ),
    pytest.param(
        [{"starts_at": rome(10, "18:00"), "ends_at": rome(10, "18:45")}],
        "d1-plenary-debrief",
        [("moved", "All groups: “Day 1 debrief by group” moved 17:45 → 18:00")],
        id="plenary-of-all-groups",
    ),
]


@pytest.mark.parametrize(("patches", "visit_id", "told"), EDITS)
def test_each_kind_of_edit_is_told_as_its_net_change(
    client: TestClient[Litestar],
    seeded: Seeded,
    since: str,
    patches: list[dict[str, Any]],
    visit_id: str,
    told: list[tuple[str, str]],
) -> None:
    for patch in patches:
        edit(client, seeded, visit_id, patch)
    items = changes(client, auth(seeded, "organizer"), since, lang="en")["changes"]
    assert [(c["kind"], c["text"]) for c in items] == told
    assert {c["visit_id"] for c in items} <= {visit_id}


def test_a_cancelled_visit_back_on_is_told_with_its_times(client: TestClient[Litestar], seeded: Seeded) -> None:
    edit(client, seeded, TRICICLO, {"status": "cancelled"})
    cancelled_at = client.get(f"{E}/visits/{TRICICLO}/history", headers=auth(seeded, "organizer")).json()[0]["at"]
    edit(client, seeded, TRICICLO, {"status": "scheduled"})
    assert texts(client, seeded, cancelled_at) == [f"{G2}: {VISIT_TO_TRICICLO} is back on, 2025-12-10 14:30–15:45"]


def test_a_new_visit_is_told_to_its_group_only(client: TestClient[Litestar], seeded: Seeded, since: str) -> None:
    body = {
        "id": "d2-g1-extra",
        "title": "Evening at Barrito",
        "starts_at": rome(11, "18:00"),
        "ends_at": rome(11, "19:00"),
        "group_ids": ["G1"],
        "site_id": "barrito",
    }
    assert client.post(f"{E}/visits", json=body, headers=auth(seeded, "organizer")).status_code == 201
    new = f"New: visit to Barrito, 2025-12-11 18:00–19:00 ({G1})"
    assert texts(client, seeded, since) == [new]
    assert texts(client, seeded, since, "p-wanjiru-kamau") == [new]
    assert texts(client, seeded, since, "p-ananya-iyer") == []
    [item] = changes(client, auth(seeded, "p-aicha-diallo"), since)["changes"]
    assert (item["kind"], item["text"]) == ("new", f"Nouveau\u00a0: visite chez Barrito, 2025-12-11 18:00–19:00 ({G1})")


@pytest.mark.parametrize(
    ("reader", "sees"),
    [
        pytest.param("organizer", True, id="organizer"),
        pytest.param("p-jose-maria-nunez", True, id="participant-of-the-group"),
        pytest.param("p-aicha-diallo", False, id="participant-of-another-group"),
        pytest.param("host-triciclo", True, id="host-of-the-site"),
        pytest.param("host-san-salvario", False, id="host-of-another-site"),
    ],
)
def test_readers_see_only_the_changes_that_touch_them(
    client: TestClient[Litestar], seeded: Seeded, since: str, reader: str, sees: bool
) -> None:
    edit(client, seeded, TRICICLO, ONE_HOUR_LATER)
    assert [c["visit_id"] for c in changes(client, auth(seeded, reader), since)["changes"]] == ([TRICICLO] * sees)


@pytest.mark.parametrize(
    ("fields", "readers"),
    [
        pytest.param({"group_ids": ["G2"]}, ["p-aicha-diallo", "p-jose-maria-nunez"], id="old-and-new-group"),
        pytest.param({"site_id": "triciclo"}, ["host-san-salvario", "host-triciclo"], id="old-and-new-site-host"),
    ],
)
def test_a_visit_moved_between_groups_or_sites_is_told_to_both_sides(
    client: TestClient[Litestar], seeded: Seeded, since: str, fields: dict[str, Any], readers: list[str]
) -> None:
    edit(client, seeded, SAN_SALVARIO, fields)
    for reader in readers:
        assert [c["visit_id"] for c in changes(client, auth(seeded, reader), since)["changes"]] == [SAN_SALVARIO]
    assert changes(client, auth(seeded, "p-kim-min-jun"), since)["changes"] == []


def test_next_since_polls_only_what_is_newer(client: TestClient[Litestar], seeded: Seeded, since: str) -> None:
    org = auth(seeded, "organizer")
    edit(client, seeded, TRICICLO, ONE_HOUR_LATER)
    first = changes(client, org, since)
    assert changes(client, org, first["next_since"])["changes"] == []
    edit(client, seeded, CASCINA, {"meeting_point": "Gate B"})
    assert [c["visit_id"] for c in changes(client, org, first["next_since"])["changes"]] == [CASCINA]


@pytest.mark.parametrize(
    ("query", "slug", "detail"),
    [
        pytest.param({}, "validation-error", "since", id="missing"),
        pytest.param({"since": ""}, "invalid-query", "since is required", id="empty"),
        pytest.param({"since": "yesterday"}, "invalid-query", "'yesterday'", id="words"),
        pytest.param({"since": "2025-12-10"}, "invalid-query", "'2025-12-10'", id="date-only"),
        pytest.param({"since": "2025-12-10T12:00:00"}, "invalid-query", "with an offset", id="no-offset"),
        pytest.param({"since": "2025-12-10T12:00Z"}, "invalid-query", "'2025-12-10T12:00Z'", id="no-seconds"),
        pytest.param({"since": "2025-13-01T12:00:00Z"}, "invalid-query", "not a valid date", id="month-13"),
        pytest.param({"since": "2025-12-10T24:30:00Z"}, "invalid-query", "not a valid date", id="hour-24"),
        pytest.param({"since": "1" * 5000}, "invalid-query", "5000 characters", id="huge"),
        pytest.param({"since": "2025-12-10T12:00:00Z", "lang": "en_US"}, "invalid-query", "'en_US'", id="bad-lang"),
    ],
)
def test_a_bad_since_or_lang_is_refused_with_a_400_problem(
    client: TestClient[Litestar], seeded: Seeded, query: dict[str, str], slug: str, detail: str
) -> None:
    response = client.get(f"{E}/changes", params=query, headers=auth(seeded, "participant"))
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert (problem["type"], problem["status"]) == (f"urn:studyvisit:problem:{slug}", 400)
    assert detail in response.text
    assert len(response.text) < 600


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        pytest.param("2025-12-10T12:00:00Z", "2025-12-10T12:00:00.000000Z", id="utc"),
        pytest.param("2025-12-10t12:00:00z", "2025-12-10T12:00:00.000000Z", id="lower-case"),
        pytest.param("2025-12-10T13:00:00%2B01:00", "2025-12-10T12:00:00.000000Z", id="encoded-plus"),
        pytest.param("2025-12-10T13:00:00+01:00", "2025-12-10T12:00:00.000000Z", id="unencoded-plus"),
        pytest.param("2025-12-10T12:00:00.1234567-00:30", "2025-12-10T12:30:00.123456Z", id="fraction-and-minus"),
    ],
)
def test_since_is_read_as_rfc_3339_in_any_offset(
    client: TestClient[Litestar], seeded: Seeded, raw: str, normalized: str
) -> None:
    response = client.get(f"{E}/changes?since={raw}", headers=auth(seeded, "participant"))
    assert response.status_code == 200, response.text
    assert response.json()["since"] == normalized


# --- reordering a day -----------------------------------------------------------------------


def reorder(client: TestClient[Litestar], seeded: Seeded, body: Any, reader: str = "organizer") -> Any:
    return client.post(f"{E}/itinerary/reorder", json=body, headers=auth(seeded, reader))


def calendar_sequences(client: TestClient[Litestar], seeded: Seeded) -> dict[str, tuple[int, Any]]:
    """SEQUENCE and DTSTART of each visit in G2's calendar feed, by visit id."""
    response = client.get(f"{E}/itinerary.ics", params={"group": "G2"}, headers=auth(seeded, "organizer"))
    assert response.status_code == 200
    return {
        str(e["UID"]).split("@")[0]: (int(e["SEQUENCE"]), e.decoded("DTSTART"))
        for e in Calendar.from_ical(response.content).walk("VEVENT")
    }


def test_reorder_swaps_two_visits_keeping_their_durations(client: TestClient[Litestar], seeded: Seeded) -> None:
    response = reorder(client, seeded, {"visit_ids": [IMPACT_HUB, TRICICLO]})
    assert response.status_code == 200, response.text
    visits = response.json()["visits"]
    assert [(v["id"], v["starts_at"], v["ends_at"], v["version"], v["status"]) for v in visits] == [
        (IMPACT_HUB, rome(10, "14:30"), rome(10, "15:15"), 2, "changed"),
        (TRICICLO, rome(10, "16:00"), rome(10, "17:15"), 2, "changed"),
    ]


def test_reorder_raises_the_calendar_sequence_of_each_moved_visit(client: TestClient[Litestar], seeded: Seeded) -> None:
    before = calendar_sequences(client, seeded)
    assert reorder(client, seeded, {"visit_ids": [IMPACT_HUB, TRICICLO]}).status_code == 200
    after = calendar_sequences(client, seeded)
    for visit_id in (IMPACT_HUB, TRICICLO):
        assert after[visit_id][0] > before[visit_id][0]
    assert after[IMPACT_HUB][1] == before[TRICICLO][1]  # Impact Hub takes Triciclo's slot
    assert {k: v for k, v in after.items() if k not in (IMPACT_HUB, TRICICLO)} == {
        k: v for k, v in before.items() if k not in (IMPACT_HUB, TRICICLO)
    }


def test_reorder_moves_are_in_the_history_and_told_as_changes(
    client: TestClient[Litestar], seeded: Seeded, since: str
) -> None:
    assert reorder(client, seeded, {"visit_ids": [IMPACT_HUB, TRICICLO]}).status_code == 200
    org = auth(seeded, "organizer")
    for visit_id in (IMPACT_HUB, TRICICLO):
        [entry] = client.get(f"{E}/visits/{visit_id}/history", headers=org).json()
        assert entry["account_id"] == seeded.first("organizer").id
        assert set(entry["changes"]) == {"starts_at", "ends_at", "status"}
    assert texts(client, seeded, since) == [
        f"{G2}: visit to Impact Hub Torino moved 16:00 → 14:30",
        f"{G2}: {VISIT_TO_TRICICLO} moved 14:30 → 16:00",
    ]


def test_reorder_hands_out_the_sorted_slots_in_the_order_given(client: TestClient[Litestar], seeded: Seeded) -> None:
    # Registration 08:30 (30 min), opening 09:00 (90 min), coffee 10:30 (30 min).
    order = ["d1-coffee-break", "d1-registration", "d1-plenary-opening"]
    visits = reorder(client, seeded, {"visit_ids": order}).json()["visits"]
    assert [(v["id"], v["starts_at"], v["ends_at"]) for v in visits] == [
        ("d1-coffee-break", rome(10, "08:30"), rome(10, "09:00")),
        ("d1-registration", rome(10, "09:00"), rome(10, "09:30")),
        ("d1-plenary-opening", rome(10, "10:30"), rome(10, "12:00")),
    ]


def test_reorder_in_the_current_order_changes_nothing(client: TestClient[Litestar], seeded: Seeded) -> None:
    before = versions(seeded)
    assert reorder(client, seeded, {"visit_ids": [TRICICLO, IMPACT_HUB]}).status_code == 200
    assert versions(seeded) == before


@pytest.mark.parametrize(
    ("reader", "body", "status", "slug"),
    [
        pytest.param("participant", {"visit_ids": [IMPACT_HUB, TRICICLO]}, 403, "forbidden", id="participant"),
        pytest.param("host", {"visit_ids": [IMPACT_HUB, TRICICLO]}, 403, "forbidden", id="host"),
        pytest.param(
            "organizer", {"visit_ids": [TRICICLO, "d2-g2-liberitutti"]}, 422, "invalid-reorder", id="two-days"
        ),
        pytest.param("organizer", {"visit_ids": [TRICICLO, TRICICLO]}, 400, "bad-request", id="twice-the-same"),
        pytest.param("organizer", {"visit_ids": [TRICICLO, "no-such-visit"]}, 404, "not-found", id="unknown-visit"),
        pytest.param("organizer", {"visit_ids": [TRICICLO]}, 400, "validation-error", id="one-visit"),
        pytest.param("organizer", {"visit_ids": "d1-g2-triciclo"}, 400, "validation-error", id="not-a-list"),
        pytest.param("organizer", {}, 400, "validation-error", id="no-visit-ids"),
    ],
)
def test_a_refused_reorder_changes_nothing(
    client: TestClient[Litestar], seeded: Seeded, reader: str, body: Any, status: int, slug: str
) -> None:
    before = versions(seeded)
    response = reorder(client, seeded, body, reader)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["type"] == f"urn:studyvisit:problem:{slug}"
    assert versions(seeded) == before
