"""The read API over real HTTP: ``studyvisit serve`` on a free local port, driven by httpx."""

import gzip
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from conftest import EVENT_ID, LiveServer, Seeded
from doc_examples import Example, read_examples, run
from icalendar import Calendar
from test_read_api import (
    BAD_INPUTS,
    CAMPUS,
    DEMO,
    ENDPOINTS,
    EVENT,
    EVENT_ENDPOINTS,
    MEDIA_TYPES,
    SITES,
    VISITS,
    assert_problem,
    auth,
    geojson_errors,
    haversine_m,
)

from tests.databases import copy_of

pytestmark = pytest.mark.both_backends  # CI runs it on SQLite, then on PostgreSQL


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, seeded_template: Seeded, request: pytest.FixtureRequest) -> Seeded:
    """The demo event in a database of this module's own (on the engine the run is on)."""
    return copy_of(seeded_template, tmp_path_factory.mktemp("live") / "studyvisit.db", request)


@pytest.fixture(scope="module")
def server(world: Seeded) -> Iterator[LiveServer]:
    """One real server for the module: starting uvicorn per test would cost a second each."""
    live = LiveServer(world).start()
    yield live
    live.stop()


@pytest.fixture(scope="module")
def http(server: LiveServer) -> Iterator[httpx.Client]:
    """An httpx client that asks for no compression unless a test says otherwise."""
    with httpx.Client(base_url=server.url, timeout=10, headers={"Accept-Encoding": "identity"}) as client:
        yield client


@pytest.fixture(scope="module")
def participant(world: Seeded) -> dict[str, str]:
    return world.headers("participant", group="G1")


def media_type_of(path: str) -> str:
    return next((t for suffix, t in MEDIA_TYPES.items() if suffix in path), "application/json")


def test_health_and_openapi_answer_without_a_token(http: httpx.Client) -> None:
    assert http.get("/health").json() == {"status": "ok"}
    document = http.get("/schema/openapi.json").json()
    assert f"{EVENT.replace(EVENT_ID, '{event_id}')}/sites" in document["paths"]


@pytest.mark.parametrize("path", ENDPOINTS)
def test_each_endpoint_answers_over_http_with_its_media_type_and_an_etag(
    http: httpx.Client, participant: dict[str, str], path: str
) -> None:
    response = http.get(path, headers=participant)
    assert response.status_code == 200
    assert response.headers["content-type"] == media_type_of(path)
    assert int(response.headers["content-length"]) == len(response.content)
    assert response.headers["etag"].startswith('"')
    assert "content-encoding" not in response.headers
    if response.headers["content-type"].endswith("json"):
        assert response.json()


@pytest.mark.parametrize("path", ENDPOINTS)
def test_each_endpoint_revalidates_over_http_with_an_empty_304(
    http: httpx.Client, participant: dict[str, str], path: str
) -> None:
    etag = http.get(path, headers=participant).headers["etag"]
    response = http.get(path, headers={**participant, "If-None-Match": etag})
    assert response.status_code == 304
    assert response.content == b""
    assert response.headers["etag"] == etag


@pytest.mark.parametrize(
    ("path", "compressed"),
    [
        pytest.param(f"{EVENT}/sites", True, id="sites"),
        pytest.param(f"{EVENT}/sites.geojson", True, id="geojson"),
        pytest.param(f"{EVENT}/itinerary.ics", True, id="ics"),
        pytest.param("/api/v1/me", False, id="me-under-1kb"),
    ],
)
def test_gzip_over_http_only_for_bodies_over_1kb(
    http: httpx.Client, participant: dict[str, str], path: str, compressed: bool
) -> None:
    plain = http.get(path, headers=participant).content
    with http.stream("GET", path, headers={**participant, "Accept-Encoding": "gzip"}) as response:
        body = b"".join(response.iter_raw())
    assert int(response.headers["content-length"]) == len(body)
    if compressed:
        assert response.headers["content-encoding"] == "gzip"
        assert gzip.decompress(body) == plain
    else:
        assert "content-encoding" not in response.headers
        assert body == plain


@pytest.mark.parametrize("path", ENDPOINTS)
@pytest.mark.parametrize("token", [None, "sv_nobody-has-this-token"], ids=["missing", "invalid"])
def test_each_endpoint_refuses_over_http_without_a_valid_token(
    http: httpx.Client, path: str, token: str | None
) -> None:
    response = http.get(path, headers={} if token is None else auth(token))
    assert_problem(response, 401, "unauthorized")
    assert response.headers["www-authenticate"].startswith("Bearer ")


@pytest.mark.parametrize("path", EVENT_ENDPOINTS)
def test_each_endpoint_of_another_event_is_404_over_http(
    http: httpx.Client, participant: dict[str, str], path: str
) -> None:
    other = path.replace(EVENT_ID, "lyon-sse-2026")
    assert_problem(http.get(other, headers=participant), 404, "not-found", "lyon-sse-2026")


@pytest.mark.parametrize(("path", "named"), BAD_INPUTS)
def test_bad_query_values_are_400_problems_over_http(
    http: httpx.Client, participant: dict[str, str], path: str, named: str
) -> None:
    assert_problem(http.get(path, headers=participant), 400, "invalid-query", named)


@pytest.mark.parametrize(
    ("account_id", "expected"),
    [
        pytest.param("p-kim-min-jun", {v.id for v in DEMO.visits if "G3" in v.group_ids}, id="participant"),
        pytest.param("host-san-salvario", {"d1-g1-casa-quartiere-san-salvario"}, id="host"),
        pytest.param("org-marta", set(VISITS), id="organizer"),
    ],
)
def test_itinerary_over_http_is_scoped_by_role(
    http: httpx.Client, world: Seeded, account_id: str, expected: set[str]
) -> None:
    itinerary = http.get(f"{EVENT}/itinerary", headers=auth(world.accounts[account_id].token)).json()
    assert {i["visit"]["id"] for i in itinerary["items"]} == expected


def test_near_over_http_sorts_by_distance_from_the_campus(http: httpx.Client, participant: dict[str, str]) -> None:
    sites = http.get(f"{EVENT}/sites", params={"near": "45.036,7.674", "lang": "ko"}, headers=participant).json()
    assert [s["id"] for s in sites[:2]] == ["itcilo-campus", "barrito"]
    for site in sites:
        expected = haversine_m(CAMPUS, (SITES[site["id"]].lat, SITES[site["id"]].lon))
        assert site["distance_m"] == pytest.approx(expected, rel=0.005, abs=0.5)
        assert site["description_lang"] == "en"  # no Korean text: English, and it says so


def test_geojson_over_http_is_valid_and_labelled(http: httpx.Client, participant: dict[str, str]) -> None:
    response = http.get(f"{EVENT}/sites.geojson", headers=participant)
    assert response.headers["content-type"] == "application/geo+json"
    assert geojson_errors(response.json()) == []
    assert len(response.json()["features"]) == len(SITES)


def test_ics_over_http_has_the_times_in_rome(http: httpx.Client, participant: dict[str, str]) -> None:
    response = http.get(f"{EVENT}/itinerary.ics", params={"group": "G2"}, headers=participant)
    events = Calendar.from_ical(response.content).walk("VEVENT")
    g2 = sorted((v for v in DEMO.visits if "G2" in v.group_ids), key=lambda v: (v.starts_at, v.number))
    assert [e.decoded("DTSTART") for e in events] == [v.starts_at for v in g2]
    assert {e.decoded("DTSTART").utcoffset() for e in events} == {timedelta(hours=1)}
    assert {str(e.decoded("DTSTART").tzinfo) for e in events} == {"Europe/Rome"}


# --- docs/api.md: every curl example, run against the real server ----------------------------

API_EXAMPLES = read_examples(Path(__file__).resolve().parent.parent / "docs" / "api.md")


def test_api_doc_has_its_examples() -> None:
    assert len(API_EXAMPLES) >= 20  # an empty parametrization would pass without checking anything


@pytest.mark.parametrize("example", API_EXAMPLES, ids=lambda e: e.where)
def test_api_doc_example_is_what_the_server_answers(
    http: httpx.Client, server: LiveServer, world: Seeded, example: Example
) -> None:
    variables = {
        "BASE": server.url,
        "TOKEN": world.token("participant"),
        "HOST_TOKEN": world.token("host"),
        "ORG_TOKEN": world.token("organizer"),
        # The participant's feed URL, as GET /api/v1/me gives it: the example sends no token.
        "FEED_ICS": http.get("/api/v1/me", headers=world.headers("participant")).json()["feed_urls"]["ics"],
    }
    run(http, example, variables)


@pytest.mark.parametrize(
    "path",
    ["/api/v1/me", f"/api/v1/events/{EVENT_ID}/sites", f"/api/v1/events/{EVENT_ID}/itinerary.ics"],
)
def test_head_answers_like_get_without_the_body_over_http(
    http: httpx.Client, participant: dict[str, str], path: str
) -> None:
    got = http.get(path, headers=participant)
    head = http.head(path, headers=participant)
    assert head.status_code == got.status_code == 200
    assert head.headers["etag"] == got.headers["etag"]
    assert head.headers["content-type"] == got.headers["content-type"]
    assert head.content == b""
