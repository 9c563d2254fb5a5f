"""The organizers' Feedback results and People screens in a real browser (fixtures: tests/browser_app.py)."""

import csv
import io
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.axe import assert_accessible
from tests.browser_app import API, Recorded, Web, in_language, open_app, sync_now
from tests.screenshots import shoot

ORGANIZER = "org-marta"
PARTICIPANT = "p-wanjiru-kamau"


def auth(web: Web, account_id: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {web.token(account_id)}"}


def give_feedback_through_the_api(web: Web) -> None:
    """Two participants of G1 on their visit to Barrito: one online (PUT), one through a sync push."""
    online = httpx.put(
        f"{web.server.url}{API}/visits/d2-g1-barrito/feedback",
        headers=auth(web, "p-nguyen-thi-hoa"),
        json={"rating": 5, "answers": {"relevance": "very"}, "comment": "Rất hữu ích, cảm ơn!"},
    )
    assert online.status_code == 201, online.text
    mutation = {
        "id": 1,
        "type": "feedback.put",
        "args": {
            "id": str(uuid.uuid4()),
            "visit_id": "d2-g1-barrito",
            "rating": 3,
            "answers": {"relevance": "somewhat", "takeaway": "Le quartier s'organise lui-même."},
            "comment": "Trop court, mais passionnant.",
            "base_version": 0,
        },
    }
    pushed = httpx.post(
        f"{web.server.url}{API}/sync/push",
        headers=auth(web, "p-aicha-diallo"),
        json={"client_id": str(uuid.uuid4()), "protocol": 1, "mutations": [mutation]},
    )
    assert pushed.status_code == 200, pushed.text
    assert pushed.json()["results"][0]["status"] == "applied"


def chart_counts(page: Page, place: str, chart: str) -> dict[str, int]:
    """The numbers a chart's table shows, by answer key (the text alternative of the SVG)."""
    rows = page.locator(f"article[data-site-id='{place}'] figure[data-chart$='{chart}'] table tbody tr")
    return {str(r.get_attribute("data-key")): int(r.locator("td").inner_text()) for r in rows.all()}


def bar_counts(page: Page, place: str, chart: str) -> dict[str, int]:
    """The numbers drawn in the SVG's bars."""
    bars = page.locator(f"article[data-site-id='{place}'] figure[data-chart$='{chart}'] svg g")
    return {str(g.get_attribute("data-key")): int(str(g.get_attribute("data-count"))) for g in bars.all()}


def open_organizer(ctx: BrowserContext, web: Web, lang: str = "en") -> Page:
    """The organizer's app in this UI language (Marta's own is Italian)."""
    page = open_app(ctx, web, ORGANIZER)
    in_language(page, lang)
    return page


def open_feedback(ctx: BrowserContext, web: Web) -> Page:
    page = open_organizer(ctx, web)
    page.get_by_role("link", name="Feedback", exact=True).click()
    expect(page.get_by_role("heading", name="Feedback", level=2)).to_be_visible()
    return page


def test_feedback_from_two_participants_shows_in_the_organizers_charts_with_the_right_counts(
    context: tuple[BrowserContext, Recorded], web: Web
) -> None:
    ctx, _ = context
    give_feedback_through_the_api(web)
    page = open_feedback(ctx, web)
    page.get_by_label("Site").select_option("barrito")
    place = page.locator("article[data-site-id='barrito']")
    expect(place).to_contain_text("2 of 3 responded")
    expect(page.locator("article.place-results")).to_have_count(1)
    overall = {"5": 1, "4": 0, "3": 1, "2": 0, "1": 0}
    assert chart_counts(page, "barrito", "overall") == overall
    assert bar_counts(page, "barrito", "overall") == overall
    relevance = page.locator("article[data-site-id='barrito'] section[data-question-id='relevance'] table tbody tr")
    assert {str(r.get_attribute("data-key")): int(r.locator("td").inner_text()) for r in relevance.all()} == {
        "very": 1,
        "somewhat": 1,
        "little": 0,
    }
    expect(place.locator(".mean").first).to_contain_text("4")
    # Each comment says its language (the author's app language), so it is read and rendered right.
    expect(place.locator("ul.comments p[lang='vi']")).to_have_text("Rất hữu ích, cảm ơn!")
    expect(place.locator("ul.comments p[lang='fr']", has_text="passionnant")).to_have_count(1)
    # Filters: another group's day shows none of it; the right group and day show it again.
    page.get_by_label("Group").select_option("G2")
    expect(page.locator("article[data-site-id='barrito']")).to_have_count(0)
    page.get_by_label("Group").select_option("G1")
    page.get_by_label("Day").select_option("2025-12-10")
    expect(page.locator("article[data-site-id='barrito']")).to_have_count(0)
    page.get_by_label("Day").select_option("2025-12-11")
    expect(page.locator("article[data-site-id='barrito']")).to_contain_text("2 of 3 responded")
    page.locator("article[data-site-id='barrito'] figure").first.scroll_into_view_if_needed()
    shoot(page, "organizers-feedback-charts")


def test_the_csv_download_has_the_same_rows_as_the_servers_csv(
    context: tuple[BrowserContext, Recorded], web: Web, tmp_path: Path
) -> None:
    ctx, _ = context
    page = open_feedback(ctx, web)
    with page.expect_download() as info:
        page.get_by_role("button", name="Download the spreadsheet (CSV)").click()
    download = info.value
    assert download.suggested_filename == "turin-sse-2025-feedback.csv"
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    with saved.open(newline="", encoding="utf-8-sig") as f:
        downloaded = list(csv.reader(f))
    server = httpx.get(f"{web.server.url}{API}/feedback.csv", headers=auth(web, ORGANIZER))
    assert server.status_code == 200
    expected = list(csv.reader(io.StringIO(server.content.decode("utf-8-sig"), newline="")))
    assert downloaded == expected
    assert downloaded[0][:2] == ["feedback_id", "visit_id"]
    with page.expect_download() as zipped:
        page.get_by_role("button", name="Download shared notes and photos (zip)").click()
    assert zipped.value.suggested_filename.endswith(".zip")
    archive = tmp_path / "export.zip"
    zipped.value.save_as(archive)
    assert archive.read_bytes()[:2] == b"PK"


def visit_summary(web: Web, visit_id: str) -> dict[str, Any]:
    summary = httpx.get(f"{web.server.url}{API}/feedback/summary", headers=auth(web, ORGANIZER)).json()
    return next(v for v in summary["visits"] if v["visit_id"] == visit_id)


def visit_closed(web: Web, visit_id: str) -> bool:
    return bool(visit_summary(web, visit_id)["feedback_closed"])


def test_closing_and_reopening_a_visits_feedback_in_the_browser_changes_the_servers_state(
    context: tuple[BrowserContext, Recorded], web: Web
) -> None:
    ctx, _ = context
    visit = "d1-g1-casa-quartiere-san-salvario"
    title = visit_summary(web, visit)["title"]
    assert not visit_closed(web, visit)
    page = open_feedback(ctx, web)
    item = page.locator(f"li.visit-state[data-visit-id='{visit}']")
    expect(item).to_contain_text(title)
    item.get_by_role("button", name=f"Close feedback on {title}").click()
    expect(item).to_have_class("visit-state closed")
    assert visit_closed(web, visit)
    refused = httpx.put(
        f"{web.server.url}{API}/visits/{visit}/feedback", headers=auth(web, "p-nguyen-thi-hoa"), json={"rating": 4}
    )
    assert refused.status_code == 422
    assert refused.json()["type"].endswith("feedback-closed")
    item.get_by_role("button", name=f"Reopen feedback on {title}").click()
    expect(item).to_have_class("visit-state open")
    assert not visit_closed(web, visit)


def test_a_person_added_in_the_browser_signs_in_with_the_shown_link_and_is_locked_out_once_retired(
    browser: Browser, context: tuple[BrowserContext, Recorded], web: Web
) -> None:
    ctx, _ = context
    page = open_organizer(ctx, web)
    page.get_by_role("link", name="People", exact=True).click()
    page.get_by_label("Name").fill("Amaru Quispe Mamani")
    page.get_by_label("Role").select_option("participant")
    page.get_by_label("Group").select_option("G3")
    page.get_by_label("Language of the app").select_option("es")
    page.get_by_role("button", name="Add and show the invitation").click()
    panel = page.locator("section.invitation")
    expect(panel).to_contain_text("Invitation for Amaru Quispe Mamani")
    link = page.get_by_role("textbox", name="Invitation link").input_value()
    assert link.startswith(f"{web.server.url}/app/#t=sv_")
    qr = panel.get_by_role("img", name="QR code of the invitation link for Amaru Quispe Mamani")
    expect(qr).to_be_visible()
    assert page.evaluate("img => img.complete && img.naturalWidth > 0", qr.element_handle())
    shoot(page, "organizers-people-invitation")
    account_id = str(panel.get_attribute("data-account-id"))
    listed = httpx.get(f"{web.server.url}{API}/accounts", headers=auth(web, ORGANIZER)).json()["accounts"]
    created = next(a for a in listed if a["id"] == account_id)
    assert (created["name"], created["role"], created["group_id"], created["language"]) == (
        "Amaru Quispe Mamani",
        "participant",
        "G3",
        "es",
    )
    assert created["last_synced_at"] is None

    # The link, opened on "their phone" (a browser context of its own), signs them in.
    phone = browser.new_context(timezone_id="Europe/Rome", locale="es-ES", viewport={"width": 360, "height": 740})
    try:
        theirs = phone.new_page()
        theirs.goto(link)
        theirs.wait_for_function("() => document.getElementById('status').dataset.lastSynced")
        token = link.split("#t=", 1)[1]
        me = httpx.get(f"{web.server.url}/api/v1/me", headers={"Authorization": f"Bearer {token}"}).json()
        assert (me["id"], me["group_id"]) == (account_id, "G3")
        assert theirs.evaluate("document.documentElement.lang") == "es"

        # Their sync shows in the organizer's list.
        page.get_by_role("button", name="Done").click()
        page.reload()
        row = page.locator(f"li.person[data-account-id='{account_id}']")
        expect(row).to_contain_text("Last synced")
        assert row.locator(".last-sync").get_attribute("data-last-synced")

        page.once("dialog", lambda d: d.accept())
        row.get_by_role("button", name="Retire Amaru Quispe Mamani").click()
        expect(row).to_contain_text("Retired")
        assert httpx.get(f"{web.server.url}/api/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401
        theirs.get_by_role("button", name="Sincronizar ahora").click()
        expect(theirs.get_by_role("status")).to_contain_text("Esta invitación ya no funciona")
    finally:
        phone.close()


ORGANIZER_ONLY = [
    ("GET", f"{API}/feedback/summary"),
    ("GET", f"{API}/feedback.csv"),
    ("GET", f"{API}/export.zip"),
    ("GET", f"{API}/accounts"),
    ("POST", f"{API}/accounts"),
    ("POST", f"{API}/accounts/org-marta/retire"),
    ("POST", f"{API}/visits/d2-g1-barrito/feedback/close"),
]


def test_a_participant_never_sees_organizer_screens_or_data(context: tuple[BrowserContext, Recorded], web: Web) -> None:
    ctx, recorded = context
    page = open_app(ctx, web, PARTICIPANT)
    nav = page.get_by_role("navigation")
    expect(nav.locator("a")).not_to_have_count(0)
    assert nav.locator("a[href='#/responses'], a[href='#/people']").count() == 0
    expect(nav.get_by_role("link", name="People")).to_have_count(0)
    for route in ("#/responses", "#/people"):
        page.evaluate("route => { location.hash = route; }", route)
        expect(page.get_by_role("heading", level=2)).to_have_text("Itinerary")
        expect(page.locator("section.responses, section.people, .invitation, .add-person")).to_have_count(0)
    # The app asked the server for none of it.
    assert not [u for u in recorded.urls if "/feedback/summary" in u or "/accounts" in u or "feedback.csv" in u]
    for method, path in ORGANIZER_ONLY:
        body = {"name": "Intruder", "role": "organizer"} if path.endswith("/accounts") and method == "POST" else None
        answer = httpx.request(method, web.server.url + path, headers=auth(web, PARTICIPANT), json=body)
        assert answer.status_code == 403, (method, path, answer.text)
        assert answer.headers["content-type"].startswith("application/problem+json")


HEADINGS = {"en": {"responses": "Feedback", "people": "People"}, "ar": {"responses": "التقييمات", "people": "الأشخاص"}}


@pytest.mark.parametrize("lang", ["en", "ar"])
@pytest.mark.parametrize("screen", ["responses", "people"])
def test_the_organizer_screens_pass_axe_in_english_and_in_arabic(
    context: tuple[BrowserContext, Recorded], web: Web, lang: str, screen: str
) -> None:
    ctx, _ = context
    page = open_organizer(ctx, web, lang)
    if lang == "ar":
        expect(page.locator("html")).to_have_attribute("dir", "rtl")
    page.evaluate("route => { location.hash = route; }", f"#/{screen}")
    expect(page.locator(f"section.{screen}")).to_be_visible()
    expect(page.locator(f"section.{screen} h2")).to_have_text(HEADINGS[lang][screen])
    assert_accessible(page)
    if screen == "responses":
        page.get_by_label("الموقع" if lang == "ar" else "Site").select_option("barrito")
        assert_accessible(page)
    if lang == "ar":
        shoot(page, f"organizers-{screen}-arabic")


def test_offline_the_organizer_screens_say_they_need_a_connection(
    context: tuple[BrowserContext, Recorded], web: Web
) -> None:
    ctx, _ = context
    page = open_organizer(ctx, web)
    ctx.set_offline(True)
    page.evaluate("window.dispatchEvent(new Event('offline'))")
    for screen, heading in (("responses", "Feedback"), ("people", "People")):
        page.evaluate("route => { location.hash = route; }", f"#/{screen}")
        expect(page.get_by_role("heading", level=2)).to_have_text(heading)
        expect(page.get_by_role("alert")).to_contain_text("needs a connection")
    ctx.set_offline(False)
    sync_now(page)
