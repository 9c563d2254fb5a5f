"""Photos kept in PostgreSQL (``STUDYVISIT_BLOB_STORE=database``): several servers, no shared disk.

Real `studyvisit serve` processes on one real PostgreSQL database, each with a data directory of
its own that must stay empty: an upload begun at one server is finished at the other, read whole,
in ranges and as previews from either; a part sent again is refused without harm; two servers
appending to the same upload at once leave it byte-identical; abandoned uploads are purged.
Always on PostgreSQL, whatever the run's backend.
"""

import hashlib
import io
import itertools
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from PIL import Image

from server.storage.blobs import CHUNK, UploadOwner
from server.storage.pg.blobs import PgBlobStore
from server.storage.pg.database import PgDatabase
from tests.conftest import EVENT_ID, LiveServer
from tests.databases import Seeded, fresh_pg, pg_demo
from tests.sync_helpers import CLIENT_A, G1_VISIT

MIB = 1024 * 1024
BLOBS = f"/api/v1/events/{EVENT_ID}/blobs"
PUSH = f"/api/v1/events/{EVENT_ID}/sync/push"
AUTHOR = "p-nguyen-thi-hoa"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def photo(size: int, seed: int) -> bytes:
    """A real JPEG, padded with noise to ``size`` bytes (decoders stop at its end marker)."""
    rng = random.Random(seed)
    out = io.BytesIO()
    Image.frombytes("RGB", (640, 480), rng.randbytes(640 * 480 * 3)).save(out, "JPEG", quality=90)
    return out.getvalue() + rng.randbytes(size - len(out.getvalue()))


@pytest.fixture(scope="module")
def pg_template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    with pg_demo(tmp_path_factory.mktemp("pg") / "studyvisit.db", "sv_blobs") as seeded:
        yield seeded


@pytest.fixture
def pg_seeded(pg_template: Seeded, tmp_path: Path, request: pytest.FixtureRequest) -> Seeded:
    """A database of this test's own holding the demo event (a copy of the module's), dropped after."""
    return fresh_pg(tmp_path / "unused" / "studyvisit.db", request, pg_template)


@pytest.fixture
def servers(pg_seeded: Seeded, tmp_path: Path) -> Iterator[list[LiveServer]]:
    """Two servers keeping blobs in the database, each with a data directory of its own."""
    started: list[LiveServer] = []
    try:
        for name in ("a", "b"):
            (tmp_path / name).mkdir()
            env = {"STUDYVISIT_BLOB_STORE": "database", "STUDYVISIT_DATA_DIR": str(tmp_path / name)}
            started.append(LiveServer(pg_seeded, env=env).start())
        yield started
    finally:
        for server in started:
            server.stop()
    for name in ("a", "b"):  # nothing of any photo ever touched a disk of a server's
        assert [p for p in (tmp_path / name).rglob("*") if p.is_file()] == []


def query(seeded: Seeded, statement: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(seeded.url, autocommit=True) as conn:
        return conn.execute(statement, params).fetchall()  # type: ignore[arg-type]  # the tests' own text


def author(seeded: Seeded) -> dict[str, str]:
    return {"Authorization": f"Bearer {seeded.accounts[AUTHOR].token}"}


def put_part(server: LiveServer, headers: dict[str, str], data: bytes, first: int, last: int) -> httpx.Response:
    return httpx.put(
        f"{server.url}{BLOBS}/{sha(data)}",
        content=data[first : last + 1],
        headers={**headers, "Content-Range": f"bytes {first}-{last}/{len(data)}"},
        timeout=60,
    )


def offset_at(server: LiveServer, headers: dict[str, str], data: bytes) -> int:
    response = httpx.head(f"{server.url}{BLOBS}/{sha(data)}", headers=headers)
    return int(response.headers["Upload-Offset"])


def attach_to_note(server: LiveServer, headers: dict[str, str], data: bytes) -> None:
    """A shared note carrying the photo, so that its author and the organizers may fetch it."""
    attachment = {"sha256": sha(data), "media_type": "image/jpeg", "bytes": len(data), "caption": ""}
    args = {"id": "00000000-0000-0000-0000-00000000b10b", "visit_id": G1_VISIT, "body": "il cortile"}
    mutation = {
        "id": 1,
        "type": "note.put",
        "args": {**args, "attachments": [attachment], "share_with_organizers": True},
    }
    body = {"client_id": CLIENT_A, "protocol": 1, "mutations": [mutation]}
    response = httpx.post(f"{server.url}{PUSH}", json=body, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["results"][0]["status"] == "applied"


def attached_photo(server: LiveServer, seeded: Seeded, size: int, seed: int) -> tuple[dict[str, str], bytes]:
    """The author's headers and a photo of ``size`` bytes that a note of theirs names (pushed to ``server``)."""
    headers = author(seeded)
    data = photo(size, seed)
    attach_to_note(server, headers, data)
    return headers, data


def stored_rows(seeded: Seeded) -> dict[str, int]:
    tables = ("blob_chunks", "blob_uploads", "upload_chunks", "blob_previews", "blobs")
    return {t: query(seeded, f"SELECT count(*) FROM {t}")[0][0] for t in tables}  # type: ignore[misc]


def test_upload_begun_at_one_server_is_finished_at_the_other_and_served_by_both(
    servers: list[LiveServer], pg_seeded: Seeded
) -> None:
    headers, data = attached_photo(servers[0], pg_seeded, 3 * MIB + 12345, seed=1)
    cuts = [0, 1_500_000, 2_200_000, len(data)]  # parts that end inside a chunk, and cross chunks
    for n, (first, end) in enumerate(itertools.pairwise(cuts)):
        server = servers[n % 2]
        assert offset_at(servers[(n + 1) % 2], headers, data) == first  # the other server knows how far it got
        response = put_part(server, headers, data, first, end - 1)
        assert response.status_code == (201 if end == len(data) else 308), response.text
        assert int(response.headers["Upload-Offset"]) == end
    organizer = pg_seeded.headers("organizer")
    for server in servers:
        for who in (headers, organizer):
            response = httpx.get(f"{server.url}{BLOBS}/{sha(data)}", headers=who)
            assert response.status_code == 200
            assert sha(response.content) == sha(data)
            assert response.headers["content-type"] == "image/jpeg"
        ranged = httpx.get(f"{server.url}{BLOBS}/{sha(data)}", headers={**organizer, "Range": "bytes=1048570-2097160"})
        assert ranged.status_code == 206
        assert ranged.content == data[1048570:2097161]
        assert ranged.headers["content-range"] == f"bytes 1048570-2097160/{len(data)}"
        tail = httpx.get(f"{server.url}{BLOBS}/{sha(data)}", headers={**organizer, "Range": "bytes=-10"})
        assert tail.content == data[-10:]
    rows = stored_rows(pg_seeded)
    assert (rows["blobs"], rows["blob_uploads"], rows["upload_chunks"]) == (1, 0, 0)
    (size,) = query(pg_seeded, "SELECT sum(octet_length(data)) FROM blob_chunks WHERE sha256 = %s", sha(data))[0]
    assert size == len(data)
    assert query(pg_seeded, "SELECT max(octet_length(data)) FROM blob_chunks")[0][0] <= CHUNK


def test_whole_upload_at_one_server_is_served_with_a_preview_by_the_other(
    servers: list[LiveServer], pg_seeded: Seeded
) -> None:
    a, b = servers
    headers, data = attached_photo(b, pg_seeded, 2 * MIB + 7, seed=2)
    response = httpx.put(f"{a.url}{BLOBS}/{sha(data)}", content=data, headers=headers, timeout=60)
    assert response.status_code == 201, response.text
    again = httpx.put(f"{b.url}{BLOBS}/{sha(data)}", content=data, headers=headers, timeout=60)
    assert again.status_code == 200  # held already: nothing read
    assert sha(httpx.get(f"{b.url}{BLOBS}/{sha(data)}", headers=headers).content) == sha(data)
    previews = [httpx.get(f"{s.url}{BLOBS}/{sha(data)}?w=120", headers=headers) for s in (b, a, b)]
    for preview in previews:
        assert preview.status_code == 200, preview.text
        assert preview.headers["content-type"] == "image/jpeg"
        with Image.open(io.BytesIO(preview.content)) as image:
            assert image.size == (120, 90)
    assert len({p.content for p in previews}) == 1  # made once, by b, and kept in the database for a
    assert stored_rows(pg_seeded)["blob_previews"] == 1


@pytest.mark.parametrize("resumable", [False, True], ids=["whole", "resumable"])
def test_refused_upload_leaves_no_row_behind(servers: list[LiveServer], pg_seeded: Seeded, resumable: bool) -> None:
    a, b = servers
    headers = author(pg_seeded)
    data = photo(2 * MIB + 99, seed=3)
    claimed = sha(data[:-1] + b"\x00")  # not these bytes' hash
    if resumable:
        first = httpx.put(
            f"{a.url}{BLOBS}/{claimed}",
            content=data[:1_300_000],
            headers={**headers, "Content-Range": f"bytes 0-1299999/{len(data)}"},
        )
        assert first.status_code == 308
        response = httpx.put(
            f"{b.url}{BLOBS}/{claimed}",
            content=data[1_300_000:],
            headers={**headers, "Content-Range": f"bytes 1300000-{len(data) - 1}/{len(data)}"},
        )
    else:
        response = httpx.put(f"{a.url}{BLOBS}/{claimed}", content=data, headers=headers)
    assert response.status_code == 422, response.text
    assert response.json()["type"].endswith("blob-hash-mismatch")
    assert stored_rows(pg_seeded) == dict.fromkeys(
        ("blob_chunks", "blob_uploads", "upload_chunks", "blob_previews", "blobs"), 0
    )
    assert offset_at(b, headers, data) == 0


def test_part_sent_again_to_the_other_server_is_refused_with_the_offset_and_harms_nothing(
    servers: list[LiveServer], pg_seeded: Seeded
) -> None:
    a, b = servers
    headers, data = attached_photo(a, pg_seeded, 2 * MIB + 500, seed=4)
    assert put_part(a, headers, data, 0, MIB + 99).status_code == 308
    retried = put_part(b, headers, data, 0, MIB + 99)  # its answer was lost; the phone sends it again elsewhere
    assert retried.status_code == 409
    assert retried.json()["type"].endswith("upload-offset-mismatch")
    assert retried.headers["Upload-Offset"] == str(MIB + 100)
    assert put_part(b, headers, data, MIB + 100, len(data) - 1).status_code == 201
    assert put_part(a, headers, data, MIB + 100, len(data) - 1).status_code == 200  # held: nothing read
    assert httpx.get(f"{a.url}{BLOBS}/{sha(data)}", headers=headers).content == data


def slow_body(data: bytes, pause_s: float) -> Iterator[bytes]:
    """A phone on a slow link: 256 KiB at a time, so that two requests are in flight together."""
    for i in range(0, len(data), 256 * 1024):
        yield data[i : i + 256 * 1024]
        time.sleep(pause_s)


def test_two_servers_appending_to_the_same_upload_at_once_leave_it_byte_identical(
    servers: list[LiveServer], pg_seeded: Seeded
) -> None:
    headers, data = attached_photo(servers[0], pg_seeded, 9 * MIB + 4321, seed=5)
    rng = random.Random(5)
    statuses: list[int] = []
    rounds = 0
    while rounds < 30:
        rounds += 1
        offset = offset_at(servers[rng.randrange(2)], headers, data)
        if offset == len(data):
            break
        answers: list[int] = []

        def send(
            server: LiveServer, length: int, pause_s: float, start: int = offset, out: list[int] = answers
        ) -> None:
            last = min(len(data), start + length) - 1
            response = httpx.put(
                f"{server.url}{BLOBS}/{sha(data)}",
                content=slow_body(data[start : last + 1], pause_s),
                headers={**headers, "Content-Range": f"bytes {start}-{last}/{len(data)}"},
                timeout=60,
            )
            out.append(response.status_code)

        # Both from the same offset, with different part sizes: their chunks would interleave if
        # nothing serialised them, and would land at boundaries the other did not use.
        racers = [
            threading.Thread(target=send, args=(servers[0], 3 * MIB + rng.randrange(MIB), rng.uniform(0, 0.02))),
            threading.Thread(target=send, args=(servers[1], 2 * MIB + rng.randrange(MIB), rng.uniform(0, 0.02))),
        ]
        for racer in racers:
            racer.start()
        for racer in racers:
            racer.join()
        assert set(answers) <= {200, 201, 308, 409}, answers
        statuses += answers
    assert 409 in statuses  # the race happened: one of two found the upload taken on
    assert offset_at(servers[1], headers, data) == len(data)
    for server in servers:
        assert httpx.get(f"{server.url}{BLOBS}/{sha(data)}", headers=headers, timeout=60).content == data
    rows = stored_rows(pg_seeded)
    assert (rows["blob_uploads"], rows["upload_chunks"]) == (0, 0)
    # Chunks tile the blob exactly: no overlap, no gap.
    starts = query(pg_seeded, "SELECT start, octet_length(data) FROM blob_chunks ORDER BY start")
    assert [s for s, _ in starts] == [0, *(s + n for s, n in starts[:-1])]


def test_abandoned_uploads_are_purged_but_one_being_appended_to_is_kept(pg_seeded: Seeded) -> None:
    database = PgDatabase(pg_seeded.url)
    store = PgBlobStore(database)
    try:
        owners = [UploadOwner(EVENT_ID, f"p-{n}") for n in range(2)]
        data = photo(2 * MIB, seed=6)
        for owner in owners:
            upload = store.open_partial(owner, sha(data))
            upload.total = len(data)
            upload.append(data[: MIB + 5])
            upload.commit()
            upload.close()
        temp = store.new_temp()  # a whole upload whose server died half-way
        temp.write(data[: MIB + 1])
        assert store.partial_state(owners[0], sha(data)) is not None
        assert store.purge_stale(3600) == 0  # nothing is an hour old
        with psycopg.connect(pg_seeded.url) as holder:  # a request appending to the second one right now
            holder.execute(
                "SELECT 1 FROM blob_uploads WHERE account_id = %s AND resumable FOR UPDATE", (owners[1].account_id,)
            )
            assert store.purge_stale(3600, now=time.time() + 7200) == 2  # the first and the whole upload
        assert store.partial_state(owners[0], sha(data)) is None
        assert store.partial_state(owners[1], sha(data)) is not None
        assert [o.account_id for o, _, _ in store.partial_uploads(EVENT_ID)] == [owners[1].account_id]
        assert store.purge_stale(3600, now=time.time() + 7200) == 1
        assert stored_rows(pg_seeded)["upload_chunks"] == 0
    finally:
        database.close()


def test_purge_uploads_command_purges_the_database_store(pg_seeded: Seeded, tmp_path: Path) -> None:
    database = PgDatabase(pg_seeded.url)
    try:
        store = PgBlobStore(database)
        data = photo(2 * MIB, seed=7)
        for account, hours in (("p-old", 30), ("p-fresh", 1)):
            upload = store.open_partial(UploadOwner(EVENT_ID, account), sha(data))
            upload.total = len(data)
            upload.append(data[: MIB + 1])
            upload.commit()
            upload.close()
            with psycopg.connect(pg_seeded.url, autocommit=True) as conn:
                conn.execute(
                    "UPDATE blob_uploads SET updated_at = now() - make_interval(hours => %s) WHERE account_id = %s",
                    (hours, account),
                )
    finally:
        database.close()
    command = ["db", "purge-uploads", "--database-url", pg_seeded.url, "--blob-store", "database"]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "server.cli",
            *command,
            "--older-than-hours",
            "24",
            "--data-dir",
            str(tmp_path / "none"),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "removed 1 abandoned upload" in result.stdout
    assert [row[0] for row in query(pg_seeded, "SELECT account_id FROM blob_uploads")] == ["p-fresh"]


def test_upload_to_a_server_killed_mid_part_is_finished_at_the_other_from_what_was_committed(
    servers: list[LiveServer], pg_seeded: Seeded
) -> None:
    a, b = servers
    headers, data = attached_photo(b, pg_seeded, 6 * MIB + 777, seed=8)

    def body() -> Iterator[bytes]:
        for i in range(0, len(data), 256 * 1024):
            if i >= 3 * MIB + 100_000:
                time.sleep(0.5)  # a slow link from here on: the server is killed while the part arrives
            yield data[i : i + 256 * 1024]

    def send() -> None:
        with pytest.raises(httpx.TransportError):
            httpx.put(
                f"{a.url}{BLOBS}/{sha(data)}",
                content=body(),
                headers={**headers, "Content-Range": f"bytes 0-{len(data) - 1}/{len(data)}"},
                timeout=30,
            )

    sender = threading.Thread(target=send)
    sender.start()
    deadline = time.monotonic() + 30
    while (seen := offset_at(b, headers, data)) < 3 * MIB:  # the other server sees each chunk as it commits
        assert time.monotonic() < deadline
        time.sleep(0.05)
    a.stop(signal.SIGKILL)
    sender.join()
    offset = offset_at(b, headers, data)
    assert offset >= seen  # every committed chunk survived the server
    assert offset % CHUNK == 0  # and the unfinished one was never acknowledged
    response = put_part(b, headers, data, offset, len(data) - 1)
    assert response.status_code == 201, response.text
    assert httpx.get(f"{b.url}{BLOBS}/{sha(data)}", headers=headers).content == data
