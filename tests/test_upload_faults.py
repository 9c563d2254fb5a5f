"""Crash safety of uploads: a real server (uvicorn, a real database on either engine, a real blob directory) is killed
with SIGKILL at each named fault point of the upload path (``server/faults.py``), then restarted.

Invariants, whatever the moment of death: no blob is ever served incomplete, every acknowledged
byte (a 308's offset) and upload (a 201) is still there, and every upload can complete afterwards.
"""

import hashlib
import io
import json
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import EVENT_ID, LiveServer, Seeded
from litestar import Litestar
from litestar.testing import TestClient
from PIL import Image
from sync_helpers import PULL_URL, PUSH_URL, note_put, uid

from server.app import create_app
from server.settings import Settings
from server.storage.blobs import BlobFiles, PartialState, UploadOwner

pytestmark = pytest.mark.both_backends  # CI runs it on SQLite, then on PostgreSQL

AUTHOR = "p-nguyen-thi-hoa"
BLOBS = f"/api/v1/events/{EVENT_ID}/blobs"
PART = 100_000


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def photo() -> bytes:
    """A real JPEG of about 300 KB: three parts."""
    out = io.BytesIO()
    Image.frombytes("RGB", (320, 240), random.Random(7).randbytes(320 * 240 * 3)).save(out, "JPEG", quality=95)
    data = out.getvalue()
    return data + random.Random(8).randbytes(max(0, 3 * PART - 1000 - len(data)))


def auth(seeded: Seeded) -> dict[str, str]:
    return {"Authorization": f"Bearer {seeded.accounts[AUTHOR].token}"}


def push_note(server: LiveServer, seeded: Seeded, data: bytes) -> None:
    attachment = {"sha256": sha(data), "media_type": "image/jpeg", "bytes": len(data)}
    body = {
        "client_id": "00000000-0000-4000-8000-0000000000f1",
        "protocol": 1,
        "mutations": [note_put(1, uid(1), body="Cortile della Cavallerizza", attachments=[attachment])],
    }
    response = httpx.post(server.url + PUSH_URL, json=body, headers=auth(seeded), timeout=30)
    assert response.json()["results"][0]["pending_blobs"] == [sha(data)]


def attachment_status(server: LiveServer, seeded: Seeded) -> str:
    page = httpx.get(server.url + PULL_URL, headers=auth(seeded), params={"limit": 5000}, timeout=30).json()
    note = next(c for c in page["changes"] if c["entity"] == "note" and c["id"] == uid(1))
    return str(note["data"]["attachments"][0]["status"])


class Upload:
    """A client's view of one upload: what the server acknowledged before it died."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.acknowledged = 0  # the last 308's Upload-Offset, or the size after a 201/200
        self.completed = False

    def send(self, server: LiveServer, headers: dict[str, str], resumable: bool) -> None:
        """Upload until done or until the server dies under us."""
        url = f"{server.url}{BLOBS}/{sha(self.data)}"
        try:
            if not resumable:
                response = httpx.put(url, content=self.data, headers=headers, timeout=30)
                assert response.status_code == 201, response.text
                self.acknowledged, self.completed = len(self.data), True
                return
            while not self.completed:
                first = self.acknowledged
                last = min(first + PART, len(self.data)) - 1
                content_range = {"Content-Range": f"bytes {first}-{last}/{len(self.data)}"}
                response = httpx.put(
                    url, content=self.data[first : last + 1], headers=headers | content_range, timeout=30
                )
                assert response.status_code in (201, 308), response.text
                self.acknowledged = int(response.headers["upload-offset"])
                self.completed = response.status_code == 201
        except httpx.TransportError:
            return  # the server died mid-request: nothing about this request was acknowledged

    def resume(self, server: LiveServer, headers: dict[str, str]) -> int:
        """What the field client does after a failure: HEAD, then the rest from the server's offset."""
        url = f"{server.url}{BLOBS}/{sha(self.data)}"
        for _ in range(50):
            status = httpx.head(url, headers=headers, timeout=30)
            if status.status_code == 200:
                return 200
            offset = int(status.headers["upload-offset"])
            assert offset < len(self.data), "wedged: every byte acknowledged, yet no blob"
            content_range = {"Content-Range": f"bytes {offset}-{len(self.data) - 1}/{len(self.data)}"}
            response = httpx.put(url, content=self.data[offset:], headers=headers | content_range, timeout=30)
            if response.status_code in (200, 201):
                return response.status_code
            assert response.status_code == 409, response.text  # the dead request's lock, at worst
            time.sleep(0.05)
        raise AssertionError("the upload never completed")


def assert_nothing_incomplete_is_served(server: LiveServer, seeded: Seeded, data: bytes) -> None:
    """A blob is either absent or whole: over HTTP, and under every final name on disk."""
    url = f"{server.url}{BLOBS}/{sha(data)}"
    head = httpx.head(url, headers=auth(seeded), timeout=30)
    got = httpx.get(url, headers=auth(seeded), timeout=30)
    if head.status_code == 200:
        assert got.status_code == 200
        assert got.content == data
    else:
        assert got.status_code == 404
    for path in (seeded.path.parent / "blobs").rglob("*"):
        if path.is_file():
            assert sha(path.read_bytes()) == path.name


SCENARIOS = [
    pytest.param(False, "blob.whole-written", id="whole-killed-after-writing-the-temporary-file"),
    pytest.param(False, "blob.installed", id="whole-killed-between-installing-and-recording"),
    pytest.param(False, "blob.recorded", id="whole-killed-after-recording-before-answering"),
    pytest.param(True, "blob.part-appended:1", id="resumable-killed-before-acknowledging-the-first-part"),
    pytest.param(True, "blob.part-appended:3", id="resumable-killed-before-acknowledging-the-last-part"),
    pytest.param(True, "blob.part-acknowledged:2", id="resumable-killed-after-acknowledging-a-part"),
    pytest.param(True, "blob.part-acknowledged:3", id="resumable-killed-after-acknowledging-the-last-part"),
    pytest.param(True, "blob.installed", id="resumable-killed-between-installing-and-recording"),
    pytest.param(True, "blob.recorded", id="resumable-killed-after-recording-before-answering"),
]


@pytest.mark.parametrize(("resumable", "fault"), SCENARIOS)
def test_an_upload_killed_at_any_step_loses_nothing_acknowledged_and_completes_after_restart(
    seeded: Seeded, photo: bytes, monkeypatch: pytest.MonkeyPatch, resumable: bool, fault: str
) -> None:
    monkeypatch.setenv("STUDYVISIT_FAULT_POINT", fault)
    server = LiveServer(seeded).start()
    upload = Upload(photo)
    try:
        push_note(server, seeded, photo)
        upload.send(server, auth(seeded), resumable)
        assert server.process is not None
        assert server.process.wait(timeout=30) == -9  # killed at the fault point, not finished
    finally:
        server.stop()
    assert not upload.completed

    monkeypatch.delenv("STUDYVISIT_FAULT_POINT")
    server = LiveServer(seeded).start()
    try:
        assert_nothing_incomplete_is_served(server, seeded, photo)
        head = httpx.head(f"{server.url}{BLOBS}/{sha(photo)}", headers=auth(seeded), timeout=30)
        if head.status_code != 200:
            assert int(head.headers["upload-offset"]) >= upload.acknowledged  # no acknowledged byte lost
        if fault.startswith(("blob.installed", "blob.recorded", "blob.part-acknowledged:3")) and resumable:
            assert head.status_code == 200  # every byte had arrived: finished at start-up, nothing to resend
        assert upload.resume(server, auth(seeded)) in (200, 201)
        assert_nothing_incomplete_is_served(server, seeded, photo)
        assert httpx.get(f"{server.url}{BLOBS}/{sha(photo)}", headers=auth(seeded), timeout=30).content == photo
        assert attachment_status(server, seeded) == "available"
        assert not [p for p in (seeded.path.parent / "partial").rglob("*") if p.is_file()]
    finally:
        server.stop()


# --- the wedge of the issue, repaired on HEAD without a restart -------------------------------


@pytest.fixture
def api(seeded: Seeded, tmp_path: Path) -> Iterator[TestClient[Litestar]]:
    settings = Settings.from_env(**{**seeded.settings(), "data_dir": tmp_path / "data"})
    with TestClient(app=create_app(settings)) as client:
        yield client


def test_an_upload_installed_but_not_recorded_is_finished_by_the_next_head(
    api: TestClient[Litestar], seeded: Seeded, tmp_path: Path, photo: bytes
) -> None:
    """The state a SIGKILL between rename and insert leaves: the file in place, the sidecar at its total, no row."""
    headers, digest = auth(seeded), sha(photo)
    first = {"Content-Range": f"bytes 0-{PART - 1}/{len(photo)}"}
    assert api.put(f"{BLOBS}/{digest}", content=photo[:PART], headers=headers | first).status_code == 308
    files, owner = BlobFiles(tmp_path / "data"), UploadOwner(EVENT_ID, AUTHOR)
    with files.partial_path(owner, digest).open("ab") as partial:
        partial.write(photo[PART:])
    state = PartialState(total=len(photo), offset=len(photo), event_id=EVENT_ID, account_id=AUTHOR)
    files.sidecar_path(owner, digest).write_text(json.dumps({f: getattr(state, f) for f in state.__struct_fields__}))
    files.install(files.partial_path(owner, digest), digest)

    status = api.head(f"{BLOBS}/{digest}", headers=headers)
    assert (status.status_code, status.headers["upload-offset"]) == (200, str(len(photo)))
    assert not files.sidecar_path(owner, digest).exists()
    rest: dict[str, Any] = {"Content-Range": f"bytes {PART}-{len(photo) - 1}/{len(photo)}"}
    assert api.put(f"{BLOBS}/{digest}", content=photo[PART:], headers=headers | rest).status_code == 200
