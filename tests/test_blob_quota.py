"""Storage quotas per account and per event, refused parts that keep nothing, and purging unreferenced blobs.

Real database and data directory (on PostgreSQL, also with the photos in the database); the app
in-process with small quotas so that tests stay small.
"""

import hashlib
import io
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import EVENT_ID, Seeded, make_app
from litestar import Litestar
from litestar.testing import TestClient
from PIL import Image
from sync_helpers import PROBLEM, note_put, push, scalar, uid

from tests.sync_helpers import rows

pytestmark = pytest.mark.both_backends  # CI runs it on SQLite, then on PostgreSQL

BLOBS = f"/api/v1/events/{EVENT_ID}/blobs"
ALICE, BOB, CAROL, DAVID = "p-nguyen-thi-hoa", "p-aicha-diallo", "p-fatima-zahra-amrani", "org-marta"
PER_ACCOUNT, PER_EVENT, PER_BLOB = 20_000, 45_000, 15_000

Client = TestClient[Litestar]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def photo(size: int, seed: int) -> bytes:
    """A real JPEG padded after its end marker to exactly ``size`` bytes."""
    out = io.BytesIO()
    Image.frombytes("RGB", (16, 16), random.Random(seed).randbytes(768)).save(out, "JPEG")
    data = out.getvalue()
    return data + random.Random(seed).randbytes(size - len(data))


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def api(seeded: Seeded, data_dir: Path, blob_store: str) -> Iterator[Client]:
    settings = {"max_account_blob_bytes": PER_ACCOUNT, "max_event_blob_bytes": PER_EVENT, "max_blob_bytes": PER_BLOB}
    with TestClient(app=make_app(seeded, data_dir=data_dir, blob_store=blob_store, **settings)) as client:
        yield client


def auth(seeded: Seeded, account: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {seeded.accounts[account].token}"}


def whole(api: Client, headers: dict[str, str], data: bytes, *, chunked: bool = False) -> httpx.Response:
    body: Any = iter([data[i : i + 1000] for i in range(0, len(data), 1000)]) if chunked else data
    return api.put(f"{BLOBS}/{sha(data)}", content=body, headers=headers)


def part(api: Client, headers: dict[str, str], data: bytes, first: int, last: int, body: Any = None) -> httpx.Response:
    content_range = {"Content-Range": f"bytes {first}-{last}/{len(data)}"}
    content = data[first : last + 1] if body is None else body
    return api.put(f"{BLOBS}/{sha(data)}", content=content, headers=headers | content_range)


def offset(api: Client, headers: dict[str, str], data: bytes) -> int:
    return int(api.head(f"{BLOBS}/{sha(data)}", headers=headers).headers["upload-offset"])


def problem(response: httpx.Response) -> tuple[int, str]:
    assert response.headers["content-type"].startswith("application/problem+json")
    return response.status_code, response.json()["type"].removeprefix(PROBLEM)


def stored(seeded: Seeded, data_dir: Path, blob_store: str) -> list[str]:
    """What the blob store holds: the data directory's files, or the database store's rows."""
    if blob_store == "directory":
        return sorted(p.relative_to(data_dir).as_posix() for p in data_dir.rglob("*") if p.is_file())
    held = rows(seeded, "SELECT sha256, start, octet_length(data) FROM blob_chunks")
    held += rows(seeded, "SELECT account_id, sha256, total, acked FROM blob_uploads")
    held += rows(seeded, "SELECT upload_id, start, octet_length(data) FROM upload_chunks")
    return sorted(map(str, held))


def held_blobs(seeded: Seeded, data_dir: Path, blob_store: str) -> set[str]:
    """The hashes of the complete blobs the store holds bytes of."""
    if blob_store == "directory":
        return {p.name for p in (data_dir / "blobs").rglob("*") if p.is_file()}
    return {r[0] for r in rows(seeded, "SELECT DISTINCT sha256 FROM blob_chunks")}


# --- a refused part keeps nothing -----------------------------------------------------------


def test_a_part_refused_for_a_body_longer_than_its_range_keeps_none_of_its_bytes(api: Client, seeded: Seeded) -> None:
    data = photo(6000, seed=1)
    headers = auth(seeded, ALICE)
    assert part(api, headers, data, 0, 999).status_code == 308
    # No Content-Length (chunked): the server finds out while reading, after writing some of it.
    too_long = iter([data[1000:1600], data[1600:2500]])
    refused = part(api, headers, data, 1000, 1999, body=too_long)
    assert problem(refused) == (400, "bad-request")
    assert offset(api, headers, data) == 1000
    assert part(api, headers, data, 1000, len(data) - 1).status_code == 201


# --- quotas ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "how",
    ["whole-content-length", "whole-chunked", "resumable-first-part", "resumable-later-part"],
)
def test_an_upload_past_the_accounts_quota_is_a_507_and_keeps_nothing(
    api: Client, seeded: Seeded, data_dir: Path, blob_store: str, how: str
) -> None:
    headers = auth(seeded, ALICE)
    held, data = photo(12_000, seed=2), photo(9_000, seed=3)  # 12,000 + 9,000 > 20,000
    if how == "resumable-later-part":
        # The room shrank since the upload began: another upload landed meanwhile.
        assert part(api, headers, data, 0, 999).status_code == 308
    assert whole(api, headers, held).status_code == 201
    before = stored(seeded, data_dir, blob_store)
    if how == "resumable-later-part":
        response = part(api, headers, data, 1000, 8999)
    elif how == "whole-content-length":
        response = whole(api, headers, data)
    elif how == "whole-chunked":
        response = whole(api, headers, data, chunked=True)
    else:
        response = part(api, headers, data, 0, 999)
    assert problem(response) == (507, "storage-quota-exceeded")
    assert "do not fit" in response.json()["detail"] or "does not fit" in response.json()["detail"]
    assert stored(seeded, data_dir, blob_store) == before
    assert offset(api, headers, data) == (1000 if how == "resumable-later-part" else 0)


def test_the_events_quota_counts_every_accounts_uploads(api: Client, seeded: Seeded) -> None:
    for n, account in enumerate((ALICE, BOB, CAROL)):
        assert whole(api, auth(seeded, account), photo(14_000, seed=10 + n)).status_code == 201
    # DAVID has uploaded nothing: the event's 45,000 bytes hold 42,000 already.
    response = whole(api, auth(seeded, DAVID), photo(4_000, seed=20))
    assert problem(response) == (507, "storage-quota-exceeded")
    assert whole(api, auth(seeded, DAVID), photo(2_000, seed=21)).status_code == 201


def test_the_same_bytes_count_for_every_account_that_uploads_them(api: Client, seeded: Seeded) -> None:
    """Stored once, counted for each: otherwise a quota answer would tell who holds which photo."""
    shared = photo(12_000, seed=30)
    assert whole(api, auth(seeded, ALICE), shared).status_code == 201
    assert whole(api, auth(seeded, BOB), shared).status_code == 201
    assert problem(whole(api, auth(seeded, BOB), photo(9_000, seed=31))) == (507, "storage-quota-exceeded")


def test_one_blob_over_the_size_limit_is_a_413_not_a_507(api: Client, seeded: Seeded) -> None:
    response = whole(api, auth(seeded, ALICE), photo(PER_BLOB + 1, seed=40))
    assert problem(response) == (413, "payload-too-large")


def test_unfinished_uploads_count_against_the_quota(api: Client, seeded: Seeded) -> None:
    headers = auth(seeded, ALICE)
    first = photo(14_000, seed=50)
    assert part(api, headers, first, 0, 11_999).status_code == 308  # 12,000 bytes held
    assert problem(part(api, headers, photo(9_000, seed=51), 0, 999)) == (507, "storage-quota-exceeded")
    assert part(api, headers, first, 12_000, 13_999).status_code == 201  # its own upload goes on


# --- purging what no note references ----------------------------------------------------------


def backdate(seeded: Seeded, days: float) -> None:
    """Make every recorded upload this many days old, as if the test had waited."""
    database = seeded.store()
    with database.write() as tx:
        stamp = f"2000-01-{1 + int(days):02d}T00:00:00.000000Z"
        tx.execute("UPDATE blob_owners SET created_at = ?", (stamp,))
        tx.execute("UPDATE blobs SET created_at = ?", (stamp,))
    database.close()


def purge(seeded: Seeded, data_dir: Path, blob_store: str) -> str:
    command = [sys.executable, "-m", "server.cli", "db", "purge-uploads", "--data-dir", str(data_dir)]
    command += ["--blob-store", blob_store]
    command += ["--older-than-hours", "48"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("STUDYVISIT_")} | seeded.env()
    return subprocess.run(command, capture_output=True, text=True, check=True, env=env).stdout


def test_purge_removes_uploads_no_live_note_of_their_uploader_references(
    api: Client, seeded: Seeded, data_dir: Path, blob_store: str
) -> None:
    alice, bob = auth(seeded, ALICE), auth(seeded, BOB)
    kept, orphan, deleted, theirs = (photo(3_000, seed=60 + n) for n in range(4))
    for data in (kept, orphan, deleted, theirs):
        assert whole(api, alice, data).status_code == 201
    assert whole(api, bob, theirs).status_code == 201

    def note(headers: dict[str, str], n: int, data: bytes, mutation: int) -> None:
        attachment = {"sha256": sha(data), "media_type": "image/jpeg", "bytes": len(data)}
        result = push(
            api, headers, [note_put(mutation, uid(n), body="Sala, Via Madama Cristina", attachments=[attachment])]
        )
        assert result["results"][0]["status"] == "applied"

    note(alice, 1, kept, 1)
    note(alice, 2, deleted, 2)
    note(bob, 3, theirs, 1)
    push(api, alice, [{"id": 3, "type": "note.delete", "args": {"id": uid(2), "base_version": 1}}])
    backdate(seeded, days=3)
    fresh = photo(3_000, seed=70)  # uploaded just now: within the grace period, whatever references it
    assert whole(api, alice, fresh).status_code == 201

    out = purge(seeded, data_dir, blob_store)
    assert "2 unreferenced blob(s)" in out
    owners = {(r[0], r[1]) for r in rows(seeded, "SELECT account_id, sha256 FROM blob_owners")}
    assert owners == {(ALICE, sha(kept)), (BOB, sha(theirs)), (ALICE, sha(fresh))}
    assert held_blobs(seeded, data_dir, blob_store) == {sha(kept), sha(theirs), sha(fresh)}
    assert scalar(seeded, "SELECT COUNT(*) FROM blobs") == 3
    # The quota is freed, and the bytes may come back.
    assert whole(api, alice, orphan).status_code == 201
    assert api.get(f"{BLOBS}/{sha(kept)}", headers=alice).content == kept
