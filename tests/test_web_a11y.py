"""Every screen of the field app, in English and in Arabic, on a 360 px phone: WCAG 2.2 AA as far as a
machine can tell (fixtures and helpers: tests/browser_app.py; axe-core: tests/axe.py).

Each screen is one row of SCREENS, (name, route, setup): adding a screen is one line. Each row is opened
in both languages and checked for axe's serious and critical violations, no horizontal scrolling at
360 px, every control reached by Tab in reading order (mirrored in Arabic) with a visible focus ring of
enough contrast, targets of at least 24 x 24 px (WCAG 2.5.8), the layout starting at the right in
Arabic, and the same at 200% text size.

The sign-out question is the browser's own `window.confirm`, outside the page: nothing to check here.
"""

import itertools
import json
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.axe import assert_accessible
from tests.browser_app import API, Web, open_app, sync_now, write_note

WIDTH = 360
WHO = "p-wanjiru-kamau"  # G1; her account's language is English
LOCALES = {"en": "en-GB", "ar": "ar"}
CSS = Path(__file__).resolve().parent.parent / "web" / "css"


def signed_out(ctx: BrowserContext, web: Web) -> Page:
    page = ctx.new_page()
    page.goto(web.server.url + "/app/")
    expect(page.locator("#main p")).not_to_have_class("loading")
    return page


def offline(page: Page, ctx: BrowserContext) -> None:
    ctx.set_offline(True)
    page.evaluate("window.dispatchEvent(new Event('offline'))")
    expect(page.locator("#status.offline")).to_have_count(1)


def notes_synced_and_waiting(page: Page, ctx: BrowserContext) -> None:
    unique = uuid.uuid4().hex[:6]  # every test adds notes to the same account
    write_note(page, f"Synced {unique}: the time bank's ledger", visit="d1-g1-casa-quartiere-san-salvario")
    sync_now(page)
    offline(page, ctx)  # the second one waits: its "waiting to sync" mark and the offline status are shown
    write_note(page, f"Waiting {unique}: ask about the tool library", visit="d1-g1-casa-quartiere-san-salvario")


def a_rejected_change(page: Page, ctx: BrowserContext) -> None:
    page.evaluate(
        """() => import('./js/store.js').then(s => s.enqueue('note.put',
             {id: crypto.randomUUID(), visit_id: 'no-such-visit', body: 'On a removed visit', base_version: 0}))"""
    )
    sync_now(page)
    expect(page.locator("#problems li")).to_have_count(1)


def nothing(page: Page, ctx: BrowserContext) -> None:
    pass


def marks_shown(page: Page, ctx: BrowserContext) -> None:
    expect(page.locator(".badge.changed")).to_have_count(1)
    expect(page.locator(".badge.cancelled")).to_have_count(1)


@dataclass(frozen=True)
class Screen:
    """A screen to check: the route it is opened at (``None``: signed out), after ``setup`` has run on a
    signed-in page (in English, before the language is switched)."""

    name: str
    route: str | None
    setup: Callable[[Page, BrowserContext], None] = field(default=nothing)


SCREENS = [
    Screen("itinerary", "#/itinerary", marks_shown),  # a changed and a cancelled visit (marked_visits)
    Screen("itinerary offline", "#/itinerary", offline),
    Screen("site", "#/site/casa-quartiere-san-salvario"),
    Screen("notes", "#/notes", notes_synced_and_waiting),
    Screen("notes of a visit", "#/notes/d1-g1-casa-quartiere-san-salvario", notes_synced_and_waiting),
    Screen("note editor", "#/notes/new/d1-g1-casa-quartiere-san-salvario"),
    Screen("problems list", "#/itinerary", a_rejected_change),
    Screen("invitation needed", None),
]


@pytest.fixture(scope="module", autouse=True)
def marked_visits(web: Web) -> None:
    """G1's programme with one visit moved and one cancelled, so the itinerary shows both marks."""
    moved = web.get("org-marta", f"{API}/visits/d2-g1-barrito").json()
    patch_visit(web, "d2-g1-barrito", {"starts_at": shift(moved["starts_at"]), "ends_at": shift(moved["ends_at"])})
    patch_visit(web, "d2-g1-bagni-pubblici-via-aglie", {"status": "cancelled"})


def patch_visit(web: Web, visit_id: str, change: dict[str, Any]) -> None:
    visit = web.get("org-marta", f"{API}/visits/{visit_id}")
    answer = httpx.patch(
        f"{web.server.url}{API}/visits/{visit_id}",
        headers={
            "Authorization": f"Bearer {web.token('org-marta')}",
            "If-Match": visit.headers["etag"],
            "Content-Type": "application/merge-patch+json",
        },
        content=json.dumps(change),
    )
    assert answer.status_code == 200, answer.text


def shift(stamp: str) -> str:
    return (datetime.fromisoformat(stamp) + timedelta(minutes=30)).isoformat()


@pytest.fixture(params=list(LOCALES))
def lang(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def phone(browser: Browser, web: Web, lang: str) -> Iterator[BrowserContext]:
    ctx = browser.new_context(timezone_id="Europe/Rome", locale=LOCALES[lang], viewport={"width": WIDTH, "height": 740})
    yield ctx
    ctx.close()


def opened(screen: Screen, ctx: BrowserContext, web: Web, lang: str) -> Page:
    """The screen, in ``lang``, as the user sees it."""
    if screen.route is None:
        page = signed_out(ctx, web)
    else:
        page = open_app(ctx, web, WHO)
        page.get_by_label("Language").select_option("en")
        page.wait_for_function("() => document.documentElement.lang === 'en'")
        screen.setup(page, ctx)
        page.locator("#language").select_option(lang)
        page.evaluate("route => { location.hash = route; }", screen.route)
        page.wait_for_function(
            "route => document.getElementById('main').dataset.route === route && !document.querySelector('#main .loading')",
            arg=screen.route,
        )
    page.wait_for_function("lang => document.documentElement.lang === lang", arg=lang)
    assert page.evaluate("document.documentElement.dir") == ("rtl" if lang == "ar" else "ltr")
    return page


# Every control a keyboard user can reach, in document order, marked with its position; its box, the
# colours behind it and its name, for the checks below.
CONTROLS = """() => {
  const visible = el => { const r = el.getBoundingClientRect(); const s = getComputedStyle(el);
    return r.width > 0 && r.height > 0 && s.visibility !== 'hidden'; };
  const all = [...document.querySelectorAll('a[href], button, select, textarea, input, [tabindex]')]
    .filter(el => el.tabIndex >= 0 && !el.disabled && !el.closest('[hidden], [inert]') && visible(el));
  return all.map((el, i) => { el.dataset.a11yIndex = String(i); const r = el.getBoundingClientRect();
    return {index: i, tag: el.tagName, text: (el.innerText || el.value || el.getAttribute('aria-label') || '').trim().slice(0, 40),
            tabindex: el.tabIndex, left: r.left + scrollX, right: r.right + scrollX, top: r.top + scrollY,
            bottom: r.bottom + scrollY, width: r.width, height: r.height}; });
}"""

# The focused control and its focus ring: outline (style, width, colour), and the first opaque
# background behind it (the ring is drawn outside the control, so its parent's).
FOCUSED = """() => {
  const el = document.activeElement;
  if (!el || el === document.body) return null;
  const s = getComputedStyle(el);
  let bg = null;
  for (let p = el.parentElement; p && !bg; p = p.parentElement) {
    const c = getComputedStyle(p).backgroundColor;
    if (c && c !== 'transparent' && !/rgba\\(.*, 0\\)$/.test(c)) bg = c;
  }
  return {index: el.dataset.a11yIndex ?? null, tag: el.tagName, focusVisible: el.matches(':focus-visible'),
          outlineStyle: s.outlineStyle, outlineWidth: parseFloat(s.outlineWidth), outlineColor: s.outlineColor,
          background: bg || 'rgb(255, 255, 255)'};
}"""


def luminance(css: str) -> float:
    r, g, b = (int(x) / 255 for x in re.findall(r"[\d.]+", css)[:3])
    lin = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in (r, g, b)]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def contrast(a: str, b: str) -> float:
    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


# Resolves once the DOM has not changed for a second: the sync after a change (debounced 800 ms) has
# redrawn the screen, so the controls counted are the ones Tab then walks through.
SETTLED = """() => new Promise(resolve => {
  let timer = setTimeout(done, 1000);
  const observer = new MutationObserver(() => { clearTimeout(timer); timer = setTimeout(done, 1000); });
  function done() { observer.disconnect(); resolve(true); }
  observer.observe(document.body, {subtree: true, childList: true, attributes: true, characterData: true});
})"""


def controls(page: Page) -> list[dict[str, Any]]:
    page.evaluate(SETTLED)
    found: list[dict[str, Any]] = page.evaluate(CONTROLS)
    return found


def assert_no_horizontal_scroll(page: Page, when: str) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    wide = page.evaluate(
        """() => [...document.querySelectorAll("body *")].filter(e => e.getBoundingClientRect().right > 361).map(e => e.tagName + "." + e.className + " " + (e.innerText || "").slice(0, 40))"""
    )
    assert width <= WIDTH, f"{when}: the page is {width} px wide on a {WIDTH} px screen: {wide}"


def assert_targets_big_enough(found: list[dict[str, Any]], when: str) -> None:
    small = [
        (c["tag"], c["text"], round(c["width"]), round(c["height"])) for c in found if min(c["width"], c["height"]) < 24
    ]
    assert small == [], f"{when}: targets under 24 x 24 px (WCAG 2.5.8)"


def assert_no_overlap(found: list[dict[str, Any]], when: str) -> None:
    overlapping = [
        (a["text"], b["text"])
        for n, a in enumerate(found)
        for b in found[n + 1 :]
        if a["left"] < b["right"] - 1
        and b["left"] < a["right"] - 1
        and a["top"] < b["bottom"] - 1
        and b["top"] < a["bottom"] - 1
    ]
    assert overlapping == [], f"{when}: controls drawn over each other"


def assert_within_screen(found: list[dict[str, Any]], when: str) -> None:
    outside = [c["text"] for c in found if c["left"] < -1 or c["right"] > WIDTH + 1]
    assert outside == [], f"{when}: controls (partly) off the screen"


def assert_reading_order(found: list[dict[str, Any]], rtl: bool) -> None:
    """Tab order (document order) is reading order: down the page, and along a row from the start side."""
    for a, b in itertools.pairwise(found):
        same_row = b["top"] < a["bottom"] - 2 and a["top"] < b["bottom"] - 2
        if same_row:
            ahead = b["right"] <= a["left"] + 1 if rtl else b["left"] >= a["right"] - 1
            assert ahead, f"{b['text']!r} comes after {a['text']!r} but sits before it in its row"
        else:
            assert b["top"] >= a["top"] - 1, f"{b['text']!r} comes after {a['text']!r} but sits above it"


def assert_tab_reaches_every_control_in_order(page: Page, found: list[dict[str, Any]]) -> None:
    assert all(c["tabindex"] == 0 for c in found), "a positive tabindex breaks the reading order"
    page.locator("#title").click()  # Tab starts from the top of the page
    for control in found:
        page.keyboard.press("Tab")
        focused = page.evaluate(FOCUSED)
        assert focused is not None, f"Tab left the page before {control['text']!r}"
        assert focused["index"] == str(control["index"]), f"Tab went to {focused} instead of {control['text']!r}"
        assert focused["focusVisible"], control
        ring = f"{control['text']!r}: focus ring {focused['outlineStyle']} {focused['outlineWidth']}px"
        assert focused["outlineStyle"] != "none", ring
        assert focused["outlineWidth"] >= 2, ring
        ratio = contrast(focused["outlineColor"], focused["background"])
        assert ratio >= 3, f"{ring} {focused['outlineColor']} on {focused['background']}: contrast {ratio:.1f} < 3"
    page.keyboard.press("Tab")
    after = page.evaluate(FOCUSED)
    assert after is None or after["index"] in (None, "0"), f"a control Tab reaches that is not counted: {after}"


# Where the text of a block starts, measured from the screen's start edge (left, or right in Arabic).
START_EDGE = """([selector, rtl]) => {
  const el = document.querySelector(selector); if (!el) return null;
  const range = document.createRange(); range.selectNodeContents(el);
  const r = range.getBoundingClientRect();
  return rtl ? innerWidth - r.right : r.left;
}"""


def assert_starts_at_the_start_side(page: Page, rtl: bool, signed_in: bool) -> None:
    """Headings, navigation and status start at the inline-start edge: the right one in Arabic."""
    selectors = ["#title", "main h2, main p"] + (["#nav a", "#status"] if signed_in else [])
    for selector in selectors:
        edge = page.evaluate(START_EDGE, [selector, rtl])
        assert edge is not None, selector
        assert 0 <= edge <= 24, f"{selector} starts {edge:.0f} px from the {'right' if rtl else 'left'} edge"


@pytest.mark.parametrize("screen", SCREENS, ids=[s.name for s in SCREENS])
def test_the_screen_is_accessible_on_a_360_px_phone(screen: Screen, phone: BrowserContext, web: Web, lang: str) -> None:
    rtl = lang == "ar"
    page = opened(screen, phone, web, lang)
    assert_accessible(page)
    assert_no_horizontal_scroll(page, "100%")
    found = controls(page)
    if screen.route is not None:
        expect(page.locator("#nav a")).not_to_have_count(0)  # the chrome is there
    assert_targets_big_enough(found, "100%")
    assert_no_overlap(found, "100%")
    assert_within_screen(found, "100%")
    assert_reading_order(found, rtl)
    assert_tab_reaches_every_control_in_order(page, found)
    assert_starts_at_the_start_side(page, rtl, screen.route is not None)

    # Text at 200% (the phone's large-text setting): still one column, nothing off screen or overlapping.
    page.evaluate("document.documentElement.style.fontSize = '200%'")
    assert_no_horizontal_scroll(page, "200% text")
    zoomed = controls(page)
    assert len(zoomed) == len(found)
    assert_targets_big_enough(zoomed, "200% text")
    assert_no_overlap(zoomed, "200% text")
    assert_within_screen(zoomed, "200% text")
    assert_reading_order(zoomed, rtl)
    assert_accessible(page)


@pytest.mark.parametrize("sheet", sorted(p.name for p in CSS.glob("*.css")))
def test_stylesheets_use_logical_properties_so_arabic_mirrors(sheet: str) -> None:
    text = re.sub(r"/\*.*?\*/", "", (CSS / sheet).read_text(encoding="utf-8"), flags=re.S)
    physical = re.findall(
        r"(?<![\w-])(?:margin-left|margin-right|padding-left|padding-right|border-left|border-right|left|right)\s*:",
        text,
    )
    aligned = re.findall(r"(?:text-align|float|clear)\s*:\s*(?:left|right)\b", text)
    assert physical + aligned == [], f"{sheet}: use margin-inline-start, padding-inline, inset-inline, start/end"
