"""``python -m bench.field_app [--smoke] [--runs N] [--notes N] [--photos N] [--out PATH]``: the field app on a
slow phone network, beside the server's plain JSON endpoints on the same network.

Debian's Chromium (headless, through Playwright) against ``studyvisit serve`` with the Turin demo event,
with Chromium's own network emulation (DevTools ``Network.emulateNetworkConditions``: 150 ms latency,
1.6 Mbit/s down, 750 kbit/s up) on every measured page:

* first visit: the invitation link opened in a fresh browser, until the itinerary is on screen;
* offline reload: the same page reloaded with the network off, until the itinerary is on screen
  (the server's access log must show no request meanwhile);
* the app shell's bytes, raw and gzipped, and what the first visit moved over the network;
* a day offline: N notes (and photos like a phone camera's, 4000 x 3000 JPEGs of a few MB, through
  ``model.addPhoto``, which shrinks them) written offline, then the network back: until the server
  holds every note, until it holds every photo, and until the app says all is synced; the server
  must then hold each note exactly once.

Beside each, the same over the JSON API from a page of the server's origin: GET the itinerary from a
blank page, the first sync's requests (me, pull, itinerary) by ``fetch``, a 304 revalidation, and the
same notes as one JSON push (and the photos, resized as the app does, as whole PUTs). Medians over ``--runs``.
"""

import argparse
import base64
import gzip
import hashlib
import io
import json
import os
import random
import shlex
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import msgspec
from PIL import Image
from playwright.sync_api import Browser, BrowserContext, CDPSession, Page, sync_playwright

from bench.corpus import note_body
from bench.dataset import Dataset, load_turin
from bench.measure import Photo
from bench.run import server_version
from bench.servers import studyvisit_server
from server.routes.app import shell_files, web_root

DEFAULT_OUT = Path("bench/out/field_app.json")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
# A slow mobile network, as DevTools' presets describe one: latency in ms, throughput in bytes/s.
NETWORK = {"latency": 150, "downloadThroughput": 1.6e6 / 8, "uploadThroughput": 750e3 / 8}
TARGETS_S = {"first_visit": 3.0, "offline_reload": 1.0, "day_offline_sync": 10.0}
CAMERA = (4000, 3000)  # a phone camera's 12 MP photo; the app stores and sends it at most 1600 px long
SHRUNK_SIDE, SHRUNK_QUALITY = 1600, 82  # web/js/model.js shrunk(), for the plain JSON client's photos
TIMEOUT_MS = 120_000

# Set on every page before its scripts run: when the first itinerary row is in the document (ms since
# the navigation started), so the figure is the page's own clock, not the test driver's polling.
VISIBLE_STAMP = """(() => {
  const mark = () => { if (!window.__itineraryVisible && document.querySelector('li.visit')) {
    window.__itineraryVisible = performance.now(); observer.disconnect(); } };
  const observer = new MutationObserver(mark);
  observer.observe(document, {childList: true, subtree: true});
})();"""

SYNCED = """before => { const s = document.getElementById('status');
  return s && s.dataset.syncing === 'false' && s.dataset.waiting === '0' && s.dataset.lastSynced
         && s.dataset.lastSynced !== before; }"""

# In the page, offline: the notes through the app's own model (as the Notes screen saves them); then
# ATTACH_OFFLINE for each photo, on one of the notes: the attachment the app made of it (shrunk).
WRITE_OFFLINE = """async ({notes, photos}) => {
  const model = await import('/app/js/model.js');
  if (photos && typeof model.addPhoto !== 'function') throw new Error('model.addPhoto missing');
  const ids = [];
  for (const note of notes) ids.push(await model.saveNote(note));
  return ids;
}"""
ATTACH_OFFLINE = """async ([id, photo, n]) => {
  const model = await import('/app/js/model.js');
  const bytes = Uint8Array.from(atob(photo), c => c.charCodeAt(0));
  return model.addPhoto(id, new File([bytes], `photo-${n}.jpg`, {type: 'image/jpeg'}));
}"""

# From a page of the server's origin: fetches in sequence, each read to its end; ms for each.
FETCHES = """async requests => {
  const times = [];
  for (const [path, init] of requests) {
    const started = performance.now();
    const response = await fetch(path, {...init, cache: 'no-store'});
    const body = await response.arrayBuffer();
    times.push({path, status: response.status, bytes: body.byteLength, ms: performance.now() - started});
  }
  return times;
}"""


class BenchError(Exception):
    """The benchmark could not measure what it set out to (the message says what is missing)."""


@dataclass(frozen=True)
class Config:
    runs: int
    notes: int
    photos: int
    smoke: bool


class Phone:
    """A browser context as a fresh phone: 360 px wide, in Rome, with the emulated network on its pages."""

    def __init__(self, browser: Browser, *, service_worker: bool = True, headers: dict[str, str] | None = None) -> None:
        self.context: BrowserContext = browser.new_context(
            viewport={"width": 360, "height": 740},
            locale="en-GB",
            timezone_id="Europe/Rome",
            service_workers="allow" if service_worker else "block",
            extra_http_headers=headers or {},
        )
        self.context.add_init_script(VISIBLE_STAMP)
        self.page: Page = self.context.new_page()
        self.cdp: CDPSession = self.context.new_cdp_session(self.page)
        self.cdp.send("Network.enable")
        self.bytes_in = 0
        self.requests = 0
        self.cdp.on("Network.loadingFinished", self._finished)
        self.network(online=True)

    def _finished(self, event: dict[str, Any]) -> None:
        self.bytes_in += int(event.get("encodedDataLength", 0))
        self.requests += 1

    def network(self, *, online: bool) -> None:
        self.cdp.send("Network.emulateNetworkConditions", {"offline": not online, **NETWORK})

    def visible_ms(self) -> float:
        self.page.wait_for_function("() => window.__itineraryVisible", timeout=TIMEOUT_MS)
        return float(self.page.evaluate("window.__itineraryVisible"))

    def close(self) -> None:
        self.context.close()


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def camera_photos(count: int, seed: int) -> tuple[Photo, ...]:
    """``count`` JPEGs like a phone camera's (CAMERA px, quality 92, a few MB): smooth shapes and a fine grain."""
    rng = random.Random(seed)
    width, height = CAMERA
    photos = []
    for _ in range(count):
        coarse = Image.frombytes("RGB", (width // 40, height // 40), rng.randbytes((width // 40) * (height // 40) * 3))
        grain = Image.effect_noise(CAMERA, 24).convert("RGB")
        image = Image.blend(coarse.resize(CAMERA, Image.Resampling.BICUBIC), grain, 0.2)
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=92)
        data = buffer.getvalue()
        photos.append(Photo(sha256=hashlib.sha256(data).hexdigest(), data=data))
    return tuple(photos)


def shrunk(photo: Photo) -> bytes:
    """The photo as the app sends it (at most SHRUNK_SIDE px long, JPEG SHRUNK_QUALITY), for the JSON client."""
    with Image.open(io.BytesIO(photo.data)) as image:
        image.thumbnail((SHRUNK_SIDE, SHRUNK_SIDE), Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=SHRUNK_QUALITY)
    return buffer.getvalue()


def participants(dataset: Dataset) -> list[Any]:
    return [a for a in dataset.accounts if a.role == "participant" and a.group_id]


def server_notes(url: str, event_id: str, token: str) -> list[dict[str, Any]]:
    """The account's live notes as the server has them (a full pull, outside the emulated network)."""
    headers = {"Authorization": f"Bearer {token}"}
    notes: list[dict[str, Any]] = []
    cursor = ""
    while True:
        page = httpx.get(f"{url}/api/v1/events/{event_id}/sync/pull", params={"cursor": cursor}, headers=headers)
        page.raise_for_status()
        data = page.json()
        notes += [c["data"] for c in data["changes"] if c["entity"] == "note" and c["op"] == "put"]
        cursor = data["cursor"]
        if not data["has_more"]:
            return notes


# The server writes its access log in batches, up to 0.2 s late (server/observability.py): a count is
# only true once the log has been still for longer than that.
LOG_STILL_S = 0.5


def log_lines(path: Path) -> int:
    """The access log's line count once it has stopped growing: nothing in flight is counted later."""
    count = len(path.read_bytes().splitlines())
    while True:
        time.sleep(LOG_STILL_S)
        now = len(path.read_bytes().splitlines())
        if now == count:
            return count
        count = now


def shell_bytes(url: str) -> dict[str, Any]:
    """Every file the service worker caches, as the server sends it, raw and gzipped (level 6 and 9)."""
    raw = gz6 = gz9 = 0
    files = [*shell_files(web_root()), "sw.js"]
    for name in files:
        body = httpx.get(f"{url}/app/{name}").raise_for_status().content
        raw += len(body)
        gz6 += len(gzip.compress(body, 6))
        gz9 += len(gzip.compress(body, 9))
    sent_gzip = httpx.get(f"{url}/app/js/main.js", headers={"Accept-Encoding": "gzip"}).headers.get("content-encoding")
    return {"files": len(files), "raw": raw, "gzip6": gz6, "gzip9": gz9, "server_gzips_shell": sent_gzip == "gzip"}


def json_bytes(url: str, event_id: str, token: str) -> dict[str, Any]:
    """What a first sync downloads from the JSON API (me, every pull page, itinerary), raw and gzipped."""
    auth = {"Authorization": f"Bearer {token}"}
    api = f"{url}/api/v1"
    totals = {"raw": 0, "gzip": 0}
    for coding, key in (("identity", "raw"), ("gzip", "gzip")):
        with httpx.Client(headers={**auth, "Accept-Encoding": coding}) as client:
            paths = [f"{api}/me", f"{api}/events/{event_id}/itinerary"]
            for path in paths:
                response = client.get(path).raise_for_status()
                totals[key] += response.num_bytes_downloaded
            cursor = ""
            while True:
                response = client.get(f"{api}/events/{event_id}/sync/pull", params={"cursor": cursor, "limit": 500})
                totals[key] += response.raise_for_status().num_bytes_downloaded
                cursor, more = response.json()["cursor"], response.json()["has_more"]
                if not more:
                    break
    return totals


def day_of_notes(count: int, visits: list[str], seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [
        {
            "visit_id": visits[n % len(visits)],
            "body": note_body(rng, rng.choice(["en", "fr", "ar", "es"])),
            "share_with_organizers": n % 4 == 0,
        }
        for n in range(count)
    ]


def measure_first_visit_and_offline_reload(browser: Browser, url: str, invitation: str, log: Path) -> dict[str, Any]:
    """(a) twice: with the service worker blocked (the page's own requests only) and allowed; then (b)."""
    cold = Phone(browser, service_worker=False)
    try:
        cold.page.goto(invitation, timeout=TIMEOUT_MS)
        no_sw_ms = cold.visible_ms()
        cold.page.wait_for_function(SYNCED, arg="", timeout=TIMEOUT_MS)
        wire = {"bytes": cold.bytes_in, "requests": cold.requests}
    finally:
        cold.close()
    phone = Phone(browser)
    try:
        phone.page.goto(invitation, timeout=TIMEOUT_MS)
        sw_ms = phone.visible_ms()
        phone.page.wait_for_function(SYNCED, arg="", timeout=TIMEOUT_MS)
        phone.page.wait_for_function("() => navigator.serviceWorker.controller !== null", timeout=TIMEOUT_MS)
        phone.network(online=False)
        if phone.page.evaluate("navigator.onLine"):
            raise BenchError("the emulated network did not go offline")
        before = log_lines(log)
        phone.page.reload(timeout=TIMEOUT_MS)
        offline_ms = phone.visible_ms()
        reached = log_lines(log) - before
    finally:
        phone.close()
    return {"no_sw_ms": no_sw_ms, "sw_ms": sw_ms, "offline_ms": offline_ms, "offline_requests": reached, **wire}


def measure_json_reads(browser: Browser, url: str, event_id: str, token: str) -> dict[str, Any]:
    """The JSON counterparts of (a) and (b): GET itinerary from a blank page; me + pull + itinerary; a 304."""
    auth = {"Authorization": f"Bearer {token}"}
    phone = Phone(browser, service_worker=False, headers=auth)
    api = f"/api/v1/events/{event_id}"
    try:
        phone.page.goto(f"{url}{api}/itinerary", timeout=TIMEOUT_MS)  # from about:blank: connection and all
        navigation = phone.page.evaluate("performance.getEntriesByType('navigation')[0].toJSON()")
        get_ms = float(navigation["responseEnd"] - navigation["startTime"])
        etag = httpx.get(f"{url}{api}/itinerary", headers={**auth, "Accept-Encoding": "gzip"}).headers["etag"]
        sync = [["/api/v1/me", {}], [f"{api}/sync/pull?limit=500", {}], [f"{api}/itinerary", {}]]
        first_sync = phone.page.evaluate(FETCHES, sync)
        revalidate = phone.page.evaluate(FETCHES, [[f"{api}/itinerary", {"headers": {"If-None-Match": etag}}]])
    finally:
        phone.close()
    if revalidate[0]["status"] != 304:
        raise BenchError(f"the itinerary's revalidation answered {revalidate[0]['status']}, not 304")
    return {
        "get_itinerary_ms": get_ms,
        "first_sync_ms": sum(r["ms"] for r in first_sync),
        "revalidate_304_ms": revalidate[0]["ms"],
    }


def measure_day_offline(
    browser: Browser, url: str, dataset: Dataset, account: Any, config: Config, seed: int
) -> dict[str, Any]:
    """(d): notes and photos written offline in the app, then the network back: until the server holds every
    note, every photo, and the app says all is synced. Each is timed on its own from the same start, so
    that the notes' figure does not include the photos' upload."""
    visits = dataset.visits_by_group[account.group_id]
    notes = day_of_notes(config.notes, visits, seed)
    photos = camera_photos(config.photos, seed) if config.photos else ()
    phone = Phone(browser)
    try:
        phone.page.goto(f"{url}/app/#t={account.token}", timeout=TIMEOUT_MS)
        phone.page.wait_for_function(SYNCED, arg="", timeout=TIMEOUT_MS)
        phone.network(online=False)
        try:
            ids = phone.page.evaluate(WRITE_OFFLINE, {"notes": notes, "photos": len(photos)})
        except Exception as error:
            if "model.addPhoto missing" in str(error):
                raise BenchError(
                    "model.addPhoto missing: the app cannot attach photos yet (run with --photos 0)"
                ) from error
            raise
        # The attachments as the app made them: the hashes of what it stored, and will upload.
        attached = [
            phone.page.evaluate(ATTACH_OFFLINE, [ids[n], base64.b64encode(p.data).decode(), n])
            for n, p in enumerate(photos)
        ]
        waiting = phone.page.evaluate("import('/app/js/store.js').then(async s => (await s.outbox()).length)")
        before = str(phone.page.get_attribute("#status", "data-last-synced"))
        time.sleep(1.0)  # the change's debounced sync has tried (and failed, offline) by now
        started = time.perf_counter()
        phone.network(online=True)  # the browser fires "online": the app syncs
        notes_s = wait_for_notes(url, dataset.event_id, account.token, set(ids), started)
        photos_s = wait_for_photos(url, dataset.event_id, account.token, {a["sha256"] for a in attached}, started)
        phone.page.wait_for_function(SYNCED, arg=before, timeout=TIMEOUT_MS, polling=50)
        sync_s = time.perf_counter() - started
    finally:
        phone.close()
    held = server_notes(url, dataset.event_id, account.token)
    mine = [n for n in held if n["id"] in set(ids)]
    uploaded = sum(a["bytes"] for a in attached)
    return {
        "notes": len(notes),
        "photos": len(photos),
        "photo_bytes": sum(len(p.data) for p in photos),
        "uploaded_photo_bytes": uploaded,
        # The uplink's own floor for those bytes, before any request, header or round trip.
        "photos_floor_s": uploaded / NETWORK["uploadThroughput"],
        "outbox_before": int(waiting or 0),
        "notes_s": notes_s,
        "photos_s": photos_s,
        "sync_s": sync_s,
        "stored_once": len(mine) == len({n["id"] for n in mine}) == len(notes)
        and sorted(n["body"] for n in mine) == sorted(n["body"] for n in notes),
    }


def wait_for_notes(url: str, event_id: str, token: str, ids: set[str], started: float) -> float:
    """Seconds from ``started`` until the server holds every one of these notes."""
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    held: set[str] = set()
    while time.monotonic() < deadline:
        held = {n["id"] for n in server_notes(url, event_id, token)}
        if ids <= held:
            return time.perf_counter() - started
        time.sleep(0.1)
    raise BenchError(f"the server still lacks {len(ids - held)} of {len(ids)} notes")


def wait_for_photos(url: str, event_id: str, token: str, shas: set[str], started: float) -> float:
    """Seconds from ``started`` until the server lists every photo as available (0 with no photos)."""
    if not shas:
        return 0.0
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    available: set[str] = set()
    while time.monotonic() < deadline:
        available = {
            a["sha256"]
            for n in server_notes(url, event_id, token)
            for a in n.get("attachments", [])
            if a["status"] == "available"
        }
        if shas <= available:
            return time.perf_counter() - started
        time.sleep(0.1)
    raise BenchError(f"the server still lacks {len(shas - available)} of {len(shas)} photos")


def measure_json_push(
    browser: Browser, url: str, dataset: Dataset, account: Any, config: Config, seed: int
) -> dict[str, Any]:
    """The JSON counterpart of (d): the same notes as one push (and like photos, resized as the app does,
    as whole PUTs) by fetch."""
    visits = dataset.visits_by_group[account.group_id]
    notes = day_of_notes(config.notes, visits, seed)
    now = datetime.now(UTC).isoformat()
    mutations = [
        {
            "id": n + 1,
            "type": "note.put",
            "client_time": now,
            "args": {**note, "id": str(uuid.uuid4()), "captured_at": now, "base_version": 0},
        }
        for n, note in enumerate(notes)
    ]
    body = json.dumps({"client_id": str(uuid.uuid4()), "protocol": 1, "mutations": mutations})
    api = f"/api/v1/events/{dataset.event_id}"
    auth = {"Authorization": f"Bearer {account.token}"}
    photos = [
        Photo(sha256=hashlib.sha256(d).hexdigest(), data=d) for d in map(shrunk, camera_photos(config.photos, seed + 1))
    ]
    phone = Phone(browser, service_worker=False)
    try:
        phone.page.goto(f"{url}/health", timeout=TIMEOUT_MS)
        push = phone.page.evaluate(
            FETCHES,
            [
                [
                    f"{api}/sync/push",
                    {"method": "POST", "body": body, "headers": {**auth, "Content-Type": "application/json"}},
                ]
            ],
        )
        uploads: list[dict[str, Any]] = []
        for photo in photos:
            uploads.append(
                phone.page.evaluate(
                    """async ([path, data, auth]) => { const bytes = Uint8Array.from(atob(data), c => c.charCodeAt(0));
                     const started = performance.now();
                     const r = await fetch(path, {method: 'PUT', body: bytes, headers: {...auth, 'Content-Type': 'image/jpeg'}});
                     await r.arrayBuffer(); return {status: r.status, ms: performance.now() - started}; }""",
                    [f"{api}/blobs/{photo.sha256}", base64.b64encode(photo.data).decode(), auth],
                )
            )
    finally:
        phone.close()
    if push[0]["status"] != 200 or any(u["status"] not in (200, 201) for u in uploads):
        raise BenchError(f"the JSON push or an upload failed: {push[0]['status']}, {[u['status'] for u in uploads]}")
    return {"push_ms": push[0]["ms"], "uploads_ms": sum(u["ms"] for u in uploads), "request_bytes": len(body)}


def run(config: Config, workdir: Path, log: Callable[[str], None]) -> dict[str, Any]:
    dataset = load_turin(workdir / "turin.db")
    people = participants(dataset)
    if len(people) < config.runs + 1:
        raise BenchError(f"the demo has {len(people)} participants; {config.runs + 1} are needed")
    reader, writers = people[0], people[1 : config.runs + 1]
    runs: list[dict[str, Any]] = []
    with studyvisit_server(dataset.path, "field") as server, sync_playwright() as playwright:
        if not Path(CHROMIUM).is_file():
            raise BenchError(f"Chromium is missing ({CHROMIUM}): apt-get install chromium")
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            shell = shell_bytes(server.url)
            data = json_bytes(server.url, dataset.event_id, reader.token)
            for n, writer in enumerate(writers):
                log(f"run {n + 1} of {config.runs}")
                invitation = f"{server.url}/app/#t={reader.token}"
                one = measure_first_visit_and_offline_reload(browser, server.url, invitation, server.log_path)
                one |= {
                    "json_" + k: v
                    for k, v in measure_json_reads(browser, server.url, dataset.event_id, reader.token).items()
                }
                one["day"] = measure_day_offline(browser, server.url, dataset, writer, config, seed=n)
                one["json_day"] = measure_json_push(browser, server.url, dataset, writer, config, seed=n)
                runs.append(one)
        finally:
            browser.close()
    return summarise(config, runs, shell, data)


def summarise(
    config: Config, runs: list[dict[str, Any]], shell: dict[str, Any], data: dict[str, Any]
) -> dict[str, Any]:
    def med(pick: Callable[[dict[str, Any]], float]) -> float:
        return median([pick(r) for r in runs])

    first = max(med(lambda r: r["no_sw_ms"]), med(lambda r: r["sw_ms"])) / 1000
    results: dict[str, Any] = {
        "network": {"latency_ms": NETWORK["latency"], "down_kbit_s": 1600, "up_kbit_s": 750},
        "first_visit": {
            "s": first,
            "no_service_worker_s": med(lambda r: r["no_sw_ms"]) / 1000,
            "with_service_worker_s": med(lambda r: r["sw_ms"]) / 1000,
            "bytes_on_wire": med(lambda r: r["bytes"]),
            "requests": med(lambda r: r["requests"]),
            "json_get_itinerary_s": med(lambda r: r["json_get_itinerary_ms"]) / 1000,
            "json_first_sync_s": med(lambda r: r["json_first_sync_ms"]) / 1000,
        },
        "offline_reload": {
            "s": med(lambda r: r["offline_ms"]) / 1000,
            "requests_reaching_server": max(r["offline_requests"] for r in runs),
            "json_revalidate_304_s": med(lambda r: r["json_revalidate_304_ms"]) / 1000,
        },
        "shell": shell,
        "json_first_sync_bytes": data,
        "day_offline": {
            "notes": config.notes,
            "photos": config.photos,
            "photo_bytes": runs[0]["day"]["photo_bytes"],
            "uploaded_photo_bytes": runs[0]["day"]["uploaded_photo_bytes"],
            "photos_floor_s": runs[0]["day"]["photos_floor_s"],
            "s": med(lambda r: r["day"]["sync_s"]),
            "notes_s": med(lambda r: r["day"]["notes_s"]),
            "photos_s": med(lambda r: r["day"]["photos_s"]),
            "outbox_before": runs[0]["day"]["outbox_before"],
            "stored_once": all(r["day"]["stored_once"] for r in runs),
            "json_push_s": med(lambda r: r["json_day"]["push_ms"]) / 1000,
            "json_uploads_s": med(lambda r: r["json_day"]["uploads_ms"]) / 1000,
            "json_push_request_bytes": runs[0]["json_day"]["request_bytes"],
        },
        "runs": runs,
    }
    results["targets"] = [
        {
            "name": "first visit to itinerary visible",
            "value_s": first,
            "goal_s": TARGETS_S["first_visit"],
            "met": first < TARGETS_S["first_visit"],
        },
        {
            "name": "offline reload to itinerary visible",
            "value_s": results["offline_reload"]["s"],
            "goal_s": TARGETS_S["offline_reload"],
            "met": results["offline_reload"]["s"] < TARGETS_S["offline_reload"]
            and results["offline_reload"]["requests_reaching_server"] == 0,
        },
        {
            "name": f"{config.notes} notes on the server after a day offline (beside {config.photos} photos)",
            "value_s": results["day_offline"]["notes_s"],
            "goal_s": TARGETS_S["day_offline_sync"],
            "met": results["day_offline"]["notes_s"] < TARGETS_S["day_offline_sync"]
            and results["day_offline"]["stored_once"],
        },
        {
            "name": f"{config.notes} notes and {config.photos} photos sync after a day offline",
            "value_s": results["day_offline"]["s"],
            "goal_s": TARGETS_S["day_offline_sync"],
            "met": results["day_offline"]["s"] < TARGETS_S["day_offline_sync"]
            and results["day_offline"]["stored_once"],
        },
    ]
    return results


def render(results: dict[str, Any]) -> str:
    f, o, d, s, j = (
        results[k] for k in ("first_visit", "offline_reload", "day_offline", "shell", "json_first_sync_bytes")
    )
    day_label = f"day offline: {d['notes']} notes, {d['photos']} photos, sync"
    lines = [
        "Field app on an emulated network (150 ms, 1.6 Mbit/s down, 750 kbit/s up), medians",
        f"{'figure':<48} {'app':>10} {'plain JSON':>12}",
        f"{'first visit, link to itinerary visible':<48} {f['s']:>9.2f}s {f['json_get_itinerary_s']:>11.2f}s  (GET itinerary)",
        f"{'  without / with the service worker':<48} {f['no_service_worker_s']:>5.2f}/{f['with_service_worker_s']:.2f}s"
        f" {f['json_first_sync_s']:>11.2f}s  (me + pull + itinerary)",
        f"{'offline reload to itinerary visible':<48} {o['s']:>9.2f}s {o['json_revalidate_304_s']:>11.2f}s  (304, online)",
        f"{'app shell, raw / gzip -6 / gzip -9 bytes':<48} {s['raw']:,} / {s['gzip6']:,} / {s['gzip9']:,}"
        f"  ({s['files']} files; served gzipped: {'yes' if s['server_gzips_shell'] else 'no'})",
        f"{'first sync JSON, raw / gzip bytes':<48} {j['raw']:,} / {j['gzip']:,}",
        f"{'first visit, bytes on the wire (requests)':<48} {f['bytes_on_wire']:,.0f} ({f['requests']:.0f})",
        f"{day_label:<48} {d['s']:>9.2f}s {d['json_push_s']:>11.2f}s  (one push; photos {d['json_uploads_s']:.2f}s)",
        f"{'  notes / photos on the server after':<48} {d['notes_s']:.2f}/{d['photos_s']:.2f}s;"
        f" each note stored once: {d['stored_once']}",
        f"{'  photos taken / uploaded bytes':<48} {d['photo_bytes']:,} / {d['uploaded_photo_bytes']:,}"
        f"  (the uplink alone: {d['photos_floor_s']:.1f}s)",
    ]
    lines += [
        f"target: {t['name']}: {t['value_s']:.2f} s (< {t['goal_s']:.0f} s) {'met' if t['met'] else 'NOT met'}"
        for t in results["targets"]
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.field_app", description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="one run, 20 notes: proves the benchmark works")
    parser.add_argument("--runs", type=int, help="runs per figure (default 3; smoke 1)")
    parser.add_argument("--notes", type=int, help="notes written offline (default 200; smoke 20)")
    parser.add_argument(
        "--photos", type=int, default=20, help="photos written offline (default 20; needs model.addPhoto)"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON results (default {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    config = Config(
        runs=args.runs or (1 if args.smoke else 3),
        notes=args.notes if args.notes is not None else (20 if args.smoke else 200),
        photos=args.photos,
        smoke=args.smoke,
    )

    def log(message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    started = time.perf_counter()
    loadavg_before = os.getloadavg()
    try:
        with tempfile.TemporaryDirectory(prefix="studyvisit-field-bench-") as workdir:
            results = run(config, Path(workdir), log)
    except BenchError as error:
        print(f"python -m bench.field_app: {error}", file=sys.stderr)
        return 2
    results["meta"] = {
        "command": shlex.join(["python", "-m", "bench.field_app", *(argv if argv is not None else sys.argv[1:])]),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": server_version(),
        "smoke": config.smoke,
        "runs": config.runs,
        "chromium": CHROMIUM,
        "wall_s": time.perf_counter() - started,
        # Others' work on the machine slows the browser and the server alike: the figures are high by that much.
        "loadavg_before": loadavg_before,
        "loadavg_after": os.getloadavg(),
        "nproc": os.cpu_count(),
        "shell_sha256": hashlib.sha256(
            b"".join((web_root() / (f or "index.html")).read_bytes() for f in shell_files(web_root()))
        ).hexdigest()[:16],
    }
    print(render(results))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(msgspec.json.format(msgspec.json.encode(results), indent=2) + b"\n")
    log(f"wrote {args.out} in {results['meta']['wall_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
