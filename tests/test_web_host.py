"""The site hosts' screens of the field app in a real browser: My site (offline edits, live preview,
conflicts), its history with the organizers' Revert, and the visits at the site (fixtures: tests/browser_app.py)."""

import json
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from playwright.sync_api import BrowserContext, Page, expect

from tests.axe import assert_accessible
from tests.browser_app import (
    API,
    Recorded,
    Web,
    go,
    in_language,
    last_synced,
    open_app,
    pushed_since,
    sync_now,
    synced_since,
)
from tests.screenshots import shoot

SAN_SALVARIO = "casa-quartiere-san-salvario"  # hosted by host-san-salvario (Luca Ferrero); G1 visits it
TRICICLO = "triciclo"  # hosted by host-triciclo (Elena Marchetti); G2 visits it
STUDYVISIT = [sys.executable, "-m", "server.cli"]


def site(web: Web, site_id: str) -> dict[str, Any]:
    """The site as the server has it, with its conflicts (an organizer's view)."""
    return web.pulled("org-marta", "site")[site_id]


def queued_and_synced(page: Page, action: Callable[[], None]) -> None:
    """Do ``action`` (a Save or Resolve) and wait until the change it queued has been pushed.

    "A sync finished" alone is not enough: a background sync already running when the button is
    pressed can finish before the new mutation is pushed, so the change must first be seen waiting.
    """
    page.evaluate(
        """() => { window.__queued = false; const s = document.getElementById('status');
             new MutationObserver(() => { if (s.dataset.waiting !== '0') window.__queued = true; })
               .observe(s, {attributes: true}); }"""
    )
    action()
    page.wait_for_function(
        """() => { const s = document.getElementById('status');
             return window.__queued && s.dataset.waiting === '0' && s.dataset.syncing === 'false'; }"""
    )


def go_online(ctx: BrowserContext, page: Page) -> None:
    before = last_synced(page)
    ctx.set_offline(False)
    page.evaluate("window.dispatchEvent(new Event('online'))")
    pushed_since(page, before)


def test_a_host_corrects_the_accessibility_note_offline_and_participants_see_it_after_sync(
    context: tuple[BrowserContext, Recorded], second: BrowserContext, web: Web
) -> None:
    ctx, _ = context
    participant = open_app(second, web, "p-wanjiru-kamau")  # G1: visits San Salvario
    page = open_app(ctx, web, "host-san-salvario")
    page.wait_for_function("location.hash === '#/site-edit'")  # a host's invitation opens on My site
    in_language(page, "en")
    page.get_by_role("link", name="My site", exact=True).click()
    expect(page.get_by_role("heading", level=2)).to_have_text("My site: Casa del Quartiere San Salvario")
    # Every description language side by side, each its own labelled box.
    for language in ("English", "Français", "Español", "Italiano", "العربية"):
        expect(page.get_by_label(f"Description in {language}")).to_be_visible()
    expect(page.get_by_label("Description in العربية")).to_have_attribute("dir", "rtl")
    page.set_viewport_size({"width": 1280, "height": 900})  # a laptop: the languages side by side
    page.evaluate("window.scrollTo(0, 0)")
    shoot(page, "hosts-my-site")
    page.set_viewport_size({"width": 360, "height": 740})

    ctx.set_offline(True)
    note = "Step-free entrance from the back courtyard, via Morgari 14; ring the bell"
    page.get_by_label("Accessibility", exact=True).fill(note)
    preview = page.locator(".preview")
    expect(preview.locator("dl")).to_contain_text(note)  # live, before saving
    preview.get_by_label("Preview in").select_option("fr")
    expect(preview.locator(".description")).to_contain_text("maison de quartier")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("p.pending")).to_contain_text("Accessibility")
    expect(page.locator("#status")).to_contain_text("1 waiting")
    assert site(web, SAN_SALVARIO)["accessibility"] == ""  # nothing reached the server yet
    page.evaluate("document.querySelector('.preview').scrollIntoView()")
    shoot(page, "hosts-preview")

    go_online(ctx, page)
    stored = site(web, SAN_SALVARIO)
    assert stored["accessibility"] == note
    expect(page.locator("p.pending")).to_have_count(0)

    sync_now(participant)
    go(participant, f"#/site/{SAN_SALVARIO}")
    expect(participant.locator("article dl")).to_contain_text(note)
    expect(participant.get_by_role("link", name="Edit this site")).to_have_count(0)  # participants do not edit

    page.get_by_role("link", name="History", exact=True).click()
    change = page.locator("li.change").first
    expect(change.locator(".author")).to_have_text("Luca Ferrero")
    expect(change.locator("ins")).to_have_text(note)
    at = web.get("host-san-salvario", f"{API}/sites/{SAN_SALVARIO}/history").json()[0]["at"]
    rome = datetime.fromisoformat(at).astimezone(ZoneInfo("Europe/Rome")).strftime("%H:%M")
    expect(change.locator("time")).to_contain_text(f"{rome} GMT+1")  # on the reader's clock (Rome), named
    expect(page.get_by_role("button", name="Revert")).to_have_count(0)  # hosts do not revert
    shoot(page, "hosts-history")


@pytest.mark.parametrize("choice", ["merge", "mine"])
def test_crossing_edits_show_both_values_and_the_resolution_keeps_both_in_the_history(
    context: tuple[BrowserContext, Recorded], second: BrowserContext, web: Web, choice: str
) -> None:
    ctx, _ = context
    page = open_app(ctx, web, "host-triciclo")
    in_language(page, "en")
    go(page, "#/site-edit")
    expect(page.get_by_role("heading", level=2)).to_contain_text("Triciclo")

    ctx.set_offline(True)
    mine = f"Ramp at the side door on Via Arbe ({choice})"
    page.get_by_label("Accessibility", exact=True).fill(mine)
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#status")).to_contain_text("1 waiting")

    # Meanwhile an organizer corrects the same field from their own phone, online.
    organizer = open_app(second, web, "org-marta")
    in_language(organizer, "en")
    go(organizer, f"#/site/{TRICICLO}")
    organizer.get_by_role("link", name="Edit this site").click()
    expect(organizer.get_by_label("Name", exact=True)).to_be_visible()  # organizers' own fields
    theirs = f"Lift from the courtyard; the side door has steps ({choice})"
    organizer.get_by_label("Accessibility", exact=True).fill(theirs)
    queued_and_synced(organizer, organizer.get_by_role("button", name="Save").click)
    assert site(web, TRICICLO)["accessibility"] == theirs

    go_online(ctx, page)
    panel = page.locator("form.conflicts")
    expect(panel).to_be_visible()
    conflict = panel.locator("fieldset[data-field='accessibility']")
    expect(conflict.locator("[data-value='current']")).to_have_text(theirs)
    expect(conflict.locator("[data-value='kept']")).to_have_text(mine)
    expect(conflict).to_contain_text("yours")
    stored = site(web, TRICICLO)
    assert stored["accessibility"] == theirs  # the first to arrive stands...
    assert [(c["field"], c["value"]) for c in stored["conflicts"]] == [("accessibility", mine)]  # ...mine is kept
    assert_accessible(page)
    if choice == "merge":
        page.evaluate("document.querySelector('form.conflicts').scrollIntoView()")
        shoot(page, "hosts-conflict")
        conflict.get_by_label("Merge both").check()
        chosen = f"{theirs}. {mine} (with steps)."
        conflict.get_by_role("textbox").fill(chosen)
    else:
        conflict.get_by_label("Kept aside").check()
        chosen = mine
    queued_and_synced(page, panel.get_by_role("button", name="Resolve").click)
    expect(panel).to_have_count(0)
    stored = site(web, TRICICLO)
    assert stored["accessibility"] == chosen
    assert stored["conflicts"] == []
    history = web.get("org-marta", f"{API}/sites/{TRICICLO}/history").json()
    edits = [
        (e["account_id"], e["changes"]["accessibility"]["new"]) for e in history if "accessibility" in e["changes"]
    ]
    assert edits[:2] == [("host-triciclo", chosen), ("org-marta", theirs)]
    expect(page.locator("#problems li")).to_have_count(0)  # the conflict result was settled by the resolution


def test_an_organizer_reverts_a_hosts_change_from_the_browser(second: BrowserContext, web: Web) -> None:
    before = site(web, SAN_SALVARIO)["contact"]
    wrong = "info@wrong.example"
    web.patch("host-san-salvario", f"/sites/{SAN_SALVARIO}", {"contact": wrong})

    page = open_app(second, web, "org-marta")
    in_language(page, "en")
    go(page, f"#/site-history/{SAN_SALVARIO}")
    latest = page.locator("li.change").first
    expect(latest.locator("ins")).to_have_text(wrong)
    version = latest.get_attribute("data-version")
    assert_accessible(page)
    page.once("dialog", lambda d: d.accept())
    latest.get_by_role("button", name=f"Revert version {version}").click()
    expect(page.locator("li.change").first.locator(".author")).to_have_text("Marta Bianchi")
    expect(page.locator(f"li.change[data-version='{version}']")).to_contain_text("Undone by change")
    assert site(web, SAN_SALVARIO)["contact"] == before


def test_visits_at_my_site_show_group_sizes_and_the_feedback_given(
    context: tuple[BrowserContext, Recorded], web: Web
) -> None:
    ctx, _ = context
    participant = {"Authorization": f"Bearer {web.token('p-wanjiru-kamau')}"}
    httpx.put(
        f"{web.server.url}{API}/visits/d1-g1-casa-quartiere-san-salvario/feedback",
        json={"rating": 4, "comment": "The time bank explained by its members"},
        headers=participant,
    ).raise_for_status()
    expected = web.get("host-san-salvario", f"{API}/sites/{SAN_SALVARIO}/visits").json()["visits"][0]
    page = open_app(ctx, web, "host-san-salvario")
    in_language(page, "en")
    page.get_by_role("link", name="Visits at my site").click()
    visit = page.locator("li.visit[data-visit-id='d1-g1-casa-quartiere-san-salvario']")
    expect(visit.locator(".time")).to_have_text("14:30–16:30")
    expect(visit.locator(".people")).to_have_text(f"People expected: {expected['participants']}")
    expect(visit.locator("[data-group-id='G1']")).to_contain_text(
        f"{expected['groups'][0]['participants']} participants"
    )
    feedback = page.locator("li.feedback[data-visit-id='d1-g1-casa-quartiere-san-salvario']")
    expect(feedback).to_contain_text("The time bank explained by its members")
    expect(feedback).not_to_contain_text("Wanjiru")  # hosts learn what was said, not who said it
    shoot(page, "hosts-visits")

    # In the basement: the app opens offline and shows both as they were read, saying so.
    ctx.set_offline(True)
    page.reload()
    go(page, f"#/site-visits/{SAN_SALVARIO}")
    expect(page.locator("p.pending")).to_contain_text("Needs a connection to update")
    expect(visit.locator(".people")).to_have_text(f"People expected: {expected['participants']}")
    expect(feedback).to_contain_text("The time bank explained by its members")


@pytest.mark.parametrize("lang", ["en", "ar"])
def test_every_host_screen_passes_axe(context: tuple[BrowserContext, Recorded], web: Web, lang: str) -> None:
    ctx, _ = context
    page = open_app(ctx, web, "host-san-salvario")
    in_language(page, lang)
    assert page.evaluate("document.documentElement.dir") == ("rtl" if lang == "ar" else "ltr")
    for route in ("#/site-edit", f"#/site-visits/{SAN_SALVARIO}", f"#/site-history/{SAN_SALVARIO}"):
        go(page, route)
        expect(page.locator("main h2")).to_be_visible()
        assert_accessible(page)
    if lang == "ar":
        go(page, "#/site-edit")
        shoot(page, "hosts-my-site-ar")


def test_an_organizers_site_editor_passes_axe(second: BrowserContext, web: Web) -> None:
    page = open_app(second, web, "org-marta")
    for lang in ("en", "ar"):
        in_language(page, lang)
        go(page, f"#/site-edit/{TRICICLO}")
        expect(page.locator("#site-kind")).to_be_visible()
        assert_accessible(page)
        go(page, "#/itinerary")
    # Organizers reach the editor from a site's page; their navigation is theirs to keep.
    assert page.locator("#nav a[href='#/site-edit']").count() == 0


def test_a_host_of_two_sites_picks_the_one_to_correct(second: BrowserContext, web: Web) -> None:
    made = subprocess.run(
        [
            *STUDYVISIT,
            "accounts",
            "add",
            "--event",
            "turin-sse-2025",
            "--name",
            "Giulia Rossi",
            "--role",
            "host",
            "--site",
            SAN_SALVARIO,
            "--site",
            TRICICLO,
            "--json",
        ],
        capture_output=True,
        text=True,
        check=True,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("STUDYVISIT_")}, **web.seeded.env()},
    )
    token = json.loads(made.stdout.splitlines()[0])["token"]
    page = second.new_page()
    page.goto(f"{web.server.url}/app/#t={token}")
    synced_since(page, "")
    go(page, "#/site-edit")
    expect(page.get_by_role("heading", level=2)).to_have_text("My site: Casa del Quartiere San Salvario")
    page.get_by_label("Site", exact=True).select_option(TRICICLO)
    expect(page.get_by_role("heading", level=2)).to_contain_text("Triciclo")
    page.get_by_label("Contact").fill("giulia@triciclo.example")
    page.get_by_role("button", name="Add opening hours").click()
    hours = page.get_by_role("group", name="Opening hours 1")
    hours.get_by_label("Mon").check()
    hours.get_by_label("Tue").check()
    hours.get_by_label("Opens").fill("09:00")
    hours.get_by_label("Closes").fill("17:30")
    expect(page.locator(".preview dl")).to_contain_text("Mon, Tue 09:00–17:30")
    page.get_by_label("Another language").fill("de")
    page.get_by_role("button", name="Add language").click()
    page.get_by_label("Description in de").fill("Ein Wiederverwendungszentrum für Arbeitsintegration")
    page.locator(".preview").get_by_label("Preview in").select_option("de")
    expect(page.locator(".preview .description")).to_have_text("Ein Wiederverwendungszentrum für Arbeitsintegration")
    assert_accessible(page)
    queued_and_synced(page, page.get_by_role("button", name="Save").click)
    stored = site(web, TRICICLO)
    assert stored["contact"] == "giulia@triciclo.example"
    assert stored["opening_hours"] == [{"days": ["mo", "tu"], "opens": "09:00", "closes": "17:30"}]
    assert stored["description"]["de"] == "Ein Wiederverwendungszentrum für Arbeitsintegration"
    assert site(web, SAN_SALVARIO)["contact"] != "giulia@triciclo.example"
    # Only what was changed travelled: the history's entry names exactly these fields, and its author.
    [latest, *_] = web.get("org-marta", f"{API}/sites/{TRICICLO}/history").json()
    assert set(latest["changes"]) == {"contact", "opening_hours", "description.de"}
    assert latest["account_name"] == "Giulia Rossi"
