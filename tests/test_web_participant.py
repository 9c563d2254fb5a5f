"""The participant's field app in a real browser (fixtures and helpers: tests/browser_app.py)."""

import re
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import BrowserContext, expect

from sync.checksum import checksum
from tests.axe import assert_accessible, serious_violations
from tests.browser_app import (
    API,
    Phones,
    Recorded,
    Web,
    expected_rows,
    go,
    in_language,
    kept_by_a_sync,
    last_synced,
    nothing_waiting,
    open_app,
    pushed_since,
    shown_rows,
    sync_now,
    write_note,
)


def test_invitation_link_signs_in_shows_the_groups_itinerary_and_forgets_the_token(phones: Phones, web: Web) -> None:
    ctx = phones(timezone_id="Asia/Tokyo")
    urls: list[str] = []
    ctx.on("request", lambda r: urls.append(r.url))
    page = open_app(ctx, web, "p-wanjiru-kamau")
    itinerary = web.get("p-wanjiru-kamau", f"{API}/itinerary").json()
    assert itinerary["group_id"] == "G1"
    expect(page.locator("li.visit")).to_have_count(len(itinerary["items"]))
    assert shown_rows(page) == expected_rows(itinerary)
    legs = [i for i in itinerary["items"] if i["leg"]]
    assert legs
    for item in legs:
        leg = page.locator(f"li.visit[data-visit-id='{item['visit']['id']}'] .leg")
        expect(leg).to_contain_text(
            f"{item['leg']['travel_minutes'] if item['leg']['mode'] != 'walk' else item['leg']['walking_minutes']} min"
        )
    # The phone is in Tokyo, the event in Rome: times stay Rome's, and the app says so.
    expect(page.locator(".zone-note")).to_contain_text("Europe/Rome")
    expect(page.locator(".zone-note")).to_contain_text("Asia/Tokyo")
    token = web.token("p-wanjiru-kamau")
    assert token not in page.url
    assert page.evaluate("location.hash") == "#/itinerary"
    assert token not in page.evaluate("document.cookie + JSON.stringify(localStorage) + JSON.stringify(sessionStorage)")
    ctx.close()
    assert token not in web.log.read_text(), "the fragment never reaches the server's log"
    assert all(u.startswith(web.server.url + "/") for u in urls)


def test_offline_the_app_opens_and_offline_notes_reach_the_server_exactly_once(
    context: tuple[BrowserContext, Recorded], web: Web
) -> None:
    ctx, _ = context
    who = "p-ananya-iyer"
    page = open_app(ctx, web, who)
    write_note(page, "Online first: Triciclo's repair bench", visit="d1-g2-triciclo")
    sync_now(page)
    assert [n["body"] for n in web.notes(who).values()] == ["Online first: Triciclo's repair bench"]

    ctx.set_offline(True)
    page.reload()
    expect(page.get_by_role("status")).to_contain_text("Offline")
    itinerary = web.get(who, f"{API}/itinerary").json()
    page.get_by_role("link", name="Itinerary", exact=True).click()
    expect(page.locator("li.visit")).to_have_count(len(itinerary["items"]))
    assert shown_rows(page) == expected_rows(itinerary)
    page.locator("li.visit[data-visit-id='d1-g2-triciclo'] a.title").click()
    site = web.get(who, f"{API}/sites/triciclo?lang=en").json()
    expect(page.get_by_role("heading", level=2)).to_have_text(site["name"])
    expect(page.locator(".description")).to_contain_text(site["description"][:60])
    expect(page.locator("dl")).to_contain_text(site["address"])
    geo = f"geo:{site['lat']},{site['lon']}?q={site['lat']},{site['lon']}("
    assert str(page.get_by_role("link", name="Directions").get_attribute("href")).startswith(geo)
    page.get_by_role("link", name="Notes", exact=True).click()
    expect(page.locator("li.note")).to_have_count(1)

    for text in (
        "Offline one: cooperative of 40",
        "Offline two: a second-hand market",
        "Offline three: ask about the municipal contract",
    ):
        write_note(page, text, visit="d1-g2-triciclo")
    page.get_by_role("button", name="Edit note: Offline two").click()
    page.get_by_role("textbox", name="Note").fill("Offline two, edited: a second-hand market on Saturdays")
    page.get_by_label("Share with organizers").check()
    page.get_by_role("button", name="Save").click()
    page.once("dialog", lambda d: d.accept())
    page.get_by_role("button", name="Delete note: Offline three").click()
    expect(page.locator("li.note")).to_have_count(3)
    expect(page.get_by_role("status")).to_contain_text("5 waiting")
    assert web.notes(who).keys() == {next(iter(web.notes(who)))}  # nothing reached the server yet

    ctx.set_offline(False)
    page.evaluate("window.dispatchEvent(new Event('online'))")
    nothing_waiting(page)
    expect(page.get_by_role("status")).to_contain_text("0 waiting")
    notes = web.notes(who)
    bodies = sorted(n["body"] for n in notes.values())
    assert bodies == sorted(
        [
            "Online first: Triciclo's repair bench",
            "Offline one: cooperative of 40",
            "Offline two, edited: a second-hand market on Saturdays",
        ]
    )
    shared = [n for n in notes.values() if n["share_with_organizers"]]
    assert [n["body"] for n in shared] == ["Offline two, edited: a second-hand market on Saturdays"]
    assert all(n["visit_id"] == "d1-g2-triciclo" for n in notes.values())


def test_a_visit_moved_by_an_organizer_shows_its_new_time_after_sync_now(
    context: tuple[BrowserContext, Recorded], web: Web
) -> None:
    ctx, _ = context
    page = open_app(ctx, web, "p-wanjiru-kamau")
    visit = web.get("org-marta", f"{API}/visits/d2-g1-bagni-pubblici-via-aglie")
    start = datetime.fromisoformat(visit.json()["starts_at"]) + timedelta(minutes=45)
    end = datetime.fromisoformat(visit.json()["ends_at"]) + timedelta(minutes=45)
    web.patch(
        "org-marta",
        "/visits/d2-g1-bagni-pubblici-via-aglie",
        {"starts_at": start.isoformat(), "ends_at": end.isoformat()},
        if_match=visit.headers["etag"],
    )
    sync_now(page)
    row = page.locator("li.visit[data-visit-id='d2-g1-bagni-pubblici-via-aglie']")
    rome = ZoneInfo("Europe/Rome")
    expect(row.locator(".time")).to_have_text(f"{start.astimezone(rome):%H:%M}–{end.astimezone(rome):%H:%M}")
    expect(row.locator(".badge")).to_have_text("Changed")


def test_arabic_ui_is_right_to_left_and_arabic_notes_round_trip(
    context: tuple[BrowserContext, Recorded], web: Web
) -> None:
    ctx, _ = context
    who = "p-fatima-zahra-amrani"  # her account's language is Arabic: the app follows it
    page = open_app(ctx, web, who)
    page.wait_for_function("() => document.documentElement.dir === 'rtl'")
    assert page.evaluate("document.documentElement.lang") == "ar"
    expect(page.get_by_role("link", name="البرنامج")).to_be_visible()
    text = "التعاونيات الاجتماعية في تورينو — Nguyễn, 김민준"
    page.get_by_role("link", name="الملاحظات", exact=True).click()
    page.get_by_role("button", name="ملاحظة جديدة").click()
    page.get_by_role("textbox", name="ملاحظة").fill(text)
    before = last_synced(page)
    page.get_by_role("button", name="حفظ").click()
    page.get_by_role("button", name="مزامنة الآن").click()
    pushed_since(page, before)
    assert [n["body"] for n in web.notes(who).values()] == [text]
    # The language picker switches back to left-to-right English.
    page.get_by_label("اللغة").select_option("en")
    page.wait_for_function("() => document.documentElement.dir === 'ltr'")
    expect(page.get_by_role("button", name="Sync now")).to_be_visible()


def test_a_rejected_mutation_shows_its_reason_and_does_not_block_later_ones(
    context: tuple[BrowserContext, Recorded], web: Web
) -> None:
    ctx, _ = context
    who = "p-aicha-diallo"
    page = open_app(ctx, web, who)
    page.get_by_label("Langue").select_option("en")
    # A note on a visit the organizers removed while this phone was offline: the server refuses it.
    page.evaluate(
        """() => import('./js/store.js').then(s => s.enqueue('note.put',
             {id: crypto.randomUUID(), visit_id: 'no-such-visit', body: 'On a removed visit', base_version: 0}))"""
    )
    write_note(page, "After the refused one")
    sync_now(page)
    problem = page.locator("#problems li")
    expect(problem).to_have_count(1)
    expect(problem).to_contain_text("no-such-visit")
    expect(page.get_by_role("status")).to_contain_text("1 rejected")
    assert [n["body"] for n in web.notes(who).values()] == ["After the refused one"]
    problem.get_by_role("button", name="Dismiss").click()
    expect(problem).to_have_count(0)
    expect(page.get_by_role("status")).not_to_contain_text("rejected")


def test_sign_out_warns_about_unsynced_items_then_wipes_the_device(
    context: tuple[BrowserContext, Recorded], web: Web
) -> None:
    ctx, _ = context
    page = open_app(ctx, web, "p-kim-min-jun")
    ctx.set_offline(True)
    write_note(page, "Not synced yet")
    with page.expect_event("dialog") as asked:
        page.get_by_role("button", name="Sign out").click(no_wait_after=True)
    warning = asked.value
    assert "1 change(s) are not synced yet and will be lost" in warning.message
    warning.dismiss()
    expect(page.locator("li.note")).to_have_count(1)  # refused: nothing wiped
    ctx.set_offline(False)
    page.evaluate(SEEN_TILE)
    page.once("dialog", lambda d: d.accept())
    page.get_by_role("button", name="Sign out").click(no_wait_after=True)
    # The app reloads itself once wiped, asking for an invitation.
    expect(page.get_by_text("Open the invitation link")).to_be_visible()
    # The shell stays cached (it holds no account's data), and nothing else: the tiles went.
    cached = page.evaluate(CACHED)
    assert cached
    assert all(u.startswith(web.server.url + "/app/") for u in cached), cached
    left = page.evaluate(
        """() => import('./js/store.js').then(async s => [await s.getMeta('token'), await s.getMeta('client_id'),
             (await s.outbox()).length, (await s.records('note')).length, (await s.records('visit')).length,
             await s.getDoc('itinerary')])"""
    )
    assert left == [None, None, 0, 0, 0, None]


# Every URL the page's caches hold, once a service worker is active.
CACHED = """async () => { await navigator.serviceWorker.ready; const urls = [];
  for (const k of await caches.keys()) for (const r of await (await caches.open(k)).keys()) urls.push(r.url);
  return urls; }"""
# A map tile the service worker kept (where this phone's map went): sign-out must not leave it.
SEEN_TILE = """() => caches.open('tiles').then(c => c.put('https://tiles.example.org/17/68838/47512.png', new Response('png')))"""


def test_sign_out_with_another_tab_open_keeps_the_shell_so_the_app_still_opens_offline(
    context: tuple[BrowserContext, Recorded], web: Web
) -> None:
    ctx, _ = context
    page = open_app(ctx, web, "p-ananya-iyer")
    other = ctx.new_page()  # the same app in a second tab: the service worker controls it throughout
    other.goto(web.server.url + "/app/#/itinerary")
    expect(other.locator("li.visit").first).to_be_visible()
    page.once("dialog", lambda d: d.accept())
    page.get_by_role("button", name="Sign out").click(no_wait_after=True)
    expect(page.get_by_text("Open the invitation link")).to_be_visible()
    cached = page.evaluate(CACHED)
    assert web.server.url + "/app/" in cached
    ctx.set_offline(True)
    page.reload()
    expect(page.get_by_text("Open the invitation link")).to_be_visible()


CHECKSUM_VECTORS = [
    [],
    [("triciclo", 1)],
    [("d1-g1-casa-quartiere-san-salvario", 3), ("0193e0a4-7d0e-7c6a-b1d2-6b8f3c1e9a01", 12)],
    [("كتاب", 2), ("Nguyễn", 1), ("김민준", 999999)],
]


def test_the_apps_replica_checksum_is_the_python_clients(context: tuple[BrowserContext, Recorded], web: Web) -> None:
    ctx, _ = context
    page = open_app(ctx, web, "p-jose-maria-nunez")
    for vector in CHECKSUM_VECTORS:
        rows = [{"id": i, "version": v} for i, v in vector]
        computed = page.evaluate("rows => import('./js/sync.js').then(s => s.checksum(rows))", rows)
        assert computed == checksum(vector)
    # After a sync the replica holds exactly what the server's summary says this account may see.
    summary = web.get("p-jose-maria-nunez", f"{API}/sync/pull?limit=5000").json()["summary"]
    for entity, expected in summary.items():
        held = page.evaluate(
            """e => import('./js/store.js').then(async s => (await s.records(e)).map(r => [r.id, r.version]))""", entity
        )
        assert (len(held), checksum((i, v) for i, v in held)) == (expected["count"], expected["checksum"]), entity


def test_a_page_closed_mid_push_loses_nothing_and_doubles_nothing(
    context: tuple[BrowserContext, Recorded], web: Web
) -> None:
    ctx, _ = context
    who = "p-joao-goncalves"
    page = open_app(ctx, web, who)
    ctx.set_offline(True)
    write_note(page, "Written before the page was closed")
    write_note(page, "Second one, same push")
    answered: list[int] = []

    def push_then_vanish(route: Any) -> None:
        # The server gets the push and applies it; the page is gone before the answer arrives.
        answered.append(route.fetch().status)
        route.abort()

    page.route("**/sync/push", push_then_vanish)
    with page.expect_event("requestfailed", lambda r: r.url.endswith("/sync/push")):
        ctx.set_offline(False)
        page.get_by_role("button", name="Sync now").click()
    page.close()
    assert answered  # the push reached the server (every time it was sent); no answer reached the page
    assert set(answered) == {200}
    assert sorted(n["body"] for n in web.notes(who).values()) == [
        "Second one, same push",
        "Written before the page was closed",
    ]

    again = ctx.new_page()
    again.goto(web.server.url + "/app/#/notes")
    nothing_waiting(again)
    expect(again.locator("li.note")).to_have_count(2)
    notes = web.notes(who)
    assert sorted(n["body"] for n in notes.values()) == ["Second one, same push", "Written before the page was closed"]
    assert all(n["version"] == 1 for n in notes.values()), "the re-sent push was a duplicate, not a second write"


def test_a_second_device_of_the_same_account_sees_the_note_and_organizers_see_it_shared(
    second: BrowserContext, context: tuple[BrowserContext, Recorded], web: Web
) -> None:
    ctx, _ = context
    who = "p-ayse-yilmaz"
    page = open_app(ctx, web, who)
    page.get_by_label("Language").select_option("en")
    page.get_by_role("link", name="Notes", exact=True).click()
    page.get_by_role("button", name="New note").click()
    page.get_by_role("textbox", name="Note").fill("Shared: the cooperative's statutes, article 4")
    page.get_by_label("Share with organizers").check()
    before = last_synced(page)
    page.get_by_role("button", name="Save").click()
    pushed_since(page, before)

    phone = open_app(second, web, who)
    phone.get_by_label("Language").select_option("en")
    phone.get_by_role("link", name="Notes", exact=True).click()
    expect(phone.locator("li.note")).to_have_text(re.compile("the cooperative's statutes, article 4"))
    expect(phone.locator("li.note")).to_contain_text("Shared with organizers")
    organizer = web.notes("org-marta")
    assert [n["body"] for n in organizer.values() if n["author_id"] == who] == [
        "Shared: the cooperative's statutes, article 4"
    ]


def test_another_accounts_link_asks_before_dropping_unsynced_changes(
    context: tuple[BrowserContext, Recorded], web: Web
) -> None:
    ctx, _ = context
    page = open_app(ctx, web, "p-wanjiru-kamau")
    ctx.set_offline(True)
    write_note(page, "Wanjiru's unsynced note")
    page.route("**/sync/push", lambda route: route.abort())  # it stays unsynced (set before going online)
    ctx.set_offline(False)
    asked: list[str] = []
    page.once("dialog", lambda d: (asked.append(d.message), d.dismiss()))
    page.goto(web.invitation("p-ananya-iyer"))
    # Still Wanjiru's (G1) itinerary, once the reloaded app has forgotten the link.
    page.wait_for_function(
        """() => location.hash === '#/itinerary' &&
                 document.querySelector("li.visit[data-visit-id='d1-g1-casa-quartiere-san-salvario']")""",
        timeout=20_000,
    )
    held = page.evaluate("() => import('./js/store.js').then(async s => (await s.outbox()).map(m => m.args.body))")
    assert held == ["Wanjiru's unsynced note"]
    assert asked == ["1 change(s) are not synced yet and will be lost. Sign out anyway?"]
    assert web.token("p-ananya-iyer") not in page.url


def test_the_accessibility_check_finds_a_control_without_a_name(
    context: tuple[BrowserContext, Recorded], web: Web
) -> None:
    """tests/axe.py really reports violations: a button with no accessible name is one (critical)."""
    ctx, _ = context
    page = open_app(ctx, web, "p-wanjiru-kamau")
    assert_accessible(page)
    page.evaluate("document.getElementById('main').append(document.createElement('button'))")
    assert [v["rule"] for v in serious_violations(page)] == ["button-name"]


@pytest.mark.parametrize(
    ("who", "route"),
    [
        ("p-wanjiru-kamau", "#/itinerary"),
        ("p-wanjiru-kamau", "#/notes"),
        ("p-wanjiru-kamau", "#/feedback"),
        ("p-wanjiru-kamau", "#/site/casa-quartiere-san-salvario"),
        ("host-san-salvario", "#/site-edit"),
        ("host-san-salvario", "#/site-visits/casa-quartiere-san-salvario"),
        ("host-san-salvario", "#/site-history/casa-quartiere-san-salvario"),
        ("org-marta", "#/programme"),
        ("org-marta", "#/changes"),
        ("org-marta", "#/responses"),
        ("org-marta", "#/people"),
    ],
)
def test_a_sync_with_nothing_new_keeps_the_screen_so_a_tap_on_it_is_not_lost(
    context: tuple[BrowserContext, Recorded], web: Web, who: str, route: str
) -> None:
    ctx, _ = context
    page = open_app(ctx, web, who)
    in_language(page, "en")
    go(page, route)
    assert kept_by_a_sync(page)
