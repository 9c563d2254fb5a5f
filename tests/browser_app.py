"""The field app in a real browser: Chromium through Playwright against a real server with the demo data.

A pytest plugin (tests/conftest.py lists it): its fixtures (`web`, `browser`, `context`) and helpers serve
every tests/test_web_*.py module; each module gets its own server and database.
"""

import shutil
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, expect, sync_playwright

from tests.conftest import EVENT_ID, LiveServer, Seeded
from tests.databases import copy_of

# Debian's Chromium, as .ci/run and the README install it.
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
API = f"/api/v1/events/{EVENT_ID}"
# Assertions wait up to 15 s (Playwright's default is 5): CI runs two browsers and their servers on two
# cores beside the other tests, and a sync or a server check can take longer there. It is a bound on
# waiting, not a speed expectation: a passing test still ends as soon as the page shows what it must.
expect.set_options(timeout=15_000)


class Web:
    """One live server for the module, and who may sign in to it."""

    def __init__(self, server: LiveServer, seeded: Seeded, log: Path) -> None:
        self.server = server
        self.seeded = seeded
        self.log = log

    def token(self, account_id: str) -> str:
        return self.seeded.accounts[account_id].token

    def invitation(self, account_id: str) -> str:
        return f"{self.server.url}/app/#t={self.token(account_id)}"

    def get(self, account_id: str, path: str) -> httpx.Response:
        response = httpx.get(self.server.url + path, headers={"Authorization": f"Bearer {self.token(account_id)}"})
        response.raise_for_status()
        return response

    def pulled(self, account_id: str, entity: str) -> dict[str, dict[str, Any]]:
        """The account's live records of one kind as the server has them (a full pull), with their versions."""
        found: dict[str, dict[str, Any]] = {}
        cursor = ""
        while True:
            page = self.get(account_id, f"{API}/sync/pull?cursor={cursor}").json()
            found |= {
                c["id"]: c["data"] | {"version": c["version"]}
                for c in page["changes"]
                if c["entity"] == entity and c["op"] == "put"
            }
            cursor = page["cursor"]
            if not page["has_more"]:
                return found

    def notes(self, account_id: str) -> dict[str, dict[str, Any]]:
        """The account's live notes as the server has them."""
        return self.pulled(account_id, "note")

    def patch(self, account_id: str, path: str, change: dict[str, Any], if_match: str = "*") -> httpx.Response:
        """A merge patch of the event's ``path`` (``/visits/…``) by the account, as another device makes it."""
        response = httpx.patch(
            self.server.url + API + path,
            json=change,
            headers={
                "Authorization": f"Bearer {self.token(account_id)}",
                "If-Match": if_match,
                "Content-Type": "application/merge-patch+json",
            },
        )
        assert response.status_code == 200, response.text
        return response


@pytest.fixture(scope="module")
def web(
    seeded_template: Seeded, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Web]:
    directory = tmp_path_factory.mktemp("web")
    seeded = copy_of(seeded_template, directory / "studyvisit.db", request)
    log = directory / "server.log"
    server = LiveServer(seeded, log_path=log).start()
    yield Web(server, seeded, log)
    server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    # A browser test that cannot run is a failure, never a skip: CI installs Chromium (see .ci/run).
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"Chromium is missing ({CHROMIUM}): apt-get install chromium")
    with sync_playwright() as playwright:
        launched = launch(playwright)
        yield launched
        launched.close()


def launch(playwright: Playwright) -> Browser:
    return playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)


class Recorded:
    """Every request the browser made, page or service worker."""

    def __init__(self) -> None:
        self.urls: list[str] = []

    def strays(self, web: Web) -> list[str]:
        # A blob: URL of the app's own origin (a photo shown, a download made) is the page's memory, not a request out.
        return [u for u in self.urls if not u.removeprefix("blob:").startswith(web.server.url + "/")]


def phone(browser: Browser, timezone_id: str = "Europe/Rome", locale: str = "en-GB") -> tuple[BrowserContext, Recorded]:
    """A phone: a browser of its own, 360 px wide, recording every request it makes."""
    ctx = browser.new_context(timezone_id=timezone_id, locale=locale, viewport={"width": 360, "height": 740})
    recorded = Recorded()
    ctx.on("request", lambda r: recorded.urls.append(r.url))
    return ctx, recorded


@pytest.fixture
def context(browser: Browser, web: Web) -> Iterator[tuple[BrowserContext, Recorded]]:
    ctx, recorded = phone(browser)
    yield ctx, recorded
    ctx.close()
    assert recorded.strays(web) == [], "requests left the server's origin"


Phones = Callable[..., BrowserContext]


@pytest.fixture
def phones(browser: Browser, web: Web) -> Iterator[Phones]:
    """More phones for a test (another account's, the same account's second one): ``phones(timezone_id=…,
    locale=…)`` makes one; each is closed at the end and, as ``context``, has made no request elsewhere."""
    made: list[tuple[BrowserContext, Recorded]] = []

    def make(**options: str) -> BrowserContext:
        made.append(phone(browser, **options))
        return made[-1][0]

    yield make
    for ctx, recorded in made:
        ctx.close()
        assert recorded.strays(web) == [], "requests left the server's origin"


@pytest.fixture
def second(phones: Phones) -> BrowserContext:
    """Another phone (a participant's, or an organizer's), in Rome."""
    return phones()


def synced_since(page: Page, before: str) -> str:
    """Wait until a sync finished after ``before`` with nothing waiting; the new last-synced time."""
    page.wait_for_function(
        """before => { const s = document.getElementById('status');
             return s.dataset.syncing === 'false' && s.dataset.lastSynced && s.dataset.lastSynced !== before; }""",
        arg=before,
    )
    return str(page.get_attribute("#status", "data-last-synced"))


def open_app(ctx: BrowserContext, web: Web, account_id: str) -> Page:
    page = ctx.new_page()
    page.goto(web.invitation(account_id))
    synced_since(page, "")
    page.evaluate("navigator.serviceWorker.ready.then(r => !!r.active)")  # the shell is cached
    return page


def last_synced(page: Page) -> str:
    return str(page.get_attribute("#status", "data-last-synced"))


def pushed_since(page: Page, before: str) -> None:
    """Wait for a sync that finished after ``before`` and left nothing waiting."""
    page.wait_for_function(
        """before => { const s = document.getElementById('status');
             return s.dataset.syncing === 'false' && s.dataset.waiting === '0' && s.dataset.lastSynced !== before; }""",
        arg=before,
    )


def in_language(page: Page, lang: str) -> None:
    """Pick the app's language (the demo's hosts and organizers read Italian by default)."""
    page.locator("#language").select_option(lang)
    expect(page.locator("html")).to_have_attribute("lang", lang)


def go(page: Page, route: str) -> None:
    """Open a route (``#/…``) and wait for its screen."""
    page.evaluate("r => { location.hash = r; }", route)
    page.wait_for_function("r => document.getElementById('main').dataset.route === r", arg=route)


def nothing_waiting(page: Page, timeout: float | None = None) -> None:
    """Wait until no change or photo waits to be synced."""
    expect(page.locator("#status")).to_have_attribute("data-waiting", "0", timeout=timeout)


def rendered(page: Page) -> None:
    """Wait until every render queued so far has drawn its screen (renders run one after another)."""
    page.evaluate("() => import('./js/main.js').then(m => m.render())")


def kept_by_a_sync(page: Page) -> bool:
    """Sync now, with nothing new on the screen: whether every node shown (the screen, the navigation,
    the footer's controls, the problems list) is still the one shown before, not drawn again."""
    rendered(page)
    page.evaluate(
        """() => { window.__shown = [...document.querySelectorAll('#main *, #nav *, #footer *, #problems *')]; }"""
    )
    sync_now(page)
    rendered(page)
    return bool(page.evaluate("() => window.__shown.length > 0 && window.__shown.every(n => n.isConnected)"))


def sync_now(page: Page) -> None:
    before = str(page.get_attribute("#status", "data-last-synced"))
    page.get_by_role("button", name="Sync now").click()
    synced_since(page, before)


def expected_rows(itinerary: dict[str, Any]) -> list[tuple[str, str, str]]:
    zone = ZoneInfo(itinerary["timezone"])

    def hm(stamp: str) -> str:
        return datetime.fromisoformat(stamp).astimezone(zone).strftime("%H:%M")

    return [
        (i["visit"]["id"], f"{hm(i['visit']['starts_at'])}–{hm(i['visit']['ends_at'])}", i["visit"]["title"])
        for i in itinerary["items"]
    ]


def shown_rows(page: Page) -> list[tuple[str, str, str]]:
    return [
        (str(li.get_attribute("data-visit-id")), li.locator(".time").inner_text(), li.locator(".title").inner_text())
        for li in page.locator("li.visit").all()
    ]


def write_note(page: Page, text: str, *, visit: str | None = None) -> None:
    page.get_by_role("link", name="Notes", exact=True).click()
    page.get_by_role("button", name="New note").click()
    if visit is not None:
        page.get_by_label("Visit", exact=True).select_option(visit)
    page.get_by_role("textbox", name="Note").fill(text)
    page.get_by_role("button", name="Save").click()
    expect(page.locator("li.note", has_text=text)).to_have_count(1)
