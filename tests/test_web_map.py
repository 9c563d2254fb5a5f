"""The field app's map screen in a real browser, with map tiles from a tile server of the test's own."""

import struct
import threading
import zlib
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.axe import assert_accessible
from tests.browser_app import API, Web, open_app, sync_now
from tests.conftest import LiveServer, Seeded
from tests.databases import copy_of

WHO = "p-nguyen-thi-hoa"  # group G1: two days, each starting and ending at the campus
ROME = ZoneInfo("Europe/Rome")


def png(rgb: tuple[int, int, int], size: int = 256) -> bytes:
    """A one-colour PNG, made here so that the test needs no image file."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\0" + bytes(rgb) * size for _ in range(size))
    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


class TileServer:
    """A tiny tile server on a free local port: /{z}/{x}/{y}.png, with CORS, counting what it is asked."""

    def __init__(self) -> None:
        self.requests: list[dict[str, str]] = []
        tiles = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = self.path.strip("/").removesuffix(".png").split("/")
                tiles.requests.append({"path": self.path, **{k.lower(): v for k, v in self.headers.items()}})
                if len(parts) != 3 or not all(p.isdigit() for p in parts) or not self.path.endswith(".png"):
                    self.send_error(404)
                    return
                z, x, y = (int(p) for p in parts)
                body = png(((40 * z) % 256, (7 * x) % 256, (11 * y) % 256))
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Access-Control-Allow-Origin", "*")
                # Never from the browser's HTTP cache: a tile shown offline can only come from the app's cache.
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def tiles_asked(self) -> int:
        return sum(1 for r in self.requests if r["path"].endswith(".png"))


@pytest.fixture(scope="module")
def tiles() -> Iterator[TileServer]:
    server = TileServer()
    server.thread.start()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


def serve(seeded: Seeded, tile_url: str) -> LiveServer:
    env = {"STUDYVISIT_TILE_URL": tile_url}
    return LiveServer(seeded, env=env, log_path=seeded.path.parent / "server.log").start()


@pytest.fixture(scope="module")
def map_web(
    seeded_template: Seeded, tmp_path_factory: pytest.TempPathFactory, tiles: TileServer, request: pytest.FixtureRequest
) -> Iterator[Web]:
    """The demo event, served with the test's tile server as the map's tile URL."""
    seeded = copy_of(seeded_template, tmp_path_factory.mktemp("map") / "studyvisit.db", request)
    server = serve(seeded, tiles.url + "/{z}/{x}/{y}.png")
    yield Web(server, seeded, server.log_path or seeded.path.parent)
    server.stop()


@pytest.fixture(scope="module")
def plain_web(
    seeded_template: Seeded, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Web]:
    """The demo event, served with no tile URL."""
    seeded = copy_of(seeded_template, tmp_path_factory.mktemp("plain") / "studyvisit.db", request)
    server = serve(seeded, "")
    yield Web(server, seeded, server.log_path or seeded.path.parent)
    server.stop()


class Session:
    """A phone: a browser context at 360 px, and every request it made (page or service worker)."""

    def __init__(self, ctx: BrowserContext) -> None:
        self.ctx = ctx
        self.urls: list[str] = []
        ctx.on("request", lambda r: self.urls.append(r.url))


@pytest.fixture
def phone(browser: Browser, map_web: Web, tiles: TileServer) -> Iterator[Session]:
    session = Session(
        browser.new_context(timezone_id="Europe/Rome", locale="en-GB", viewport={"width": 360, "height": 740})
    )
    yield session
    session.ctx.close()
    strays = [u for u in session.urls if not u.startswith((map_web.server.url + "/", tiles.url + "/"))]
    assert strays == [], "requests went elsewhere than the server and the tile host"


def stops(web: Web, day: str, who: str = WHO) -> list[dict[str, Any]]:
    """What the map should show for a day: the itinerary's places in visit order, consecutive visits at one
    place as one stop (cancelled visits and visits with no place left out)."""
    itinerary = web.get(who, f"{API}/itinerary").json()
    result: list[dict[str, Any]] = []
    for item in itinerary["items"]:
        visit = item["visit"]
        starts = datetime.fromisoformat(visit["starts_at"]).astimezone(ZoneInfo(itinerary["timezone"]))
        if visit["status"] == "cancelled" or starts.date().isoformat() != day or item["lat"] is None:
            continue
        if result and result[-1]["site_id"] == visit["site_id"]:
            continue
        result.append({"site_id": visit["site_id"], "lat": item["lat"], "lon": item["lon"], "leg": item["leg"]})
    return result


def open_map(page: Page, day: str | None = None) -> None:
    if day is None:
        page.get_by_role("link", name="Map", exact=True).click()
    else:
        page.evaluate("day => { location.hash = '#/map/' + day; }", day)
    page.wait_for_selector(".map[data-ready=true]")


# The centre of each marker, by its numbers, and the points of each route line, in page pixels.
DRAWN = """() => {
  const centre = (el) => { const r = el.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; };
  const markers = [...document.querySelectorAll('.map-marker')].map((m) => ({
    numbers: m.textContent.split(',').map((n) => Number(n.trim())),
    href: m.querySelector('a') ? m.querySelector('a').getAttribute('href') : null,
    at: centre(m),
  }));
  const routes = [...document.querySelectorAll('path.map-route')].map((path) => {
    const ctm = path.getScreenCTM();
    const numbers = (path.getAttribute('d').match(/-?[\\d.]+/g) || []).map(Number);
    const points = [];
    for (let i = 0; i + 1 < numbers.length; i += 2) {
      const p = new DOMPoint(numbers[i], numbers[i + 1]).matrixTransform(ctm);
      points.push([p.x, p.y]);
    }
    return { points, dashed: !!path.getAttribute('stroke-dasharray'), classes: path.getAttribute('class') };
  });
  return { markers, routes };
}"""


def near(a: list[float], b: list[float]) -> bool:
    return abs(a[0] - b[0]) <= 2 and abs(a[1] - b[1]) <= 2


def assert_drawn_in_visit_order(page: Page, expected: list[dict[str, Any]]) -> None:
    drawn = page.evaluate(DRAWN)
    # Numbered 1..n: each stop's number on the marker of its place, which links to the site's page.
    numbers = sorted(n for m in drawn["markers"] for n in m["numbers"])
    assert numbers == list(range(1, len(expected) + 1))
    at: dict[int, list[float]] = {}
    for marker in drawn["markers"]:
        for n in marker["numbers"]:
            assert marker["href"] == f"#/site/{expected[n - 1]['site_id']}"
            at[n] = marker["at"]
    # Places shown where they are: stops further north are higher up, further east more to the right.
    for n in range(1, len(expected)):
        a, b = expected[n - 1], expected[n]
        if abs(a["lat"] - b["lat"]) > 0.002:
            assert (at[n][1] < at[n + 1][1]) == (a["lat"] > b["lat"])
        if abs(a["lon"] - b["lon"]) > 0.002:
            assert (at[n][0] < at[n + 1][0]) == (a["lon"] < b["lon"])
    # The route: one line per leg, from the stop before to this one, in visit order.
    legs = [n for n in range(2, len(expected) + 1) if expected[n - 1]["leg"]]
    assert legs, "the day has legs"
    assert len(drawn["routes"]) == len(legs)
    for n, route in zip(legs, drawn["routes"], strict=True):
        assert near(route["points"][0], at[n - 1]), (n, route["points"], at)
        assert near(route["points"][-1], at[n]), (n, route["points"], at)
        mode = expected[n - 1]["leg"]["mode"]
        assert f"map-route-{mode}" in route["classes"]
        assert route["dashed"] == (mode != "walk")
    # The same stops, in the same order, as an ordered list for those who do not see the map.
    listed = page.locator("ol.map-stops > li")
    expect(listed).to_have_count(len(expected))
    assert [li.get_attribute("data-site-id") for li in listed.all()] == [s["site_id"] for s in expected]


def test_markers_are_numbered_in_visit_order_with_the_route_through_them_and_change_with_the_day(
    phone: Session, map_web: Web
) -> None:
    # The phone's clock on the event's second day: the map opens on that day (in the event's zone).
    phone.ctx.clock.set_fixed_time(datetime(2025, 12, 11, 9, 30, tzinfo=ROME))
    page = open_app(phone.ctx, map_web, WHO)
    open_map(page)
    expect(page.locator(".map-days a[aria-current]")).to_have_attribute("data-day", "2025-12-11")
    day_two = stops(map_web, "2025-12-11")
    assert len(day_two) >= 4
    assert_drawn_in_visit_order(page, day_two)

    page.locator(".map-days a[data-day='2025-12-10']").click()
    page.wait_for_function("() => document.querySelector('.map-days a[aria-current]').dataset.day === '2025-12-10'")
    page.wait_for_selector(".map[data-ready=true]")
    day_one = stops(map_web, "2025-12-10")
    assert [s["site_id"] for s in day_one] != [s["site_id"] for s in day_two]
    assert_drawn_in_visit_order(page, day_one)

    # A marker is a link to its site's page.
    page.locator(".map-marker a", has_text="2").click()
    expect(page.get_by_role("heading", level=2)).to_have_text(
        map_web.get(WHO, f"{API}/sites/{day_one[1]['site_id']}?lang=en").json()["name"]
    )


def test_a_leg_with_its_own_geometry_is_drawn_along_it(phone: Session, map_web: Web) -> None:
    page = open_app(phone.ctx, map_web, WHO)
    day = stops(map_web, "2025-12-10")
    # The kept itinerary as a server whose legs carry their path would send it: the second stop's leg
    # goes by a point east of both places (the ETag is kept, so the next sync leaves it as it is).
    bend = [max(day[0]["lon"], day[1]["lon"]) + 0.01, (day[0]["lat"] + day[1]["lat"]) / 2]
    page.evaluate(
        """([siteId, path]) => new Promise((resolve, reject) => {
             const open = indexedDB.open('studyvisit');
             open.onsuccess = () => {
               const tx = open.result.transaction('docs', 'readwrite');
               const docs = tx.objectStore('docs');
               docs.get('itinerary').onsuccess = (e) => {
                 const doc = e.target.result;
                 const item = doc.data.items.find((i) => i.visit.site_id === siteId && i.leg);
                 item.leg.geometry = { type: 'LineString', coordinates: path };
                 docs.put(doc, 'itinerary');
               };
               tx.oncomplete = () => { open.result.close(); resolve(); };
               tx.onerror = () => reject(tx.error);
             };
           })""",
        [day[1]["site_id"], [[day[0]["lon"], day[0]["lat"]], bend, [day[1]["lon"], day[1]["lat"]]]],
    )
    open_map(page, "2025-12-10")
    drawn = page.evaluate(DRAWN)
    first = drawn["routes"][0]["points"]
    assert len(first) == 3
    ends = {n: m["at"] for m in drawn["markers"] for n in m["numbers"]}
    assert near(first[0], ends[1])
    assert near(first[2], ends[2])
    assert first[1][0] > max(ends[1][0], ends[2][0]) + 5, "the bend lies east of both places"
    assert len(drawn["routes"][1]["points"]) == 2, "a leg without geometry stays a straight line"


def test_an_itinerary_of_everything_shows_its_places_in_time_order_with_no_route(phone: Session, map_web: Web) -> None:
    # An organizer's itinerary holds every group's visits, in parallel at times: no leg, so no route.
    page = open_app(phone.ctx, map_web, "org-marta")
    open_map(page, "2025-12-10")
    expected = stops(map_web, "2025-12-10", "org-marta")
    assert len(expected) > len({s["site_id"] for s in expected}) > 2
    drawn = page.evaluate(DRAWN)
    assert sorted(n for m in drawn["markers"] for n in m["numbers"]) == list(range(1, len(expected) + 1))
    for marker in drawn["markers"]:
        assert {expected[n - 1]["site_id"] for n in marker["numbers"]} == {marker["href"].removeprefix("#/site/")}
    assert drawn["routes"] == []
    listed = page.locator("ol.map-stops > li")
    assert [li.get_attribute("data-site-id") for li in listed.all()] == [s["site_id"] for s in expected]


GEO_SPY = """(() => {
  window.__geolocation = [];
  const geo = navigator.geolocation;
  for (const name of ['getCurrentPosition', 'watchPosition']) {
    const real = geo[name].bind(geo);
    geo[name] = (...args) => { window.__geolocation.push(name); return real(...args); };
  }
})()"""


def test_my_position_is_asked_for_only_when_i_press_the_button(phone: Session, map_web: Web) -> None:
    phone.ctx.add_init_script(GEO_SPY)
    phone.ctx.grant_permissions(["geolocation"], origin=map_web.server.url)
    phone.ctx.set_geolocation({"latitude": 45.0705, "longitude": 7.6868, "accuracy": 25})
    page = open_app(phone.ctx, map_web, WHO)
    open_map(page)
    page.wait_for_timeout(300)
    assert page.evaluate("window.__geolocation") == []
    expect(page.locator("path.map-me")).to_have_count(0)

    page.get_by_role("button", name="Show my position").click()
    expect(page.locator("path.map-me")).to_have_count(1)
    expect(page.locator(".map-message")).to_contain_text("within about 25 m")
    assert page.evaluate("window.__geolocation") == ["getCurrentPosition"]
    # A sync that changes nothing on the map keeps it as it is, my position included, without asking again.
    page.evaluate("document.querySelector('.map').dataset.marked = 'yes'")
    sync_now(page)
    expect(page.locator(".map[data-marked=yes] path.map-me")).to_have_count(1)
    assert page.evaluate("window.__geolocation") == ["getCurrentPosition"]


def test_a_refused_position_says_so(phone: Session, map_web: Web) -> None:
    phone.ctx.add_init_script(GEO_SPY)
    page = open_app(phone.ctx, map_web, WHO)  # geolocation never granted: the browser refuses
    open_map(page)
    page.get_by_role("button", name="Show my position").click()
    expect(page.locator(".map-message")).to_contain_text("does not allow the app to use it")
    expect(page.locator("path.map-me")).to_have_count(0)


def loaded_tiles(page: Page) -> int:
    return int(page.evaluate("document.querySelectorAll('img.leaflet-tile.leaflet-tile-loaded').length"))


def wait_for_tiles(page: Page) -> None:
    """Until every tile of the view has loaded (or failed)."""
    page.wait_for_function(
        """() => { const t = [...document.querySelectorAll('img.leaflet-tile')];
             return t.length > 0 && t.every((i) => i.complete); }"""
    )


def test_tiles_seen_online_are_shown_offline_and_without_them_the_map_still_draws(
    phone: Session, map_web: Web, tiles: TileServer
) -> None:
    page = open_app(phone.ctx, map_web, WHO)
    # Offline before the map was ever open: no tile to show, the markers and route on a plain background,
    # and no broken-image icon in place of the missing tiles.
    phone.ctx.set_offline(True)
    open_map(page, "2025-12-10")
    assert_drawn_in_visit_order(page, stops(map_web, "2025-12-10"))
    wait_for_tiles(page)
    assert loaded_tiles(page) == 0
    shown = page.evaluate(
        "[...document.querySelectorAll('img.leaflet-tile')].filter((i) => getComputedStyle(i).visibility !== 'hidden').length"
    )
    assert shown == 0

    phone.ctx.set_offline(False)
    page.reload()
    page.wait_for_selector(".map[data-ready=true]")
    wait_for_tiles(page)
    seen = loaded_tiles(page)
    assert seen > 0
    asked = tiles.tiles_asked()
    assert asked >= seen
    # CORS requests (so the responses are not opaque) that name the app's origin, as OpenStreetMap requires.
    last = tiles.requests[-1]
    assert last["origin"] == map_web.server.url
    assert last["referer"] == map_web.server.url + "/"
    assert page.get_by_role("link", name="© OpenStreetMap contributors").get_attribute("href") == (
        "https://www.openstreetmap.org/copyright"
    )

    page.wait_for_function(
        "async (n) => (await (await caches.open('tiles')).keys()).length >= n", arg=seen
    )  # every tile shown is stored
    phone.ctx.set_offline(True)
    page.reload()
    page.wait_for_selector(".map[data-ready=true]")
    wait_for_tiles(page)
    assert loaded_tiles(page) == seen
    assert tiles.tiles_asked() == asked, "offline, the tiles came from the app's cache"
    assert_drawn_in_visit_order(page, stops(map_web, "2025-12-10"))


def test_the_tile_cache_keeps_the_newest_2000_tiles(phone: Session, map_web: Web, tiles: TileServer) -> None:
    page = open_app(phone.ctx, map_web, WHO)
    # A full cache of older tiles (of a zoom the map never shows), stored before the map is open.
    page.evaluate(
        """async (base) => { const cache = await caches.open('tiles');
             for (let i = 0; i < 2000; i++) await cache.put(`${base}/1/0/${i}.png`, new Response('old'));
           }""",
        tiles.url,
    )
    open_map(page, "2025-12-10")
    wait_for_tiles(page)
    assert loaded_tiles(page) > 0
    # Each new tile is stored, then the oldest past 2,000 dropped: wait until the cache stops changing.
    cached = "async () => (await (await caches.open('tiles')).keys()).map((k) => k.url)"
    kept: list[str] = page.evaluate(cached)
    for _ in range(50):
        page.wait_for_timeout(300)
        again: list[str] = page.evaluate(cached)
        if again == kept and len(kept) == 2000:
            break
        kept = again
    assert len(kept) == 2000
    fresh = [u for u in kept if not u.startswith(f"{tiles.url}/1/0/")]
    assert fresh, "the map's tiles were stored"
    assert kept[: 2000 - len(fresh)] == [f"{tiles.url}/1/0/{i}.png" for i in range(len(fresh), 2000)]

    # Sign-out deletes the tiles (where this phone's map went); only the shell, no account's, stays.
    page.once("dialog", lambda d: d.accept())
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/app/")
    page.wait_for_function(
        "async () => { const k = await caches.keys(); return k.length > 0 && k.every((n) => n.startsWith('shell-')); }"
    )


def test_with_no_tile_url_the_markers_and_route_draw_and_nothing_leaves_the_origin(
    browser: Browser, plain_web: Web
) -> None:
    ctx = browser.new_context(timezone_id="Europe/Rome", locale="en-GB", viewport={"width": 360, "height": 740})
    urls: list[str] = []
    ctx.on("request", lambda r: urls.append(r.url))
    page = open_app(ctx, plain_web, WHO)
    assert page.get_attribute('meta[name="tile-url"]', "content") == ""
    open_map(page, "2025-12-11")
    assert_drawn_in_visit_order(page, stops(plain_web, "2025-12-11"))
    assert page.locator("img.leaflet-tile").count() == 0
    assert page.locator(".leaflet-control-attribution").count() == 0
    ctx.close()
    assert urls
    assert all(u.startswith(plain_web.server.url + "/") for u in urls)


def test_the_map_screen_is_accessible_in_english_and_arabic_at_360_px(phone: Session, map_web: Web) -> None:
    # The evening before the event: no visit today, so the map opens on the first day.
    phone.ctx.clock.set_fixed_time(datetime(2025, 12, 9, 20, 0, tzinfo=ROME))
    page = open_app(phone.ctx, map_web, WHO)
    open_map(page)
    expect(page.locator(".map-days a[aria-current]")).to_have_attribute("data-day", "2025-12-10")
    wait_for_tiles(page)
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    assert_accessible(page)

    page.get_by_label("Language").select_option("ar")
    expect(page.locator("html")).to_have_attribute("dir", "rtl")
    expect(page.get_by_role("link", name="الخريطة", exact=True)).to_have_attribute("aria-current", "page")
    # Mirrored: the zoom buttons on the right, the attribution on the left, the day links from the right.
    expect(page.locator(".leaflet-right .leaflet-control-zoom")).to_have_count(1)
    expect(page.locator(".leaflet-left .leaflet-control-attribution")).to_have_count(1)
    expect(page.get_by_role("button", name="أظهر موقعي")).to_be_visible()
    days, first = page.locator(".map-days ul").bounding_box(), page.locator(".map-days a").first.bounding_box()
    assert days
    assert first
    assert abs((first["x"] + first["width"]) - (days["x"] + days["width"])) < 1
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    wait_for_tiles(page)
    assert_accessible(page)
