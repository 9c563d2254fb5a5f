"""Feedback, "What changed" and fixing problems in the field app, in a real browser (fixtures: tests/browser_app.py)."""

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from playwright.sync_api import BrowserContext, Page, expect

from tests.axe import assert_accessible
from tests.browser_app import (
    API,
    Recorded,
    Web,
    last_synced,
    open_app,
    pushed_since,
    sync_now,
    synced_since,
    write_note,
)
from tests.screenshots import shoot

OVERALL = "Overall, how would you rate this visit? (1 = poor, 5 = excellent)"
RELEVANCE = "How relevant is what you saw to your work in your own country?"
TAKEAWAY = "What is one idea from this visit that you would like to apply at home?"
LOGISTICS = {"registration", "break", "meal", "transfer"}


def call(web: Web, who: str, method: str, path: str, body: Any = None, **headers: str) -> httpx.Response:
    content = None if body is None else json.dumps(body)
    if body is not None:
        headers.setdefault("Content-Type", "application/json")
    return httpx.request(
        method,
        web.server.url + API + path,
        content=content,
        headers={"Authorization": f"Bearer {web.token(who)}", **headers},
    )


def push_from_another_device(web: Web, who: str, mutations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The same account's laptop (another client_id) pushes through the sync API."""
    body = {"client_id": str(uuid.uuid4()), "protocol": 1, "mutations": mutations}
    answer = call(web, who, "POST", "/sync/push", body)
    assert answer.status_code == 200, answer.text
    return answer.json()["results"]


def move_visit(web: Web, visit_id: str, minutes: int) -> None:
    visit = web.get("org-marta", f"{API}/visits/{visit_id}")
    start = datetime.fromisoformat(visit.json()["starts_at"]) + timedelta(minutes=minutes)
    end = datetime.fromisoformat(visit.json()["ends_at"]) + timedelta(minutes=minutes)
    moved = call(
        web,
        "org-marta",
        "PATCH",
        f"/visits/{visit_id}",
        {"starts_at": start.isoformat(), "ends_at": end.isoformat()},
        **{"If-Match": visit.headers["etag"], "Content-Type": "application/merge-patch+json"},
    )
    assert moved.status_code == 200, moved.text


def sync_in(page: Page, button: str) -> None:
    """Sync now, in a UI language other than English (``button``: the Sync now button's name)."""
    before = last_synced(page)
    page.get_by_role("button", name=button).click()
    synced_since(page, before)


def outbox(page: Page) -> list[dict[str, Any]]:
    return page.evaluate("() => import('./js/store.js').then(s => s.outbox())")


def open_form(page: Page, visit_id: str) -> None:
    page.get_by_role("link", name="Feedback", exact=True).click()
    page.locator(f"li.feedback-visit[data-visit-id='{visit_id}'] a").click()
    expect(page.locator(f"form.feedback-form[data-visit-id='{visit_id}']")).to_be_visible()


def answer(
    page: Page, *, overall: str | None = None, relevance: str | None = None, takeaway: str | None = None
) -> None:
    if overall is not None:
        page.get_by_role("group", name=OVERALL).get_by_label(overall, exact=True).check()
    if relevance is not None:
        page.get_by_role("group", name=RELEVANCE).get_by_label(relevance, exact=True).check()
    if takeaway is not None:
        page.get_by_label(TAKEAWAY).fill(takeaway)


def save(page: Page) -> None:
    page.get_by_role("button", name="Save").click()
    expect(page.locator("ul.feedback-visits")).to_be_visible()


def test_feedback_answered_offline_reaches_the_server_once_and_an_edit_sends_only_what_changed(
    context: tuple[BrowserContext, Recorded], web: Web
) -> None:
    ctx, _ = context
    who, visit = "p-wanjiru-kamau", "d1-g1-casa-quartiere-san-salvario"
    page = open_app(ctx, web, who)
    pushes: list[Any] = []
    page.on("request", lambda r: pushes.append(r.post_data_json) if r.url.endswith("/sync/push") else None)
    page.get_by_role("link", name="Feedback", exact=True).click()
    # The visits I attended: my group's (G1), all started by now, none cancelled, no coffee breaks.
    now = datetime.now(UTC)
    expected = [
        v["id"]
        for v in sorted(web.pulled(who, "visit").values(), key=lambda v: (v["starts_at"], v["number"]))
        if "G1" in v["group_ids"]
        and v["status"] != "cancelled"
        and v["kind"] not in LOGISTICS
        and datetime.fromisoformat(v["starts_at"]) <= now
    ]
    assert visit in expected
    assert "d1-g2-triciclo" not in expected
    assert "d1-coffee-break" not in expected
    expect(page.locator("li.feedback-visit")).to_have_count(len(expected))
    assert page.locator("li.feedback-visit").evaluate_all("els => els.map(e => e.dataset.visitId)") == expected

    ctx.set_offline(True)
    open_form(page, visit)
    answer(page, overall="4", relevance="Very relevant", takeaway="A neighbourhood welfare desk")
    page.get_by_label("Comment").fill("Grazie, Luca!")
    save(page)
    expect(page.locator(f"li.feedback-visit[data-visit-id='{visit}'] .state")).to_have_text("answered, waiting to sync")
    open_form(page, visit)  # the form shows what is queued, offline
    expect(page.get_by_role("group", name=OVERALL).get_by_label("4", exact=True)).to_be_checked()
    expect(page.get_by_label(TAKEAWAY)).to_have_value("A neighbourhood welfare desk")
    answer(page, takeaway="A neighbourhood welfare desk, run by residents")
    save(page)
    queued = outbox(page)
    assert [m["type"] for m in queued] == ["feedback.put", "feedback.put"]
    first, edit = (m["args"] for m in queued)
    assert first["id"] == edit["id"]
    assert first["base_version"] == 0
    assert first["answers"] == {"overall": 4, "relevance": "very", "takeaway": "A neighbourhood welfare desk"}
    # The edit carries the one answer that changed, nothing else (§4: an omitted field is kept).
    assert edit["answers"] == {"takeaway": "A neighbourhood welfare desk, run by residents"}
    assert "comment" not in edit
    assert "rating" not in edit
    assert web.pulled(who, "feedback") == {}

    ctx.set_offline(False)
    before = last_synced(page)
    page.evaluate("window.dispatchEvent(new Event('online'))")
    pushed_since(page, before)
    mine = web.pulled(who, "feedback")
    assert list(mine) == [first["id"]]
    record = mine[first["id"]]
    assert record["answers"] == {
        "overall": 4,
        "relevance": "very",
        "takeaway": "A neighbourhood welfare desk, run by residents",
    }
    assert record["comment"] == "Grazie, Luca!"
    assert record["version"] == 2  # two mutations, each applied once
    sent = [m for body in pushes for m in body["mutations"] if m["type"] == "feedback.put"]
    assert len(sent) == 2

    # Offline again, only the rating changes, while the laptop writes a comment: both stand.
    ctx.set_offline(True)
    open_form(page, visit)
    answer(page, overall="5")
    save(page)
    results = push_from_another_device(
        web,
        who,
        [
            {
                "id": 1,
                "type": "feedback.put",
                "args": {"id": first["id"], "visit_id": visit, "base_version": 2, "comment": "From the laptop"},
            }
        ],
    )
    assert results[0]["status"] == "applied"
    ctx.set_offline(False)
    before = last_synced(page)
    page.evaluate("window.dispatchEvent(new Event('online'))")
    pushed_since(page, before)
    record = web.pulled(who, "feedback")[first["id"]]
    assert record["answers"]["overall"] == 5
    assert record["answers"]["takeaway"] == "A neighbourhood welfare desk, run by residents"
    assert record["comment"] == "From the laptop"
    expect(page.locator("#problems li")).to_have_count(0)


def test_closed_feedback_is_read_only_after_sync_and_an_answer_queued_before_shows_why_it_was_refused(
    context: tuple[BrowserContext, Recorded], web: Web
) -> None:
    ctx, _ = context
    who, visit = "p-nguyen-thi-hoa", "d2-g1-barrito"  # Vietnamese: the app speaks English to her
    page = open_app(ctx, web, who)
    ctx.set_offline(True)
    open_form(page, visit)
    answer(page, overall="3", takeaway="Bars as neighbourhood welfare")
    save(page)
    closed = call(web, "org-marta", "POST", f"/visits/{visit}/feedback/close")
    assert closed.status_code == 200, closed.text
    ctx.set_offline(False)
    page.get_by_role("link", name="Feedback", exact=True).click()
    sync_now(page)
    problem = page.locator("#problems li")
    expect(problem).to_have_count(1)
    expect(problem).to_contain_text("Not accepted (feedback)")
    expect(problem).to_contain_text(f"Feedback on '{visit}' was closed by the organizers.")
    expect(problem.get_by_role("button", name="Fix")).to_have_count(0)  # nothing typed can fix it
    expect(page.get_by_role("status")).to_contain_text("1 rejected")
    assert web.pulled(who, "feedback") == {}

    expect(page.locator(f"li.feedback-visit[data-visit-id='{visit}'] .state")).to_have_text("closed")
    open_form(page, visit)
    expect(page.locator("form.feedback-form .refused")).to_have_text(
        f"Your answers were not accepted: Mutation rejected: Feedback on '{visit}' was closed by the organizers."
    )
    expect(page.get_by_role("note")).to_have_text(
        "Feedback on this visit is closed: your answers can no longer be changed."
    )
    expect(page.get_by_role("button", name="Save")).to_have_count(0)
    expect(page.get_by_label(TAKEAWAY)).to_be_disabled()
    expect(page.get_by_role("group", name=OVERALL).get_by_label("5", exact=True)).to_be_disabled()
    # An open form that nobody typed in follows a sync: it turns read-only when feedback closes.
    other = "d1-plenary-opening"
    open_form(page, other)
    expect(page.get_by_role("button", name="Save")).to_be_visible()
    assert call(web, "org-marta", "POST", f"/visits/{other}/feedback/close").status_code == 200
    sync_now(page)
    expect(page.locator(f"form.feedback-form[data-visit-id='{other}'] .closed-note")).to_be_visible()
    expect(page.get_by_role("button", name="Save")).to_have_count(0)
    problem.get_by_role("button", name="Dismiss").click()
    expect(problem).to_have_count(0)


def shown_changes(page: Page) -> list[tuple[str, str, bool]]:
    return [
        (
            str(li.get_attribute("data-visit-id")),
            li.locator(".text").inner_text(),
            "new" in str(li.get_attribute("class")),
        )
        for li in page.locator("li.change").all()
    ]


def test_what_changed_lists_a_moved_visit_in_my_language_marked_new_until_i_have_seen_it(
    context: tuple[BrowserContext, Recorded], web: Web
) -> None:
    ctx, _ = context
    who, visit = "p-aicha-diallo", "d2-g1-bagni-pubblici-via-aglie"  # French
    page = open_app(ctx, web, who)
    page.wait_for_function("() => document.documentElement.lang === 'fr'")
    expect(page.get_by_role("heading", name="Ce qui a changé")).to_be_visible()
    expect(page.locator("li.change")).to_have_count(0)
    baseline = page.evaluate("() => import('./js/store.js').then(s => s.getMeta('changes_baseline'))")

    move_visit(web, visit, 30)
    sync_in(page, "Synchroniser")
    told = web.get(who, f"{API}/changes?since={baseline}&lang=fr").json()["changes"]
    assert [c["visit_id"] for c in told] == [visit]
    assert "nouvel horaire" in told[0]["text"]
    expect(page.locator("li.change.new")).to_have_count(1)
    assert shown_changes(page) == [(visit, told[0]["text"], True)]
    expect(page.locator("li.change.new .badge")).to_have_text("Nouveau")
    expect(page.locator(f"li.visit[data-visit-id='{visit}'] .badge")).to_have_text("Modifiée")  # still badged

    page.get_by_role("button", name="J’ai vu ces changements").click()
    expect(page.locator("li.change.new")).to_have_count(0)
    assert shown_changes(page) == [(visit, told[0]["text"], False)]
    sync_in(page, "Synchroniser")
    assert shown_changes(page) == [(visit, told[0]["text"], False)]  # still seen after the next sync

    # Moved again: new again, told from the time I had seen, and the list follows the UI's language.
    move_visit(web, visit, 15)
    page.get_by_label("Langue").select_option("en")
    page.wait_for_function("() => document.documentElement.lang === 'en'")
    sync_now(page)
    expect(page.locator("li.change.new")).to_have_count(1)
    seen = page.evaluate("() => import('./js/store.js').then(s => s.getMeta('changes_seen'))")
    fresh = web.get(who, f"{API}/changes?since={seen}&lang=en").json()["changes"]
    assert [c["kind"] for c in fresh] == ["moved"]
    assert shown_changes(page) == [(visit, fresh[0]["text"], True)]
    assert "moved" in fresh[0]["text"]
    assert page.locator("ul.change-list").get_attribute("lang") == "en"
    assert_accessible(page)
    page.get_by_role("button", name="I've seen these").click()
    expect(page.locator("li.change.new")).to_have_count(0)


def test_a_refused_feedback_does_not_block_what_follows_and_fix_resends_it_corrected(
    context: tuple[BrowserContext, Recorded], web: Web
) -> None:
    ctx, _ = context
    who, visit = "p-ananya-iyer", "d1-g2-triciclo"
    added = call(
        web,
        "org-marta",
        "PUT",
        "/questions/organisation",
        {"kind": "rating", "position": 4, "texts": {"en": "How well was the visit organised?"}},
    )
    assert added.status_code == 201, added.text
    page = open_app(ctx, web, who)
    ctx.set_offline(True)
    open_form(page, visit)
    page.get_by_role("group", name="How well was the visit organised?").get_by_label("5", exact=True).check()
    answer(page, overall="4", takeaway="Reuse as a training ground")
    save(page)
    write_note(page, "Written after the feedback", visit=visit)
    # The organizers drop the question while the phone is offline: the whole feedback.put is refused.
    assert call(web, "org-marta", "DELETE", "/questions/organisation").status_code == 204
    ctx.set_offline(False)
    sync_now(page)
    problem = page.locator("#problems li")
    expect(problem).to_have_count(1)
    expect(problem).to_contain_text("No question 'organisation' in this event.")
    assert [n["body"] for n in web.notes(who).values()] == ["Written after the feedback"]
    assert web.pulled(who, "feedback") == {}

    problem.get_by_role("button", name="Fix").click()
    expect(page.locator(".fix-reason")).to_contain_text("No question 'organisation' in this event.")
    # What I had typed, without the question that is gone.
    expect(page.get_by_role("group", name=OVERALL).get_by_label("4", exact=True)).to_be_checked()
    expect(page.get_by_label(TAKEAWAY)).to_have_value("Reuse as a training ground")
    expect(page.get_by_role("group", name="How well was the visit organised?")).to_have_count(0)
    before = last_synced(page)
    page.get_by_role("button", name="Save").click()
    expect(problem).to_have_count(0)
    pushed_since(page, before)
    (record,) = web.pulled(who, "feedback").values()
    assert record["visit_id"] == visit
    assert record["answers"] == {"overall": 4, "takeaway": "Reuse as a training ground"}
    expect(page.locator("#problems li")).to_have_count(0)


def test_a_refused_note_is_fixed_from_the_problems_list_and_lands(
    context: tuple[BrowserContext, Recorded], web: Web
) -> None:
    ctx, _ = context
    who = "p-jose-maria-nunez"
    page = open_app(ctx, web, who)
    page.get_by_label("Idioma").select_option("en")
    page.evaluate(
        """() => import('./js/store.js').then(s => s.enqueue('note.put',
             {id: crypto.randomUUID(), visit_id: 'no-such-visit', body: 'Cooperative bakery, 12 members', base_version: 0}))"""
    )
    sync_now(page)
    problem = page.locator("#problems li")
    expect(problem).to_contain_text("no-such-visit")
    problem.get_by_role("button", name="Fix").click()
    expect(page.get_by_role("textbox", name="Note")).to_have_value("Cooperative bakery, 12 members")
    page.get_by_label("Visit", exact=True).select_option("d2-g2-pausa-cafe")
    before = last_synced(page)
    page.get_by_role("button", name="Save").click()
    expect(problem).to_have_count(0)
    pushed_since(page, before)
    notes = list(web.notes(who).values())
    assert [(n["body"], n["visit_id"]) for n in notes] == [("Cooperative bakery, 12 members", "d2-g2-pausa-cafe")]


def test_a_note_edited_on_two_devices_shows_both_values_and_resolving_keeps_the_chosen_text(
    context: tuple[BrowserContext, Recorded], web: Web
) -> None:
    ctx, _ = context
    who = "p-wanjiru-kamau"
    page = open_app(ctx, web, who)
    write_note(page, "Bagni pubblici: showers and a café", visit="d2-g1-bagni-pubblici-via-aglie")
    sync_now(page)
    (note_id, note), *_ = [(i, n) for i, n in web.notes(who).items() if n["body"].startswith("Bagni pubblici")]
    ctx.set_offline(True)
    page.get_by_role("button", name="Edit note: Bagni pubblici").click()
    page.get_by_role("textbox", name="Note").fill("Phone: showers, a café and a tool library")
    page.get_by_role("button", name="Save").click()
    results = push_from_another_device(
        web,
        who,
        [
            {
                "id": 1,
                "type": "note.put",
                "args": {
                    "id": note_id,
                    "base_version": note["version"],
                    "body": "Laptop: showers and a café, 1920s building",
                },
            }
        ],
    )
    assert results[0]["status"] == "applied"
    ctx.set_offline(False)
    sync_now(page)
    problem = page.locator("#problems li[data-status='conflict']")
    expect(problem).to_have_count(1)
    expect(problem.locator("dd.mine")).to_contain_text("Phone: showers, a café and a tool library")
    expect(problem.locator("dd.theirs")).to_contain_text("Laptop: showers and a café, 1920s building")
    shoot(page, "field-app-conflict")
    assert web.notes(who)[note_id]["body"] == "Laptop: showers and a café, 1920s building"  # the first to arrive stands

    problem.get_by_role("button", name="Fix").click()
    box = page.get_by_role("textbox", name="Note")
    expect(box).to_have_value("Phone: showers, a café and a tool library")
    page.get_by_role("button", name="Use the server's text").click()
    expect(box).to_have_value("Laptop: showers and a café, 1920s building")
    page.get_by_role("button", name="Use my text").click()
    before = last_synced(page)
    page.get_by_role("button", name="Save").click()
    expect(problem).to_have_count(0)
    pushed_since(page, before)
    stored = web.notes(who)[note_id]
    assert stored["body"] == "Phone: showers, a café and a tool library"
    assert stored["conflicts"] == []  # resolved, not a second conflict
    expect(page.locator("#problems li")).to_have_count(0)


def test_feedback_answered_on_two_devices_shows_both_answers_and_fix_keeps_mine(
    context: tuple[BrowserContext, Recorded], web: Web
) -> None:
    ctx, _ = context
    who, visit = "p-ananya-iyer", "d2-g2-pausa-cafe"
    page = open_app(ctx, web, who)
    open_form(page, visit)
    answer(page, relevance="Somewhat relevant", takeaway="Coffee roasted in prison workshops")
    before = last_synced(page)
    page.get_by_role("button", name="Save").click()
    pushed_since(page, before)
    ((feedback_id, record),) = [(i, r) for i, r in web.pulled(who, "feedback").items() if r["visit_id"] == visit]
    ctx.set_offline(True)
    open_form(page, visit)
    answer(page, relevance="Very relevant")
    save(page)
    results = push_from_another_device(
        web,
        who,
        [
            {
                "id": 1,
                "type": "feedback.put",
                "args": {
                    "id": feedback_id,
                    "visit_id": visit,
                    "base_version": record["version"],
                    "answers": {"relevance": "little"},
                },
            }
        ],
    )
    assert results[0]["status"] == "applied"
    ctx.set_offline(False)
    sync_now(page)
    problem = page.locator("#problems li[data-status='conflict']")
    expect(problem).to_have_count(1)
    expect(problem).to_contain_text(RELEVANCE)
    expect(problem.locator("dd.mine")).to_contain_text("Very relevant")
    expect(problem.locator("dd.theirs")).to_contain_text("Not very relevant")

    problem.get_by_role("button", name="Fix").click()
    expect(page.get_by_role("group", name=RELEVANCE).get_by_label("Very relevant", exact=True)).to_be_checked()
    expect(page.get_by_label(TAKEAWAY)).to_have_value("Coffee roasted in prison workshops")
    before = last_synced(page)
    page.get_by_role("button", name="Save").click()
    expect(problem).to_have_count(0)
    pushed_since(page, before)
    stored = web.pulled(who, "feedback")[feedback_id]
    assert stored["answers"] == {"relevance": "very", "takeaway": "Coffee roasted in prison workshops"}
    assert stored["conflicts"] == []
    expect(page.locator("#problems li")).to_have_count(0)


def test_feedback_and_the_change_list_pass_axe_in_english_and_arabic(
    context: tuple[BrowserContext, Recorded], web: Web
) -> None:
    ctx, _ = context
    who = "p-fatima-zahra-amrani"  # Arabic, group G2
    page = open_app(ctx, web, who)
    page.wait_for_function("() => document.documentElement.dir === 'rtl'")
    move_visit(web, "d2-g2-liberitutti", -15)
    sync_in(page, "مزامنة الآن")
    expect(page.locator("li.change.new[data-visit-id='d2-g2-liberitutti']")).to_contain_text("تغيير موعد")
    expect(page.get_by_role("heading", name="ما الذي تغيّر")).to_be_visible()
    assert_accessible(page)
    page.get_by_role("link", name="التقييمات", exact=True).click()
    expect(page.locator("li.feedback-visit").first).to_be_visible()
    assert_accessible(page)
    page.locator("li.feedback-visit[data-visit-id='d2-g2-liberitutti'] a").click()
    expect(page.locator("form.feedback-form")).to_be_visible()
    assert_accessible(page)

    page.get_by_label("اللغة").select_option("en")
    page.wait_for_function("() => document.documentElement.dir === 'ltr'")
    expect(page.get_by_role("heading", name="Feedback: Visit: Liberitutti")).to_be_visible()
    assert_accessible(page)
    shoot(page, "field-app-feedback")
    page.get_by_role("link", name="Feedback", exact=True).click()
    expect(page.locator("li.feedback-visit").first).to_be_visible()
    assert_accessible(page)
    page.get_by_role("link", name="Itinerary", exact=True).click()
    sync_now(page)
    expect(page.locator("li.change.new[data-visit-id='d2-g2-liberitutti']")).to_contain_text("moved")
    assert_accessible(page)
    # The list heads the screen (scrolling by the page: a background sync may redraw the screen).
    expect(page.get_by_role("heading", name="What changed")).to_be_visible()
    page.evaluate("window.scrollTo(0, 0)")
    shoot(page, "field-app-what-changed")
