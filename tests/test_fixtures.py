"""The Turin seed data: it decodes strictly, refers only to itself and matches its reference data set."""

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest

from schemas.fixtures import Fixture

FIXTURES = Path(__file__).parent.parent / "fixtures"
FIXTURE_PATH = FIXTURES / "turin-sse-2025.json"
REFERENCE_PATH = FIXTURES / "reference" / "turin-sse-sites.json"

DESCRIPTION_LANGUAGES = ("en", "fr", "es", "it")
OFFSET = timedelta(hours=1)
UNICODE_NAMES = {"vietnamese": "Nguyễn Thị Hoa", "korean": "김민준", "arabic": "فاطمة الزهراء العمراني"}

# Untyped views, read at collection time only to name the parametrized cases.
RAW = FIXTURE_PATH.read_bytes()
DOC: dict[str, Any] = msgspec.json.decode(RAW)
REFERENCE: dict[str, Any] = msgspec.json.decode(REFERENCE_PATH.read_bytes())
REFERENCE_SITES = {s["id"]: s for s in REFERENCE["sites"]}
VISIT_IDS = [v["id"] for v in DOC["visits"]]
HOST_IDS = [a["id"] for a in DOC["accounts"] if a["role"] == "host"]
ACCOUNT_IDS = [a["id"] for a in DOC["accounts"]]
ESTIMATED_IDS = [s["id"] for s in REFERENCE["sites"] if s["coord_source"] == "estimated"]


def reference_items() -> set[tuple[str, tuple[str, ...], datetime, datetime]]:
    """(site, groups, start, end) of every item of the reference's example itinerary."""
    everyone = tuple(sorted(g["group_id"] for g in REFERENCE["example_itinerary"]["groups"]))
    items = set()
    for day in REFERENCE["example_itinerary"]["days"]:
        for session in day["sessions"]:
            if session["type"] != "study_visit_slot":
                items.add((session["site_id"], everyone, session["start"], session["end"]))
                continue
            for trip in session["parallel_groups"]:
                stops = [trip, *([trip["second_stop"]] if "second_stop" in trip else [])]
                items.update((s["site_id"], (trip["group_id"],), s["visit_start"], s["visit_end"]) for s in stops)
    return {(site, groups, datetime.fromisoformat(a), datetime.fromisoformat(b)) for site, groups, a, b in items}


@pytest.fixture(scope="module")
def fixture() -> Fixture:
    return msgspec.json.decode(RAW, type=Fixture, strict=True)


@pytest.fixture(scope="module")
def sites(fixture: Fixture) -> dict[str, Any]:
    return {s.id: s for s in fixture.sites}


@pytest.fixture(scope="module")
def visits(fixture: Fixture) -> dict[str, Any]:
    return {v.id: v for v in fixture.visits}


@pytest.fixture(scope="module")
def accounts(fixture: Fixture) -> dict[str, Any]:
    return {a.id: a for a in fixture.accounts}


def test_fixture_decodes_strictly(fixture: Fixture) -> None:
    assert fixture.event.id == "turin-sse-2025"
    assert fixture.event.venue_site_id in {s.id for s in fixture.sites}


def test_ids_are_unique(fixture: Fixture) -> None:
    for items in (fixture.sites, fixture.groups, fixture.visits, fixture.questions, fixture.accounts):
        ids = [item.id for item in items]
        assert len(ids) == len(set(ids))


def test_sites_are_the_reference_sites(sites: dict[str, Any]) -> None:
    assert sorted(sites) == sorted(REFERENCE_SITES)


@pytest.mark.parametrize("site_id", sorted(REFERENCE_SITES))
def test_site_is_described_in_every_language(sites: dict[str, Any], site_id: str) -> None:
    description = sites[site_id].description
    missing = [lang for lang in DESCRIPTION_LANGUAGES if not description.get(lang, "").strip()]
    assert not missing, f"{site_id} has no description in {missing}"


@pytest.mark.parametrize("site_id", sorted(REFERENCE_SITES))
def test_site_coordinates_match_reference(sites: dict[str, Any], site_id: str) -> None:
    site, ref = sites[site_id], REFERENCE_SITES[site_id]
    assert (site.lat, site.lon, site.coord_source) == (ref["lat"], ref["lon"], ref["coord_source"])


@pytest.mark.parametrize("site_id", ESTIMATED_IDS)
def test_estimated_coordinates_say_so(sites: dict[str, Any], site_id: str) -> None:
    assert "estimated" in sites[site_id].coord_note.lower()


@pytest.mark.parametrize("visit_id", VISIT_IDS)
def test_visit_refers_to_existing_site_and_groups(fixture: Fixture, visits: dict[str, Any], visit_id: str) -> None:
    visit = visits[visit_id]
    assert visit.site_id in {s.id for s in fixture.sites}
    assert visit.group_ids
    assert set(visit.group_ids) <= {g.id for g in fixture.groups}


@pytest.mark.parametrize("visit_id", VISIT_IDS)
def test_visit_times_are_ordered_and_in_local_time(visits: dict[str, Any], visit_id: str) -> None:
    visit = visits[visit_id]
    raw = next(v for v in DOC["visits"] if v["id"] == visit_id)
    assert visit.ends_at > visit.starts_at
    assert visit.starts_at.utcoffset() == visit.ends_at.utcoffset() == OFFSET
    assert raw["starts_at"].endswith("+01:00")
    assert raw["ends_at"].endswith("+01:00")


@pytest.mark.parametrize("visit_id", VISIT_IDS)
def test_visit_is_in_reference_itinerary(visits: dict[str, Any], visit_id: str) -> None:
    visit = visits[visit_id]
    item = (visit.site_id, tuple(sorted(visit.group_ids)), visit.starts_at, visit.ends_at)
    assert item in reference_items()


def test_itinerary_covers_the_whole_reference(fixture: Fixture) -> None:
    items = [(v.site_id, tuple(sorted(v.group_ids)), v.starts_at, v.ends_at) for v in fixture.visits]
    assert len(items) == len(set(items))
    assert set(items) == reference_items()


def test_visit_numbers_follow_the_clock(fixture: Fixture) -> None:
    ordered = sorted(fixture.visits, key=lambda v: v.number)
    assert [v.number for v in ordered] == list(range(1, len(ordered) + 1))
    assert [v.starts_at for v in ordered] == sorted(v.starts_at for v in ordered)


@pytest.mark.parametrize("account_id", ACCOUNT_IDS)
def test_account_belongs_to_event_and_group(fixture: Fixture, accounts: dict[str, Any], account_id: str) -> None:
    account = accounts[account_id]
    assert account.event_id == fixture.event.id
    assert account.group_id is None or account.group_id in {g.id for g in fixture.groups}
    assert (account.group_id is not None) == (account.role == "participant")


@pytest.mark.parametrize("account_id", HOST_IDS)
def test_host_sites_exist(sites: dict[str, Any], accounts: dict[str, Any], account_id: str) -> None:
    site_ids = accounts[account_id].site_ids
    assert site_ids
    assert set(site_ids) <= set(sites)


def test_fixture_round_trips_unchanged(fixture: Fixture) -> None:
    encoded = msgspec.json.encode(fixture)
    assert msgspec.json.decode(encoded, type=Fixture, strict=True) == fixture
    assert msgspec.json.decode(encoded) == DOC


@pytest.mark.parametrize("name", UNICODE_NAMES.values(), ids=UNICODE_NAMES.keys())
def test_unicode_name_survives_round_trip(fixture: Fixture, name: str) -> None:
    assert name.encode() in RAW, "the file stores names as UTF-8, not \\u escapes"
    again = msgspec.json.decode(msgspec.json.encode(fixture), type=Fixture)
    assert name in {a.name for a in again.accounts}
