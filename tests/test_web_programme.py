"""The organizers' Programme and "What participants see" in a real browser (fixtures: tests/browser_app.py)."""

from datetime import datetime
from typing import Any

import httpx
from playwright.sync_api import BrowserContext, Page, Route, expect

from tests.axe import assert_accessible
from tests.browser_app import API, Phones, Recorded, Web, go, in_language, open_app, rendered, sync_now
from tests.screenshots import shoot

ORGANIZER = "org-marta"
TRICICLO = "d1-g2-triciclo"  # G2, 14:30-15:45 on 10 December; G2's next stop starts at 16:00
TAPPED = "d1-g1-casa-quartiere-san-salvario"  # no other test here changes it
PUBLISHED = "2025-11-20T09:00:00Z"  # when the demo programme was published


def visit(web: Web, visit_id: str) -> dict[str, Any]:
    found: dict[str, Any] = web.get(ORGANIZER, f"{API}/visits/{visit_id}").json()
    return found


def rome(stamp: str) -> str:
    return datetime.fromisoformat(stamp).strftime("%Y-%m-%d %H:%M%z")


def open_organizer(ctx: BrowserContext, web: Web) -> Page:
    """The organizer's app, in English (Marta's account reads Italian)."""
    page = open_app(ctx, web, ORGANIZER)
    in_language(page, "en")
    return page


def open_draft(page: Page, visit_id: str, day: str) -> None:
    go(page, f"#/programme/{day}")
    page.locator(f"button.slot[data-visit-id='{visit_id}']").first.click()
    expect(page.locator("form.draft")).to_be_visible()


def publish(page: Page) -> None:
    page.get_by_role("button", name="Publish").click()
    expect(page.locator(".outcome")).to_contain_text("Published")


def test_an_organizer_sees_an_overlap_before_publishing_and_then_the_participants_device_pull_it(
    phones: Phones, context: tuple[BrowserContext, Recorded], web: Web
) -> None:
    ctx, _ = context
    page = open_organizer(ctx, web)
    expect(page.get_by_role("heading", level=2, name="Programme")).to_be_visible()
    assert page.evaluate("location.hash") == "#/programme"
    # A G2 participant's phone, in a browser of its own: synced before the change.
    phone = open_app(phones(timezone_id="Asia/Kolkata"), web, "p-ananya-iyer")

    open_draft(page, TRICICLO, "2025-12-10")
    page.get_by_label("Starts").fill("15:30")
    page.get_by_label("Ends").fill("16:45")
    check = page.locator(".draft-check")
    expect(check).to_contain_text("Error (new)")
    expect(check).to_contain_text("overlap by 45 min")
    # The warning is the server's check of the draft: nothing is published yet.
    assert visit(web, TRICICLO)["version"] == 1
    assert rome(visit(web, TRICICLO)["starts_at"]) == "2025-12-10 14:30+0100"
    expect(page.locator(f"button.slot.draft[data-visit-id='{TRICICLO}']")).to_contain_text("15:30–16:45")
    check.scroll_into_view_if_needed()
    shoot(page, "organizers-programme-draft")

    publish(page)
    published = visit(web, TRICICLO)
    assert (rome(published["starts_at"]), rome(published["ends_at"]), published["status"]) == (
        "2025-12-10 15:30+0100",
        "2025-12-10 16:45+0100",
        "changed",
    )
    expect(page.locator(".checks").first).to_contain_text("overlap by 45 min")  # the programme's problems now

    page.get_by_role("link", name="What participants see").click()
    change = page.locator(f"li.change[data-visit-id='{TRICICLO}'][data-kind='moved']")
    expect(change.locator("dd[lang='en']")).to_have_text(
        "Work integration and circular economy: visit to Triciclo / TriCircolo Reuse Centre moved 14:30 → 15:30"
    )
    expect(change.locator("dd[lang='ar']")).to_contain_text("تغيير موعد زيارة Triciclo")
    expect(change.locator("dd[lang='fr']")).to_contain_text("nouvel horaire 14:30 → 15:30")
    expect(change.locator(".reach")).to_have_attribute("data-pulled", "0")
    expect(change.locator("li[data-account-id='p-ananya-iyer']")).to_contain_text("Ananya")

    # The participant's change list (the API the app reads) tells the move; the app's itinerary shows it.
    told = httpx.get(
        f"{web.server.url}{API}/changes",
        params={"since": PUBLISHED},
        headers={"Authorization": f"Bearer {web.token('p-ananya-iyer')}"},
    ).json()
    assert [(c["visit_id"], c["kind"]) for c in told["changes"]] == [(TRICICLO, "moved")]
    sync_now(phone)
    expect(phone.locator(f"li.visit[data-visit-id='{TRICICLO}'] .time")).to_have_text("15:30–16:45")

    page.get_by_role("button", name="Refresh").click()
    expect(change.locator(".reach")).to_have_attribute("data-pulled", "1")
    expect(change.locator("li[data-account-id='p-ananya-iyer']")).to_have_count(0)
    shoot(page, "organizers-changes")


def test_a_tap_on_a_visit_is_not_lost_to_a_sync_redrawing_the_programme(
    context: tuple[BrowserContext, Recorded], web: Web
) -> None:
    ctx, _ = context
    page = open_organizer(ctx, web)
    go(page, "#/programme/2025-12-10")
    held: list[Route] = []
    page.route(f"**{API}/visits/{TAPPED}", lambda route: held.append(route), times=1)
    with page.expect_request(lambda r: r.url.endswith(f"/visits/{TAPPED}")):
        page.locator(f"button.slot[data-visit-id='{TAPPED}']").click()
    tapped = page.evaluate_handle("() => document.querySelector('section.programme')")
    # While the tapped visit is fetched, another organizer renames a visit of the day: the sync that
    # follows draws the programme again.
    web.patch(
        ORGANIZER,
        "/visits/d1-g3-cascina-roccafranca",
        {"title": "Cascina Roccafranca: the community foundation (renamed)"},
    )
    sync_now(page)
    rendered(page)
    expect(page.locator("button.slot[data-visit-id='d1-g3-cascina-roccafranca']")).to_contain_text("(renamed)")
    assert tapped.evaluate("s => !s.isConnected")  # the screen tapped on is gone
    held[0].continue_()
    expect(page.locator("form.draft")).to_be_visible()
    expect(page.get_by_label("Day", exact=True)).to_be_focused()
    expect(page.locator(f"button.slot.draft[data-visit-id='{TAPPED}']")).to_be_visible()


def test_retime_cancel_and_reassign_each_land_on_the_server(context: tuple[BrowserContext, Recorded], web: Web) -> None:
    ctx, _ = context
    page = open_organizer(ctx, web)

    open_draft(page, "d2-g2-liberitutti", "2025-12-11")  # 10:30-11:30
    page.get_by_label("Ends").fill("11:15")
    # Checked before publishing; what the check says depends on the visit's notes (a warning that they
    # mention an old time is no obstacle), so only that it finished is waited for.
    expect(page.locator(".draft-check")).not_to_contain_text("Checking")
    expect(page.locator(".draft-check")).not_to_contain_text("Error")
    publish(page)
    assert rome(visit(web, "d2-g2-liberitutti")["ends_at"]) == "2025-12-11 11:15+0100"

    open_draft(page, "d2-g3-torino-social-impact", "2025-12-11")
    page.get_by_label("Visit cancelled").check()
    expect(page.locator(".draft-check h4")).to_be_visible()
    publish(page)
    assert visit(web, "d2-g3-torino-social-impact")["status"] == "cancelled"
    expect(page.locator("button.slot.cancelled[data-visit-id='d2-g3-torino-social-impact']")).to_have_count(1)

    open_draft(page, "d2-g1-barrito", "2025-12-11")  # G1 at Barrito, 14:20-15:45
    page.get_by_label("Site").select_option("casa-nel-parco")
    page.get_by_label("G1 · Community houses and neighbourhood welfare").uncheck()
    page.get_by_label("G3 · Cooperative networks and the social-impact ecosystem").check()
    expect(page.locator(".draft-check")).not_to_contain_text("Checking")
    publish(page)
    moved = visit(web, "d2-g1-barrito")
    assert (moved["site_id"], moved["group_ids"]) == ("casa-nel-parco", ["G3"])

    # Moving by buttons alone (no typing, no dragging): 15 minutes earlier, twice.
    open_draft(page, "d2-g3-legacoop-piemonte", "2025-12-11")  # 11:30-12:30
    page.get_by_role("button", name="15 min earlier").click()
    page.get_by_role("button", name="15 min earlier").click()
    expect(page.get_by_label("Starts")).to_have_value("11:00")
    publish(page)
    legacoop = visit(web, "d2-g3-legacoop-piemonte")
    assert (rome(legacoop["starts_at"]), rome(legacoop["ends_at"])) == (
        "2025-12-11 11:00+0100",
        "2025-12-11 12:00+0100",
    )


def test_a_visit_changed_meanwhile_is_shown_and_the_draft_kept(
    context: tuple[BrowserContext, Recorded], web: Web
) -> None:
    ctx, _ = context
    page = open_organizer(ctx, web)
    open_draft(page, "d2-g2-pausa-cafe", "2025-12-11")  # 11:45-12:30
    page.get_by_label("Ends").fill("12:45")
    expect(page.locator(".draft-check")).not_to_contain_text("Checking")
    # Another organizer moves its start meanwhile.
    web.patch(ORGANIZER, "/visits/d2-g2-pausa-cafe", {"starts_at": "2025-12-11T12:00:00+01:00"})
    page.get_by_role("button", name="Publish").click()
    expect(page.locator(".outcome")).to_contain_text("changed meanwhile")
    expect(page.locator(".meanwhile")).to_contain_text("11:45")
    expect(page.locator(".meanwhile")).to_contain_text("12:00")
    assert rome(visit(web, "d2-g2-pausa-cafe")["ends_at"]) == "2025-12-11 12:30+0100"
    publish(page)  # again, on the new version: the draft's end, the other organizer's start
    both = visit(web, "d2-g2-pausa-cafe")
    assert (rome(both["starts_at"]), rome(both["ends_at"])) == ("2025-12-11 11:45+0100", "2025-12-11 12:45+0100")


def test_a_participant_never_sees_the_organizers_screens_or_data(
    context: tuple[BrowserContext, Recorded], web: Web
) -> None:
    ctx, _ = context
    page = open_app(ctx, web, "p-wanjiru-kamau")
    nav = page.get_by_role("navigation", name="Main")
    expect(nav.get_by_role("link", name="Itinerary")).to_be_visible()
    expect(nav.get_by_role("link", name="Programme")).to_have_count(0)
    expect(nav.get_by_role("link", name="What participants see")).to_have_count(0)
    for route in ("#/programme", "#/programme/2025-12-10", "#/changes"):
        page.evaluate(f"location.hash = '{route}'")
        expect(page.get_by_role("heading", level=2, name="Itinerary")).to_be_visible()
        expect(page.locator("section.programme, section.delivery")).to_have_count(0)
    headers = {"Authorization": f"Bearer {web.token('p-wanjiru-kamau')}"}
    base = web.server.url + API
    for response in (
        httpx.get(f"{base}/itinerary/check", headers=headers),
        httpx.post(f"{base}/itinerary/check", json={"visit_id": TRICICLO, "fields": {}}, headers=headers),
        httpx.get(f"{base}/changes/delivery", params={"since": PUBLISHED}, headers=headers),
    ):
        assert response.status_code == 403, response.text


def test_both_screens_pass_axe_in_english_and_arabic_and_say_when_offline(
    context: tuple[BrowserContext, Recorded], web: Web
) -> None:
    ctx, _ = context
    # A change for the list to show, whatever the other tests did.
    web.patch(ORGANIZER, "/visits/d1-g3-cascina-roccafranca", {"meeting_point": "Gate B, Via Edoardo Rubino"})
    page = open_organizer(ctx, web)
    for lang, programme, changes in (
        ("en", "Programme", "What participants see"),
        ("ar", "إدارة البرنامج", "ما يراه المشاركون"),
    ):
        page.locator("#language").select_option(lang)
        expect(page.locator("html")).to_have_attribute("dir", "rtl" if lang == "ar" else "ltr")
        page.get_by_role("link", name=programme, exact=True).click()
        expect(page.get_by_role("heading", level=2, name=programme)).to_be_visible()
        page.locator("button.slot").first.click()
        expect(page.locator(".draft-check h4")).to_be_visible()
        assert_accessible(page)
        if lang == "ar":
            shoot(page, "organizers-programme-ar")
        page.get_by_role("link", name=changes, exact=True).click()
        expect(page.locator("li.change").first).to_be_visible()
        assert_accessible(page)
    ctx.set_offline(True)
    page.get_by_role("link", name="إدارة البرنامج", exact=True).click()
    expect(page.locator("section .unavailable")).to_contain_text("غير متصل")
