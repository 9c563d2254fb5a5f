"""The organizers' zip of shared notes: exactly the shared notes of the visit, their photos, a CSV index."""

import csv
import hashlib
import io
import random
import re
import struct
import zipfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from conftest import EVENT_ID, Seeded, make_app
from litestar import Litestar
from litestar.testing import TestClient
from PIL import Image
from sync_helpers import G1_VISIT, G2_VISIT, PROBLEM, note_put, push, uid
from sync_helpers import rows as db_rows

from server.services.export import ExportMember, SharedExport, zip_chunks
from server.storage.blobs import CHUNK, BlobFiles

pytestmark = pytest.mark.both_backends  # CI runs it on SQLite, then on PostgreSQL

EXPORT = f"/api/v1/events/{EVENT_ID}/export.zip"
BLOBS = f"/api/v1/events/{EVENT_ID}/blobs"
ALICE = "p-nguyen-thi-hoa"  # G1
BOB = "p-aicha-diallo"  # G1
CAROL = "p-fatima-zahra-amrani"  # G2
ORGANIZER = "org-marta"

Client = TestClient[Litestar]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def photo(seed: int, fmt: str = "JPEG") -> bytes:
    out = io.BytesIO()
    Image.frombytes("RGB", (32, 24), random.Random(seed).randbytes(32 * 24 * 3)).save(out, fmt)
    return out.getvalue()


def auth(seeded: Seeded, account_id: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {seeded.accounts[account_id].token}"}


def attach(data: bytes, media_type: str = "image/jpeg") -> dict[str, Any]:
    return {"sha256": sha(data), "media_type": media_type, "bytes": len(data)}


class World:
    """Notes of three participants on two visits, some shared, some with photos, one photo never uploaded."""

    def __init__(self, client: Client, seeded: Seeded) -> None:
        self.red, self.blue, self.png, self.never = photo(1), photo(2), photo(3, "PNG"), photo(4)
        alice, bob, carol = (auth(seeded, a) for a in (ALICE, BOB, CAROL))
        shared = {"share_with_organizers": True}
        push(
            client,
            alice,
            [
                note_put(
                    1,
                    uid(1),
                    body="Two photos, shared",
                    captured_at="2025-12-10T10:15:00+01:00",
                    attachments=[attach(self.red), attach(self.png, "image/png")],
                    **shared,
                ),
                note_put(2, uid(2), body="Private, with a photo", attachments=[attach(self.blue)]),
                note_put(3, uid(3), body='=HYPERLINK("x") shared, no photo, ünïcödé 東京', **shared),
                note_put(4, uid(4), body="Shared, then deleted", attachments=[attach(self.blue)], **shared),
                {"id": 5, "type": "note.delete", "args": {"id": uid(4), "base_version": 1}},
            ],
        )
        push(
            client,
            bob,
            [
                note_put(
                    1,
                    uid(5),
                    body="Shared, photo not uploaded yet",
                    attachments=[attach(self.never), attach(self.red)],
                    **shared,
                )
            ],
        )
        push(
            client,
            carol,
            [note_put(1, uid(6), visit_id=G2_VISIT, body="Another visit", attachments=[attach(self.blue)], **shared)],
        )
        # Each author uploads the photos of their own notes: a hash alone would leave them pending.
        for headers, data in (
            (alice, self.red),
            (alice, self.blue),
            (alice, self.png),
            (bob, self.red),
            (carol, self.blue),
        ):
            response = client.put(f"{BLOBS}/{sha(data)}", content=data, headers=headers)
            assert response.status_code == 201, response.text


@pytest.fixture
def client(seeded: Seeded, tmp_path: Path, blob_store: str) -> Iterator[TestClient[Litestar]]:
    """The app in-process; on PostgreSQL with its photos in the data directory, then in the database."""
    with TestClient(app=make_app(seeded, data_dir=tmp_path / "data", blob_store=blob_store)) as test_client:
        yield test_client


@pytest.fixture
def world(client: Client, seeded: Seeded) -> World:
    return World(client, seeded)


def read_zip(content: bytes) -> tuple[zipfile.ZipFile, list[dict[str, str]]]:
    archive = zipfile.ZipFile(io.BytesIO(content))
    assert archive.testzip() is None  # every member's CRC checks out
    index = archive.read("index.csv").decode("utf-8-sig")
    return archive, list(csv.DictReader(io.StringIO(index)))


def test_zip_holds_exactly_the_shared_live_notes_of_the_visit_and_their_photos(
    client: Client, seeded: Seeded, world: World
) -> None:
    response = client.get(EXPORT, params={"visit": G1_VISIT}, headers=auth(seeded, ORGANIZER))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/zip"
    assert response.headers["content-disposition"] == f'attachment; filename="{EVENT_ID}-{G1_VISIT}-shared-notes.zip"'
    assert "no-store" in response.headers["cache-control"]
    archive, rows = read_zip(response.content)

    assert [r["note_id"] for r in rows] == [uid(1), uid(3), uid(5)]
    by_id = {r["note_id"]: r for r in rows}
    names = {account.id: account.name for account in seeded.accounts.values()}
    assert by_id[uid(1)]["author_name"] == names[ALICE]
    assert by_id[uid(5)]["author_name"] == names[BOB]
    assert by_id[uid(1)]["body"] == "Two photos, shared"
    # A spreadsheet must not run what a participant typed: cells that look like formulas are quoted.
    assert by_id[uid(3)]["body"] == '\'=HYPERLINK("x") shared, no photo, ünïcödé 東京'
    assert by_id[uid(1)]["created"] == "2025-12-10T10:15:00+01:00"  # when the device captured it
    assert by_id[uid(3)]["created"] == ""  # the device did not say
    assert all(r["updated_at"] for r in rows)

    assert by_id[uid(1)]["attachments"] == f"photos/{uid(1)}-1.jpg; photos/{uid(1)}-2.png"
    assert by_id[uid(3)]["attachments"] == ""
    assert by_id[uid(5)]["attachments"] == f"photos/{uid(5)}-2.jpg"
    assert by_id[uid(5)]["pending"] == sha(world.never)

    assert sorted(archive.namelist()) == sorted(
        ["index.csv", f"photos/{uid(1)}-1.jpg", f"photos/{uid(1)}-2.png", f"photos/{uid(5)}-2.jpg"]
    )
    assert archive.read(f"photos/{uid(1)}-1.jpg") == world.red
    assert archive.read(f"photos/{uid(1)}-2.png") == world.png
    assert archive.read(f"photos/{uid(5)}-2.jpg") == world.red
    assert world.blue not in response.content  # the private note's and the deleted note's photo


def test_zip_without_a_visit_holds_the_shared_notes_of_every_visit(
    client: Client, seeded: Seeded, world: World
) -> None:
    response = client.get(EXPORT, headers=auth(seeded, ORGANIZER))
    archive, rows = read_zip(response.content)
    assert {r["note_id"] for r in rows} == {uid(1), uid(3), uid(5), uid(6)}
    assert archive.read(f"photos/{uid(6)}-1.jpg") == world.blue


def test_zip_of_a_visit_nobody_shared_anything_about_has_only_the_index(client: Client, seeded: Seeded) -> None:
    response = client.get(EXPORT, params={"visit": G1_VISIT}, headers=auth(seeded, ORGANIZER))
    archive, rows = read_zip(response.content)
    assert (archive.namelist(), rows) == (["index.csv"], [])


@pytest.mark.parametrize("account", [ALICE, CAROL, "host-san-salvario"])
def test_zip_is_for_organizers_only(client: Client, seeded: Seeded, world: World, account: str) -> None:
    response = client.get(EXPORT, params={"visit": G1_VISIT}, headers=auth(seeded, account))
    assert response.status_code == 403
    assert response.json()["type"] == PROBLEM + "forbidden"


@pytest.mark.parametrize("visit", ["no-such-visit", "' OR 1=1 --"])
def test_zip_of_an_unknown_visit_is_a_400(client: Client, seeded: Seeded, visit: str) -> None:
    response = client.get(EXPORT, params={"visit": visit}, headers=auth(seeded, ORGANIZER))
    assert response.status_code == 400
    assert response.json()["type"] == PROBLEM + "invalid-query"


def test_zip_is_streamed_in_pieces_never_whole_in_memory(tmp_path: Path) -> None:
    """Three 3 MiB photos: the zip comes out in pieces of about a chunk, as it is written."""
    files = BlobFiles(tmp_path)
    members = []
    for n in range(3):
        data = random.Random(n).randbytes(3 * CHUNK)
        temp = files.new_temp()
        temp.write(data)
        files.install_temp(temp, temp.finish())
        members.append(ExportMember(name=f"photos/{n}.jpg", sha256=sha(data), date_time=(2025, 12, 10, 9, 0, 0)))
    export = SharedExport(filename="x.zip", index=b"note_id\r\n", members=members)
    pieces = list(zip_chunks(files, export))
    assert len(pieces) >= 9
    assert max(map(len, pieces)) <= CHUNK + 4096
    archive = zipfile.ZipFile(io.BytesIO(b"".join(pieces)))
    assert archive.testzip() is None
    assert [archive.read(m.name) for m in members] == [random.Random(n).randbytes(3 * CHUNK) for n in range(3)]


# --- the index names each note's place; dates are the notes' own, in one format --------------

RFC3339_LOCAL = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d$")
ROME = ZoneInfo("Europe/Rome")


def extended_mtime(info: zipfile.ZipInfo) -> int | None:
    """The Unix time of Info-ZIP's extended timestamp field (0x5455), as unzip reads it."""
    extra = info.extra
    while len(extra) >= 4:
        tag, size = struct.unpack("<HH", extra[:4])
        if tag == 0x5455 and extra[4] & 1:
            return int(struct.unpack("<l", extra[5:9])[0])
        extra = extra[4 + size :]
    return None


def test_index_names_the_visit_and_site_of_each_note(client: Client, seeded: Seeded, world: World) -> None:
    site_only = note_put(
        2, uid(7), visit_id=None, site_id="triciclo", body="At the site, no visit", share_with_organizers=True
    )
    assert push(client, auth(seeded, BOB), [site_only])["results"][0]["status"] == "applied"
    _, rows = read_zip(client.get(EXPORT, headers=auth(seeded, ORGANIZER)).content)
    by_id = {r["note_id"]: r for r in rows}
    visits = {r["id"]: (r["title"], r["site_id"]) for r in db_rows(seeded, "SELECT id, title, site_id FROM visits")}
    sites = {r["id"]: r["name"] for r in db_rows(seeded, "SELECT id, name FROM sites")}
    for note_id, visit_id in ((uid(1), G1_VISIT), (uid(5), G1_VISIT), (uid(6), G2_VISIT)):
        title, site_id = visits[visit_id]
        assert site_id is not None
        row = by_id[note_id]
        assert (row["visit_id"], row["visit_title"], row["site_id"], row["site_name"]) == (
            visit_id,
            title,
            site_id,
            sites[site_id],
        )
    row = by_id[uid(7)]
    assert (row["visit_id"], row["visit_title"], row["site_id"], row["site_name"]) == (
        "",
        "",
        "triciclo",
        sites["triciclo"],
    )


def test_every_time_in_the_index_is_rfc3339_to_the_second_in_the_events_zone(
    client: Client, seeded: Seeded, world: World
) -> None:
    _, rows = read_zip(client.get(EXPORT, headers=auth(seeded, ORGANIZER)).content)
    stored = {r["id"]: r["updated_at"] for r in db_rows(seeded, "SELECT id, updated_at FROM notes")}
    for row in rows:
        assert RFC3339_LOCAL.match(row["updated_at"]), row["updated_at"]
        assert row["created"] == "" or RFC3339_LOCAL.match(row["created"]), row["created"]
        updated = datetime.fromisoformat(row["updated_at"])
        assert updated.utcoffset() == updated.astimezone(ROME).utcoffset()  # Turin's offset on that day
        same_instant = datetime.fromisoformat(stored[row["note_id"]]).replace(microsecond=0)
        assert updated == same_instant


@pytest.mark.parametrize(
    ("captured_at", "date_time", "mtime"),
    [
        pytest.param("2025-12-10T10:15:00+01:00", (2025, 12, 10, 10, 15, 0), 1765358100, id="in-turin"),
        pytest.param("2025-12-10T09:15:00Z", (2025, 12, 10, 10, 15, 0), 1765358100, id="sent-in-utc"),
        pytest.param("2150-06-01T12:00:00+02:00", (2107, 12, 31, 23, 59, 58), None, id="after-2107"),
        pytest.param("1975-03-01T12:00:00+01:00", (1980, 1, 1, 0, 0, 0), 162903600, id="before-1980"),
    ],
)
def test_photos_carry_the_notes_capture_date_even_outside_what_zip_dates_can_hold(
    client: Client, seeded: Seeded, captured_at: str, date_time: tuple[int, ...], mtime: int | None
) -> None:
    data = photo(20)
    alice = auth(seeded, ALICE)
    note = note_put(
        1, uid(1), body="dated", captured_at=captured_at, attachments=[attach(data)], share_with_organizers=True
    )
    assert push(client, alice, [note])["results"][0]["status"] == "applied"
    assert client.put(f"{BLOBS}/{sha(data)}", content=data, headers=alice).status_code == 201
    response = client.get(EXPORT, params={"visit": G1_VISIT}, headers=auth(seeded, ORGANIZER))
    assert response.status_code == 200
    archive, rows = read_zip(response.content)
    info = archive.getinfo(f"photos/{uid(1)}-1.jpg")
    # DOS dates step in two seconds; a date ZIP cannot hold is its nearest, and the exact instant
    # travels in the extended timestamp whenever 32 bits can hold it.
    assert info.date_time == date_time
    assert extended_mtime(info) == mtime
    assert archive.read(info) == data
    assert datetime.fromisoformat(rows[0]["created"]) == datetime.fromisoformat(captured_at)
    index = archive.getinfo("index.csv")
    updated = datetime.fromisoformat(rows[0]["updated_at"])
    assert extended_mtime(index) == int(updated.timestamp())  # the index is as new as its newest note
