"""The organizers' itinerary check: each problem found on a programme built to have it, none on a clean one."""

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
import pytest
from conftest import EVENT_ID, Seeded
from litestar import Litestar
from litestar.testing import TestClient

from schemas.fixtures import Fixture
from schemas.itinerary import Visit
from schemas.places import OpeningHours
from server.fixtures import load_fixture
from server.geo import distance_m, transit_minutes
from server.services.itinerary_check import parse_opening_hours, stale_times, times_in_text, within_opening_hours
from server.storage.db import Database

pytestmark = pytest.mark.both_backends  # CI runs it on SQLite, then on PostgreSQL

ROME = ZoneInfo("Europe/Rome")
CAMPUS = {"id": "campus", "name": "ITC-ILO campus", "kind": "training_centre", "lat": 45.036, "lon": 7.674}
BARRITO_AT = (45.04, 7.67)  # about 0.7 km from the campus along streets: a 10 min walk
BAGNI_AT = (45.0895, 7.6935)  # 5.8 km straight from Barrito: a walk of 1 h 40, a ride of 28 min
WEEKDAYS = ["mo", "tu", "we", "th", "fr"]


def visit(visit_id: str, number: int, start: str, end: str, site: str, group: str, **extra: Any) -> dict[str, Any]:
    """A visit on Friday 12 December 2025, times in Rome."""
    return {
        "id": visit_id,
        "number": number,
        "title": visit_id.replace("-", " ").capitalize(),
        "starts_at": f"2025-12-12T{start}:00+01:00",
        "ends_at": f"2025-12-12T{end}:00+01:00",
        "group_ids": [group],
        "site_id": site,
        **extra,
    }


def programme(event_id: str, sites: list[dict[str, Any]], groups: list[str], visits: list[dict[str, Any]]) -> Fixture:
    """A one-day event with an organizer and one participant in the first group."""
    return msgspec.convert(
        {
            "event": {
                "id": event_id,
                "title": f"Check {event_id}",
                "starts_on": "2025-12-12",
                "ends_on": "2025-12-12",
                "timezone": "Europe/Rome",
                "venue": "ITC-ILO campus",
                "venue_site_id": "campus",
            },
            "sites": [CAMPUS, *sites],
            "groups": [{"id": g, "name": f"Team {g}"} for g in groups],
            "visits": visits,
            "accounts": [
                {"id": f"{event_id}-org", "name": "Organizer", "role": "organizer", "event_id": event_id},
                {
                    "id": f"{event_id}-p",
                    "name": "Participant",
                    "role": "participant",
                    "event_id": event_id,
                    "group_id": groups[0],
                },
            ],
        },
        Fixture,
    )


def site(site_id: str, at: tuple[float, float], hours: list[dict[str, Any]]) -> dict[str, Any]:
    """A site with structured opening hours."""
    lat, lon = at
    name = site_id.capitalize()
    return {"id": site_id, "name": name, "kind": "community_house", "lat": lat, "lon": lon, "opening_hours": hours}


# Every kind of problem, planted once or twice. B2 has a visit and nobody in it.
BUSY = programme(
    "check-busy",
    [
        site("barrito", BARRITO_AT, [{"days": WEEKDAYS, "opens": "09:00", "closes": "13:00"}]),
        site("bagni", BAGNI_AT, [{"days": ["sa"], "opens": "10:00", "closes": "12:00"}]),
    ],
    ["B1", "B2"],
    [
        visit("b-talk", 1, "09:00", "10:00", "campus", "B1"),
        visit("b-panel", 2, "09:30", "10:30", "campus", "B1"),
        visit("b-barrito", 3, "10:35", "11:30", "barrito", "B1", transport="walk"),
        visit("b-bagni", 4, "11:40", "12:30", "bagni", "B1", transport="minibus"),
        visit("b-barrito-late", 5, "14:00", "15:00", "barrito", "B1", transport="minibus"),
        # Cancelled: after closing time and over b-barrito-late, yet no problem.
        visit("b-cancelled", 6, "14:30", "21:00", "barrito", "B1", status="cancelled"),
        visit("b-b2", 7, "10:00", "11:00", "campus", "B2"),
    ],
)
# The same places, with every visit in time and open: no problem of any kind.
CLEAN = programme(
    "check-clean",
    [
        site("barrito", BARRITO_AT, [{"days": WEEKDAYS, "opens": "09:00", "closes": "13:00"}]),
        site("bagni", BAGNI_AT, [{"days": ["fr"], "opens": "11:00", "closes": "18:00"}]),
    ],
    ["C1"],
    [
        visit("c-talk", 1, "09:00", "10:00", "campus", "C1"),
        visit("c-cancelled", 2, "09:30", "10:30", "campus", "C1", status="cancelled"),
        visit("c-barrito", 3, "10:30", "11:30", "barrito", "C1", transport="walk"),
        # 30 min: far too short a walk, long enough a ride.
        visit("c-bagni", 4, "12:00", "13:00", "bagni", "C1", transport="minibus"),
        visit("c-back", 5, "14:30", "15:00", "campus", "C1", transport="public_transport"),
    ],
)
RIDE_BARRITO_BAGNI = transit_minutes(distance_m(BARRITO_AT, BAGNI_AT))
KINDS = ["overlap", "tight_gap", "outside_opening_hours", "empty_group"]
# (kind, visit ids, group, severity, parts of the message) of every problem planted in BUSY.
PLANTED = [
    pytest.param(
        "overlap",
        ["b-talk", "b-panel"],
        "B1",
        "error",
        ["'B talk' (Fri 09:00–10:00)", "'B panel' (Fri 09:30–10:30)", "overlap by 30 min"],
        id="overlap",
    ),
    pytest.param(
        "tight_gap",
        ["b-panel", "b-barrito"],
        "B1",
        "warning",
        ["Only 5 min between 'B panel' and 'B barrito'", "walking 0.7 km takes about 10 min"],
        id="tight-gap-walking",
    ),
    pytest.param(
        "tight_gap",
        ["b-barrito", "b-bagni"],
        "B1",
        "warning",
        ["Only 10 min between", "the minibus ride (5.8 km) takes about 28 min"],
        id="tight-gap-by-minibus",
    ),
    pytest.param(
        "outside_opening_hours",
        ["b-bagni"],
        "B1",
        "warning",
        ["'B bagni' (Fri 11:40–12:30) is outside the opening hours of Bagni: sa 10:00–12:00"],
        id="closed-that-day",
    ),
    pytest.param(
        "outside_opening_hours",
        ["b-barrito-late"],
        "B1",
        "warning",
        ["(Fri 14:00–15:00)", "Barrito: mo, tu, we, th, fr 09:00–13:00"],
        id="after-closing-time",
    ),
    pytest.param(
        "empty_group",
        ["b-b2"],
        "B2",
        "warning",
        ["Group B2 (Team B2) has no participants but 1 visits"],
        id="empty-group",
    ),
]


@pytest.fixture
def events(db: Database, seeded: Seeded) -> dict[str, dict[str, str]]:
    """The busy and the clean event, loaded next to the demo event: organizer and participant headers of each."""
    loaded: dict[str, dict[str, str]] = {}
    for fixture in (BUSY, CLEAN):
        for account in load_fixture(db, fixture):
            loaded[f"{fixture.event.id}:{account.role}"] = {"Authorization": f"Bearer {account.token}"}
    return loaded


def check(client: TestClient[Litestar], events: dict[str, dict[str, str]], event_id: str) -> list[dict[str, Any]]:
    response = client.get(f"/api/v1/events/{event_id}/itinerary/check", headers=events[f"{event_id}:organizer"])
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["event_id"] == event_id
    problems: list[dict[str, Any]] = body["problems"]
    return problems


@pytest.fixture
def busy(client: TestClient[Litestar], events: dict[str, dict[str, str]]) -> list[dict[str, Any]]:
    return check(client, events, "check-busy")


@pytest.fixture
def clean(client: TestClient[Litestar], events: dict[str, dict[str, str]]) -> list[dict[str, Any]]:
    return check(client, events, "check-clean")


@pytest.mark.parametrize(("kind", "visit_ids", "group_id", "severity", "message_parts"), PLANTED)
def test_check_reports_each_planted_problem(
    busy: list[dict[str, Any]], kind: str, visit_ids: list[str], group_id: str, severity: str, message_parts: list[str]
) -> None:
    found = [p for p in busy if p["kind"] == kind and p["visit_ids"] == visit_ids]
    assert len(found) == 1, busy
    problem = found[0]
    assert (problem["group_id"], problem["severity"]) == (group_id, severity)
    for part in message_parts:
        assert part in problem["message"]


def test_check_reports_nothing_but_the_planted_problems_errors_first(busy: list[dict[str, Any]]) -> None:
    planted = [(p.values[0], p.values[1]) for p in PLANTED]
    assert sorted((p["kind"], p["visit_ids"]) for p in busy) == sorted(planted)
    severities = [p["severity"] for p in busy]
    assert severities == sorted(severities, key=lambda s: s != "error")


@pytest.mark.parametrize("kind", KINDS)
def test_clean_programme_has_no_problem_of_this_kind(clean: list[dict[str, Any]], kind: str) -> None:
    assert [p for p in clean if p["kind"] == kind] == []


def test_cancelled_visits_take_part_in_no_check(busy: list[dict[str, Any]], clean: list[dict[str, Any]]) -> None:
    assert not [p for p in busy + clean if {"b-cancelled", "c-cancelled"} & set(p["visit_ids"])]


def test_a_ride_replaces_the_walk_where_the_group_rides(
    client: TestClient[Litestar], events: dict[str, dict[str, str]], clean: list[dict[str, Any]]
) -> None:
    # Walking to Bagni would not fit in the gap, but the group goes by minibus, and the ride does:
    # the itinerary and the check both count the ride.
    itinerary = client.get("/api/v1/events/check-clean/itinerary", headers=events["check-clean:participant"]).json()
    legs = {i["visit"]["id"]: i["leg"] for i in itinerary["items"]}
    assert legs["c-bagni"]["mode"] == "minibus"
    assert legs["c-bagni"]["travel_minutes"] == RIDE_BARRITO_BAGNI
    assert legs["c-bagni"]["walking_minutes"] > legs["c-bagni"]["gap_minutes"] >= RIDE_BARRITO_BAGNI
    assert legs["c-bagni"]["warning"] is None
    assert not [p for p in clean if p["kind"] == "tight_gap"]


def test_empty_group_follows_the_members_at_once(
    client: TestClient[Litestar], events: dict[str, dict[str, str]], busy: list[dict[str, Any]]
) -> None:
    org = events["check-busy:organizer"]
    moved = client.put(
        "/api/v1/events/check-busy/groups/B2/members", json={"account_ids": ["check-busy-p"]}, headers=org
    )
    assert moved.status_code == 200, moved.text
    empty = [(p["group_id"], p["visit_ids"]) for p in check(client, events, "check-busy") if p["kind"] == "empty_group"]
    assert empty == [("B1", ["b-talk", "b-panel", "b-barrito", "b-bagni", "b-barrito-late"])]


@pytest.mark.parametrize(("role", "status"), [("organizer", 200), ("host", 403), ("participant", 403)])
def test_only_organizers_may_check(client: TestClient[Litestar], seeded: Seeded, role: str, status: int) -> None:
    response = client.get(f"/api/v1/events/{EVENT_ID}/itinerary/check", headers=seeded.headers(role))
    assert response.status_code == status, response.text
    if status == 403:
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["type"] == "urn:studyvisit:problem:forbidden"


def test_an_organizer_of_another_event_gets_404(
    client: TestClient[Litestar], events: dict[str, dict[str, str]]
) -> None:
    response = client.get(f"/api/v1/events/{EVENT_ID}/itinerary/check", headers=events["check-busy:organizer"])
    assert response.status_code == 404
    assert response.json()["type"] == "urn:studyvisit:problem:not-found"


@pytest.mark.parametrize(
    ("metres", "minutes"),
    [(0, 10), (333, 11), (1_000, 13), (5_000, 25), (20_000, 70)],
    ids=["same-place", "one-minute", "one-km", "five-km", "twenty-km"],
)
def test_transit_estimate_is_20_km_per_hour_plus_10_minutes(metres: float, minutes: int) -> None:
    assert transit_minutes(metres) == minutes


def _at(day: int, hhmm: str) -> datetime:
    """A time in Rome on the given day of December 2025 (12 is a Friday)."""
    hour, minute = map(int, hhmm.split(":"))
    return datetime(2025, 12, day, hour, minute, tzinfo=ROME)


FRI_9_TO_13 = [{"days": WEEKDAYS, "opens": "09:00", "closes": "13:00"}]
SPLIT_DAY = [
    {"days": ["fr"], "opens": "09:00", "closes": "12:00"},
    {"days": ["fr"], "opens": "14:00", "closes": "18:00"},
]
LATE_FRIDAY = [{"days": ["fr"], "opens": "18:00", "closes": "02:00"}]


@pytest.mark.parametrize(
    ("hours", "starts", "ends", "inside"),
    [
        pytest.param(FRI_9_TO_13, _at(12, "10:00"), _at(12, "11:00"), True, id="inside"),
        pytest.param(FRI_9_TO_13, _at(12, "12:00"), _at(12, "13:00"), True, id="ends-at-closing"),
        pytest.param(FRI_9_TO_13, _at(12, "08:30"), _at(12, "09:30"), False, id="starts-before-opening"),
        pytest.param(FRI_9_TO_13, _at(12, "12:30"), _at(12, "13:30"), False, id="ends-after-closing"),
        pytest.param(FRI_9_TO_13, _at(13, "10:00"), _at(13, "11:00"), False, id="closed-on-saturday"),
        pytest.param(SPLIT_DAY, _at(12, "11:00"), _at(12, "15:00"), False, id="across-the-lunch-closure"),
        pytest.param(SPLIT_DAY, _at(12, "14:00"), _at(12, "15:00"), True, id="second-span"),
        pytest.param(LATE_FRIDAY, _at(12, "23:00"), _at(13, "01:00"), True, id="through-midnight"),
        pytest.param(LATE_FRIDAY, _at(13, "00:30"), _at(13, "01:30"), True, id="after-midnight-of-the-day-before"),
        pytest.param(LATE_FRIDAY, _at(13, "01:30"), _at(13, "02:30"), False, id="past-the-late-closing"),
        pytest.param([{"days": ["fr"]}], _at(12, "22:00"), _at(12, "23:59"), True, id="open-all-day-by-default"),
    ],
)
def test_opening_hours(hours: list[dict[str, Any]], starts: datetime, ends: datetime, inside: bool) -> None:
    spans = parse_opening_hours(msgspec.convert(hours, list[OpeningHours]))
    assert within_opening_hours(spans, starts, ends) is inside


@pytest.mark.parametrize("bad", ["9am", "25:00", "12:60", "24:30", ""])
def test_opening_hours_that_are_not_hhmm_are_not_guessed_at(bad: str) -> None:
    assert parse_opening_hours([OpeningHours(days=["fr"], opens=bad, closes="18:00")]) == []


# --- times in a moved visit's notes --------------------------------------------------------

SAN_SALVARIO = "d1-g1-casa-quartiere-san-salvario"  # notes: "Minibus leaves ... at 13:45. Back on campus by 17:30."


def organizer_patch(client: TestClient[Litestar], seeded: Seeded, visit_id: str, body: dict[str, Any]) -> None:
    url = f"/api/v1/events/{EVENT_ID}/visits/{visit_id}"
    headers = seeded.headers("organizer")
    etag = client.get(url, headers=headers).headers["etag"]
    response = client.patch(url, json=body, headers={**headers, "If-Match": etag})
    assert response.status_code == 200, response.text


def stale(client: TestClient[Litestar], seeded: Seeded) -> list[dict[str, Any]]:
    response = client.get(f"/api/v1/events/{EVENT_ID}/itinerary/check", headers=seeded.headers("organizer"))
    assert response.status_code == 200, response.text
    return [p for p in response.json()["problems"] if p["kind"] == "stale_time_in_text"]


@pytest.mark.parametrize(
    ("text", "times"),
    [
        pytest.param("Minibus leaves at 13:45. Back by 17:30.", ["13:45", "17:30"], id="en"),
        pytest.param("Départ en minibus à 13 h 45 ; retour à 9h05.", ["13:45", "09:05"], id="fr-h"),
        pytest.param("المغادرة الساعة 13:45، العودة 17:30", ["13:45", "17:30"], id="ar"),
        pytest.param("Xe buýt khởi hành lúc 13:45 và 13:45", ["13:45"], id="vi-once"),
        pytest.param("Room 2.13:45 seats, 25:00, 12:345, version 1,5", [], id="not-times"),
    ],
)
def test_times_are_read_from_notes_in_any_language(text: str, times: list[str]) -> None:
    assert times_in_text(text) == times


def test_an_unmoved_demo_programme_has_no_stale_time(client: TestClient[Litestar], seeded: Seeded) -> None:
    # Its notes name minibus times before and after visits: the plan, not a mistake.
    assert stale(client, seeded) == []


def test_moving_a_visit_warns_about_the_times_its_notes_still_mention(
    client: TestClient[Litestar], seeded: Seeded
) -> None:
    organizer_patch(
        client, seeded, SAN_SALVARIO, {"starts_at": "2025-12-10T15:30:00+01:00", "ends_at": "2025-12-10T17:30:00+01:00"}
    )
    [problem] = stale(client, seeded)
    assert (problem["visit_ids"], problem["group_id"], problem["severity"]) == ([SAN_SALVARIO], "G1", "warning")
    # 13:45 is before the new start, read in Rome's time; 17:30 is the new end, and still fits.
    assert problem["message"] == (
        "'Visit: Casa del Quartiere San Salvario' moved to Wed 15:30–17:30 after its notes were written; "
        "they still mention 13:45: check the notes (en, es, fr, it)."
    )


def test_rewriting_the_notes_after_the_move_clears_the_warning_language_by_language(
    client: TestClient[Litestar], seeded: Seeded
) -> None:
    moved = {"starts_at": "2025-12-10T15:30:00+01:00", "ends_at": "2025-12-10T17:30:00+01:00"}
    organizer_patch(client, seeded, SAN_SALVARIO, moved)
    organizer_patch(client, seeded, SAN_SALVARIO, {"notes": {"en": "Minibus leaves at 14:45.", "fr": None}})
    [problem] = stale(client, seeded)
    assert problem["message"].endswith("they still mention 13:45: check the notes (es, it).")
    organizer_patch(client, seeded, SAN_SALVARIO, {"notes": {"es": None, "it": "Partenza alle 14:45."}})
    assert stale(client, seeded) == []
    # Moved again afterwards, the rewritten note is stale in turn.
    organizer_patch(
        client, seeded, SAN_SALVARIO, {"starts_at": "2025-12-10T16:00:00+01:00", "ends_at": "2025-12-10T18:00:00+01:00"}
    )
    [problem] = stale(client, seeded)
    assert "they still mention 14:45" in problem["message"]


@pytest.mark.parametrize(
    ("starts", "ends", "notes", "stale_times_named"),
    [
        pytest.param(
            "2025-12-12T22:30:00+01:00", "2025-12-13T00:30:00+01:00", "Bus at 00:15", None, id="past-midnight"
        ),
        pytest.param("2025-12-12T22:30:00+01:00", "2025-12-13T00:30:00+01:00", "Bus at 21:00", "21:00", id="before"),
        # 13:30 UTC is 14:30 in Rome: the visit's span is read in the event's zone, not in the offset it was sent with.
        pytest.param("2025-12-12T13:30:00Z", "2025-12-12T15:00:00Z", "Meet at 14:30", None, id="event-zone"),
    ],
)
def test_times_in_notes_are_compared_with_the_span_in_the_event_zone(
    starts: str, ends: str, notes: str, stale_times_named: str | None
) -> None:
    moved = msgspec.convert(
        {"id": "v", "title": "Night walk", "starts_at": starts, "ends_at": ends, "notes": {"en": notes}}, Visit
    )
    problem = stale_times(moved, frozenset(), ROME)
    if stale_times_named is None:
        assert problem is None
    else:
        assert problem is not None
        assert f"they still mention {stale_times_named}: check the notes (en)." in problem.message
