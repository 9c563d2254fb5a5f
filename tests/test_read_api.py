"""The read API in-process: roles, errors as problem documents, caching, languages, distances and exports."""

import gzip
import inspect
import itertools
import math
import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import msgspec
import pytest
from conftest import EVENT_ID, Seeded, make_app
from hypothesis import given, settings
from hypothesis import strategies as st
from icalendar import Calendar
from litestar import Litestar, get
from litestar.testing import TestClient
from lxml import etree

from schemas.fixtures import Fixture
from server.auth import requires
from server.fixtures import DEMO_FIXTURE, read_fixture
from server.storage.catalog import put_visit
from server.storage.db import Database
from tests.databases import loaded

pytestmark = pytest.mark.both_backends  # CI runs it on SQLite, then on PostgreSQL

DEMO = read_fixture(DEMO_FIXTURE)
SITES = {s.id: s for s in DEMO.sites}
VISITS = {v.id: v for v in DEMO.visits}
EVENT = f"/api/v1/events/{EVENT_ID}"
CAMPUS = (45.036, 7.674)  # ITC-ILO campus, the event's venue
PROBLEM = "application/problem+json"
PROBLEM_MEMBERS = {"type", "title", "status", "detail", "instance", "errors", "current_version", "supported"}

# Every authenticated GET of the read API, each with a query that a G1 participant may send.
ENDPOINTS = [
    "/api/v1/me",
    EVENT,
    f"{EVENT}/sites",
    f"{EVENT}/sites?lang=fr&theme=culture",
    f"{EVENT}/sites?near=45.036,7.674",
    f"{EVENT}/sites/barrito?lang=it",
    f"{EVENT}/sites.geojson",
    f"{EVENT}/visits/d1-g1-casa-quartiere-san-salvario",
    f"{EVENT}/itinerary",
    f"{EVENT}/itinerary?group=G2",
    f"{EVENT}/itinerary.ics",
    f"{EVENT}/schedule.xml",
]
# The endpoints under the caller's event, which tests move to other events.
EVENT_ENDPOINTS = [e for e in ENDPOINTS if e.startswith(EVENT)]
MEDIA_TYPES = {
    "sites.geojson": "application/geo+json",
    "itinerary.ics": "text/calendar; charset=utf-8",
    "schedule.xml": "application/xml",
}
# Bad query values: (path and query, what the detail must name). Each is a 400 invalid-query problem.
BAD_INPUTS = [
    pytest.param(f"{EVENT}/sites?near=999,abc", "999,abc", id="near-not-numbers"),
    pytest.param(f"{EVENT}/sites?near=45.036", "LAT,LON", id="near-one-number"),
    pytest.param(f"{EVENT}/sites?near=45.0,7.6,12", "LAT,LON", id="near-three-numbers"),
    pytest.param(f"{EVENT}/sites?near=", "LAT,LON", id="near-empty"),
    pytest.param(f"{EVENT}/sites?near=91,7.6", "latitude 91.0", id="near-latitude-out-of-range"),
    pytest.param(f"{EVENT}/sites?near=45,181", "longitude 181.0", id="near-longitude-out-of-range"),
    pytest.param(f"{EVENT}/sites?near=nan,7.6", "finite", id="near-nan"),
    pytest.param(f"{EVENT}/sites?near=45,inf", "finite", id="near-infinite"),
    pytest.param(f"{EVENT}/sites?lang=12", "'12'", id="lang-digits"),
    pytest.param(f"{EVENT}/sites?lang=en_US", "'en_US'", id="lang-underscore"),
    pytest.param(f"{EVENT}/sites/barrito?lang=fr-", "'fr-'", id="lang-trailing-dash"),
    pytest.param(f"{EVENT}/sites.geojson?lang=<script>", "'<script>'", id="lang-markup"),
    pytest.param(f"{EVENT}/sites?lang=zh-{'abcdefgh-' * 4}x1", "BCP 47", id="lang-too-long"),
    pytest.param(f"{EVENT}/itinerary?group=G9", "'G9'", id="group-unknown"),
    pytest.param(f"{EVENT}/itinerary.ics?group=G9", "'G9'", id="group-unknown-ics"),
    pytest.param(f"{EVENT}/itinerary?group=g1", "'g1'", id="group-wrong-case"),
]

# A second event in the same database, small enough to reason about: a walk too long for its gap.
WALK_EVENT_ID = "turin-walk-check"
WALK = f"/api/v1/events/{WALK_EVENT_ID}"
WALK_FIXTURE = msgspec.convert(
    {
        "event": {
            "id": WALK_EVENT_ID,
            "title": "Walking-time check",
            "starts_on": "2025-12-12",
            "ends_on": "2025-12-12",
            "timezone": "Europe/Rome",
            "venue": "ITC-ILO campus",
            "venue_site_id": "itcilo-campus",
        },
        # The same ids as in the demo event on purpose: ids are only unique within an event.
        "sites": [
            {"id": "itcilo-campus", "name": "ITC-ILO campus", "kind": "training_centre", "lat": 45.036, "lon": 7.674},
            {
                "id": "barrito",
                "name": "Barrito",
                "kind": "community_house",
                "lat": 45.04,
                "lon": 7.67,
                # Scripts and regions the demo data does not have, for language negotiation.
                "description": {
                    "en": "Neighbourhood house.",
                    "zh-Hans": "社区之家。",
                    "zh-Hant": "社區之家。",
                    "pt-PT": "Casa do bairro.",
                },
            },
            {"id": "bagni", "name": "Bagni Pubblici", "kind": "community_house", "lat": 45.0895, "lon": 7.6935},
        ],
        "groups": [{"id": "W1", "name": "Walkers"}],
        "visits": [
            {
                "id": "w-talk",
                "number": 1,
                "title": "Talk",
                "starts_at": "2025-12-12T10:00:00+01:00",
                "ends_at": "2025-12-12T11:00:00+01:00",
                "group_ids": ["W1"],
                "site_id": "itcilo-campus",
            },
            {
                # Cancelled: it neither gets a leg nor counts as where the group comes from.
                "id": "w-cancelled",
                "number": 2,
                "title": "Cancelled detour",
                "starts_at": "2025-12-12T11:00:00+01:00",
                "ends_at": "2025-12-12T11:05:00+01:00",
                "group_ids": ["W1"],
                "site_id": "bagni",
                "status": "cancelled",
            },
            {
                "id": "w-barrito",
                "number": 3,
                "title": "Barrito tour",
                "starts_at": "2025-12-12T11:05:00+01:00",
                "ends_at": "2025-12-12T12:00:00+01:00",
                "group_ids": ["W1"],
                "site_id": "barrito",
            },
            {
                "id": "w-barrito-lunch",
                "number": 4,
                "title": "Lunch at Barrito",
                "starts_at": "2025-12-12T12:00:00+01:00",
                "ends_at": "2025-12-12T12:30:00+01:00",
                "group_ids": ["W1"],
                "site_id": "barrito",
            },
            {
                "id": "w-back",
                "number": 5,
                "title": "Back on campus",
                "starts_at": "2025-12-12T12:45:00+01:00",
                "ends_at": "2025-12-12T13:30:00+01:00",
                "group_ids": ["W1"],
                "site_id": "itcilo-campus",
            },
        ],
        "accounts": [
            {"id": "w-walker", "name": "Walker", "role": "participant", "event_id": WALK_EVENT_ID, "group_id": "W1"}
        ],
    },
    Fixture,
)


def haversine_m(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle distance on a sphere of the mean Earth radius: independent of geopy, within 0.5% of WGS84."""
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * 6_371_008.8 * math.asin(math.sqrt(h))


def assert_problem(response: Any, status: int, slug: str, *detail_parts: str) -> dict[str, Any]:
    """The response is an RFC 9457 problem document of this status and type, and says nothing of the server's insides."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    problem: dict[str, Any] = response.json()
    assert problem["type"] == f"urn:studyvisit:problem:{slug}"
    assert problem["status"] == status
    assert problem["title"]
    assert set(problem) <= PROBLEM_MEMBERS
    for part in detail_parts:
        assert part in problem["detail"]
    assert "Traceback" not in response.text
    assert 'File "' not in response.text
    return problem


def geojson_errors(doc: Any) -> list[str]:
    """What makes ``doc`` not an RFC 7946 FeatureCollection of Points (empty when it is one)."""
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection":
        return ["not a FeatureCollection object"]
    errors: list[str] = []
    if "crs" in doc:
        errors.append("RFC 7946 §4: no 'crs' member; coordinates are WGS84")
    features = doc.get("features")
    if not isinstance(features, list):
        return [*errors, "'features' is not an array"]
    for n, feature in enumerate(features):
        where = f"features[{n}]"
        if not isinstance(feature, dict) or feature.get("type") != "Feature":
            errors.append(f"{where}: not a Feature object")
            continue
        if "properties" not in feature or not isinstance(feature["properties"], dict | None):
            errors.append(f"{where}: 'properties' must be an object or null")
        if "id" in feature and not isinstance(feature["id"], str | int | float):
            errors.append(f"{where}: 'id' must be a string or a number")
        geometry = feature.get("geometry")
        if not isinstance(geometry, dict) or geometry.get("type") != "Point":
            errors.append(f"{where}: geometry is not a Point")
            continue
        position = geometry.get("coordinates")
        if (
            not isinstance(position, list)
            or len(position) not in (2, 3)
            or not all(isinstance(x, int | float) and not isinstance(x, bool) for x in position)
        ):
            errors.append(f"{where}: a position is an array of 2 or 3 numbers")
            continue
        lon, lat = position[0], position[1]
        if not -180 <= lon <= 180 or not -90 <= lat <= 90:
            errors.append(f"{where}: [{lon}, {lat}] is not [longitude, latitude]")
    return errors


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def raw_get(client: Any, url: str, headers: dict[str, str]) -> tuple[Any, bytes]:
    """A GET whose body is returned as sent, without the client undoing the gzip."""
    with client.stream("GET", url, headers=headers) as response:
        return response, b"".join(response.iter_raw())


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Seeded:
    """One database for the read-only tests of this module: the demo event and the walking-check event."""
    return loaded(tmp_path_factory.mktemp("read-api") / "studyvisit.db", request, DEMO, WALK_FIXTURE)


@pytest.fixture(scope="module")
def api(world: Seeded) -> Iterator[TestClient[Litestar]]:
    """The app in-process over ``world``; tests that change data use the per-test ``client`` instead."""
    with TestClient(app=make_app(world)) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def participant(world: Seeded) -> dict[str, str]:
    """Headers of the first G1 participant of the demo event."""
    return world.headers("participant", group="G1")


@pytest.fixture(scope="module")
def walker(world: Seeded) -> dict[str, str]:
    """Headers of the walking-check event's participant."""
    return auth(world.accounts["w-walker"].token)


# --- auth: 401, 404 across events, 403 ------------------------------------------------------


def test_health_answers_without_a_token(api: TestClient[Litestar]) -> None:
    response = api.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.parametrize("account_id", ["org-marta", "host-san-salvario", "p-nguyen-thi-hoa", "p-kim-min-jun"])
def test_me_is_the_account_the_token_belongs_to(api: TestClient[Litestar], world: Seeded, account_id: str) -> None:
    account = world.accounts[account_id]
    me = api.get("/api/v1/me", headers=auth(account.token)).json()
    assert me["id"] == account_id
    assert me["name"] == account.name
    assert me["role"] == account.role
    assert me["event_id"] == EVENT_ID
    assert me["group_id"] == account.group_id
    assert me["site_ids"] == account.site_ids
    assert "token" not in me


@pytest.mark.parametrize("role", ["organizer", "host", "participant"])
def test_every_role_reads_its_event(api: TestClient[Litestar], world: Seeded, role: str) -> None:
    event = api.get(EVENT, headers=world.headers(role)).json()
    assert event["id"] == EVENT_ID
    assert event["timezone"] == "Europe/Rome"
    assert (event["starts_on"], event["ends_on"]) == ("2025-12-10", "2025-12-11")
    assert event["venue_site_id"] == "itcilo-campus"


@pytest.mark.parametrize("path", ENDPOINTS)
@pytest.mark.parametrize(
    ("authorization", "detail"),
    [
        pytest.param(None, "Authorization: Bearer", id="missing"),
        pytest.param("Bearer ", "Authorization: Bearer", id="empty-token"),
        pytest.param("Basic cGFydGljaXBhbnQ6c2VjcmV0", "Authorization: Bearer", id="basic-scheme"),
        pytest.param("Bearer sv_not-a-token-anyone-was-given", "not valid", id="unknown-token"),
    ],
)
def test_request_without_a_valid_token_is_refused_with_401_and_a_bearer_challenge(
    api: TestClient[Litestar], path: str, authorization: str | None, detail: str
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    response = api.get(path, headers=headers)
    assert_problem(response, 401, "unauthorized", detail)
    assert response.headers["www-authenticate"].startswith("Bearer ")


@pytest.mark.parametrize("path", EVENT_ENDPOINTS)
def test_another_events_resources_do_not_exist_for_the_caller(
    api: TestClient[Litestar], participant: dict[str, str], path: str
) -> None:
    other = path.replace(EVENT, WALK).replace("group=G2", "group=W1")
    problem = assert_problem(api.get(other, headers=participant), 404, "not-found", WALK_EVENT_ID)
    assert problem["instance"] == other.split("?")[0]


@pytest.mark.parametrize("path", EVENT_ENDPOINTS)
def test_an_unknown_event_is_404(api: TestClient[Litestar], participant: dict[str, str], path: str) -> None:
    assert_problem(api.get(path.replace(EVENT_ID, "no-such-event"), headers=participant), 404, "not-found")


@pytest.mark.parametrize(
    "path",
    [
        pytest.param(f"{EVENT}/visits/w-talk", id="visit"),
        pytest.param(f"{EVENT}/sites/bagni", id="site"),
    ],
)
def test_another_events_record_is_404_under_the_callers_event(
    api: TestClient[Litestar], participant: dict[str, str], path: str
) -> None:
    assert_problem(api.get(path, headers=participant), 404, "not-found")


def test_the_other_events_own_account_reads_it_and_not_the_demo_event(
    api: TestClient[Litestar], walker: dict[str, str]
) -> None:
    assert api.get(f"{WALK}/sites/barrito", headers=walker).json()["lat"] == 45.04
    assert_problem(api.get(f"{EVENT}/sites/barrito", headers=walker), 404, "not-found", EVENT_ID)


@pytest.mark.parametrize(
    ("path", "detail"),
    [
        pytest.param(f"{EVENT}/sites/no-such-site", "no-such-site", id="site"),
        pytest.param(f"{EVENT}/visits/no-such-visit", "no-such-visit", id="visit"),
    ],
)
def test_an_unknown_record_is_404(
    api: TestClient[Litestar], participant: dict[str, str], path: str, detail: str
) -> None:
    assert_problem(api.get(path, headers=participant), 404, "not-found", detail)


def _role_guards(app: Litestar) -> list[tuple[str, str, tuple[str, ...]]]:
    """(method, path, allowed roles) of every route guarded by ``requires``."""
    found: list[tuple[str, str, tuple[str, ...]]] = []
    for route in app.routes:
        for handler in getattr(route, "route_handlers", []):
            for wrapped in handler.resolve_guards():
                guard = getattr(wrapped, "func", wrapped)  # Litestar wraps guards in an AsyncCallable
                if getattr(guard, "__qualname__", "").startswith("requires."):
                    roles = inspect.getclosurevars(guard).nonlocals["roles"]
                    found += [(m, route.path, roles) for m in handler.http_methods if m != "OPTIONS"]
    return found


def test_role_limited_routes_refuse_other_roles_with_a_403_problem(api: TestClient[Litestar], world: Seeded) -> None:
    guarded = _role_guards(api.app)
    assert guarded, "the organizer-only routes are guarded by requires()"
    for method, path, roles in guarded:
        refused = next(r for r in ("participant", "host", "organizer") if r not in roles)
        url = re.sub(r"\{\w+:\w+\}", "x", path.replace("{event_id:str}", EVENT_ID))
        response = api.request(method, url, headers=world.headers(refused))
        assert_problem(response, 403, "forbidden", refused)


@get("/api/v1/organizers-only", guards=[requires("organizer")], sync_to_thread=False)
def organizers_only() -> dict[str, str]:
    """A stand-in for a role-limited endpoint, to check the guard machinery before write endpoints use it."""
    return {"ok": "yes"}


@pytest.fixture
def guarded_client(seeded: Seeded) -> Iterator[TestClient[Litestar]]:
    app = make_app(seeded)
    app.register(organizers_only)
    with TestClient(app=app) as test_client:
        yield test_client


@pytest.mark.parametrize(("role", "status"), [("organizer", 200), ("host", 403), ("participant", 403)])
def test_requires_guard_lets_only_its_roles_through_and_refuses_with_a_problem(
    guarded_client: TestClient[Litestar], seeded: Seeded, role: str, status: int
) -> None:
    response = guarded_client.get("/api/v1/organizers-only", headers=seeded.headers(role))
    if status == 200:
        assert response.json() == {"ok": "yes"}
    else:
        assert_problem(response, 403, "forbidden", f"A {role} may not do this", "organizer")


# --- one error shape ------------------------------------------------------------------------


def _boom(*_: object) -> None:
    raise RuntimeError("database file /secret/path is corrupt")


@pytest.mark.parametrize(
    ("method", "path", "status", "slug"),
    [
        pytest.param("GET", f"{EVENT}/sites?near=999,abc", 400, "invalid-query", id="400"),
        pytest.param("GET", f"{EVENT}/sites", 401, "unauthorized", id="401"),
        pytest.param("GET", "/api/v1/organizers-only", 403, "forbidden", id="403"),
        pytest.param("GET", f"{EVENT}/visits/nope", 404, "not-found", id="404"),
        pytest.param("GET", "/api/v1/nothing-here", 404, "not-found", id="404-no-route"),
        pytest.param("DELETE", f"{EVENT}/sites", 405, "method-not-allowed", id="405"),
        pytest.param("GET", EVENT, 500, "internal-error", id="500"),
    ],
)
def test_every_error_status_is_a_problem_document_with_a_stable_type(
    guarded_client: TestClient[Litestar],
    seeded: Seeded,
    monkeypatch: pytest.MonkeyPatch,
    method: str,
    path: str,
    status: int,
    slug: str,
) -> None:
    headers = {} if status == 401 else seeded.headers("participant")
    if status == 500:
        monkeypatch.setattr("server.routes.events.get_event", _boom)
    response = guarded_client.request(method, path, headers=headers)
    problem = assert_problem(response, status, slug)
    assert problem["instance"] == path.split("?")[0]
    assert "secret" not in response.text


@pytest.mark.parametrize(("path", "named"), BAD_INPUTS)
def test_a_bad_query_value_is_a_400_problem_that_names_it(
    api: TestClient[Litestar], participant: dict[str, str], path: str, named: str
) -> None:
    parameter = path.split("?")[1].split("=")[0]
    problem = assert_problem(api.get(path, headers=participant), 400, "invalid-query", named)
    assert problem["detail"].startswith(parameter)
    assert problem["title"] == "Invalid query parameter"


# --- sites: language, theme, distance, GeoJSON ----------------------------------------------


@pytest.mark.parametrize(
    ("site_id", "lang", "chosen"),
    [
        pytest.param("itcilo-campus", "ar", "ar", id="exact"),
        pytest.param("itcilo-campus", "IT", "it", id="case-insensitive"),
        pytest.param("itcilo-campus", "fr-CA", "fr", id="region-falls-back-to-language"),
        pytest.param("itcilo-campus", "es-419", "es", id="numeric-region"),
        pytest.param("barrito", "ar", "en", id="no-arabic-falls-back-to-english"),
        pytest.param("barrito", "ko", "en", id="no-korean-falls-back-to-english"),
        pytest.param("barrito", "pt-BR", "en", id="no-portuguese-falls-back-to-english"),
        pytest.param("barrito", "", "en", id="empty-is-absent"),
        pytest.param("barrito", None, "en", id="absent"),
    ],
)
def test_site_description_is_in_the_asked_language_or_says_which_it_fell_back_to(
    api: TestClient[Litestar], participant: dict[str, str], site_id: str, lang: str | None, chosen: str
) -> None:
    params = {} if lang is None else {"lang": lang}
    site = api.get(f"{EVENT}/sites/{site_id}", params=params, headers=participant).json()
    assert site["description_lang"] == chosen
    assert site["description"] == SITES[site_id].description[chosen]
    assert site["languages"] == sorted(SITES[site_id].description)
    assert (site["lat"], site["lon"]) == (SITES[site_id].lat, SITES[site_id].lon)


@pytest.mark.parametrize(
    ("lang", "chosen"),
    [
        pytest.param("zh-Hant-TW", "zh-Hant", id="script-before-language"),
        pytest.param("zh-hans-cn", "zh-Hans", id="script-case-insensitive"),
        pytest.param("zh-Hant", "zh-Hant", id="exact-script"),
        pytest.param("pt-BR", "pt-PT", id="sibling-region-before-english"),
        pytest.param("de", "en", id="missing-language"),
    ],
)
def test_language_lookup_cuts_the_tag_short_before_falling_back(
    api: TestClient[Litestar], walker: dict[str, str], lang: str, chosen: str
) -> None:
    site = api.get(f"{WALK}/sites/barrito", params={"lang": lang}, headers=walker).json()
    assert site["description_lang"] == chosen
    assert site["description"] == WALK_FIXTURE.sites[1].description[chosen]


def test_site_list_picks_the_language_per_site(api: TestClient[Litestar], participant: dict[str, str]) -> None:
    sites = api.get(f"{EVENT}/sites", params={"lang": "ar"}, headers=participant).json()
    assert len(sites) == len(SITES)
    for site in sites:
        expected = "ar" if "ar" in SITES[site["id"]].description else "en"
        assert site["description_lang"] == expected, site["id"]
        assert site["distance_m"] is None


@pytest.mark.parametrize(
    ("theme", "expected"),
    [
        pytest.param("public hygiene service", {"barrito", "bagni-pubblici-via-aglie"}, id="exact"),
        pytest.param("PUBLIC Hygiene Service", {"barrito", "bagni-pubblici-via-aglie"}, id="case-insensitive"),
        pytest.param("hygiene", set(), id="whole-theme-only"),
        pytest.param("work integration", {"triciclo", "pausa-cafe"}, id="work-integration"),
    ],
)
def test_theme_keeps_only_sites_with_that_whole_theme(
    api: TestClient[Litestar], participant: dict[str, str], theme: str, expected: set[str]
) -> None:
    sites = api.get(f"{EVENT}/sites", params={"theme": theme}, headers=participant).json()
    assert {s["id"] for s in sites} == expected


def test_near_the_campus_sorts_every_site_by_distance_with_barrito_nearest(
    api: TestClient[Litestar], participant: dict[str, str]
) -> None:
    sites = api.get(f"{EVENT}/sites", params={"near": "45.036,7.674"}, headers=participant).json()
    ids = [s["id"] for s in sites]
    assert ids[:2] == ["itcilo-campus", "barrito"]
    assert ids == sorted(SITES, key=lambda i: (haversine_m(CAMPUS, (SITES[i].lat, SITES[i].lon)), i))
    distances = [s["distance_m"] for s in sites]
    assert distances == sorted(distances)
    assert distances[0] == 0


@pytest.mark.parametrize(
    ("origin", "site_id"),
    [
        pytest.param(CAMPUS, "barrito", id="campus-to-barrito"),
        pytest.param(CAMPUS, "casa-quartiere-san-salvario", id="campus-to-san-salvario"),
        pytest.param(CAMPUS, "casa-quartiere-vallette", id="campus-to-vallette"),
        # Porta Nuova station, a point that is no site.
        pytest.param((45.0621, 7.6786), "triciclo", id="porta-nuova-to-triciclo"),
        pytest.param((45.0621, 7.6786), "casa-nel-parco", id="porta-nuova-to-casa-nel-parco"),
    ],
)
def test_distance_matches_the_great_circle_within_half_a_percent(
    api: TestClient[Litestar], participant: dict[str, str], origin: tuple[float, float], site_id: str
) -> None:
    near = f"{origin[0]},{origin[1]}"
    sites = api.get(f"{EVENT}/sites", params={"near": near}, headers=participant).json()
    got = next(s["distance_m"] for s in sites if s["id"] == site_id)
    expected = haversine_m(origin, (SITES[site_id].lat, SITES[site_id].lon))
    assert got == pytest.approx(expected, rel=0.005)


# Deterministic (STYLE.md: seeded random) and quick: each example is one request in-process.
PROPERTY = settings(max_examples=30, deadline=None, derandomize=True, database=None)
LATITUDES = st.floats(min_value=-90, max_value=90, allow_nan=False)
LONGITUDES = st.floats(min_value=-180, max_value=180, allow_nan=False)


@PROPERTY
@given(lat=LATITUDES, lon=LONGITUDES)
def test_near_any_point_on_earth_sorts_every_site_by_distance(
    api: TestClient[Litestar], participant: dict[str, str], lat: float, lon: float
) -> None:
    sites = api.get(f"{EVENT}/sites", params={"near": f"{lat!r},{lon!r}"}, headers=participant).json()
    distances = [s["distance_m"] for s in sites]
    assert len(distances) == len(SITES)
    assert distances == sorted(distances)
    # Half the Earth's circumference, the longest geodesic there is.
    assert 0 <= distances[0] <= distances[-1] <= 20_004_000


@PROPERTY
@given(lat=st.floats(min_value=44.0, max_value=46.5), lon=st.floats(min_value=6.6, max_value=9.2))
def test_near_any_point_in_piedmont_gives_great_circle_distances(
    api: TestClient[Litestar], participant: dict[str, str], lat: float, lon: float
) -> None:
    sites = api.get(f"{EVENT}/sites", params={"near": f"{lat},{lon}"}, headers=participant).json()
    for site in sites:
        expected = haversine_m((lat, lon), (SITES[site["id"]].lat, SITES[site["id"]].lon))
        assert site["distance_m"] == pytest.approx(expected, rel=0.005, abs=0.1)


QUERY_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)


@PROPERTY
@given(name=st.sampled_from(["near", "lang", "theme", "group"]), value=QUERY_TEXT)
def test_any_query_value_is_answered_or_refused_with_a_problem_never_a_crash(
    api: TestClient[Litestar], participant: dict[str, str], name: str, value: str
) -> None:
    path = f"{EVENT}/itinerary" if name == "group" else f"{EVENT}/sites"
    response = api.get(path, params={name: value}, headers=participant)
    if response.status_code != 200:
        assert_problem(response, 400, "invalid-query", name)


def test_near_combines_with_theme_and_language(api: TestClient[Litestar], participant: dict[str, str]) -> None:
    params = {"near": "45.036,7.674", "theme": "public hygiene service", "lang": "fr"}
    sites = api.get(f"{EVENT}/sites", params=params, headers=participant).json()
    assert [s["id"] for s in sites] == ["barrito", "bagni-pubblici-via-aglie"]
    assert {s["description_lang"] for s in sites} == {"fr"}


def test_geojson_is_an_rfc7946_feature_collection_of_every_site(
    api: TestClient[Litestar], participant: dict[str, str]
) -> None:
    response = api.get(f"{EVENT}/sites.geojson", params={"lang": "it"}, headers=participant)
    assert response.headers["content-type"] == "application/geo+json"
    doc = response.json()
    assert geojson_errors(doc) == []
    features = {f["id"]: f for f in doc["features"]}
    assert set(features) == set(SITES)
    for site_id, feature in features.items():
        # RFC 7946 §3.1.1: longitude first.
        assert feature["geometry"]["coordinates"] == [SITES[site_id].lon, SITES[site_id].lat]
        assert feature["properties"]["name"] == SITES[site_id].name
        assert feature["properties"]["description_lang"] == "it"


@pytest.mark.parametrize(
    ("doc", "error"),
    [
        pytest.param([], "not a FeatureCollection", id="array"),
        pytest.param({"type": "FeatureCollection"}, "'features'", id="no-features"),
        pytest.param({"type": "FeatureCollection", "features": [], "crs": {}}, "crs", id="crs"),
        pytest.param({"type": "FeatureCollection", "features": [{"type": "Point"}]}, "not a Feature", id="bare"),
        pytest.param(
            {"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": None, "properties": {}}]},
            "not a Point",
            id="no-geometry",
        ),
        pytest.param(
            {
                "type": "FeatureCollection",
                "features": [
                    {"type": "Feature", "properties": {}, "geometry": {"type": "Point", "coordinates": [45.0, 97.6]}}
                ],
            },
            "[longitude, latitude]",
            id="latitude-out-of-range",
        ),
        pytest.param(
            {
                "type": "FeatureCollection",
                "features": [{"type": "Feature", "geometry": {"type": "Point", "coordinates": [7.6, 45.0]}}],
            },
            "'properties'",
            id="no-properties",
        ),
    ],
)
def test_geojson_check_catches_what_rfc7946_forbids(doc: Any, error: str) -> None:
    assert any(error in e for e in geojson_errors(doc))


# --- visits and itineraries -----------------------------------------------------------------


def test_visit_is_returned_as_stored(api: TestClient[Litestar], participant: dict[str, str]) -> None:
    visit = api.get(f"{EVENT}/visits/d2-g1-barrito", headers=participant).json()
    assert visit["title"] == VISITS["d2-g1-barrito"].title
    assert visit["site_id"] == "barrito"
    assert visit["group_ids"] == ["G1"]
    assert datetime.fromisoformat(visit["starts_at"]) == VISITS["d2-g1-barrito"].starts_at
    assert visit["starts_at"].endswith("+01:00")


def _ordered(group: str | None = None, site_ids: list[str] | None = None) -> list[str]:
    visits = [
        v
        for v in DEMO.visits
        if (group is None or group in v.group_ids) and (site_ids is None or v.site_id in site_ids)
    ]
    return [v.id for v in sorted(visits, key=lambda v: (v.starts_at, v.number))]


@pytest.mark.parametrize(
    ("account_id", "query", "group_id", "expected"),
    [
        pytest.param("p-nguyen-thi-hoa", {}, "G1", _ordered("G1"), id="participant-own-group"),
        pytest.param("p-kim-min-jun", {}, "G3", _ordered("G3"), id="other-participant-own-group"),
        pytest.param("p-nguyen-thi-hoa", {"group": "G2"}, "G2", _ordered("G2"), id="participant-picks-group"),
        pytest.param("host-san-salvario", {}, None, ["d1-g1-casa-quartiere-san-salvario"], id="host-own-sites"),
        pytest.param("host-triciclo", {}, None, ["d1-g2-triciclo"], id="other-host-own-sites"),
        pytest.param("host-triciclo", {"group": "G3"}, "G3", _ordered("G3"), id="host-picks-group"),
        pytest.param("org-marta", {}, None, _ordered(), id="organizer-everything"),
        pytest.param("org-marta", {"group": "G2"}, "G2", _ordered("G2"), id="organizer-picks-group"),
    ],
)
def test_itinerary_is_scoped_by_role_unless_a_group_is_asked_for(
    api: TestClient[Litestar],
    world: Seeded,
    account_id: str,
    query: dict[str, str],
    group_id: str | None,
    expected: list[str],
) -> None:
    response = api.get(f"{EVENT}/itinerary", params=query, headers=auth(world.accounts[account_id].token))
    itinerary = response.json()
    assert itinerary["event_id"] == EVENT_ID
    assert itinerary["timezone"] == "Europe/Rome"
    assert itinerary["group_id"] == group_id
    assert [i["visit"]["id"] for i in itinerary["items"]] == expected
    starts = [datetime.fromisoformat(i["visit"]["starts_at"]) for i in itinerary["items"]]
    assert starts == sorted(starts)
    if group_id is None:
        # Walking legs only make sense along one group's path.
        assert all(i["leg"] is None for i in itinerary["items"])


def test_itinerary_items_carry_their_place(api: TestClient[Litestar], participant: dict[str, str]) -> None:
    items = api.get(f"{EVENT}/itinerary", headers=participant).json()["items"]
    for item in items:
        site = SITES[VISITS[item["visit"]["id"]].site_id or "itcilo-campus"]
        assert (item["site_name"], item["lat"], item["lon"]) == (site.name, site.lat, site.lon)


def test_itinerary_legs_estimate_the_walk_between_different_places(
    api: TestClient[Litestar], participant: dict[str, str]
) -> None:
    items = api.get(f"{EVENT}/itinerary", headers=participant).json()["items"]
    for before, item in itertools.pairwise(items):
        a, b = SITES[before["visit"]["site_id"]], SITES[item["visit"]["site_id"]]
        leg = item["leg"]
        if a.id == b.id:
            assert leg is None
            continue
        straight = haversine_m((a.lat, a.lon), (b.lat, b.lon))
        assert leg["from_visit_id"] == before["visit"]["id"]
        assert leg["distance_m"] >= straight  # streets are never shorter than the straight line
        assert leg["distance_m"] == pytest.approx(straight * 1.3, rel=0.005)
        assert leg["walking_minutes"] == math.ceil(leg["distance_m"] / 75)
        gap = datetime.fromisoformat(item["visit"]["starts_at"]) - datetime.fromisoformat(before["visit"]["ends_at"])
        assert leg["gap_minutes"] == gap // timedelta(minutes=1)
        # A walk unless the group rides there; either way the warning says the gap is too short.
        rides = [
            t
            for t in (item["visit"]["transport"], before["visit"]["transport"])
            if t in ("minibus", "public_transport")
        ]
        ride = bool(rides)
        assert leg["mode"] == (rides[0] if ride else "walk")
        needed = math.ceil(straight / (20_000 / 60)) + 10 if ride else leg["walking_minutes"]
        assert leg["travel_minutes"] == needed
        assert (leg["warning"] is not None) == (leg["gap_minutes"] < needed)


def test_itinerary_warns_when_the_gap_is_shorter_than_the_walk(
    api: TestClient[Litestar], walker: dict[str, str]
) -> None:
    itinerary = api.get(f"{WALK}/itinerary", headers=walker).json()
    items = {i["visit"]["id"]: i for i in itinerary["items"]}
    assert list(items) == ["w-talk", "w-cancelled", "w-barrito", "w-barrito-lunch", "w-back"]
    campus_to_barrito = haversine_m(CAMPUS, (45.04, 7.67)) * 1.3  # about 708 m along streets
    tight = items["w-barrito"]["leg"]
    # The cancelled detour in between is not where the group comes from.
    assert tight["from_visit_id"] == "w-talk"
    assert tight["distance_m"] == pytest.approx(campus_to_barrito, rel=0.005)
    assert (tight["gap_minutes"], tight["walking_minutes"]) == (5, 10)
    assert "Only 5 min between 'Talk' and 'Barrito tour'" in tight["warning"]
    assert itinerary["warnings"] == [tight["warning"]]
    assert items["w-cancelled"]["leg"] is None
    assert items["w-barrito-lunch"]["leg"] is None  # same place, no walk
    relaxed = items["w-back"]["leg"]
    assert (relaxed["from_visit_id"], relaxed["gap_minutes"], relaxed["walking_minutes"]) == ("w-barrito-lunch", 15, 10)
    assert relaxed["warning"] is None


# --- exports --------------------------------------------------------------------------------


def _calendar_events(body: bytes) -> dict[datetime, Any]:
    calendar = Calendar.from_ical(body)
    return {e.decoded("DTSTART"): e for e in calendar.walk("VEVENT")}


@pytest.mark.parametrize(
    ("account_id", "query", "expected"),
    [
        pytest.param("p-nguyen-thi-hoa", {}, _ordered("G1"), id="participant-own-group"),
        pytest.param("p-nguyen-thi-hoa", {"group": "G3"}, _ordered("G3"), id="group"),
        pytest.param("host-san-salvario", {}, ["d1-g1-casa-quartiere-san-salvario"], id="host"),
    ],
)
def test_ics_parses_back_with_each_visit_at_its_time_in_rome(
    api: TestClient[Litestar], world: Seeded, account_id: str, query: dict[str, str], expected: list[str]
) -> None:
    headers = auth(world.accounts[account_id].token)
    response = api.get(f"{EVENT}/itinerary.ics", params=query, headers=headers)
    assert response.headers["content-type"] == "text/calendar; charset=utf-8"
    calendar = Calendar.from_ical(response.content)
    assert [str(tz["TZID"]) for tz in calendar.walk("VTIMEZONE")] == ["Europe/Rome"]
    events = list(calendar.walk("VEVENT"))
    assert len(events) == len(expected)
    for event, visit_id in zip(events, expected, strict=True):
        visit = VISITS[visit_id]
        start, end = event.decoded("DTSTART"), event.decoded("DTEND")
        assert event["DTSTART"].params["TZID"] == "Europe/Rome"
        assert str(start.tzinfo) == "Europe/Rome"
        assert start.utcoffset() == timedelta(hours=1)  # CET in December
        assert start.isoformat() == visit.starts_at.isoformat()
        assert end == visit.ends_at
        assert str(event["SUMMARY"]) == visit.title
        assert visit_id in str(event["UID"])
        assert event.decoded("SEQUENCE") == 0


def test_ics_uids_stay_and_sequence_grows_when_a_visit_changes(
    client: TestClient[Litestar], seeded: Seeded, db: Database
) -> None:
    participant = seeded.headers("participant", group="G1")
    url = f"{EVENT}/itinerary.ics"
    before = _calendar_events(client.get(url, headers=participant).content)
    assert len({str(e["UID"]) for e in before.values()}) == len(before)
    visit = VISITS["d1-g1-casa-quartiere-san-salvario"]
    with db.write() as conn:
        put_visit(conn, EVENT_ID, msgspec.structs.replace(visit, title="Visit: San Salvario (new room)", version=2))
    after = _calendar_events(client.get(url, headers=participant).content)
    assert {k: str(e["UID"]) for k, e in after.items()} == {k: str(e["UID"]) for k, e in before.items()}
    changed = after[visit.starts_at]
    assert str(changed["SUMMARY"]) == "Visit: San Salvario (new room)"
    assert changed.decoded("SEQUENCE") == 1
    assert all(e.decoded("SEQUENCE") == 0 for k, e in after.items() if k != visit.starts_at)


def test_schedule_xml_parses_and_holds_the_participants_own_visits(
    api: TestClient[Litestar], participant: dict[str, str]
) -> None:
    response = api.get(f"{EVENT}/schedule.xml", headers=participant)
    assert response.headers["content-type"] == "application/xml"
    root = etree.fromstring(response.content, etree.XMLParser(resolve_entities=False, no_network=True))
    assert root.tag == "schedule"
    assert len(root.findall("day")) == 2
    assert len(root.findall(".//event")) == sum("G1" in v.group_ids for v in VISITS.values())


# --- caching: ETag, 304, gzip ---------------------------------------------------------------


@pytest.mark.parametrize("path", ENDPOINTS)
def test_every_get_has_a_strong_etag_and_revalidates_with_an_empty_304(
    api: TestClient[Litestar], participant: dict[str, str], path: str
) -> None:
    headers = {**participant, "Accept-Encoding": "identity"}
    first = api.get(path, headers=headers)
    assert first.status_code == 200
    media_type = next((t for suffix, t in MEDIA_TYPES.items() if suffix in path), "application/json")
    assert first.headers["content-type"] == media_type
    etag = first.headers["etag"]
    assert etag.startswith('"')
    assert etag.endswith('"')
    assert api.get(path, headers=headers).headers["etag"] == etag
    again = api.get(path, headers={**headers, "If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag


@pytest.mark.parametrize(
    ("if_none_match", "status"),
    [
        pytest.param("{etag}", 304, id="same"),
        pytest.param("W/{etag}", 304, id="weak-form"),
        pytest.param('"other", {etag}', 304, id="in-a-list"),
        pytest.param("*", 304, id="any"),
        pytest.param('"other"', 200, id="different"),
        pytest.param('"{bare}-stale"', 200, id="stale"),
    ],
)
def test_if_none_match_compares_etags_as_rfc9110_says(
    api: TestClient[Litestar], participant: dict[str, str], if_none_match: str, status: int
) -> None:
    headers = {**participant, "Accept-Encoding": "identity"}
    etag = api.get(f"{EVENT}/sites", headers=headers).headers["etag"]
    value = if_none_match.format(etag=etag, bare=etag.strip('"'))
    assert api.get(f"{EVENT}/sites", headers={**headers, "If-None-Match": value}).status_code == status


def test_etag_changes_when_the_data_changes(client: TestClient[Litestar], seeded: Seeded, db: Database) -> None:
    participant = seeded.headers("participant", group="G1")
    url = f"{EVENT}/visits/d2-g1-barrito"
    etag = client.get(url, headers=participant).headers["etag"]
    with db.write() as conn:
        put_visit(conn, EVENT_ID, msgspec.structs.replace(VISITS["d2-g1-barrito"], meeting_point="Side gate"))
    response = client.get(url, headers={**participant, "If-None-Match": etag})
    assert response.status_code == 200
    assert response.json()["meeting_point"] == "Side gate"
    assert response.headers["etag"] != etag


@pytest.mark.parametrize(
    ("path", "accept_encoding", "compressed"),
    [
        pytest.param(f"{EVENT}/sites", "gzip", True, id="large-gzip"),
        pytest.param(f"{EVENT}/sites.geojson", "br, gzip;q=0.5", True, id="large-gzip-among-others"),
        pytest.param(f"{EVENT}/itinerary", "GZIP", True, id="large-gzip-uppercase"),
        pytest.param(f"{EVENT}/schedule.xml", "x-gzip", True, id="large-x-gzip"),
        pytest.param(f"{EVENT}/sites", "identity", False, id="large-identity"),
        pytest.param(f"{EVENT}/sites", "br, deflate", False, id="large-no-gzip"),
        pytest.param(f"{EVENT}/sites", "gzip;q=0", False, id="large-gzip-refused"),
        pytest.param("/api/v1/me", "gzip", False, id="small-me"),
        pytest.param(EVENT, "gzip", False, id="small-event"),
    ],
)
def test_gzip_only_when_asked_and_the_body_is_over_1kb(
    api: TestClient[Litestar], participant: dict[str, str], path: str, accept_encoding: str, compressed: bool
) -> None:
    plain, plain_body = raw_get(api, path, {**participant, "Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers
    response, body = raw_get(api, path, {**participant, "Accept-Encoding": accept_encoding})
    assert response.status_code == 200
    assert int(response.headers["content-length"]) == len(body)
    assert "Accept-Encoding" in response.headers["vary"]
    if compressed:
        assert len(plain_body) > 1024
        assert response.headers["content-encoding"] == "gzip"
        assert gzip.decompress(body) == plain_body
        assert len(body) < len(plain_body)
        # A different representation, so a different strong ETag (RFC 9110 §8.8.3).
        assert response.headers["etag"] != plain.headers["etag"]
    else:
        assert "content-encoding" not in response.headers
        assert body == plain_body


def test_either_etag_revalidates_either_encoding(api: TestClient[Litestar], participant: dict[str, str]) -> None:
    url = f"{EVENT}/sites.geojson"
    plain_etag = api.get(url, headers={**participant, "Accept-Encoding": "identity"}).headers["etag"]
    gzip_etag = api.get(url, headers={**participant, "Accept-Encoding": "gzip"}).headers["etag"]
    for encoding, etag in [("gzip", plain_etag), ("identity", gzip_etag)]:
        response = api.get(url, headers={**participant, "Accept-Encoding": encoding, "If-None-Match": etag})
        assert response.status_code == 304


def test_an_app_started_again_after_its_shutdown_serves_from_its_database(seeded: Seeded) -> None:
    # Test clients and schemathesis run an app's lifespan more than once: its shutdown closes the
    # database (on PostgreSQL, the connection pool, which psycopg cannot reopen), its start-up opens it.
    app = make_app(seeded)
    headers = seeded.headers("participant", group="G1")
    for _ in range(2):
        with TestClient(app=app) as client:
            assert client.get(f"/api/v1/events/{EVENT_ID}/sites", headers=headers).status_code == 200
            assert client.get("/health").status_code == 200
