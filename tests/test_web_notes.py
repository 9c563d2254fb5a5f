"""The field app's notes: tags and photos, offline, uploaded resumably (fixtures: tests/browser_app.py).

What tests/test_web_participant.py proves of plain notes (offline notes reach the server once, a page
closed mid-push, a rejected change) is not repeated here; these add tags, photos and the upgrade of the
app's IndexedDB from version 1.
"""

import base64
import hashlib
import io
import random
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from PIL import Image
from playwright.sync_api import Browser, BrowserContext, Page, Request, Route, expect

from schemas.sync import NotePutArgs
from sync.blobs import sniff_media_type
from tests.axe import assert_accessible
from tests.browser_app import (
    API,
    Phones,
    Recorded,
    Web,
    in_language,
    last_synced,
    nothing_waiting,
    open_app,
    pushed_since,
    sync_now,
    synced_since,
    write_note,
)
from tests.screenshots import shoot
from tests.sync_helpers import scalar

PART = 512 * 1024  # web/js/sync.js UPLOAD_PART


def jpeg(seed: int, size: tuple[int, int] = (64, 48), quality: int = 90) -> bytes:
    """A real JPEG of noise (the app may store it re-encoded: see ``add_photo``)."""
    rng = random.Random(seed)
    out = io.BytesIO()
    Image.frombytes("RGB", size, rng.randbytes(size[0] * size[1] * 3)).save(out, "JPEG", quality=quality)
    return out.getvalue()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def photo_file(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def add_photo(page: Page, path: Path) -> bytes:
    """Press "Add photo" and pick a file in the chooser it opens (the camera, on a phone). Returns the
    photo's bytes as the phone stored them, which is what it uploads (model.shrunk may re-encode it)."""
    with page.expect_file_chooser() as chooser:
        page.get_by_role("button", name="Add photo").click()
    assert chooser.value.element.get_attribute("accept") == "image/*"
    assert chooser.value.element.get_attribute("capture") is not None
    count = page.locator("ul.photos.editable > li").count()
    chooser.value.set_files(str(path))
    expect(page.locator("ul.photos.editable > li")).to_have_count(count + 1)
    digest = page.locator("ul.photos.editable > li .photo").nth(count).get_attribute("data-sha256")
    return stored_photo(page, str(digest))


def stored_photo(page: Page, digest: str) -> bytes:
    """The bytes of a photo as this phone keeps it in IndexedDB."""
    encoded = page.evaluate(
        """d => import('./js/store.js').then(async s => {
             const bytes = new Uint8Array(await (await s.photo(d)).blob.arrayBuffer());
             let text = '';
             for (let i = 0; i < bytes.length; i += 32768) text += String.fromCharCode(...bytes.subarray(i, i + 32768));
             return btoa(text); })""",
        digest,
    )
    data = base64.b64decode(encoded)
    assert sha(data) == digest
    return data


def blob_rows(web: Web, digest: str) -> tuple[int, int]:
    """How many complete blobs, and uploads of it by accounts, the server's database holds for a hash."""
    blobs = scalar(web.seeded, "SELECT COUNT(*) FROM blobs WHERE sha256 = ?", digest)
    owners = scalar(web.seeded, "SELECT COUNT(*) FROM blob_owners WHERE sha256 = ?", digest)
    return int(blobs), int(owners)


def blob_bytes(web: Web, account_id: str, digest: str) -> bytes:
    return web.get(account_id, f"{API}/blobs/{digest}").content


def shown_photo_loaded(page: Page, digest: str) -> None:
    """The photo's thumbnail is on the screen, decoded from real image bytes."""
    page.wait_for_function(
        """d => { const img = document.querySelector(`.photo[data-sha256='${d}'] img`);
             return img && img.complete && img.naturalWidth > 0; }""",
        arg=digest,
    )


def broken_put(request: Request) -> bool:
    """A PUT that got no answer (one whose answer's body nobody read is reported as ERR_ABORTED: not that)."""
    return request.method == "PUT" and request.failure != "net::ERR_ABORTED"


def test_the_apps_note_rules_are_the_servers_schema(context: tuple[BrowserContext, Recorded], web: Web) -> None:
    ctx, _ = context
    page = ctx.new_page()
    page.goto(web.server.url + "/app/")
    rules = page.evaluate("import('./js/rules.js').then(r => ({tags: r.TAGS, attachments: r.MAX_ATTACHMENTS}))")
    (schema,), components = msgspec.json.schema_components([NotePutArgs])
    args = components[schema["$ref"].split("/")[-1]]["properties"]
    tags = next(s for s in args["tags"]["anyOf"] if s.get("type") == "array")
    assert rules["tags"] == {
        "maxItems": tags["maxItems"],
        "minLength": tags["items"]["minLength"],
        "maxLength": tags["items"]["maxLength"],
    }
    assert "pattern" not in tags["items"]  # the app checks none either
    attachments = next(s for s in args["attachments"]["anyOf"] if s.get("type") == "array")
    assert rules["attachments"] == attachments["maxItems"]
    # The app counts characters as the server does (code points), and sniffs photos as it does.
    problems = page.evaluate(
        """() => import('./js/rules.js').then(r => [r.tagProblem(['😀'.repeat(64)]), r.tagProblem(['😀'.repeat(65)]),
             r.tagProblem(Array.from({length: 33}, (_, i) => 't' + i)), r.normalizeTags([' a, b ', 'a', 'e\\u0301'])])"""
    )
    assert problems[0] is None
    assert problems[1]["key"] == "notes.tag_too_long"
    assert problems[2]["key"] == "notes.tag_too_many"
    assert problems[3] == ["a", "b", "é"]
    heads = [
        jpeg(1)[:64],
        b"\x89PNG\r\n\x1a\n" + b"\0" * 56,
        b"RIFF\0\0\0\0WEBPVP8 ",
        b"%PDF-1.7\n",
        b"GIF89a" + b"\0" * 58,
    ]
    heads.append(b"\0\0\0\x18ftypmif1\0\0\0\0mif1heic")
    heads.append(b"\0\0\0\x18ftypmif1\0\0\0\0mif1avif")
    sniffed = page.evaluate(
        "heads => import('./js/rules.js').then(r => heads.map(h => r.sniffMediaType(new Uint8Array(h))))",
        [list(h) for h in heads],
    )
    assert sniffed == [sniff_media_type(h) for h in heads]
    assert sniffed[-2:] == ["image/heic", None]


def test_offline_notes_with_tags_and_a_photo_reach_the_server_once_and_the_organizer_sees_the_shared_one(
    phones: Phones, context: tuple[BrowserContext, Recorded], web: Web, tmp_path: Path
) -> None:
    ctx, _ = context
    who = "p-ananya-iyer"
    page = open_app(ctx, web, who)
    write_note(page, "Kept from before: the repair bench", visit="d1-g2-triciclo")
    sync_now(page)
    ctx.set_offline(True)
    page.reload()
    expect(page.get_by_role("status")).to_contain_text("Offline")

    page.get_by_role("link", name="Notes", exact=True).click()
    page.get_by_role("button", name="New note").click()
    page.get_by_label("Visit", exact=True).select_option("d1-g2-triciclo")
    page.get_by_role("textbox", name="Note").fill("With a photo: the sorting line")
    tags = page.get_by_role("textbox", name="Tags")
    tags.fill("réemploi, إعادة الاستخدام, 재사용,")
    expect(page.locator("ul.tags.editable li")).to_have_count(3)
    page.get_by_label("Share with organizers").check()
    picture = add_photo(page, photo_file(tmp_path, "sorting-line.jpg", jpeg(7)))
    # Kept on the phone at once, shown from there; the note went to the outbox with it.
    shown_photo_loaded(page, sha(picture))
    expect(page.locator("ul.photos.editable")).to_contain_text("Waiting to upload")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("li.note", has_text="With a photo")).to_have_count(1)
    write_note(page, "Second: 40 members", visit="d1-g2-triciclo")
    write_note(page, "Third: to be deleted", visit="d1-g2-triciclo")
    page.get_by_role("button", name="Edit note: Kept from before").click()
    page.get_by_role("textbox", name="Tags").fill("repair")
    page.get_by_role("textbox", name="Note").fill("Kept from before, edited: the repair bench, Tuesdays")
    page.get_by_role("button", name="Save").click()
    page.once("dialog", lambda d: d.accept())
    page.get_by_role("button", name="Delete note: Third").click()
    expect(page.locator("li.note")).to_have_count(3)
    noted = page.locator("li.note", has_text="With a photo")
    expect(noted.locator("ul.tags li")).to_have_text(["réemploi", "إعادة الاستخدام", "재사용"])
    shown_photo_loaded(page, sha(picture))
    # Two creates, the photo's change, the save after it, one more create, an edit, a delete; and the photo.
    expect(page.get_by_role("status")).to_contain_text("8 waiting")
    assert [n["body"] for n in web.notes(who).values()] == ["Kept from before: the repair bench"]

    before = last_synced(page)
    ctx.set_offline(False)
    page.evaluate("window.dispatchEvent(new Event('online'))")
    pushed_since(page, before)
    expect(page.get_by_role("status")).to_contain_text("0 waiting")
    notes = web.notes(who)
    assert sorted(n["body"] for n in notes.values()) == [
        "Kept from before, edited: the repair bench, Tuesdays",
        "Second: 40 members",
        "With a photo: the sorting line",
    ]
    by_body = {n["body"]: n for n in notes.values()}
    shared = by_body["With a photo: the sorting line"]
    assert shared["tags"] == ["réemploi", "إعادة الاستخدام", "재사용"]
    assert shared["share_with_organizers"] is True
    assert shared["attachments"] == [
        {
            "sha256": sha(picture),
            "media_type": "image/jpeg",
            "bytes": len(picture),
            "caption": "",
            "status": "available",
        }
    ]
    assert by_body["Kept from before, edited: the repair bench, Tuesdays"]["tags"] == ["repair"]
    assert all(n["attachments"] == [] for b, n in by_body.items() if b != "With a photo: the sorting line")
    assert blob_bytes(web, who, sha(picture)) == picture
    assert blob_rows(web, sha(picture)) == (1, 1)
    expect(page.locator(f".photo[data-sha256='{sha(picture)}']")).to_have_attribute("data-status", "available")

    # The author's other phone (or this one after a reinstall) pulls the note and fetches its photo.
    second = phones()
    try:
        again = open_app(second, web, who)
        again.get_by_role("link", name="Notes", exact=True).click()
        expect(again.locator("li.note", has_text="With a photo: the sorting line")).to_have_count(1)
        shown_photo_loaded(again, sha(picture))
    finally:
        second.close()

    # The organizer's phone pulls the shared note, shows its photo, and keeps it for offline use.
    other = phones()
    try:
        phone = open_app(other, web, "org-marta")
        in_language(phone, "en")
        phone.get_by_role("link", name="Notes", exact=True).click()
        theirs = phone.locator("li.note", has_text="With a photo: the sorting line")
        expect(theirs).to_have_count(1)
        expect(theirs.locator("ul.tags li")).to_have_text(["réemploi", "إعادة الاستخدام", "재사용"])
        expect(theirs.get_by_role("button", name="Edit")).to_have_count(0)  # someone else's: read-only
        shown_photo_loaded(phone, sha(picture))
        kept = phone.evaluate(
            "d => import('./js/store.js').then(async s => { const p = await s.photo(d); return [p.state, p.preview]; })",
            sha(picture),
        )
        assert kept == ["fetched", True]
        other.set_offline(True)
        phone.reload()
        expect(phone.get_by_role("status")).to_contain_text("Offline")
        expect(phone.locator("li.note", has_text="With a photo: the sorting line")).to_have_count(1)
        shown_photo_loaded(phone, sha(picture))
    finally:
        other.close()


def test_a_page_closed_mid_photo_upload_continues_from_the_servers_offset_when_opened_again(
    context: tuple[BrowserContext, Recorded], web: Web, tmp_path: Path
) -> None:
    ctx, _ = context
    who = "p-wanjiru-kamau"
    page = open_app(ctx, web, who)
    write_note(page, "The courtyard, in three parts", visit="d1-g1-casa-quartiere-san-salvario")
    page.get_by_role("button", name="Edit note: The courtyard").click()
    # The server dies (SIGKILL) right after it has stored and fsynced the second part, before it answers.
    web.server.stop()
    usual = web.server.env  # where its database and photos are
    web.server.env = {**usual, "STUDYVISIT_FAULT_POINT": "blob.part-acknowledged:2"}
    web.server.start()
    ranges: list[str] = []
    page.on("request", lambda r: ranges.append(r.headers["content-range"]) if r.method == "PUT" else None)
    try:
        with page.expect_event("requestfailed", broken_put, timeout=20_000):
            # Noise: even as the phone re-encodes it, it takes three parts.
            big = add_photo(page, photo_file(tmp_path, "courtyard.jpg", jpeg(11, (1600, 1200), 95)))
            page.get_by_role("button", name="Save").click()
        assert len(big) > 2 * PART
        assert ranges[:2] == [f"bytes 0-{PART - 1}/{len(big)}", f"bytes {PART}-{2 * PART - 1}/{len(big)}"]
        expect(page.get_by_role("status")).not_to_contain_text("0 waiting")
        page.close()
    finally:
        web.server.env = usual
        web.server.stop()
        web.server.start()
    # The note reached the server with its photo pending; the server kept the two parts it acknowledged.
    (note,) = [n for n in web.notes(who).values() if n["body"] == "The courtyard, in three parts"]
    assert [a["status"] for a in note["attachments"]] == ["pending"]
    assert blob_rows(web, sha(big)) == (0, 0)

    again = ctx.new_page()
    resumed: list[str] = []
    again.on(
        "request",
        lambda r: resumed.append(f"{r.method} {r.headers.get('content-range', '')}") if "/blobs/" in r.url else None,
    )
    again.goto(web.server.url + "/app/#/notes")
    nothing_waiting(again, timeout=20_000)
    # It asked what the server has and sent only the rest.
    assert [r for r in resumed if r.startswith(("HEAD", "PUT"))][:2] == [
        "HEAD ",
        f"PUT bytes {2 * PART}-{len(big) - 1}/{len(big)}",
    ]
    (note,) = [n for n in web.notes(who).values() if n["body"] == "The courtyard, in three parts"]
    assert note["attachments"] == [
        {"sha256": sha(big), "media_type": "image/jpeg", "bytes": len(big), "caption": "", "status": "available"}
    ]
    assert blob_rows(web, sha(big)) == (1, 1)
    assert blob_bytes(web, who, sha(big)) == big
    expect(again.locator("li.note", has_text="The courtyard")).to_have_count(1)
    shown_photo_loaded(again, sha(big))


# The database of the app's first version, as web/js/store.js created it at DB_VERSION 1.
VERSION_1 = """async ([token, clientId, noteId]) => {
  const open = indexedDB.open("studyvisit", 1);
  open.onupgradeneeded = () => {
    const d = open.result;
    d.createObjectStore("meta");
    d.createObjectStore("records", { keyPath: ["entity", "id"] }).createIndex("entity", "entity");
    d.createObjectStore("outbox", { keyPath: "id" });
    d.createObjectStore("problems", { keyPath: "id" });
    d.createObjectStore("docs");
  };
  const db = await new Promise((resolve, reject) => { open.onsuccess = () => resolve(open.result); open.onerror = reject; });
  const tx = db.transaction(["meta", "records", "outbox"], "readwrite");
  const meta = tx.objectStore("meta");
  meta.put(token, "token");
  meta.put(clientId, "client_id");
  meta.put(2, "next_mutation_id");
  meta.put("en", "language");
  tx.objectStore("records").put({ entity: "visit", id: "kept-from-v1", version: 1, data: { id: "kept-from-v1" } });
  tx.objectStore("outbox").add({ id: 1, type: "note.put", client_time: new Date().toISOString(),
    args: { id: noteId, visit_id: "d1-g1-casa-quartiere-san-salvario", body: "Queued under version 1", base_version: 0 } });
  await new Promise((resolve, reject) => { tx.oncomplete = resolve; tx.onerror = reject; });
  db.close();
}"""


def test_the_apps_database_of_version_1_is_upgraded_keeping_the_token_replica_and_outbox(
    context: tuple[BrowserContext, Recorded], web: Web, tmp_path: Path
) -> None:
    ctx, _ = context
    who = "p-nguyen-thi-hoa"
    page = ctx.new_page()
    page.goto(web.server.url + "/app/manifest.webmanifest")  # the app's origin, without running the app
    client_id, note_id = "5b0f7a4e-2f57-4c1e-9f5e-3c8a6a1d2b90", "0193e0a4-7d0e-7c6a-b1d2-6b8f3c1e9a77"
    page.evaluate(VERSION_1, [web.token(who), client_id, note_id])
    # Opened with the server out of reach: the upgrade alone must keep everything.
    page.route("**/api/**", lambda route: route.abort())
    page.goto(web.server.url + "/app/#/notes")
    expect(page.locator("li.note", has_text="Queued under version 1")).to_have_count(1)
    kept = page.evaluate(
        """() => import('./js/store.js').then(async s => [await s.getMeta('token'), await s.getMeta('client_id'),
             (await s.outbox()).map(m => m.args.body), (await s.records('visit')).map(r => r.id),
             await s.pendingPhotos(), (await new Promise(r => { const o = indexedDB.open('studyvisit'); o.onsuccess = () => { r(o.result.version); o.result.close(); }; }))])"""
    )
    assert kept == [web.token(who), client_id, ["Queued under version 1"], ["kept-from-v1"], 0, 2]
    page.unroute("**/api/**")
    sync_now(page)
    nothing_waiting(page)
    assert [(i, n["body"]) for i, n in web.notes(who).items()] == [(note_id, "Queued under version 1")]
    # The new store works on the upgraded database: a photo on that note, through the model's API.
    picture = jpeg(21)
    attached = page.evaluate(
        """([id, bytes]) => import('./js/model.js').then(m => m.addPhoto(id, new File([new Uint8Array(bytes)], 'x.jpg')))""",
        [note_id, list(picture)],
    )
    stored = stored_photo(page, attached["sha256"])
    assert attached == {"sha256": sha(stored), "media_type": "image/jpeg", "bytes": len(stored), "caption": ""}
    page.evaluate("() => import('./js/main.js').then(m => m.requestSync())")
    nothing_waiting(page)
    assert web.notes(who)[note_id]["attachments"][0]["status"] == "available"
    assert blob_bytes(web, who, sha(stored)) == stored


def test_tags_are_checked_by_the_schemas_rules_removed_by_their_chip_and_filter_the_list(
    context: tuple[BrowserContext, Recorded], web: Web
) -> None:
    ctx, _ = context
    who = "p-jose-maria-nunez"
    page = open_app(ctx, web, who)
    in_language(page, "en")
    page.get_by_role("link", name="Notes", exact=True).click()
    page.get_by_role("button", name="New note").click()
    page.get_by_role("textbox", name="Note").fill("Tagged: the time bank")
    box = page.get_by_role("textbox", name="Tags")
    box.fill("banca del tempo")
    box.press("Enter")
    box.fill("x" * 65)
    box.press("Enter")
    expect(page.locator("#note-tags-error")).to_contain_text("at most 64 characters")
    expect(box).to_have_attribute("aria-invalid", "true")
    before = last_synced(page)
    page.get_by_role("button", name="Save").click()  # refused on the phone: nothing queued
    expect(page.locator("form[data-editing]")).to_be_visible()
    assert page.evaluate("() => import('./js/store.js').then(async s => (await s.outbox()).length)") == 0
    box.fill("Economía, 경제,")  # a comma ends a tag
    expect(page.locator("ul.tags.editable li")).to_have_count(3)
    page.get_by_role("button", name="Remove tag Economía").click()
    box.fill("mutual")
    page.get_by_role("button", name="Save").click()
    write_note(page, "Untagged one")
    pushed_since(page, before)
    (tagged,) = [n for n in web.notes(who).values() if n["body"] == "Tagged: the time bank"]
    assert tagged["tags"] == ["banca del tempo", "경제", "mutual"]
    # The list filters by tag, and keeps the filter across a background sync's re-render.
    page.get_by_label("Show notes tagged").select_option("경제")
    expect(page.locator("li.note:visible")).to_have_count(1)
    expect(page.locator("li.note:visible")).to_contain_text("Tagged: the time bank")
    sync_now(page)
    expect(page.locator("li.note:visible")).to_have_count(1)
    expect(page.get_by_label("Show notes tagged")).to_have_value("경제")
    page.get_by_label("Show notes tagged").select_option("")
    expect(page.locator("li.note:visible")).to_have_count(2)
    # What the server still refuses (a tag no phone of this version would send) shows with its reason.
    page.evaluate(
        """() => import('./js/store.js').then(s => s.enqueue('note.put',
             {id: crypto.randomUUID(), visit_id: 'd1-g2-triciclo', body: 'bad', tags: ['y'.repeat(65)], base_version: 0}))"""
    )
    sync_now(page)
    expect(page.locator("#problems li")).to_contain_text("tags")


def test_a_removed_photo_leaves_its_note_and_is_never_uploaded(
    context: tuple[BrowserContext, Recorded], web: Web, tmp_path: Path
) -> None:
    ctx, _ = context
    who = "p-kim-min-jun"
    page = open_app(ctx, web, who)
    in_language(page, "en")
    ctx.set_offline(True)
    page.get_by_role("link", name="Notes", exact=True).click()
    page.get_by_role("button", name="New note").click()
    page.get_by_role("textbox", name="Note").fill("Two photos, one kept")
    picture = add_photo(page, photo_file(tmp_path, "a.jpg", jpeg(31)))
    kept = add_photo(page, photo_file(tmp_path, "b.jpg", jpeg(32)))
    page.get_by_role("button", name="Remove photo 1").click()
    expect(page.locator("ul.photos.editable > li")).to_have_count(1)
    expect(page.get_by_role("button", name="Add photo")).to_be_focused()
    page.get_by_role("button", name="Save").click()
    expect(page.locator("li.note .photo")).to_have_count(1)
    before = last_synced(page)
    ctx.set_offline(False)
    page.evaluate("window.dispatchEvent(new Event('online'))")
    pushed_since(page, before)
    (note,) = web.notes(who).values()
    assert [a["sha256"] for a in note["attachments"]] == [sha(kept)]
    assert blob_rows(web, sha(picture)) == (0, 0)
    assert blob_rows(web, sha(kept)) == (1, 1)
    held = page.evaluate(
        "() => import('./js/store.js').then(async s => (await s.photos()).map(p => [p.sha256, p.state]))"
    )
    assert held == [[sha(kept), "uploaded"]]  # the removed one's bytes are gone from the phone too
    # A file that is no photo is refused before anything is stored.
    page.get_by_role("button", name="Edit note: Two photos").click()
    with page.expect_file_chooser() as chooser:
        page.get_by_role("button", name="Add photo").click()
    chooser.value.set_files(photo_file(tmp_path, "notes.txt", b"not a photo at all"))
    expect(page.locator("#note-photo-error")).to_contain_text("not a JPEG, PNG, WebP or HEIC photo")
    expect(page.locator("ul.photos.editable > li")).to_have_count(1)


def test_the_editor_with_a_photo_is_accessible_in_english_and_arabic(
    context: tuple[BrowserContext, Recorded], web: Web, tmp_path: Path
) -> None:
    ctx, _ = context
    page = open_app(ctx, web, "p-fatima-zahra-amrani")
    in_language(page, "en")
    page.get_by_role("link", name="Notes", exact=True).click()
    page.get_by_role("button", name="New note").click()
    page.get_by_role("textbox", name="Note").fill("Accessible: عن التعاونية")
    page.get_by_role("textbox", name="Tags").fill("coop, تعاونية,")
    picture = add_photo(page, photo_file(tmp_path, "coop.jpg", jpeg(41)))
    shown_photo_loaded(page, sha(picture))
    assert_accessible(page)
    # The sync that follows uploads it; the open editor says so (and keeps what is being typed).
    expect(page.locator("ul.photos.editable")).to_contain_text("Uploaded", timeout=15_000)
    expect(page.get_by_role("textbox", name="Note")).to_have_value("Accessible: عن التعاونية")
    page.get_by_role("heading", name="Photos").scroll_into_view_if_needed()
    shoot(page, "field-app-note-with-photo")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("li.note .photo img")).to_have_count(1)
    assert_accessible(page)  # the list, with its tag filter, tags and thumbnail
    page.locator("#language").select_option("ar")
    page.wait_for_function("() => document.documentElement.dir === 'rtl'")
    assert_accessible(page)
    page.get_by_role("button", name="تعديل الملاحظة: Accessible").click()
    expect(page.get_by_role("button", name="إضافة صورة")).to_be_visible()
    shown_photo_loaded(page, sha(picture))
    assert_accessible(page)


@pytest.fixture
def unserviced(browser: Browser, web: Web) -> Iterator[BrowserContext]:
    """A phone as ``context`` but where no service worker may register, for a test that holds a request
    with ``page.route``: Playwright does not always route a request of a page a service worker (the
    app's) controls, though it reports it: in two of eight fresh browsers' first runs
    here, the photo's parts went out that way and none was held. (A fixture for tests/browser_app.py.)"""
    ctx = browser.new_context(
        service_workers="block", timezone_id="Europe/Rome", locale="en-GB", viewport={"width": 360, "height": 740}
    )
    recorded = Recorded()
    ctx.on("request", lambda r: recorded.urls.append(r.url))
    yield ctx
    ctx.close()
    assert recorded.strays(web) == [], "requests left the server's origin"


def test_a_note_written_during_a_long_photo_upload_is_pushed_before_the_upload_goes_on(
    unserviced: BrowserContext, web: Web, tmp_path: Path
) -> None:
    who = "p-aicha-diallo"
    page = unserviced.new_page()
    page.goto(web.invitation(who))  # as open_app, without waiting for a service worker
    synced_since(page, "")
    in_language(page, "en")
    held: list[Route] = []
    page.route(
        "**/blobs/*",
        lambda route: held.append(route) if route.request.method == "PUT" and not held else route.continue_(),
    )
    order: list[str] = []
    page.on(
        "request",
        lambda r: order.append(f"{r.method} {r.url.rsplit('/', 1)[-1][:8]} {r.headers.get('content-range', '')}"),
    )
    write_note(page, "With a big photo", visit="d1-g1-casa-quartiere-san-salvario")
    page.get_by_role("button", name="Edit note: With a big photo").click()
    big = add_photo(page, photo_file(tmp_path, "big.jpg", jpeg(51, (1600, 1200), 95)))
    assert 2 * PART < len(big) <= 3 * PART  # noise: three parts, even as the phone re-encodes it
    page.get_by_role("button", name="Save").click()
    for _ in range(200):  # the sync reaches the first part (Playwright calls let the route handler run)
        if held:
            break
        page.wait_for_timeout(100)
    # The first part is on its way (held here): meanwhile, another note.
    assert held, order
    before = last_synced(page)
    write_note(page, "Written during the upload", visit="d1-g1-casa-quartiere-san-salvario")
    held[0].continue_()
    pushed_since(page, before)
    puts = [i for i, r in enumerate(order) if r.startswith("PUT")]
    pushes = [i for i, r in enumerate(order) if r.startswith("POST push")]
    assert len(puts) == 3
    assert puts[0] < pushes[-1] < puts[1], order  # part one, then the new note's push, then the rest
    assert sorted(n["body"] for n in web.notes(who).values()) == ["With a big photo", "Written during the upload"]
    assert blob_bytes(web, who, sha(big)) == big


def test_photos_kept_for_display_are_bounded_and_those_waiting_for_upload_are_never_dropped(
    context: tuple[BrowserContext, Recorded], web: Web
) -> None:
    ctx, _ = context
    page = ctx.new_page()
    page.goto(web.server.url + "/app/")
    left = page.evaluate(
        """() => import('./js/store.js').then(async s => {
             const photo = (sha256, state, used_at) => ({ sha256, blob: new Blob([new Uint8Array(10)]), media_type: 'image/jpeg',
               bytes: 10, note_id: null, state, used_at });
             await s.enqueue('note.put', { id: 'n', attachments: [] }, { photo: photo('waiting', 'pending', 1) });
             for (const [sha, used] of [['oldest', 2], ['older', 3], ['newer', 5]]) await s.keepFetched(photo(sha, 'fetched', used), 25);
             const first = (await s.photos()).map(p => p.sha256).sort();
             await s.keepFetched(photo('newest', 'fetched', 9), 25);
             return [first, (await s.photos()).map(p => p.sha256).sort(), await s.pendingPhotos()];
           })"""
    )
    assert left == [["newer", "older", "waiting"], ["newer", "newest", "waiting"], 1]


def test_the_photo_of_a_refused_note_stays_on_the_phone_until_the_refusal_is_dismissed(
    context: tuple[BrowserContext, Recorded], web: Web
) -> None:
    ctx, _ = context
    who = "p-joao-goncalves"
    page = open_app(ctx, web, who)
    in_language(page, "en")
    picture = jpeg(61)
    # A note on a visit the organizers removed while this phone was offline, with a photo.
    page.evaluate(
        """bytes => Promise.all([import('./js/store.js'), import('./js/model.js')]).then(async ([s, m]) => {
             const id = m.uuid7();
             await s.enqueue('note.put', {id, visit_id: 'no-such-visit', body: 'On a removed visit', base_version: 0});
             await m.addPhoto(id, new Blob([new Uint8Array(bytes)]));
           })""",
        list(picture),
    )
    sync_now(page)
    expect(page.locator("#problems li")).to_have_count(2)
    kept = "() => import('./js/store.js').then(async s => (await s.photos()).map(p => [p.sha256, p.state]))"
    ((digest, state),) = page.evaluate(kept)
    assert state == "pending"
    assert stored_photo(page, digest)[:2] == picture[:2] == b"\xff\xd8"  # a JPEG, as stored
    assert blob_rows(web, digest) == (0, 0)  # nobody names it: not uploaded
    for _ in range(2):
        page.locator("#problems li").first.get_by_role("button", name="Dismiss").click()
    expect(page.locator("#problems li")).to_have_count(0)
    sync_now(page)
    assert page.evaluate(kept) == []
    expect(page.get_by_role("status")).to_contain_text("0 waiting")


def test_a_pushed_note_stays_shown_and_takes_photos_until_the_pull_brings_it_back(
    context: tuple[BrowserContext, Recorded], web: Web, tmp_path: Path
) -> None:
    ctx, _ = context
    who = "p-ayse-yilmaz"
    page = open_app(ctx, web, who)
    in_language(page, "en")
    page.route("**/sync/pull*", lambda route: route.abort())  # pushes arrive, pulls never answer
    before = last_synced(page)
    write_note(page, "Pushed, not pulled back yet", visit="d1-g3-cascina-roccafranca")
    nothing_waiting(page)
    assert [n["body"] for n in web.notes(who).values()] == ["Pushed, not pulled back yet"]
    shown = page.locator("li.note", has_text="Pushed, not pulled back yet")
    expect(shown).to_have_count(1)
    expect(shown).not_to_contain_text("waiting to sync")
    page.get_by_role("button", name="Edit note: Pushed, not pulled").click()
    picture = add_photo(page, photo_file(tmp_path, "p.jpg", jpeg(71)))
    page.get_by_role("button", name="Save").click()
    page.unroute("**/sync/pull*")
    sync_now(page)
    pushed_since(page, before)
    (note,) = web.notes(who).values()
    assert [a["sha256"] for a in note["attachments"]] == [sha(picture)]
    assert page.evaluate("() => import('./js/store.js').then(s => s.getMeta('acked'))") is None
    expect(page.locator("li.note")).to_have_count(1)
