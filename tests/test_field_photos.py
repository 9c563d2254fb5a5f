"""Photos in field notes: copied on the device at once, uploaded resumably by sync, freed once the server holds them.

Against the in-memory ``FakeServer`` of ``test_field_client`` (which speaks the blob upload
contract), then end to end against the real server.
"""

import hashlib
import io
import itertools
import os
import random
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from PIL import Image

from server.cli_field import field
from sync.blobs import sniff_media_type
from sync.client import AccountMismatchError, FieldClient, OfflineError, RequestRejectedError
from sync.replica import Replica
from tests.conftest import LiveServer, Seeded
from tests.test_field_client import (
    BACKOFF_BASE,
    BASE_URL,
    MAX_ATTEMPTS,
    NOW,
    OTHER,
    TOKEN,
    Crash,
    FakeServer,
    assert_converged,
)

pytestmark = pytest.mark.both_backends  # CI runs it on SQLite, then on PostgreSQL

MiB = 1 << 20
BIG = 5 * MiB


def jpeg(seed: int, size: tuple[int, int] = (64, 48), pad_to: int = 0) -> bytes:
    """A real JPEG of noise; ``pad_to``: grown to exactly that many bytes (decoders ignore what follows EOI)."""
    rng = random.Random(seed)
    out = io.BytesIO()
    Image.frombytes("RGB", size, rng.randbytes(size[0] * size[1] * 3)).save(out, "JPEG", quality=95)
    data = out.getvalue()
    assert len(data) <= pad_to or not pad_to
    return data + rng.randbytes(max(0, pad_to - len(data)))


def image(kind: str) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 60)).save(out, kind)
    return out.getvalue()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def big_photo() -> bytes:
    """A 5 MiB JPEG, made once."""
    data = jpeg(5, (2400, 1700), pad_to=BIG)
    assert Image.open(io.BytesIO(data)).size == (2400, 1700)
    return data


# --- fixtures, as in test_field_client -----------------------------------------------------------


@pytest.fixture
def server() -> FakeServer:
    return FakeServer()


@pytest.fixture
def delays() -> list[float]:
    return []


@pytest.fixture
def options(server: FakeServer, delays: list[float]) -> Iterator[dict[str, Any]]:
    with httpx.Client(transport=httpx.MockTransport(server.handle)) as http:
        yield {
            "http": http,
            "sleep": delays.append,
            "rng": random.Random(7),
            "clock": lambda: NOW,
            "max_attempts": MAX_ATTEMPTS,
            "backoff_base": BACKOFF_BASE,
        }


@pytest.fixture
def open_client(tmp_path: Path, options: dict[str, Any]) -> Iterator[Callable[..., FieldClient]]:
    """Open a FieldClient on the test's replica file; call again to "restart the app"."""
    opened: list[FieldClient] = []

    def make(**overrides: Any) -> FieldClient:
        opened.append(FieldClient(BASE_URL, TOKEN, tmp_path / "device" / "replica.db", **(options | overrides)))
        return opened[-1]

    yield make
    for client in opened:
        client.close()


@pytest.fixture
def synced(open_client: Callable[..., FieldClient]) -> FieldClient:
    client = open_client()
    assert client.sync().verified
    return client


@pytest.fixture
def photos(tmp_path: Path) -> Callable[..., Path]:
    """Write a file into the "camera roll" and return its path."""
    roll = tmp_path / "camera-roll"
    roll.mkdir()

    def write(name: str, data: bytes) -> Path:
        path = roll / name
        path.write_bytes(data)
        return path

    return write


def puts(server: FakeServer, digest: str | None = None) -> list[int]:
    """The first byte of every PUT the server received (for one blob), in order."""
    return [
        int(content_range.split()[1].split("-")[0])
        for method, h, content_range in server.blob_requests
        if method == "PUT" and digest in (None, h)
    ]


def store_files(client: FieldClient) -> list[Path]:
    return sorted(p for p in client.blobs.root.rglob("*") if p.is_file()) if client.blobs.root.exists() else []


def assert_photos_settled(client: FieldClient, server: FakeServer, *photos: bytes) -> None:
    """The server holds each photo byte for byte, every note shows it available, the device kept no copy."""
    for data in photos:
        assert server.blobs[sha(data)] == data
        assert client.photo_path(sha(data)) is None
    assert all(a.status == "available" for n in client.notes() for a in n.attachments)
    assert (client.uploads(), store_files(client)) == ([], [])
    assert_converged(client, server)


# --- adding photos ------------------------------------------------------------------------------


def test_a_photo_is_copied_at_once_and_queued_with_its_note(
    synced: FieldClient, server: FakeServer, photos: Callable[..., Path], tmp_path: Path
) -> None:
    data = jpeg(1)
    original = photos("IMG_0001.JPG", data)
    note_id = synced.add_note("The courtyard", visit_id="v-morning", photos=[original], captions=["Cortile"])
    digest = sha(data)

    kept = synced.photo_path(digest)
    assert kept == tmp_path / "device" / "replica.db.blobs" / digest[:2] / digest
    assert kept.read_bytes() == data
    [entry] = synced.replica.outbox()
    assert entry.args["attachments"] == [
        {"sha256": digest, "media_type": "image/jpeg", "bytes": len(data), "caption": "Cortile"}
    ]
    [upload] = synced.uploads()
    assert (upload.sha256, upload.size, upload.media_type, upload.state) == (digest, len(data), "image/jpeg", "pending")
    [note] = synced.notes()
    assert [(a.sha256, a.status, a.caption) for a in note.attachments] == [(digest, "pending", "Cortile")]
    assert (synced.status().pending_uploads, synced.status().pending_upload_bytes) == (1, len(data))

    original.unlink()  # the user clears the camera roll before going online
    server.calls.clear()
    report = synced.sync()

    assert server.calls.index("blobs") < server.calls.index("push")  # the photo went first
    assert (report.uploaded, report.uploaded_bytes, report.uploads_pending) == (1, len(data), 0)
    assert server.live("note")[note_id]["attachments"][0]["sha256"] == digest
    assert synced.status().pending_uploads == 0
    assert_photos_settled(synced, server, data)


def heic() -> bytes:
    # An ISO BMFF ftyp box: size, "ftyp", major brand, minor version, compatible brands.
    return (28).to_bytes(4, "big") + b"ftypmif1" + b"\0\0\0\0" + b"mif1heicmiaf" + b"\0" * 100


@pytest.mark.parametrize(
    ("make", "media_type"),
    [
        (lambda: jpeg(2), "image/jpeg"),
        (lambda: image("PNG"), "image/png"),
        (lambda: image("WEBP"), "image/webp"),
        (heic, "image/heic"),
        (lambda: b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n%%EOF\n", "application/pdf"),
    ],
    ids=["jpeg", "png", "webp", "heic", "pdf"],
)
def test_the_media_type_is_sniffed_from_the_bytes_not_the_name(
    synced: FieldClient, server: FakeServer, photos: Callable[..., Path], make: Callable[[], bytes], media_type: str
) -> None:
    data = make()
    synced.add_note("attached", visit_id="v-morning", photos=[photos("no-extension", data)])

    assert [u.media_type for u in synced.uploads()] == [media_type]
    synced.sync()
    assert_photos_settled(synced, server, data)


LIMIT = 50_000


@pytest.mark.parametrize(
    ("files", "extra"),
    [
        ([image("GIF")], {}),
        ([b"just some text, not a photo"], {}),
        ([(28).to_bytes(4, "big") + b"ftypavif\0\0\0\0avifmif1miaf"], {}),  # AVIF shares HEIF's box
        ([b""], {}),
        ([jpeg(3, pad_to=LIMIT + 1)], {}),
        ([jpeg(3)] * 11, {}),
        ([jpeg(3), b"GIF89a not at all"], {}),
        ([jpeg(3)], {"captions": ["one", "two"]}),
        ([jpeg(3)], {"captions": ["x" * 501]}),
        ([jpeg(3)], {"visit_id": None}),
    ],
    ids=[
        "gif",
        "text",
        "avif",
        "empty",
        "too-large",
        "eleven-photos",
        "one-bad-among-good",
        "more-captions",
        "long-caption",
        "invalid-note",
    ],
)
def test_files_that_are_no_photo_are_refused_before_anything_is_queued(
    open_client: Callable[..., FieldClient], photos: Callable[..., Path], files: list[bytes], extra: dict[str, Any]
) -> None:
    client = open_client(max_photo_bytes=LIMIT)
    paths = [photos(f"file-{n}", data) for n, data in enumerate(files)]
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        client.add_note("with a photo", **({"visit_id": "v-morning"} | extra), photos=paths)

    assert (client.status().pending, client.uploads(), store_files(client)) == (0, [], [])


@pytest.mark.parametrize(
    ("head", "media_type"),
    [
        (b"\xff\xd8\xff\xe0\0\x10JFIF", "image/jpeg"),
        (b"RIFF\0\0\0\0WEBPVP8 ", "image/webp"),
        ((24).to_bytes(4, "big") + b"ftypheic\0\0\0\0mif1heic", "image/heic"),
        ((20).to_bytes(4, "big") + b"ftypmif1\0\0\0\0avif", None),
        (b"RIFF\0\0\0\0WAVEfmt ", None),
        (b"\xff\xd8", None),
        (b"", None),
    ],
)
def test_sniffing_reads_magic_numbers(head: bytes, media_type: str | None) -> None:
    assert sniff_media_type(head) == media_type


# --- resumable upload ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cuts",
    [[1], [MiB + MiB // 2], [2 * MiB], [BIG - 1], [300_000, 2_700_000, 2_700_001, 4_900_000]],
    ids=["first-byte", "mid-chunk", "chunk-boundary", "last-byte", "several"],
)
@pytest.mark.parametrize("resumed_by", ["same-sync", "next-sync"])
def test_an_interrupted_upload_resumes_from_the_servers_offset(
    synced: FieldClient,
    server: FakeServer,
    photos: Callable[..., Path],
    big_photo: bytes,
    cuts: list[int],
    resumed_by: str,
) -> None:
    note_id = synced.add_note("Big photo", visit_id="v-morning", photos=[photos("big.jpg", big_photo)])
    server.cuts = list(cuts)
    server.down_after_cut = resumed_by == "next-sync"
    first = synced.sync()

    if resumed_by == "next-sync":
        # The note went ahead; the server kept the bytes that arrived, and the device its copy.
        assert (first.uploaded, first.uploads_pending, first.uploads_pending_bytes) == (0, 1, BIG)
        assert server.live("note")[note_id]["attachments"][0]["sha256"] == sha(big_photo)
        assert [a.status for a in synced.notes()[0].attachments] == ["pending"]
        assert len(server.partial[sha(big_photo)]) == cuts[0]
        assert synced.photo_path(sha(big_photo)) is not None
        server.blobs_down = server.down_after_cut = False
        server.cuts = cuts[1:]
        synced.sync()

    starts = puts(server)
    assert set(cuts) <= set(starts)  # each resume began exactly where the server had got to
    assert starts == sorted(starts)  # never back, never from zero again
    assert server.received == BIG  # no byte sent twice
    assert server.processed == [1]  # the note once, whichever sync finished the photo
    assert_photos_settled(synced, server, big_photo)


@pytest.mark.parametrize("chunk_size", [MiB, 3 * MiB, 8 * MiB])
def test_uploads_go_in_chunks_of_the_configured_size(
    open_client: Callable[..., FieldClient], server: FakeServer, photos: Callable[..., Path], big_photo: bytes,
    chunk_size: int,
) -> None:  # fmt: skip
    client = open_client(upload_chunk_size=chunk_size)
    client.add_note("Big photo", visit_id="v-morning", photos=[photos("big.jpg", big_photo)])
    report = client.sync()

    assert puts(server) == list(range(0, BIG, chunk_size))
    assert (report.uploaded, report.uploaded_bytes) == (1, BIG)
    assert_photos_settled(client, server, big_photo)


def test_the_same_photo_in_two_notes_is_uploaded_once(
    synced: FieldClient, server: FakeServer, photos: Callable[..., Path]
) -> None:
    data = jpeg(4)
    synced.add_note("first", visit_id="v-morning", photos=[photos("a.jpg", data)])
    synced.add_note("second", site_id="dar", photos=[photos("a copy.jpg", data)], captions=["same bytes"])
    assert [u.sha256 for u in synced.uploads()] == [sha(data)]
    report = synced.sync()

    assert (len(puts(server)), report.uploaded) == (1, 1)
    assert [len(n.attachments) for n in synced.notes()] == [1, 1]
    assert_photos_settled(synced, server, data)


def held_by_the_server_from_the_start(client: FieldClient, server: FakeServer, data: bytes, path: Path) -> None:
    server.blobs[sha(data)] = data  # the organizer uploaded the same poster


def uploaded_by_an_earlier_note(client: FieldClient, server: FakeServer, data: bytes, path: Path) -> None:
    client.add_note("first time", visit_id="v-morning", photos=[path])
    client.sync()
    server.blob_requests.clear()


@pytest.mark.parametrize("before", [held_by_the_server_from_the_start, uploaded_by_an_earlier_note])
def test_a_blob_the_server_already_holds_is_not_uploaded_again(
    synced: FieldClient,
    server: FakeServer,
    photos: Callable[..., Path],
    before: Callable[[FieldClient, FakeServer, bytes, Path], None],
) -> None:
    data = jpeg(5)
    path = photos("poster.jpg", data)
    before(synced, server, data, path)
    synced.add_note("again", site_id="dar", photos=[path])
    report = synced.sync()

    assert [m for m, *_ in server.blob_requests] == ["HEAD"]
    assert (report.uploaded, report.already_held, report.uploaded_bytes) == (0, 1, 0)
    assert_photos_settled(synced, server, data)


# --- crashes, failures, and when the copy is freed ----------------------------------------------


def crash_on_the_push(server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Die after the photo landed, as the note's push goes out."""
    server.fail("push", "crash")


def crash_before_recording_the_upload(server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Die after the server answered 201, before the device wrote that down."""

    def die(*args: Any, **kwargs: Any) -> None:
        raise Crash("replica")

    monkeypatch.setattr(Replica, "set_upload_state", die)


def crash_mid_upload(server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Die while the third part is on its way."""
    server.fail("blobs", None, None, None, "crash")


@pytest.mark.parametrize("crash", [crash_on_the_push, crash_before_recording_the_upload, crash_mid_upload])
def test_a_client_killed_between_upload_and_push_finishes_on_its_next_sync(
    open_client: Callable[..., FieldClient],
    server: FakeServer,
    monkeypatch: pytest.MonkeyPatch,
    photos: Callable[..., Path],
    big_photo: bytes,
    crash: Callable[[FakeServer, pytest.MonkeyPatch], None],
) -> None:
    client = open_client(upload_chunk_size=2 * MiB)
    note_id = client.add_note("Big photo", visit_id="v-morning", photos=[photos("big.jpg", big_photo)])
    crash(server, monkeypatch)
    with pytest.raises(Crash):
        client.sync()
    client.close()
    monkeypatch.undo()

    again = open_client(upload_chunk_size=2 * MiB)
    assert again.photo_path(sha(big_photo)) is not None  # kept across the restart
    again.sync()

    assert server.processed == [1]  # the note once
    assert list(server.live("note")) == [note_id]
    assert server.received == BIG  # the photo once, never restarted from zero
    assert_photos_settled(again, server, big_photo)


def test_the_copy_is_kept_until_the_server_holds_it_and_no_queued_change_names_it(
    open_client: Callable[..., FieldClient], server: FakeServer, photos: Callable[..., Path]
) -> None:
    data = jpeg(6)
    client = open_client()
    client.sync()
    note_id = client.add_note("photo first", visit_id="v-morning", photos=[photos("p.jpg", data)])
    server.blobs_down = True
    report = client.sync()  # the note goes, the photo cannot

    assert (report.applied, report.uploads_pending) == (1, 1)
    assert client.status().pending_uploads == 1
    client.close()
    client = open_client()
    assert client.photo_path(sha(data)) is not None  # not confirmed: kept, also across a restart

    server.blobs_down = False
    client.edit_note(note_id, body="photo first, then words")  # a queued change naming the photo
    server.fail("push", *["network"] * MAX_ATTEMPTS)
    with pytest.raises(OfflineError):
        client.sync()  # the photo lands, the edit does not
    assert server.blobs[sha(data)] == data
    assert [u.state for u in client.uploads()] == ["uploaded"]
    assert client.photo_path(sha(data)) is not None  # confirmed, but still named by the queued edit
    assert [a.status for a in client.notes()[0].attachments] == ["available"]
    client.close()

    client = open_client()
    client.sync()
    assert server.live("note")[note_id]["body"] == "photo first, then words"
    assert_photos_settled(client, server, data)


def test_a_corrupt_copy_is_reported_once_and_repaired_by_attaching_the_photo_again(
    synced: FieldClient, server: FakeServer, photos: Callable[..., Path]
) -> None:
    data = jpeg(7)
    original = photos("p.jpg", data)
    synced.add_note("rotting", visit_id="v-morning", photos=[original])
    kept = synced.photo_path(sha(data))
    assert kept is not None
    kept.write_bytes(data[:100] + bytes([data[100] ^ 1]) + data[101:])  # a flipped bit on the device's storage
    report = synced.sync()

    assert (report.applied, report.upload_failed, len(puts(server))) == (1, 1, 1)
    assert server.partial == {}  # the server dropped the bad bytes
    [item] = synced.attention()
    assert (item.kind, item.entity_id, item.detail["reason"]) == ("upload", sha(data), "corrupt")
    assert [u.state for u in synced.uploads()] == ["corrupt"]
    synced.sync()
    assert len(puts(server)) == 1  # not tried again and again

    synced.add_note("again, from the camera roll", visit_id="v-morning", photos=[original])
    synced.sync()
    assert synced.attention() == []
    assert_photos_settled(synced, server, data)


@pytest.mark.parametrize(("garbled", "landed"), [(1, True), (2, False)])
def test_bytes_damaged_on_the_way_are_sent_once_more_at_most(
    synced: FieldClient, server: FakeServer, photos: Callable[..., Path], garbled: int, landed: bool
) -> None:
    data = jpeg(8)
    synced.add_note("noisy line", visit_id="v-morning", photos=[photos("p.jpg", data)])
    server.garble = garbled
    report = synced.sync()

    assert len(puts(server)) == 2
    assert (sha(data) in server.blobs, report.upload_failed) == (landed, int(not landed))
    if landed:
        assert_photos_settled(synced, server, data)
    else:
        assert [i.detail["reason"] for i in synced.attention()] == ["failed"]
        assert [u.state for u in synced.uploads()] == ["pending"]  # tried again at the next sync
        synced.sync()
        assert_photos_settled(synced, server, data)


def test_a_photo_the_server_refuses_is_reported_and_not_retried(
    synced: FieldClient, server: FakeServer, photos: Callable[..., Path]
) -> None:
    data = jpeg(9)
    server.max_blob_bytes = 1000
    synced.add_note("too big for this server", visit_id="v-morning", photos=[photos("p.jpg", data)])
    synced.sync()
    synced.sync()

    assert len(puts(server)) == 1
    [item] = synced.attention()
    assert (item.detail["reason"], item.detail["error"]["status"]) == ("refused", 413)
    assert synced.photo_path(sha(data)) is not None  # never confirmed: kept
    assert synced.status().pending == 0  # the note itself went


def test_blobs_the_push_names_as_missing_are_uploaded_after_it(
    synced: FieldClient, server: FakeServer, photos: Callable[..., Path]
) -> None:
    data = jpeg(10)
    server.blobs[sha(data)] = data
    synced.add_note("the server loses it", visit_id="v-morning", photos=[photos("p.jpg", data)])
    server.fail("push", lambda _: server.blobs.clear())  # between our HEAD and the push
    report = synced.sync()

    assert [m for m, *_ in server.blob_requests] == ["HEAD", "HEAD", "PUT"]
    assert (report.already_held, report.uploaded) == (1, 1)
    assert_photos_settled(synced, server, data)


def test_a_missing_blob_this_device_no_longer_holds_is_reported(
    synced: FieldClient, server: FakeServer, photos: Callable[..., Path]
) -> None:
    data = jpeg(11)
    note_id = synced.add_note("uploaded long ago", visit_id="v-morning", photos=[photos("p.jpg", data)])
    synced.sync()
    del server.blobs[sha(data)]
    synced.edit_note(note_id, tags=["lost"])
    synced.sync()

    [item] = synced.attention()
    assert (item.kind, item.detail["reason"]) == ("upload", "missing")


def test_edit_note_adds_photos_and_keeps_those_attached(
    synced: FieldClient, server: FakeServer, photos: Callable[..., Path]
) -> None:
    first, second = jpeg(12), image("PNG")
    note_id = synced.add_note("one photo", visit_id="v-morning", photos=[photos("a.jpg", first)])
    synced.sync()
    synced.edit_note(note_id, body="two photos", photos=[photos("b.png", second)], captions=["plan"])
    synced.edit_note(note_id, tags=["photos"])
    shown = [(a.sha256, a.status, a.caption) for a in synced.notes()[0].attachments]
    assert shown == [(sha(first), "available", ""), (sha(second), "pending", "plan")]
    synced.sync()

    assert [a["sha256"] for a in server.live("note")[note_id]["attachments"]] == [sha(first), sha(second)]
    assert_photos_settled(synced, server, first, second)


def test_leftovers_of_a_crash_while_copying_are_swept(
    synced: FieldClient, server: FakeServer, photos: Callable[..., Path]
) -> None:
    data = jpeg(13)
    synced.add_note("kept", visit_id="v-morning", photos=[photos("p.jpg", data)])
    server.blobs_down = True
    orphan, recent = synced.blobs.path("ab" + "0" * 62), synced.blobs.path("cd" + "0" * 62)
    for leftover in (orphan, recent):
        leftover.parent.mkdir(parents=True, exist_ok=True)
        leftover.write_bytes(b"copied, never queued")
    os.utime(orphan, (0, 0))  # long ago
    synced.sync()

    assert store_files(synced) == sorted([synced.blobs.path(sha(data)), recent])


def test_another_account_may_not_log_in_while_photos_wait(
    synced: FieldClient, server: FakeServer, photos: Callable[..., Path]
) -> None:
    synced.add_note("mine", visit_id="v-morning", photos=[photos("p.jpg", jpeg(14))])
    server.blobs_down = True
    synced.sync()
    server.account = OTHER
    with pytest.raises(AccountMismatchError):
        synced.login()


def test_a_replica_of_schema_1_is_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    Replica(path).close()
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        DROP TABLE uploads;
        DROP TABLE attention;
        CREATE TABLE attention (
            id INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL UNIQUE,
            kind TEXT NOT NULL CHECK (kind IN ('rejected', 'conflict')), mutation_id INTEGER,
            mutation_type TEXT, entity TEXT, entity_id TEXT, detail TEXT NOT NULL,
            dismissed INTEGER NOT NULL DEFAULT 0, created_at TEXT NOT NULL);
        INSERT INTO attention (key, kind, detail, created_at) VALUES ('mutation:1', 'rejected', '{}', 'then');
        PRAGMA user_version = 1;
        """
    )
    conn.close()
    replica = Replica(path)
    replica.enqueue("note.put", {"id": "x", "attachments": []}, "now", uploads=[("a" * 64, 10, "image/png")])
    replica.set_upload_state("a" * 64, "corrupt", {"reason": "corrupt"})

    assert [i.kind for i in replica.attention()] == ["rejected", "upload"]
    assert replica.conn.execute("PRAGMA user_version").fetchone()[0] == 2
    replica.close()


# --- the command line ---------------------------------------------------------------------------


def test_the_field_commands_attach_photos_and_show_their_upload(
    tmp_path: Path, server: FakeServer, options: dict[str, Any], photos: Callable[..., Path]
) -> None:
    runner = CliRunner()
    data = ["--data", str(tmp_path / "field")]

    def run(*args: str) -> str:
        result = runner.invoke(field, [*args, *data], obj={"client_options": options})
        assert result.exit_code == 0, result.output
        return result.output

    first, second = jpeg(20), image("PNG")
    a, b = photos("a.jpg", first), photos("b.png", second)
    run("login", "--url", BASE_URL, "--token", TOKEN)
    run("sync")
    saved = run(
        "note", "Due foto", "--visit", "v-morning", "--photo", str(a), "--photo", str(b), "--caption", "cortile"
    )
    assert "with 2 photo(s)" in saved
    a.unlink()
    shown = run("notes")
    assert f"[image/jpeg {len(first) / 1024:.1f} KiB, waiting to upload] {sha(first)[:12]} “cortile”" in shown
    assert f"[image/png {len(second)} B, waiting to upload] {sha(second)[:12]}" in shown
    assert f"Photos:      2 waiting to upload ({(len(first) + len(second)) / 1024:.1f} KiB)" in run("status")
    refused = runner.invoke(field, ["note", "x", "--visit", "v-morning", "--photo", __file__, *data])
    assert (refused.exit_code, "not a JPEG, PNG, WebP, HEIC or PDF file" in refused.output) == (1, True)

    assert "Uploaded 2 photo(s)" in run("sync")
    assert "Photos:" not in run("status")
    assert run("notes").count(", uploaded]") == 2
    assert (server.blobs[sha(first)], server.blobs[sha(second)]) == (first, second)


# --- end to end, against the real server --------------------------------------------------------

VISIT = "d1-g1-casa-quartiere-san-salvario"


class BlobOutage(httpx.BaseTransport):
    """Real HTTP, except that blob requests fail while ``down`` (a phone on a network that drops uploads),
    and that an upload's connection breaks once it has sent each of the byte offsets in ``cuts``."""

    def __init__(self, *, down: bool = True, cuts: tuple[int, ...] = ()) -> None:
        self.inner = httpx.HTTPTransport()
        self.down = down
        self.cuts = list(cuts)
        self.refused = 0
        self.puts: list[tuple[int, int, int | None]] = []  # first, last, status (None: cut short)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if "/blobs/" not in request.url.path:
            return self.inner.handle_request(request)
        if self.down:
            self.refused += 1
            raise httpx.ConnectError("no signal in the courtyard", request=request)
        if request.method != "PUT":
            return self.inner.handle_request(request)
        first, last = (int(n) for n in request.headers["Content-Range"].split()[1].split("/")[0].split("-"))
        cut = next((c for c in self.cuts if first < c <= last), None)
        if cut is None:
            response = self.inner.handle_request(request)
            self.puts.append((first, last, response.status_code))
            return response
        self.cuts.remove(cut)
        self.puts.append((first, last, None))
        body = request.read()

        def broken() -> Iterator[bytes]:
            yield body[: cut - first]
            raise httpx.WriteError("the train entered a tunnel", request=request)

        cut_short = httpx.Request(request.method, request.url, headers=request.headers, content=broken())
        return self.inner.handle_request(cut_short)

    def close(self) -> None:
        self.inner.close()


def test_a_photo_arriving_an_hour_after_its_note_becomes_available_on_every_device_that_may_see_it(
    seeded: Seeded, tmp_path: Path, photos: Callable[..., Path]
) -> None:
    author, organizer = seeded.first("participant", group="G1"), seeded.first("organizer")
    stranger = next(a for a in seeded.accounts.values() if a.role == "participant" and a.id != author.id)
    shared_photo, private_photo = jpeg(30, (640, 480)), jpeg(31, (480, 640))
    server = LiveServer(seeded).start()
    outage = BlobOutage()
    quick = {"sleep": lambda _: None, "max_attempts": 2}
    try:
        with (
            httpx.Client(transport=outage) as network,
            # Small parts, so that the real server's 308s are walked through too.
            FieldClient(
                server.url, author.token, tmp_path / "phone.db", http=network, upload_chunk_size=64 * 1024, **quick
            ) as phone,
            FieldClient(server.url, organizer.token, tmp_path / "laptop.db", **quick) as laptop,
            FieldClient(server.url, stranger.token, tmp_path / "other.db", **quick) as other,
        ):
            for client in (phone, laptop, other):
                client.sync()
            shared = phone.add_note(
                "Il cortile", visit_id=VISIT, share_with_organizers=True, photos=[photos("c.jpg", shared_photo)]
            )
            private = phone.add_note("Only mine", visit_id=VISIT, photos=[photos("p.jpg", private_photo)])

            report = phone.sync()  # the notes go; their photos cannot
            assert (report.applied, report.uploaded, report.uploads_pending) == (2, 0, 2)
            assert outage.refused > 0
            assert {n.id: [a.status for a in n.attachments] for n in phone.notes()} == {
                shared: ["pending"],
                private: ["pending"],
            }
            laptop.sync()
            [seen] = [n for n in laptop.notes() if n.id == shared]
            assert [(a.sha256, a.status) for a in seen.attachments] == [(sha(shared_photo), "pending")]
            assert private not in {n.id for n in laptop.notes()}

            outage.down = False  # an hour later, on the hotel's wifi
            report = phone.sync()
            assert len(shared_photo) > 2 * 64 * 1024
            assert (report.uploaded, report.uploaded_bytes) == (2, len(shared_photo) + len(private_photo))
            assert {n.id: [a.status for a in n.attachments] for n in phone.notes()} == {
                shared: ["available"],
                private: ["available"],
            }
            assert (phone.uploads(), store_files(phone)) == ([], [])  # freed once the server held them
            laptop.sync()
            [seen] = [n for n in laptop.notes() if n.id == shared]
            assert [a.status for a in seen.attachments] == ["available"]
            assert laptop.fetch_photo(sha(shared_photo)) == shared_photo
            assert phone.fetch_photo(sha(private_photo)) == private_photo  # from the server now

            for reader, photo in ((other, private_photo), (other, shared_photo), (laptop, private_photo)):
                with pytest.raises(RequestRejectedError) as refused:
                    reader.fetch_photo(sha(photo))
                assert refused.value.status == 404
    finally:
        server.stop()


@pytest.mark.parametrize("cuts", [(MiB // 2,), (300_000, 2 * MiB + 5, 4 * MiB + MiB // 3)], ids=["once", "thrice"])
def test_an_upload_broken_off_mid_part_resumes_against_the_real_server(
    seeded: Seeded, tmp_path: Path, photos: Callable[..., Path], big_photo: bytes, cuts: tuple[int, ...]
) -> None:
    author = seeded.first("participant", group="G1")
    server = LiveServer(seeded).start()
    network = BlobOutage(down=False, cuts=cuts)
    try:
        with (
            httpx.Client(transport=network) as http,
            FieldClient(server.url, author.token, tmp_path / "phone.db", http=http, sleep=lambda _: None) as phone,
        ):
            phone.sync()
            phone.add_note("Big photo", visit_id=VISIT, photos=[photos("big.jpg", big_photo)])
            report = phone.sync()

            assert (report.uploaded, report.uploads_pending, network.cuts) == (1, 0, [])
            # Parts the server took follow each other, each from where the server stood: after a
            # break the upload went on from the bytes the server kept, never from zero. (A part
            # sent while the server had not yet noticed the break is refused with 409 and its offset.)
            taken = [(first, last) for first, last, status in network.puts if status in (201, 308)]
            assert all(a[1] < b[0] for a, b in itertools.pairwise(taken))
            assert [status for *_, status in network.puts].count(None) == len(cuts)
            assert network.puts[-1][2] == 201
            statuses = {status for *_, status in network.puts}
            assert statuses <= {None, 201, 308, 409}
            assert [a.status for n in phone.notes() for a in n.attachments] == ["available"]
            assert (seeded.path.parent / "blobs" / sha(big_photo)[:2] / sha(big_photo)).read_bytes() == big_photo
    finally:
        server.stop()


def test_a_photo_past_the_accounts_storage_quota_is_reported_once_and_not_retried(
    seeded: Seeded, tmp_path: Path, photos: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    author = seeded.first("participant", group="G1")
    fits, too_many = jpeg(40, (320, 240)), jpeg(41, (320, 240))
    monkeypatch.setenv("STUDYVISIT_MAX_ACCOUNT_BLOB_BYTES", str(len(fits) + len(too_many) - 1))
    server = LiveServer(seeded).start()
    try:
        with FieldClient(server.url, author.token, tmp_path / "phone.db", sleep=lambda _: None) as phone:
            phone.sync()
            phone.add_note("Primo", visit_id=VISIT, photos=[photos("a.jpg", fits)])
            assert phone.sync().uploaded == 1
            phone.add_note("Secondo", visit_id=VISIT, photos=[photos("b.jpg", too_many)])
            phone.sync()
            phone.sync()
            [item] = phone.attention()
            assert (item.detail["reason"], item.detail["error"]["status"]) == ("refused", 507)
            assert str(item.detail["error"]["type"]).endswith("storage-quota-exceeded")
            assert phone.photo_path(sha(too_many)) is not None  # never confirmed: kept on the phone
            assert phone.status().pending == 0  # the note itself went
    finally:
        server.stop()


def test_two_participants_with_the_same_photo_each_upload_it_and_each_see_it(
    seeded: Seeded, tmp_path: Path, photos: Callable[..., Path]
) -> None:
    """The second device is not told the server holds it: it proves it holds the bytes by sending them."""
    first, second = [a for a in seeded.accounts.values() if a.role == "participant" and a.group_id == "G1"][:2]
    same = jpeg(42, (320, 240))
    server = LiveServer(seeded).start()
    try:
        with (
            FieldClient(server.url, first.token, tmp_path / "a.db", sleep=lambda _: None) as phone_a,
            FieldClient(server.url, second.token, tmp_path / "b.db", sleep=lambda _: None) as phone_b,
        ):
            for phone, name in ((phone_a, "a.jpg"), (phone_b, "b.jpg")):
                phone.sync()
                phone.add_note("La stessa foto", visit_id=VISIT, photos=[photos(name, same)])
                report = phone.sync()
                assert (report.uploaded, report.uploaded_bytes) == (1, len(same))
                assert [a.status for n in phone.notes() for a in n.attachments] == ["available"]
                assert phone.fetch_photo(sha(same)) == same
    finally:
        server.stop()


# --- the replica file holds the token: the device's other users may not read it ----------------


@pytest.mark.parametrize("existing_mode", [None, 0o644], ids=["new-file", "file-of-an-older-client"])
def test_the_replica_file_is_readable_by_its_owner_only(tmp_path: Path, existing_mode: int | None) -> None:
    path = tmp_path / "field" / "replica.db"
    if existing_mode is not None:
        Replica(path).close()
        for made in path.parent.iterdir():
            made.chmod(existing_mode)
    old_umask = os.umask(0o022)  # a usual default: new files would be world-readable
    try:
        replica = Replica(path)
        replica.conn.execute("CREATE TABLE IF NOT EXISTS probe (x)")  # the WAL file exists now
        try:
            modes = {p.name: p.stat().st_mode & 0o777 for p in path.parent.iterdir()}
        finally:
            replica.close()
    finally:
        os.umask(old_umask)
    assert "replica.db-wal" in modes
    assert modes == dict.fromkeys(modes, 0o600)
