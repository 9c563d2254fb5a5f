"""The field app's photos on a phone's uplink: a camera's photo is stored and uploaded at most 1600 px on its
long side, a small one as it is, and notes reach the server while their photos are still on the way."""

import io
import random
from pathlib import Path

from PIL import Image
from playwright.sync_api import BrowserContext, Route, expect

from tests.browser_app import Recorded, Web, in_language, last_synced, open_app, write_note
from tests.test_web_notes import add_photo, blob_bytes, jpeg, photo_file, sha

ORIENTATION = 0x0112  # EXIF: how the camera was held


def camera_jpeg(seed: int, size: tuple[int, int], quality: int, orientation: int = 1) -> bytes:
    """A JPEG like a camera's: smooth shapes with a fine grain, and the EXIF orientation it was held in."""
    rng = random.Random(seed)
    width, height = size
    coarse = Image.frombytes("RGB", (width // 40, height // 40), rng.randbytes((width // 40) * (height // 40) * 3))
    grain = Image.effect_noise(size, 24).convert("RGB")
    image = Image.blend(coarse.resize(size, Image.Resampling.BICUBIC), grain, 0.2)
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality, exif=exif.tobytes())
    return out.getvalue()


def test_a_cameras_photo_is_uploaded_at_1600_px_upright_and_a_small_one_byte_for_byte(
    context: tuple[BrowserContext, Recorded], web: Web, tmp_path: Path
) -> None:
    ctx, _ = context
    who = "p-aicha-diallo"
    # 4000 × 3000 as the sensor saw it, held upright (EXIF orientation 6: turn 90° clockwise to show).
    camera = camera_jpeg(1, (4000, 3000), 92, orientation=6)
    small = camera_jpeg(2, (800, 600), 70)
    assert len(camera) > 2_000_000
    page = open_app(ctx, web, who)
    in_language(page, "en")
    page.get_by_role("link", name="Notes", exact=True).click()
    page.get_by_role("button", name="New note").click()
    page.get_by_role("textbox", name="Note").fill("Two photos: the workshop, the sign")
    shrunk = add_photo(page, photo_file(tmp_path, "workshop.jpg", camera))
    kept = add_photo(page, photo_file(tmp_path, "sign.jpg", small))
    page.get_by_role("button", name="Save").click()
    page.wait_for_function("() => document.getElementById('status').dataset.waiting === '0'", timeout=30_000)

    (note,) = web.notes(who).values()
    assert [(a["sha256"], a["bytes"], a["media_type"], a["status"]) for a in note["attachments"]] == [
        (sha(shrunk), len(shrunk), "image/jpeg", "available"),
        (sha(small), len(small), "image/jpeg", "available"),
    ]
    # The server holds what the phone stored: the large one turned upright, 1600 px on its long side,
    # without the EXIF that said how to turn it (nor anything else EXIF carries), in a fraction of the bytes.
    uploaded = blob_bytes(web, who, sha(shrunk))
    assert uploaded == shrunk
    with Image.open(io.BytesIO(uploaded)) as image:
        assert (image.format, image.size) == ("JPEG", (1200, 1600))
        assert image.getexif().get(ORIENTATION, 1) == 1
    assert len(uploaded) < len(camera) / 5
    # The small one, already at most 1600 px and smaller than a re-encoding, goes as it was taken.
    assert kept == small
    assert blob_bytes(web, who, sha(small)) == small


def test_notes_written_offline_reach_the_server_while_their_photo_is_still_uploading(
    context: tuple[BrowserContext, Recorded], web: Web, tmp_path: Path
) -> None:
    ctx, _ = context
    who = "p-wanjiru-kamau"
    page = open_app(ctx, web, who)
    in_language(page, "en")
    ctx.set_offline(True)
    write_note(page, "Offline one, with a photo", visit="d1-g1-casa-quartiere-san-salvario")
    page.get_by_role("button", name="Edit note: Offline one").click()
    photo = add_photo(page, photo_file(tmp_path, "p.jpg", jpeg(3)))
    page.get_by_role("button", name="Save").click()
    write_note(page, "Offline two", visit="d1-g1-casa-quartiere-san-salvario")
    write_note(page, "Offline three")
    # Every photo upload is held here until the notes are seen on the server.
    held: list[Route] = []
    page.route("**/blobs/*", lambda route: held.append(route) if route.request.method == "PUT" else route.continue_())
    before = last_synced(page)
    ctx.set_offline(False)
    page.evaluate("window.dispatchEvent(new Event('online'))")
    for _ in range(200):  # Playwright calls let the route handler run
        if held:
            break
        page.wait_for_timeout(100)
    assert len(held) == 1
    notes = web.notes(who)
    assert sorted(n["body"] for n in notes.values()) == ["Offline one, with a photo", "Offline three", "Offline two"]
    (with_photo,) = [n for n in notes.values() if n["attachments"]]
    assert [(a["sha256"], a["status"]) for a in with_photo["attachments"]] == [(sha(photo), "pending")]
    expect(page.get_by_role("status")).to_contain_text("1 waiting")
    assert last_synced(page) == before  # the sync is still on the photo
    held[0].continue_()
    page.wait_for_function("() => document.getElementById('status').dataset.waiting === '0'")
    (with_photo,) = [n for n in web.notes(who).values() if n["attachments"]]
    assert with_photo["attachments"][0]["status"] == "available"
    assert blob_bytes(web, who, sha(photo)) == photo
