"""Exports: the itinerary as iCalendar and the programme as frab schedule XML, read back as clients read them."""

from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from conftest import EVENT_ID, Seeded
from icalendar import Calendar
from icalendar import Event as CalendarEvent
from litestar import Litestar
from litestar.testing import TestClient
from lxml import etree

from schemas.itinerary import Visit
from schemas.places import Event, Site
from server.fixtures import DEMO_FIXTURE, read_fixture
from server.services.calendar import itinerary_ics
from server.services.frab import schedule_xml
from server.services.itinerary import build_itinerary

pytestmark = pytest.mark.both_backends  # CI runs it on SQLite, then on PostgreSQL

ROME = ZoneInfo("Europe/Rome")
XSD_PATH = Path(__file__).parent / "data" / "c3voc-schedule.xml.xsd"
SCHEMA = etree.XMLSchema(etree.parse(str(XSD_PATH)))

EVENT = Event(
    id="turin-sse-2025",
    title="Économie sociale et solidaire — Torino 2025",
    starts_on=date(2025, 12, 10),
    ends_on=date(2025, 12, 11),
    timezone="Europe/Rome",
    venue="ITC-ILO campus, Viale Maestri del Lavoro 10, Torino",
    venue_site_id="itcilo-campus",
)
SITES = {
    "itcilo-campus": Site(
        id="itcilo-campus",
        name="ITC-ILO campus",
        kind="training_centre",
        address="Viale Maestri del Lavoro 10",
        city="Torino",
        lat=45.036,
        lon=7.674,
        website="itcilo.org",
        description={"en": "The UN training arm of the ILO, in the Italia '61 pavilions on the Po."},
    ),
    "casa-quartiere-san-salvario": Site(
        id="casa-quartiere-san-salvario",
        name="Casa del Quartiere San Salvario",
        kind="community_house",
        address="Via Morgari 14",
        city="Torino",
        lat=45.0537,
        lon=7.67791,
        website="https://casadelquartiere.it",
        description={
            "en": "A neighbourhood house in a former public bath: café, rooms for associations, a courtyard.",
            "it": "Una casa del quartiere nei vecchi bagni pubblici di via Morgari.",
        },
    ),
}


def rome(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2025, 12, day, hour, minute, tzinfo=ROME)


VISITS = [
    Visit(
        id="d1-plenary-opening",
        title="Séance plénière d'ouverture — l'économie sociale à Turin",
        starts_at=rome(10, 9),
        ends_at=rome(10, 10, 30),
        group_ids=["G1", "G2"],
        site_id="itcilo-campus",
        kind="plenary",
        number=1,
        updated_at=datetime(2025, 11, 20, 8, 0, tzinfo=UTC),
    ),
    Visit(
        # Stored in UTC: exports must still show 14:30 in Turin.
        id="d1-g1-san-salvario",
        title="زيارة: Casa del Quartiere San Salvario",
        starts_at=datetime(2025, 12, 10, 13, 30, tzinfo=UTC),
        ends_at=datetime(2025, 12, 10, 15, 45, tzinfo=UTC),
        group_ids=["G1"],
        site_id="casa-quartiere-san-salvario",
        meeting_point="Cổng chính, Viale Maestri del Lavoro",
        transport="public_transport",
        notes={"en": "Tram 4 towards Porta Nuova; 3 € ticket.", "ar": "الترام رقم 4"},
        number=2,
        version=3,
        status="changed",
    ),
    Visit(
        # A session with no site of its own, and an offset that is not Rome's.
        id="d2-g2-workshop",
        title="Hội thảo: hợp tác xã và doanh nghiệp xã hội",
        starts_at=datetime(2025, 12, 11, 11, 0, tzinfo=timezone(timedelta(hours=3))),
        ends_at=datetime(2025, 12, 11, 12, 0, tzinfo=timezone(timedelta(hours=3))),
        group_ids=["G2"],
        kind="other",
        number=3,
    ),
    Visit(
        id="d2-g1-cancelled",
        title="Visita annullata: Bagni Pubblici di via Agliè",
        starts_at=rome(11, 14, 20),
        ends_at=rome(11, 15, 50),
        group_ids=["G1"],
        site_id="casa-quartiere-san-salvario",
        status="cancelled",
        number=4,
        version=2,
    ),
]
VISIT_IDS = [v.id for v in VISITS]


def calendar_for(visits: list[Visit], group_id: str | None = None) -> Calendar:
    itinerary = build_itinerary(EVENT, visits, SITES, group_id)
    return Calendar.from_ical(itinerary_ics(EVENT, itinerary))


def calendar_event(visit: Visit) -> CalendarEvent:
    (event,) = calendar_for([visit]).events
    return event


def with_changes(visit: Visit, **changes: object) -> Visit:
    return Visit(**{**{f: getattr(visit, f) for f in visit.__struct_fields__}, **changes})


def schedule_root(visits: list[Visit] = VISITS, sites: dict[str, Site] = SITES) -> etree._Element:
    return etree.fromstring(schedule_xml(EVENT, visits, sites))


def schedule_event(visit: Visit, visits: list[Visit] = VISITS) -> etree._Element:
    (element,) = schedule_root(visits).xpath("day/room/event[slug=$slug]", slug=f"{EVENT.id}-{visit.id}")
    return element


# iCalendar


def test_calendar_has_the_headers_subscribing_clients_need() -> None:
    cal = calendar_for(VISITS, group_id="G1")
    assert str(cal["VERSION"]) == "2.0"
    assert str(cal["PRODID"]).startswith("-//studyvisit//")
    assert str(cal["CALSCALE"]) == "GREGORIAN"
    assert str(cal["METHOD"]) == "PUBLISH"
    assert str(cal["X-WR-CALNAME"]) == f"{EVENT.title} (G1)"
    assert str(cal["X-WR-TIMEZONE"]) == "Europe/Rome"
    assert [tz.tz_name for tz in cal.timezones] == ["Europe/Rome"]
    assert len(cal.events) == len(VISITS)


def test_calendar_name_without_group_is_the_event_title() -> None:
    assert str(calendar_for(VISITS)["X-WR-CALNAME"]) == EVENT.title


@pytest.mark.parametrize("visit", VISITS, ids=VISIT_IDS)
def test_calendar_times_are_the_visit_times_in_rome(visit: Visit) -> None:
    event = calendar_event(visit)
    assert event.start == visit.starts_at
    assert event.end == visit.ends_at
    for moment in (event.start, event.end):
        assert isinstance(moment, datetime)
        assert isinstance(moment.tzinfo, ZoneInfo)
        assert moment.tzinfo.key == "Europe/Rome"
        assert moment.utcoffset() == timedelta(hours=1)
    assert event.start.astimezone(ROME).replace(tzinfo=None) == visit.starts_at.astimezone(ROME).replace(tzinfo=None)
    assert event["DTSTART"].params["TZID"] == "Europe/Rome"


def test_calendar_is_byte_identical_for_the_same_data() -> None:
    """Responses are cached and ETagged by content: no wall clock, no random UIDs."""
    itinerary = build_itinerary(EVENT, VISITS, SITES, None)
    assert itinerary_ics(EVENT, itinerary) == itinerary_ics(EVENT, itinerary)


def test_calendar_uids_are_unique_and_survive_changes() -> None:
    before = {str(e["UID"]) for e in calendar_for(VISITS).events}
    changed = [with_changes(v, title=v.title + " (nuovo orario)", version=v.version + 1) for v in VISITS]
    after = {str(e["UID"]) for e in calendar_for(changed).events}
    assert before == after == {f"{v.id}@{EVENT.id}.studyvisit" for v in VISITS}


@pytest.mark.parametrize(("version", "sequence"), [(1, 0), (2, 1), (7, 6)])
def test_calendar_sequence_follows_the_visit_version(version: int, sequence: int) -> None:
    assert calendar_event(with_changes(VISITS[0], version=version)).sequence == sequence


@pytest.mark.parametrize("visit", VISITS, ids=VISIT_IDS)
def test_calendar_sequence_grows_when_the_visit_changes(visit: Visit) -> None:
    later = with_changes(visit, version=visit.version + 1)
    assert calendar_event(later).sequence == calendar_event(visit).sequence + 1


@pytest.mark.parametrize(
    ("visit", "site_id"),
    [
        (VISITS[0], "itcilo-campus"),
        (VISITS[1], "casa-quartiere-san-salvario"),
        # Without a site of its own, a visit is at the event's venue site.
        (VISITS[2], "itcilo-campus"),
    ],
    ids=VISIT_IDS[:3],
)
def test_calendar_geo_and_location_are_the_place(visit: Visit, site_id: str) -> None:
    event = calendar_event(visit)
    site = SITES[site_id]
    assert (event["GEO"].latitude, event["GEO"].longitude) == (site.lat, site.lon)
    assert str(event["LOCATION"]) == site.name


@pytest.mark.parametrize(
    ("status", "expected"), [("scheduled", "CONFIRMED"), ("changed", "CONFIRMED"), ("cancelled", "CANCELLED")]
)
def test_calendar_status_marks_cancelled_visits(status: str, expected: str) -> None:
    assert calendar_event(with_changes(VISITS[0], status=status)).status == expected


@pytest.mark.parametrize(
    "text",
    [
        "زيارة إلى بيت الحي",
        "Hội thảo hợp tác xã",
        "Économie sociale, coopératives; «Agliè»",
        "김민준\nline two",
        # Longer than one 75-octet content line: folding must not split a character.
        "زيارة إلى بيت الحي في سان سالفاريو " * 4,
    ],
    ids=["arabic", "vietnamese", "accents-and-separators", "korean-multiline", "arabic-folded"],
)
def test_calendar_text_round_trips(text: str) -> None:
    event = calendar_event(with_changes(VISITS[1], title=text, notes={"en": text}, meeting_point=text))
    assert str(event["SUMMARY"]) == text
    assert text in str(event["DESCRIPTION"])
    assert f"Meeting point: {text}" in str(event["DESCRIPTION"])


def test_calendar_description_tells_kind_transport_and_english_note() -> None:
    description = str(calendar_event(VISITS[1])["DESCRIPTION"])
    assert description.splitlines()[0] == "Study visit"
    assert "Getting there: public transport" in description
    assert "Tram 4 towards Porta Nuova; 3 € ticket." in description
    assert "الترام" not in description


@pytest.mark.parametrize(
    ("updated_at", "expected"),
    [
        (datetime(2025, 11, 20, 9, 0, tzinfo=ROME), datetime(2025, 11, 20, 8, 0, tzinfo=UTC)),
        # Never edited: a time fixed by the data, not the wall clock.
        (None, datetime(2025, 12, 10, tzinfo=UTC)),
    ],
    ids=["updated", "never-updated"],
)
def test_calendar_stamp_comes_from_the_data(updated_at: datetime | None, expected: datetime) -> None:
    event = calendar_event(with_changes(VISITS[0], updated_at=updated_at))
    assert event["DTSTAMP"].dt == expected
    if updated_at is None:
        assert "LAST-MODIFIED" not in event
    else:
        assert event.last_modified == expected


def test_calendar_leaves_out_an_end_that_is_not_after_the_start() -> None:
    visit = with_changes(VISITS[0], ends_at=VISITS[0].starts_at)
    assert "DTEND" not in calendar_event(visit)


# frab schedule XML


def test_schedule_validates_against_the_frab_schema() -> None:
    SCHEMA.assertValid(schedule_root())


def test_demo_schedule_validates_against_the_frab_schema() -> None:
    fixture = read_fixture(DEMO_FIXTURE)
    root = etree.fromstring(schedule_xml(fixture.event, fixture.visits, {s.id: s for s in fixture.sites}))
    SCHEMA.assertValid(root)
    assert len(root.xpath("day/room/event")) == len(fixture.visits)


def test_schedule_describes_the_conference_and_its_days() -> None:
    root = schedule_root()
    assert root.findtext("conference/title") == EVENT.title
    assert root.findtext("conference/acronym") == EVENT.id
    assert (root.findtext("conference/start"), root.findtext("conference/end")) == ("2025-12-10", "2025-12-11")
    assert root.findtext("conference/days") == "2"
    assert root.findtext("conference/timeslot_duration") == "00:15"
    assert [dict(d.attrib) for d in root.findall("day")] == [
        {"index": "1", "date": "2025-12-10", "start": "2025-12-10T00:00:00+01:00", "end": "2025-12-11T00:00:00+01:00"},
        {"index": "2", "date": "2025-12-11", "start": "2025-12-11T00:00:00+01:00", "end": "2025-12-12T00:00:00+01:00"},
    ]


def test_schedule_puts_each_visit_in_its_place() -> None:
    root = schedule_root()
    rooms = {(d.get("date"), r.get("name")): r.xpath("event/slug/text()") for d in root.findall("day") for r in d}
    assert rooms == {
        ("2025-12-10", "ITC-ILO campus"): ["turin-sse-2025-d1-plenary-opening"],
        ("2025-12-10", "Casa del Quartiere San Salvario"): ["turin-sse-2025-d1-g1-san-salvario"],
        ("2025-12-11", EVENT.venue): ["turin-sse-2025-d2-g2-workshop"],
        ("2025-12-11", "Casa del Quartiere San Salvario"): ["turin-sse-2025-d2-g1-cancelled"],
    }
    for room in root.iterfind("day/room"):
        assert {e.findtext("room") for e in room.findall("event")} == {room.get("name")}


@pytest.mark.parametrize(
    ("visit", "day", "start", "duration"),
    [
        (VISITS[0], "2025-12-10T09:00:00+01:00", "09:00", "01:30"),
        (VISITS[1], "2025-12-10T14:30:00+01:00", "14:30", "02:15"),
        (VISITS[2], "2025-12-11T09:00:00+01:00", "09:00", "01:00"),
        (VISITS[3], "2025-12-11T14:20:00+01:00", "14:20", "01:30"),
    ],
    ids=VISIT_IDS,
)
def test_schedule_times_are_local_to_turin(visit: Visit, day: str, start: str, duration: str) -> None:
    element = schedule_event(visit)
    assert (element.findtext("date"), element.findtext("start"), element.findtext("duration")) == (day, start, duration)


def test_schedule_ids_and_guids_are_unique_and_stable() -> None:
    def identities(visits: list[Visit]) -> dict[str, tuple[str, str]]:
        return {e.findtext("slug"): (e.get("id"), e.get("guid")) for e in schedule_root(visits).iter("event")}

    before = identities(VISITS)
    changed = [with_changes(v, title=v.title + "!", version=v.version + 1) for v in VISITS]
    assert identities(changed) == before
    assert [int(i) for i, _ in before.values()] == [v.number for v in VISITS]
    assert len({g for _, g in before.values()}) == len(VISITS)


@pytest.mark.parametrize(
    "numbers", [[0, 0, 0, 0], [1, 1, 2, 2], [5, 0, 5, -1]], ids=["unnumbered", "duplicated", "mixed"]
)
def test_schedule_ids_stay_positive_and_unique_with_bad_numbers(numbers: list[int]) -> None:
    visits = [with_changes(v, number=n) for v, n in zip(VISITS, numbers, strict=True)]
    root = schedule_root(visits)
    SCHEMA.assertValid(root)
    assert schedule_xml(EVENT, visits, SITES) == schedule_xml(EVENT, list(reversed(visits)), SITES)
    assert all(int(e.get("id")) > 0 for e in root.iter("event"))


def test_schedule_fields_of_a_visit() -> None:
    element = schedule_event(VISITS[1])
    assert element.findtext("type") == "visit"
    assert element.findtext("subtitle") == "Groups G1"
    assert element.findtext("track") == "Study visit"
    assert element.findtext("language") == "en"
    assert element.findtext("abstract") == SITES["casa-quartiere-san-salvario"].description["en"]
    assert [link.get("href") for link in element.iter("link")] == ["https://casadelquartiere.it"]
    assert element.find("persons") is not None
    site_less = schedule_event(VISITS[2])
    assert (site_less.findtext("abstract"), site_less.findall("links/link")) == ("", [])
    for_all = with_changes(VISITS[0], group_ids=[])
    assert schedule_event(for_all, [for_all]).findtext("subtitle") == "All groups"


@pytest.mark.parametrize(
    ("kind", "track"),
    [("visit", "Study visit"), ("plenary", "Plenary"), ("break", "Break"), ("meal", "Meal"), ("transfer", "Transfer")],
)
def test_schedule_track_is_the_kind_of_visit_not_its_groups(kind: str, track: str) -> None:
    """Schedule apps filter by track: one per kind, whatever the groups (not "G1, G2" next to "G1")."""
    visits = [with_changes(VISITS[0], kind=kind, group_ids=["G1", "G2"]), with_changes(VISITS[1], kind=kind)]
    assert {e.findtext("track") for e in schedule_root(visits).iter("event")} == {track}


def test_schedule_conference_carries_the_time_zone_name() -> None:
    assert schedule_root().findtext("conference/time_zone_name") == "Europe/Rome"


def test_group_feed_names_its_conference_apart_from_the_whole_programme() -> None:
    group = etree.fromstring(schedule_xml(EVENT, VISITS, SITES, ("G1", "Gruppo 1 — Économie")))
    SCHEMA.assertValid(group)
    assert group.findtext("conference/title") == f"{EVENT.title} — Gruppo 1 — Économie"
    assert group.findtext("conference/acronym") == f"{EVENT.id}-g1"
    assert group.findtext("conference/title") != schedule_root().findtext("conference/title")


def test_conference_title_and_acronym_stay_the_same_when_the_programme_changes() -> None:
    """ConfClerk updates the conference whose title it has; a title that changed would add a second one."""
    moved = [
        with_changes(v, starts_at=v.starts_at + timedelta(hours=1), ends_at=v.ends_at + timedelta(hours=1))
        for v in VISITS
    ]
    for feed in [None, ("G1", "Gruppo 1")]:
        before = etree.fromstring(schedule_xml(EVENT, VISITS, SITES, feed))
        after = etree.fromstring(schedule_xml(EVENT, moved[:2], SITES, feed))
        assert before.findtext("version") != after.findtext("version")
        for tag in ("conference/title", "conference/acronym"):
            assert before.findtext(tag) == after.findtext(tag)


@pytest.mark.parametrize(
    ("site_id", "venue", "room"),
    [
        ("casa-quartiere-san-salvario", "", "Casa del Quartiere San Salvario"),
        (None, "Sala Koinè", "Sala Koinè"),
        (None, "", EVENT.venue),
        ("no-such-site", "", EVENT.venue),
    ],
    ids=["site", "own-venue", "event-venue", "unknown-site"],
)
def test_schedule_room_is_the_site_else_the_venue(site_id: str | None, venue: str, room: str) -> None:
    visit = with_changes(VISITS[0], site_id=site_id, venue=venue)
    root = schedule_root([visit])
    SCHEMA.assertValid(root)
    assert (root.find("day/room").get("name"), root.findtext("day/room/event/room")) == (room, room)


def test_schedule_keeps_cancelled_visits_with_a_marked_title() -> None:
    assert schedule_event(VISITS[3]).findtext("title") == f"CANCELLED: {VISITS[3].title}"
    assert schedule_event(VISITS[0]).findtext("title") == VISITS[0].title


@pytest.mark.parametrize(
    "text",
    ["زيارة إلى بيت الحي", "Hội thảo hợp tác xã và doanh nghiệp xã hội", "Agliè, «Économie» & <coopératives>"],
    ids=["arabic", "vietnamese", "accents-and-markup"],
)
def test_schedule_text_round_trips(text: str) -> None:
    site = SITES["casa-quartiere-san-salvario"]
    sites = {**SITES, site.id: Site(**{**{f: getattr(site, f) for f in site.__struct_fields__}, "name": text})}
    root = schedule_root([with_changes(VISITS[1], title=text)], sites)
    SCHEMA.assertValid(root)
    (element,) = root.iter("event")
    assert (element.findtext("title"), element.findtext("room")) == (text, text)
    assert root.find("day/room").get("name") == text


def test_schedule_drops_characters_xml_cannot_carry() -> None:
    root = schedule_root([with_changes(VISITS[0], title="Plenary\x0b\x01 session")])
    SCHEMA.assertValid(root)
    assert root.findtext("day/room/event/title") == "Plenary session"


def test_schedule_adds_a_day_for_a_visit_outside_the_event_days() -> None:
    early = with_changes(VISITS[0], starts_at=rome(9, 18), ends_at=rome(9, 19))
    root = schedule_root([early, *VISITS[1:]])
    SCHEMA.assertValid(root)
    assert [d.get("date") for d in root.findall("day")] == ["2025-12-09", "2025-12-10", "2025-12-11"]
    assert root.findtext("conference/days") == "3"


def test_schedule_version_changes_with_the_data_and_only_then() -> None:
    def version(visits: list[Visit]) -> str | None:
        return schedule_root(visits).findtext("version")

    assert version(VISITS) == version(list(reversed(VISITS)))
    assert version(VISITS) != version([with_changes(VISITS[0], version=2), *VISITS[1:]])
    assert version(VISITS) != version(VISITS[:-1])


# --- schedule.xml as schedule apps fetch it ---------------------------------------------------------

DEMO = read_fixture(DEMO_FIXTURE)
SCHEDULE_URL = f"/api/v1/events/{EVENT_ID}/schedule.xml"


def demo_slugs(group: str | None) -> set[str]:
    return {f"{EVENT_ID}-{v.id}" for v in DEMO.visits if group is None or group in v.group_ids}


@pytest.mark.parametrize(
    ("role", "query", "group"),
    [
        pytest.param("organizer", "?group=G1", "G1", id="organizer-asks-for-G1"),
        pytest.param("organizer", "?group=G2", "G2", id="organizer-asks-for-G2"),
        pytest.param("participant", "", "G1", id="participant-own-feed"),
        pytest.param("participant", "?group=G2", "G2", id="participant-asks-for-G2"),
        pytest.param("organizer", "", None, id="organizer-whole-programme"),
    ],
)
def test_schedule_feed_holds_only_the_visits_of_the_group_asked_for(
    client: TestClient[Litestar], seeded: Seeded, role: str, query: str, group: str | None
) -> None:
    headers = seeded.headers(role, group="G1") if role == "participant" else seeded.headers(role)
    response = client.get(SCHEDULE_URL + query, headers=headers)
    assert response.status_code == 200
    root = etree.fromstring(response.content)
    SCHEMA.assertValid(root)
    slugs = set(root.xpath("day/room/event/slug/text()"))
    assert slugs == demo_slugs(group)
    assert slugs < demo_slugs(None) or group is None
    title = root.findtext("conference/title")
    names = {g.id: g.name for g in DEMO.groups}
    assert title == (DEMO.event.title if group is None else f"{DEMO.event.title} — {names[group]}")


def test_schedule_feed_is_the_same_conference_on_every_fetch_and_after_a_change(
    client: TestClient[Litestar], seeded: Seeded
) -> None:
    headers = seeded.headers("participant", group="G1")
    first = etree.fromstring(client.get(SCHEDULE_URL, headers=headers).content)
    organizer = seeded.headers("organizer")
    visit = next(v for v in DEMO.visits if "G1" in v.group_ids)
    etag = client.get(f"/api/v1/events/{EVENT_ID}/visits/{visit.id}", headers=organizer).headers["etag"]
    moved = client.patch(
        f"/api/v1/events/{EVENT_ID}/visits/{visit.id}",
        json={"title": "Visita spostata: Café Müller"},
        headers={**organizer, "If-Match": etag, "Content-Type": "application/merge-patch+json"},
    )
    assert moved.status_code == 200
    second = etree.fromstring(client.get(SCHEDULE_URL, headers=headers).content)
    assert first.findtext("version") != second.findtext("version")
    for tag in ("conference/title", "conference/acronym"):
        assert first.findtext(tag) == second.findtext(tag)
    assert "Visita spostata: Café Müller" in second.xpath("day/room/event/title/text()")


def test_schedule_feed_of_an_unknown_group_is_a_400_problem(client: TestClient[Litestar], seeded: Seeded) -> None:
    response = client.get(SCHEDULE_URL + "?group=G99", headers=seeded.headers("organizer"))
    assert response.status_code == 400
    assert response.json()["type"] == "urn:studyvisit:problem:invalid-query"
