"""Photos of notes: content-addressed uploads (whole and resumable), who may fetch them, ranges, previews.

Real SQLite files and real files on disk: the data directory is the test's own, inspected directly.
"""

import hashlib
import io
import itertools
import random
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import EVENT_ID, LiveServer, Seeded, make_app
from litestar import Litestar
from litestar.testing import TestClient
from PIL import ExifTags, Image
from sync_helpers import PROBLEM, note_put, pull, pull_all, push, rows, scalar, uid

from server.storage.blobs import BlobFiles, PartialState, UploadOwner, sniff_media_type

MIB = 1024 * 1024
BLOBS = f"/api/v1/events/{EVENT_ID}/blobs"
AUTHOR = "p-nguyen-thi-hoa"
OTHER_PARTICIPANT = "p-aicha-diallo"
HOST = "host-san-salvario"
ORGANIZER = "org-marta"

OWNER = UploadOwner(EVENT_ID, AUTHOR)

Client = TestClient[Litestar]


# --- test data ----------------------------------------------------------------------------


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def jpeg(width: int = 64, height: int = 48, seed: int = 0, quality: int = 90, **save: Any) -> bytes:
    """A real JPEG of seeded noise: every seed gives other bytes, hence another blob."""
    pixels = random.Random(seed).randbytes(width * height * 3)
    out = io.BytesIO()
    Image.frombytes("RGB", (width, height), pixels).save(out, "JPEG", quality=quality, **save)
    return out.getvalue()


@pytest.fixture(scope="session")
def photo() -> bytes:
    """5 MiB that a phone might send: a real 2000 x 1500 noisy JPEG, padded after its end marker."""
    data = jpeg(2000, 1500, seed=5, quality=95)
    assert len(data) < 5 * MIB
    return data + random.Random(6).randbytes(5 * MIB - len(data))


def png(seed: int = 0) -> bytes:
    out = io.BytesIO()
    Image.frombytes("RGB", (8, 8), random.Random(seed).randbytes(192)).save(out, "PNG")
    return out.getvalue()


def webp(seed: int = 0) -> bytes:
    out = io.BytesIO()
    Image.frombytes("RGB", (8, 8), random.Random(seed).randbytes(192)).save(out, "WEBP")
    return out.getvalue()


def heic(seed: int = 0) -> bytes:
    # The ISO BMFF header of an iPhone photo; the server sniffs the brand, it does not decode HEIC.
    return b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + random.Random(seed).randbytes(64)


def pdf(seed: int = 0) -> bytes:
    return b"%PDF-1.7\n" + random.Random(seed).randbytes(64) + b"\n%%EOF\n"


# --- clients ------------------------------------------------------------------------------


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def api(seeded: Seeded, data_dir: Path) -> Iterator[Client]:
    """The app in-process, with a data directory of this test's own."""
    with TestClient(app=make_app(seeded, data_dir=data_dir)) as client:
        yield client


def auth(seeded: Seeded, account_id: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {seeded.accounts[account_id].token}"}


def files_on_disk(root: Path) -> list[str]:
    """Every file under the data directory, relative to it."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def upload(client: Client, headers: dict[str, str], data: bytes, expect: int | None = 201) -> httpx.Response:
    response = client.put(f"{BLOBS}/{sha(data)}", content=data, headers=headers)
    if expect is not None:
        assert response.status_code == expect, response.text
    return response


def put_part(
    client: Client, headers: dict[str, str], digest: str, data: bytes, first: int, last: int
) -> httpx.Response:
    content_range = f"bytes {first}-{last}/{len(data)}"
    return client.put(
        f"{BLOBS}/{digest}", content=data[first : last + 1], headers={**headers, "Content-Range": content_range}
    )


def attach(data: bytes, media_type: str = "image/jpeg", caption: str = "") -> dict[str, Any]:
    return {"sha256": sha(data), "media_type": media_type, "bytes": len(data), "caption": caption}


def note_with(
    client: Client, headers: dict[str, str], note: int, *photos: bytes, shared: bool = False, mutation: int = 1
) -> dict[str, Any]:
    """Push a note carrying these photos; returns its mutation result."""
    args = {"body": f"note {note}", "attachments": [attach(p) for p in photos], "share_with_organizers": shared}
    result = push(client, headers, [note_put(mutation, uid(note), **args)])["results"][0]
    assert result["status"] == "applied", result
    return result  # type: ignore[no-any-return]


def problem_type(response: httpx.Response) -> str:
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    return response.json()["type"].removeprefix(PROBLEM)  # type: ignore[no-any-return]


# --- sniffing -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(jpeg(), "image/jpeg", id="jpeg"),
        pytest.param(png(), "image/png", id="png"),
        pytest.param(webp(), "image/webp", id="webp"),
        pytest.param(heic(), "image/heic", id="heic"),
        pytest.param(pdf(), "application/pdf", id="pdf"),
        pytest.param(b"GIF89a" + bytes(20), None, id="gif"),
        pytest.param(b"PK\x03\x04" + bytes(20), None, id="zip"),
        pytest.param(b"\x00\x00\x00\x18ftypavif" + bytes(20), None, id="avif"),
        pytest.param(b"<svg xmlns='http://www.w3.org/2000/svg'/>", None, id="svg"),
        pytest.param(b"\xff\xd8", None, id="truncated-jpeg"),
        pytest.param(b"", None, id="empty"),
    ],
)
def test_media_type_is_read_from_the_magic_bytes(data: bytes, expected: str | None) -> None:
    assert sniff_media_type(data[:16]) == expected


# --- whole uploads ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "media_type"),
    [
        pytest.param(jpeg(seed=1), "image/jpeg", id="jpeg"),
        pytest.param(png(1), "image/png", id="png"),
        pytest.param(webp(1), "image/webp", id="webp"),
        pytest.param(heic(1), "image/heic", id="heic"),
        pytest.param(pdf(1), "application/pdf", id="pdf"),
    ],
)
def test_whole_upload_lands_under_its_hash_after_an_fsynced_rename(
    api: Client, seeded: Seeded, data_dir: Path, data: bytes, media_type: str
) -> None:
    digest = sha(data)
    response = upload(api, auth(seeded, AUTHOR), data)
    assert response.headers["location"] == f"{BLOBS}/{digest}"
    assert response.json() == {
        "sha256": digest,
        "size": len(data),
        "media_type": media_type,
        "created_at": response.json()["created_at"],
    }
    assert files_on_disk(data_dir) == [f"blobs/{digest[:2]}/{digest}"]
    assert (data_dir / "blobs" / digest[:2] / digest).read_bytes() == data
    status = api.head(f"{BLOBS}/{digest}", headers=auth(seeded, AUTHOR))
    assert (status.status_code, status.headers["content-length"]) == (200, str(len(data)))
    assert scalar(seeded, "SELECT media_type FROM blobs WHERE sha256 = ?", digest) == media_type


@pytest.mark.sqlite_only  # a SQLite file named by a sqlite:/// URL
def test_a_sqlite_url_keeps_the_photos_beside_its_file(
    seeded: Seeded, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # where db_path's default, ./data/studyvisit.db, would put them
    settings = {"database_url": f"sqlite:///{seeded.path.resolve()}", "db_path": None, "data_dir": ""}
    with TestClient(app=make_app(seeded, **settings)) as api:
        data = jpeg(seed=7)
        upload(api, auth(seeded, AUTHOR), data)
    digest = sha(data)
    assert (seeded.path.parent / "blobs" / digest[:2] / digest).read_bytes() == data
    assert not (elsewhere / "data").exists()


def test_head_of_a_blob_nobody_uploaded_is_404_at_offset_zero(api: Client, seeded: Seeded) -> None:
    response = api.head(f"{BLOBS}/{sha(b'nothing')}", headers=auth(seeded, AUTHOR))
    assert (response.status_code, response.headers["upload-offset"]) == (404, "0")


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("ABCDEF" + "0" * 58, id="uppercase"),
        pytest.param("0" * 63, id="short"),
        pytest.param("0" * 65, id="long"),
        pytest.param("g" * 64, id="not-hex"),
        pytest.param("..%2F..%2Fetc%2Fpasswd", id="traversal"),
    ],
)
@pytest.mark.parametrize("method", ["GET", "PUT", "HEAD"])
def test_malformed_hash_in_the_path_is_a_400_or_404(api: Client, seeded: Seeded, path: str, method: str) -> None:
    response = api.request(method, f"{BLOBS}/{path}", content=jpeg(), headers=auth(seeded, AUTHOR))
    assert response.status_code in (400, 404)
    if method != "HEAD":
        assert response.json()["status"] == response.status_code


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"GIF89a" + random.Random(1).randbytes(500), id="gif"),
        pytest.param(random.Random(2).randbytes(500), id="noise"),
        pytest.param(b"<html><script>alert(1)</script>" + b" " * 500 + b"</html>", id="html"),
    ],
)
@pytest.mark.parametrize("resumable", [False, True], ids=["whole", "resumable"])
def test_bytes_of_another_kind_are_refused_with_415_and_not_kept(
    api: Client, seeded: Seeded, data_dir: Path, data: bytes, resumable: bool
) -> None:
    headers = auth(seeded, AUTHOR)
    if resumable:
        assert put_part(api, headers, sha(data), data, 0, 99).status_code == 308
        response = put_part(api, headers, sha(data), data, 100, len(data) - 1)
    else:
        response = upload(api, headers, data, expect=415)
    assert (response.status_code, problem_type(response)) == (415, "unsupported-media-type")
    assert files_on_disk(data_dir) == []


@pytest.mark.parametrize("resumable", [False, True], ids=["whole", "resumable"])
@pytest.mark.parametrize("flipped", [0, 1000, -1], ids=["first-byte", "middle-byte", "last-byte"])
def test_corrupted_upload_is_refused_with_422_and_nothing_is_left_behind(
    api: Client, seeded: Seeded, data_dir: Path, resumable: bool, flipped: int
) -> None:
    data = jpeg(seed=2)
    corrupted = bytearray(data)
    corrupted[flipped] ^= 0x01
    digest = sha(data)
    headers = auth(seeded, AUTHOR)
    if resumable:
        half = len(data) // 2
        assert put_part(api, headers, digest, bytes(corrupted), 0, half - 1).status_code == 308
        response = put_part(api, headers, digest, bytes(corrupted), half, len(data) - 1)
    else:
        response = api.put(f"{BLOBS}/{digest}", content=bytes(corrupted), headers=headers)
    assert (response.status_code, problem_type(response)) == (422, "blob-hash-mismatch")
    assert files_on_disk(data_dir) == []
    assert scalar(seeded, "SELECT COUNT(*) FROM blobs") == 0
    status = api.head(f"{BLOBS}/{digest}", headers=headers)
    assert (status.status_code, status.headers["upload-offset"]) == (404, "0")
    upload(api, headers, data)  # the right bytes are welcome afterwards


@pytest.mark.parametrize("resumable", [False, True], ids=["whole", "resumable"])
def test_uploading_a_blob_the_server_holds_costs_nothing(
    api: Client, seeded: Seeded, data_dir: Path, resumable: bool
) -> None:
    data = jpeg(seed=3)
    digest = sha(data)
    upload(api, auth(seeded, AUTHOR), data)
    stored = data_dir / "blobs" / digest[:2] / digest
    before = (stored.stat().st_ino, stored.stat().st_mtime_ns)
    junk = random.Random(3).randbytes(len(data))  # never read: were it read, it would be a 422
    headers = auth(seeded, AUTHOR)  # the account that uploaded it: another one must prove it holds the bytes
    if resumable:
        response = put_part(api, headers, digest, junk, 0, 9)
    else:
        response = api.put(f"{BLOBS}/{digest}", content=junk, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["sha256"] == digest
    assert "location" not in response.headers
    assert (stored.stat().st_ino, stored.stat().st_mtime_ns) == before
    assert stored.read_bytes() == data
    assert files_on_disk(data_dir) == [f"blobs/{digest[:2]}/{digest}"]
    assert scalar(seeded, "SELECT COUNT(*) FROM blobs") == 1


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        pytest.param({"Content-Length": "2001"}, None, id="content-length"),
        pytest.param({"Content-Range": "bytes 0-9/2001"}, b"0123456789", id="content-range-total"),
    ],
)
def test_blob_over_the_limit_is_refused_with_413_before_its_body_is_read(
    seeded: Seeded, data_dir: Path, headers: dict[str, str], body: bytes | None
) -> None:
    with TestClient(app=make_app(seeded, data_dir=data_dir, max_blob_bytes=2000)) as client:
        if body is None:
            # Only the header announces the size: a server that waited for the body would hang here.
            response = client.put(f"{BLOBS}/{'0' * 64}", content=b"", headers={**auth(seeded, AUTHOR), **headers})
        else:
            response = client.put(f"{BLOBS}/{'0' * 64}", content=body, headers={**auth(seeded, AUTHOR), **headers})
        assert (response.status_code, problem_type(response)) == (413, "payload-too-large")
    assert files_on_disk(data_dir) == []


def test_chunked_body_over_the_limit_is_cut_off_with_413(seeded: Seeded, data_dir: Path) -> None:
    """Without a Content-Length the limit is counted while reading, and the temporary file goes."""
    data = jpeg(200, 200, seed=4)
    assert len(data) > 2000

    def body() -> Iterator[bytes]:
        yield from (data[i : i + 500] for i in range(0, len(data), 500))

    with TestClient(app=make_app(seeded, data_dir=data_dir, max_blob_bytes=2000)) as client:
        response = client.put(f"{BLOBS}/{sha(data)}", content=body(), headers=auth(seeded, AUTHOR))
        assert (response.status_code, problem_type(response)) == (413, "payload-too-large")
    assert files_on_disk(data_dir) == []


# --- resumable uploads --------------------------------------------------------------------


@pytest.mark.parametrize(
    "cuts",
    [
        pytest.param([], id="one-part"),
        pytest.param([1], id="first-byte-alone"),
        pytest.param([MIB], id="two-halves"),
        pytest.param([4096, MIB + 17, 3 * MIB, 5 * MIB - 1], id="uneven-parts"),
    ],
)
def test_resumable_upload_in_parts_ends_byte_identical(
    api: Client, seeded: Seeded, data_dir: Path, photo: bytes, cuts: list[int]
) -> None:
    digest = sha(photo)
    headers = auth(seeded, AUTHOR)
    bounds = [0, *cuts, len(photo)]
    for first, end in itertools.pairwise(bounds):
        status = api.head(f"{BLOBS}/{digest}", headers=headers)
        assert (status.status_code, status.headers["upload-offset"]) == (404, str(first))
        response = put_part(api, headers, digest, photo, first, end - 1)
        if end < len(photo):
            assert response.status_code == 308, response.text
            assert response.headers["upload-offset"] == str(end)
            assert "location" not in response.headers
        else:
            assert response.status_code == 201, response.text
    assert (data_dir / "blobs" / digest[:2] / digest).read_bytes() == photo
    assert files_on_disk(data_dir) == [f"blobs/{digest[:2]}/{digest}"]
    note_with(api, headers, 1, photo)
    assert api.get(f"{BLOBS}/{digest}", headers=headers).content == photo


@pytest.mark.parametrize(
    ("first", "held"),
    [
        pytest.param(10, 0, id="nothing-held-yet"),
        pytest.param(0, 100, id="restarting-from-zero"),
        pytest.param(50, 100, id="behind"),
        pytest.param(150, 100, id="ahead"),
    ],
)
def test_part_that_does_not_start_at_the_offset_is_refused_with_409_and_the_offset(
    api: Client, seeded: Seeded, first: int, held: int
) -> None:
    data = jpeg(seed=7)
    digest = sha(data)
    headers = auth(seeded, AUTHOR)
    if held:
        assert put_part(api, headers, digest, data, 0, held - 1).status_code == 308
    response = put_part(api, headers, digest, data, first, first + 99)
    assert (response.status_code, problem_type(response)) == (409, "upload-offset-mismatch")
    assert response.headers["upload-offset"] == str(held)
    assert api.head(f"{BLOBS}/{digest}", headers=headers).headers["upload-offset"] == str(held)


@pytest.mark.parametrize(
    "content_range",
    [
        "bytes 0-9",
        "bytes 10-5/100",
        "bytes 0-100/100",
        "bytes=0-9/100",
        "items 0-9/100",
        "bytes */100",
        "bytes -1-9/100",
    ],
)
def test_malformed_content_range_is_a_400(api: Client, seeded: Seeded, data_dir: Path, content_range: str) -> None:
    headers = {**auth(seeded, AUTHOR), "Content-Range": content_range}
    response = api.put(f"{BLOBS}/{sha(jpeg())}", content=b"0123456789", headers=headers)
    assert (response.status_code, problem_type(response)) == (400, "bad-request")
    assert files_on_disk(data_dir) == []


def test_bytes_past_the_acknowledged_offset_are_cut_off_when_the_upload_resumes(
    api: Client, seeded: Seeded, data_dir: Path
) -> None:
    """A crash between appending and acknowledging leaves extra bytes; they never count."""
    data = jpeg(300, 200, seed=8)
    digest = sha(data)
    headers = auth(seeded, AUTHOR)
    assert put_part(api, headers, digest, data, 0, 999).status_code == 308
    with BlobFiles(data_dir).partial_path(OWNER, digest).open("ab") as partial:
        partial.write(b"\x00" * 4096)  # as a power cut after write() and before the sidecar might leave
    assert api.head(f"{BLOBS}/{digest}", headers=headers).headers["upload-offset"] == "1000"
    assert put_part(api, headers, digest, data, 1000, len(data) - 1).status_code == 201
    assert (data_dir / "blobs" / digest[:2] / digest).read_bytes() == data


def test_partial_upload_is_locked_against_a_second_writer(data_dir: Path) -> None:
    files = BlobFiles(data_dir)
    digest = sha(b"locked")
    first = files.open_partial(OWNER, digest)
    assert first is not None
    try:
        first.total = 10
        first.append(b"abc")
        first.commit()
        assert files.open_partial(OWNER, digest, wait_s=0.05) is None
        assert files.partial_state(OWNER, digest) == PartialState(
            total=10, offset=3, event_id=EVENT_ID, account_id=AUTHOR
        )
    finally:
        first.close()
    second = files.open_partial(OWNER, digest, wait_s=0)
    assert second is not None
    assert second.offset == 3
    second.discard()
    second.close()
    assert files_on_disk(data_dir) == []


def test_abandoned_uploads_are_purged_but_one_in_flight_is_kept(data_dir: Path) -> None:
    files = BlobFiles(data_dir)
    abandoned, in_flight = sha(b"abandoned"), sha(b"in flight")
    for digest in (abandoned, in_flight):
        upload = files.open_partial(OWNER, digest)
        assert upload is not None
        upload.total = 10
        upload.append(b"abc")
        upload.commit()
        upload.close()
    files.new_temp().finish()  # what a crash mid-upload leaves in tmp/
    holder = files.open_partial(OWNER, in_flight)
    assert holder is not None
    try:
        assert files.purge_stale(3600) == 0  # nothing is an hour old
        assert files.purge_stale(3600, now=time.time() + 7200) == 2  # the temp file and the abandoned upload
    finally:
        holder.close()
    where = files.owner_dir(OWNER).relative_to(data_dir).as_posix()
    assert files_on_disk(data_dir) == [f"{where}/{in_flight}", f"{where}/{in_flight}.json"]


@pytest.mark.parametrize("name", ["../etc/passwd", "ABC", "0" * 63, "0" * 64 + "/x"])
def test_no_file_name_is_made_from_anything_but_a_hash(data_dir: Path, name: str) -> None:
    files = BlobFiles(data_dir)
    for make in (files.blob_path, lambda h: files.partial_path(OWNER, h), lambda h: files.sidecar_path(OWNER, h)):
        with pytest.raises(ValueError, match="SHA-256"):
            make(name)


# --- over real HTTP: interruptions and concurrency ----------------------------------------


def raw_interrupted_put(server: LiveServer, token: str, data: bytes, first: int, cut: int) -> None:
    """Announce the rest of the blob as one part, send only up to ``cut``, and hang up."""
    digest = sha(data)
    head = (
        f"PUT {BLOBS}/{digest} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Range: bytes {first}-{len(data) - 1}/{len(data)}\r\nContent-Length: {len(data) - first}\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(head.encode() + data[first:cut])
        sock.shutdown(socket.SHUT_WR)


def settled_offset(server: LiveServer, headers: dict[str, str], digest: str, previous: int, wait_s: float = 5) -> int:
    """The offset HEAD reports once the interrupted request has been wound up (it moved, or time ran out)."""
    deadline = time.monotonic() + wait_s
    while True:
        seen = int(httpx.head(f"{server.url}{BLOBS}/{digest}", headers=headers, timeout=10).headers["upload-offset"])
        if seen != previous or time.monotonic() > deadline:
            return seen
        time.sleep(0.05)


def resume(server: LiveServer, headers: dict[str, str], data: bytes) -> int:
    """What a client does after a broken connection: ask HEAD where to go on from, send the rest."""
    digest = sha(data)
    for _ in range(100):
        offset = int(httpx.head(f"{server.url}{BLOBS}/{digest}", headers=headers, timeout=10).headers["upload-offset"])
        content_range = f"bytes {offset}-{len(data) - 1}/{len(data)}"
        response = httpx.put(
            f"{server.url}{BLOBS}/{digest}",
            content=data[offset:],
            headers={**headers, "Content-Range": content_range},
            timeout=30,
        )
        if response.status_code != 409:  # 409: the dead request still held the upload, or it moved on since HEAD
            return response.status_code
        time.sleep(0.05)
    raise AssertionError("the upload stayed locked")


# Bytes the server had read but not yet handed to the application die with the connection (uvicorn
# buffers up to 64 KiB): what reached the handler is kept, so a resume loses at most this much.
SLACK = 256 * 1024


@pytest.mark.parametrize(
    "cuts",
    [
        pytest.param([1], id="after-one-byte"),
        pytest.param([2 * MIB + 5], id="mid-way"),
        pytest.param([512 * 1024, MIB + 1, 3 * MIB + 333, 5 * MIB - 1], id="four-times"),
    ],
)
def test_interrupted_upload_resumes_from_what_the_server_kept_and_ends_byte_identical(
    live_server: LiveServer, seeded: Seeded, photo: bytes, cuts: list[int]
) -> None:
    digest = sha(photo)
    headers = auth(seeded, AUTHOR)
    offset = 0
    for cut in cuts:
        raw_interrupted_put(live_server, seeded.accounts[AUTHOR].token, photo, offset, cut)
        kept = settled_offset(live_server, headers, digest, offset)
        # What arrived before the connection broke is kept (fsynced, acknowledged), never more than was sent.
        assert max(offset, cut - SLACK) <= kept <= cut
        offset = kept
    assert resume(live_server, headers, photo) == 201
    # The live server runs with the default data directory: the database's own.
    assert (seeded.path.parent / "blobs" / digest[:2] / digest).read_bytes() == photo
    assert not BlobFiles(seeded.path.parent).partial_path(OWNER, digest).exists()


@pytest.mark.parametrize("resumable", [False, True], ids=["whole", "resumable"])
def test_concurrent_uploads_of_one_blob_across_two_workers_end_byte_identical(
    seeded: Seeded, photo: bytes, resumable: bool
) -> None:
    server = LiveServer(seeded, workers=2).start()
    try:
        digest = sha(photo)
        headers = auth(seeded, AUTHOR)
        statuses: list[int] = []
        errors: list[BaseException] = []
        part = MIB + 1

        def one_client() -> None:
            try:
                if not resumable:
                    response = httpx.put(f"{server.url}{BLOBS}/{digest}", content=photo, headers=headers, timeout=60)
                    statuses.append(response.status_code)
                    return
                for _ in range(200):
                    status = httpx.head(f"{server.url}{BLOBS}/{digest}", headers=headers, timeout=30)
                    if status.status_code == 200:
                        return
                    first = int(status.headers["upload-offset"])
                    body = photo[first : first + part]
                    content_range = f"bytes {first}-{first + len(body) - 1}/{len(photo)}"
                    response = httpx.put(
                        f"{server.url}{BLOBS}/{digest}",
                        content=body,
                        headers={**headers, "Content-Range": content_range},
                        timeout=60,
                    )
                    statuses.append(response.status_code)
                    if response.status_code in (200, 201):
                        return
                raise AssertionError("never finished")
            except BaseException as exc:  # reported from the main thread
                errors.append(exc)

        threads = [threading.Thread(target=one_client) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert set(statuses) <= {200, 201, 308, 409}
        assert statuses.count(201) == 1
        assert (seeded.path.parent / "blobs" / digest[:2] / digest).read_bytes() == photo
        assert scalar(seeded, "SELECT size FROM blobs WHERE sha256 = ?", digest) == len(photo)
        assert not any(p.is_file() for p in (seeded.path.parent / "partial").rglob("*"))
        assert not any((seeded.path.parent / "tmp").iterdir())
    finally:
        server.stop()


# --- notes and their blobs ----------------------------------------------------------------


def note_change(replica_page: dict[str, Any], note_id: str) -> dict[str, Any]:
    return next(c for c in replica_page["changes"] if c["entity"] == "note" and c["id"] == note_id)


@pytest.mark.parametrize("shared", [True, False], ids=["shared", "private"])
def test_note_pushed_before_its_blob_is_pending_then_available_with_a_new_version(
    api: Client, seeded: Seeded, shared: bool
) -> None:
    data = jpeg(seed=9)
    author, organizer = auth(seeded, AUTHOR), auth(seeded, ORGANIZER)
    result = note_with(api, author, 1, data, shared=shared)
    assert result["pending_blobs"] == [sha(data)]
    mine = pull_all(api, author)
    theirs = pull_all(api, organizer)
    assert mine.data("note", uid(1))["attachments"][0]["status"] == "pending"
    assert (uid(1) in theirs.ids("note")) is shared
    if shared:
        assert theirs.data("note", uid(1))["attachments"][0]["status"] == "pending"

    upload(api, auth(seeded, AUTHOR), data)

    page = pull(api, author, mine.cursor)
    change = note_change(page, uid(1))
    assert (change["version"], change["data"]["attachments"][0]["status"]) == (2, "available")
    page = pull(api, organizer, theirs.cursor)
    notes = [c for c in page["changes"] if c["entity"] == "note"]
    if shared:
        assert [(c["id"], c["version"], c["data"]["attachments"][0]["status"]) for c in notes] == [
            (uid(1), 2, "available")
        ]
    else:
        assert notes == []


def test_note_whose_blob_its_author_uploaded_already_has_nothing_pending(api: Client, seeded: Seeded) -> None:
    data = jpeg(seed=10)
    upload(api, auth(seeded, AUTHOR), data)
    result = note_with(api, auth(seeded, AUTHOR), 1, data)
    assert "pending_blobs" not in result
    assert pull_all(api, auth(seeded, AUTHOR)).data("note", uid(1))["attachments"][0]["status"] == "available"


def test_same_photo_in_two_notes_is_stored_once(api: Client, seeded: Seeded, data_dir: Path) -> None:
    data = jpeg(seed=11)
    digest = sha(data)
    note_with(api, auth(seeded, AUTHOR), 1, data)
    note_with(api, auth(seeded, OTHER_PARTICIPANT), 2, data, shared=True)
    assert upload(api, auth(seeded, AUTHOR), data).status_code == 201
    # The second account proves it holds the bytes by sending them, and is told what the first was.
    assert upload(api, auth(seeded, OTHER_PARTICIPANT), data, expect=201).json()["sha256"] == digest
    assert files_on_disk(data_dir) == [f"blobs/{digest[:2]}/{digest}"]
    assert scalar(seeded, "SELECT COUNT(*) FROM blobs") == 1
    assert [tuple(r) for r in rows(seeded, "SELECT note_id FROM note_blobs ORDER BY note_id")] == [
        (uid(1),),
        (uid(2),),
    ]
    for account, note in ((AUTHOR, 1), (OTHER_PARTICIPANT, 2)):
        replica = pull_all(api, auth(seeded, account))
        assert replica.data("note", uid(note))["attachments"][0]["status"] == "available"
        assert api.get(f"{BLOBS}/{digest}", headers=auth(seeded, account)).content == data


# --- who may fetch ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shared", "account", "status"),
    [
        pytest.param(False, AUTHOR, 200, id="author-private"),
        pytest.param(True, AUTHOR, 200, id="author-shared"),
        pytest.param(True, ORGANIZER, 200, id="organizer-shared"),
        pytest.param(False, ORGANIZER, 404, id="organizer-private"),
        pytest.param(False, OTHER_PARTICIPANT, 404, id="participant-private"),
        pytest.param(True, OTHER_PARTICIPANT, 404, id="participant-shared"),
        pytest.param(True, HOST, 404, id="host-shared"),
    ],
)
def test_only_those_who_see_a_note_with_the_photo_may_fetch_it(
    api: Client, seeded: Seeded, shared: bool, account: str, status: int
) -> None:
    data = jpeg(seed=12)
    note_with(api, auth(seeded, AUTHOR), 1, data, shared=shared)
    upload(api, auth(seeded, AUTHOR), data)
    for query in ("", "?w=120"):
        response = api.get(f"{BLOBS}/{sha(data)}{query}", headers=auth(seeded, account))
        assert response.status_code == status, response.text
        if status == 404:  # the same answer as for a blob that does not exist: nothing leaks
            assert problem_type(response) == "not-found"
            assert data not in response.content


@pytest.mark.parametrize("uploaded", [False, True], ids=["never-uploaded", "uploaded-but-unreferenced"])
def test_blob_on_no_visible_note_is_404(api: Client, seeded: Seeded, uploaded: bool) -> None:
    data = jpeg(seed=13)
    if uploaded:
        upload(api, auth(seeded, AUTHOR), data)
    response = api.get(f"{BLOBS}/{sha(data)}", headers=auth(seeded, AUTHOR))
    assert (response.status_code, problem_type(response)) == (404, "not-found")


def test_deleting_the_note_ends_access_to_its_photo(api: Client, seeded: Seeded) -> None:
    data = jpeg(seed=14)
    author = auth(seeded, AUTHOR)
    note_with(api, author, 1, data, shared=True)
    upload(api, author, data)
    push(api, author, [{"id": 2, "type": "note.delete", "args": {"id": uid(1), "base_version": 2}}])
    for account in (AUTHOR, ORGANIZER):
        assert api.get(f"{BLOBS}/{sha(data)}", headers=auth(seeded, account)).status_code == 404


# --- serving ------------------------------------------------------------------------------


@pytest.fixture
def served(api: Client, seeded: Seeded, photo: bytes) -> tuple[str, dict[str, str]]:
    """The 5 MiB photo, uploaded and attached to the author's note."""
    author = auth(seeded, AUTHOR)
    note_with(api, author, 1, photo)
    upload(api, author, photo)
    return f"{BLOBS}/{sha(photo)}", author


def test_blob_is_served_whole_with_a_strong_etag_and_immutable_caching(
    api: Client, served: tuple[str, dict[str, str]], photo: bytes
) -> None:
    url, headers = served
    response = api.get(url, headers=headers)
    assert response.status_code == 200
    assert response.content == photo
    assert response.headers["content-type"] == "image/jpeg"
    assert response.headers["content-length"] == str(len(photo))
    assert response.headers["etag"] == f'"{sha(photo)}"'
    assert response.headers["accept-ranges"] == "bytes"
    cache_control = {d.strip() for d in response.headers["cache-control"].split(",")}
    assert {"private", "immutable"} <= cache_control


@pytest.mark.parametrize(
    "if_none_match", ["{etag}", "W/{etag}", '"other", {etag}', "*"], ids=["strong", "weak", "list", "star"]
)
def test_revalidation_with_the_blobs_etag_is_a_304(
    api: Client, served: tuple[str, dict[str, str]], photo: bytes, if_none_match: str
) -> None:
    url, headers = served
    etag = f'"{sha(photo)}"'
    response = api.get(url, headers={**headers, "If-None-Match": if_none_match.format(etag=etag)})
    assert (response.status_code, response.content, response.headers["etag"]) == (304, b"", etag)


SIZE = 5 * MIB


@pytest.mark.parametrize(
    ("range_header", "first", "last"),
    [
        pytest.param("bytes=0-99", 0, 99, id="first-hundred"),
        pytest.param("bytes=5-5", 5, 5, id="one-byte"),
        pytest.param(f"bytes={MIB}-", MIB, SIZE - 1, id="open-ended"),
        pytest.param("bytes=-10", SIZE - 10, SIZE - 1, id="suffix"),
        pytest.param(f"bytes=-{SIZE * 2}", 0, SIZE - 1, id="suffix-longer-than-blob"),
        pytest.param(f"bytes={SIZE - 3}-{SIZE * 2}", SIZE - 3, SIZE - 1, id="end-clamped"),
    ],
)
def test_single_byte_range_is_a_206_with_its_content_range(
    api: Client, served: tuple[str, dict[str, str]], photo: bytes, range_header: str, first: int, last: int
) -> None:
    url, headers = served
    response = api.get(url, headers={**headers, "Range": range_header})
    assert response.status_code == 206
    assert response.headers["content-range"] == f"bytes {first}-{last}/{SIZE}"
    assert response.headers["content-length"] == str(last - first + 1)
    assert response.content == photo[first : last + 1]


@pytest.mark.parametrize("range_header", [f"bytes={SIZE}-", f"bytes={SIZE + 10}-{SIZE + 20}", "bytes=-0"])
def test_range_past_the_end_is_a_416_with_the_size(
    api: Client, served: tuple[str, dict[str, str]], range_header: str
) -> None:
    url, headers = served
    response = api.get(url, headers={**headers, "Range": range_header})
    assert (response.status_code, problem_type(response)) == (416, "range-not-satisfiable")
    assert response.headers["content-range"] == f"bytes */{SIZE}"


@pytest.mark.parametrize(
    ("range_header", "if_range"),
    [
        pytest.param("bytes=0-1,5-6", None, id="several-ranges"),
        pytest.param("bytes=abc", None, id="malformed"),
        pytest.param("bytes=9-2", None, id="backwards"),
        pytest.param("pages=1-2", None, id="other-unit"),
        pytest.param("bytes=0-99", '"another-version"', id="if-range-mismatch"),
    ],
)
def test_range_the_server_ignores_gets_the_whole_blob(
    api: Client, served: tuple[str, dict[str, str]], photo: bytes, range_header: str, if_range: str | None
) -> None:
    url, headers = served
    extra = {"Range": range_header, **({"If-Range": if_range} if if_range else {})}
    response = api.get(url, headers={**headers, **extra})
    assert (response.status_code, len(response.content)) == (200, len(photo))


# --- previews -----------------------------------------------------------------------------


def tagged_photo(orientation: int) -> bytes:
    """400 x 200 as stored: red on the left, blue on the right; EXIF with an orientation and a GPS position."""
    image = Image.new("RGB", (400, 200), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, 200, 200))
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    exif[ExifTags.Base.Make] = "Phone"
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps.update({ExifTags.GPS.GPSLatitudeRef: "N", ExifTags.GPS.GPSLatitude: (45.0, 3.0, 30.0)})
    gps.update({ExifTags.GPS.GPSLongitudeRef: "E", ExifTags.GPS.GPSLongitude: (7.0, 40.0, 12.0)})
    out = io.BytesIO()
    image.save(out, "JPEG", exif=exif, quality=95)
    data = out.getvalue()
    assert Image.open(io.BytesIO(data)).getexif().get_ifd(ExifTags.IFD.GPSInfo)  # the source does carry GPS
    return data


def red_side(image: Image.Image) -> str:
    """Where the red half ended up, by sampling the middle of each edge."""
    w, h = image.size
    points = {"left": (2, h // 2), "right": (w - 3, h // 2), "top": (w // 2, 2), "bottom": (w // 2, h - 3)}
    reds = [side for side, xy in points.items() if _rgb(image.getpixel(xy))[0] > 200]
    assert len(reds) == 1, reds
    return reds[0]


def _rgb(pixel: Any) -> tuple[int, int, int]:
    return tuple(pixel[:3])  # type: ignore[return-value]


@pytest.mark.parametrize(
    ("orientation", "size", "red"),
    [
        pytest.param(1, (120, 60), "left", id="upright"),
        pytest.param(3, (120, 60), "right", id="upside-down"),
        pytest.param(6, (120, 240), "top", id="turned-right"),
        pytest.param(8, (120, 240), "bottom", id="turned-left"),
    ],
)
@pytest.mark.parametrize(
    ("accept", "media_type", "pillow_format"),
    [("image/jpeg", "image/jpeg", "JPEG"), ("image/webp,image/*", "image/webp", "WEBP")],
    ids=["jpeg", "webp"],
)
def test_preview_is_upright_small_and_carries_no_exif_or_gps(
    api: Client,
    seeded: Seeded,
    data_dir: Path,
    orientation: int,
    size: tuple[int, int],
    red: str,
    accept: str,
    media_type: str,
    pillow_format: str,
) -> None:
    data = tagged_photo(orientation)
    author = auth(seeded, AUTHOR)
    note_with(api, author, 1, data)
    upload(api, author, data)
    response = api.get(f"{BLOBS}/{sha(data)}?w=120", headers={**author, "Accept": accept})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == media_type
    assert "accept" in response.headers["vary"].lower()
    preview = Image.open(io.BytesIO(response.content))
    assert preview.format == pillow_format
    assert preview.size == size
    assert red_side(preview.convert("RGB")) == red
    exif = preview.getexif()
    assert ExifTags.IFD.GPSInfo not in exif
    assert dict(exif) == {}
    assert "exif" not in preview.info
    assert b"Phone" not in response.content
    # Made once, then served from disk, with its own strong ETag.
    cached = list((data_dir / "previews").rglob("*"))
    again = api.get(f"{BLOBS}/{sha(data)}?w=120", headers={**author, "Accept": accept})
    assert again.content == response.content
    assert list((data_dir / "previews").rglob("*")) == cached
    etag = response.headers["etag"]
    assert etag != f'"{sha(data)}"'
    revalidated = api.get(f"{BLOBS}/{sha(data)}?w=120", headers={**author, "Accept": accept, "If-None-Match": etag})
    assert revalidated.status_code == 304


def test_preview_never_upscales(api: Client, seeded: Seeded) -> None:
    data = jpeg(100, 80, seed=15)
    author = auth(seeded, AUTHOR)
    note_with(api, author, 1, data)
    upload(api, author, data)
    response = api.get(f"{BLOBS}/{sha(data)}?w=1600", headers=author)
    assert Image.open(io.BytesIO(response.content)).size == (100, 80)


def test_preview_of_the_big_photo_is_the_width_asked_for(
    api: Client, served: tuple[str, dict[str, str]], photo: bytes
) -> None:
    url, headers = served
    response = api.get(f"{url}?w=480", headers=headers)
    assert Image.open(io.BytesIO(response.content)).size == (480, 360)
    assert len(response.content) < len(photo) // 10


@pytest.mark.parametrize("width", ["0", "-1", "121", "100000", "abc", "480.5"])
def test_preview_width_outside_the_list_is_a_400(api: Client, served: tuple[str, dict[str, str]], width: str) -> None:
    url, headers = served
    response = api.get(f"{url}?w={width}", headers=headers)
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(pdf(16), id="pdf"),
        pytest.param(heic(16), id="heic-without-a-decoder"),
        pytest.param(b"\xff\xd8\xff\xe0" + random.Random(16).randbytes(300), id="jpeg-that-does-not-decode"),
    ],
)
def test_attachment_without_a_preview_is_a_415(api: Client, seeded: Seeded, data: bytes) -> None:
    author = auth(seeded, AUTHOR)
    note_with(api, author, 1, data)
    upload(api, author, data)
    response = api.get(f"{BLOBS}/{sha(data)}?w=480", headers=author)
    assert (response.status_code, problem_type(response)) == (415, "not-previewable")
    assert api.get(f"{BLOBS}/{sha(data)}", headers=author).content == data  # the original is still there


def test_default_data_directory_is_beside_the_database(client: Client, seeded: Seeded) -> None:
    data = jpeg(seed=17)
    upload(client, auth(seeded, AUTHOR), data)
    assert (seeded.path.parent / "blobs" / sha(data)[:2] / sha(data)).read_bytes() == data
