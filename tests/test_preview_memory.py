"""Previews of decompression bombs: a small file that declares huge pixels never gets them decoded.

The preview runs in a child process, so that its peak memory (the kernel's high-water mark of its
resident set, ``VmHWM``, which the child reads of itself) is its own and not the test runner's. Not
``wait4``'s ``ru_maxrss``: Linux keeps that figure across fork and exec, so a child forked from a
large test worker reports the worker's size.
"""

import hashlib
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import pytest
from conftest import EVENT_ID, Seeded, make_app
from litestar import Litestar
from litestar.testing import TestClient
from sync_helpers import PROBLEM, note_put, push, uid

from server.services import previews

MB = 1024 * 1024
PEAK_LIMIT = 300 * MB
# The child's address-space cap (see CHILD).
ADDRESS_SPACE_LIMIT = 3 * 1024 * MB


def png_of_zeros(width: int, height: int) -> bytes:
    """A valid RGB PNG of black pixels, compressed row by row: 13,300 x 13,300 is about 500 KB."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    compressor = zlib.compressobj(9)
    row = b"\x00" * (1 + 3 * width)  # filter byte "none", then the pixels
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bomb") / "bomb.png"
    path.write_bytes(png_of_zeros(13_300, 13_300))
    return path


CHILD = textwrap.dedent(
    """
    import hashlib, resource, sys, threading
    from pathlib import Path

    # A safety net for the old behaviour: a bomb decoded anyway dies here instead of eating the machine.
    resource.setrlimit(resource.RLIMIT_AS, (int(sys.argv[4]), int(sys.argv[4])))
    from server.services.previews import NotPreviewableError, preview
    from server.storage.blobs import BlobFiles, BlobRow

    source, root, at_once = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    data = source.read_bytes()
    files = BlobFiles(root)
    temp = files.new_temp()
    temp.write(data)
    digest = temp.finish()
    files.install_temp(temp, digest)
    blob = BlobRow(sha256=digest, size=len(data), media_type="image/png", created_at="2025-12-10T09:00:00Z")
    outcomes = []

    def render(width):
        try:
            made = preview(files, blob, width, "jpeg")
            outcomes.append(f"preview {len(made.body)}")
        except NotPreviewableError as exc:
            outcomes.append("refused")

    threads = [threading.Thread(target=render, args=(w,)) for w in (480, 1600, 120, 960)[:at_once]]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(" ".join(sorted(o.split()[0] for o in outcomes)))
    status = Path("/proc/self/status").read_text()
    print(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")))  # kB
    """
)


def run_preview(source: Path, root: Path, at_once: int) -> tuple[str, int]:
    """Make previews of ``source`` in a child; returns what it printed and its peak resident memory."""
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(source), str(root), str(at_once), str(ADDRESS_SPACE_LIMIT)],
        capture_output=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert child.returncode == 0, child.stderr.decode()
    outcomes, peak_kb = child.stdout.decode().strip().rsplit("\n", 1)
    return outcomes, int(peak_kb) * 1024


@pytest.mark.parametrize("at_once", [1, 2, 4], ids=["one-request", "two-at-once", "four-at-once"])
def test_a_decompression_bomb_is_refused_before_decoding_with_memory_well_bounded(
    bomb: Path, tmp_path: Path, at_once: int
) -> None:
    assert bomb.stat().st_size < 1 * MB
    printed, peak = run_preview(bomb, tmp_path / "data", at_once)
    assert printed == " ".join(["refused"] * at_once)
    assert peak < PEAK_LIMIT, f"peak resident memory {peak / MB:.0f} MB"


def test_a_large_photo_within_the_pixel_cap_still_gets_its_preview_within_the_bound(tmp_path: Path) -> None:
    source = tmp_path / "large.png"
    source.write_bytes(png_of_zeros(4000, 3000))  # 12 MP, as a phone's screenshot of a scan may be
    printed, peak = run_preview(source, tmp_path / "data", 2)
    assert printed == "preview preview"
    assert peak < PEAK_LIMIT, f"peak resident memory {peak / MB:.0f} MB"


# --- over HTTP ------------------------------------------------------------------------------

AUTHOR = "p-nguyen-thi-hoa"
BLOBS = f"/api/v1/events/{EVENT_ID}/blobs"


def attached(client: TestClient[Litestar], headers: dict[str, str], data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    note = note_put(
        1, uid(1), body="bomb", attachments=[{"sha256": digest, "media_type": "image/png", "bytes": len(data)}]
    )
    assert push(client, headers, [note])["results"][0]["status"] == "applied"
    assert client.put(f"{BLOBS}/{digest}", content=data, headers=headers).status_code == 201
    return f"{BLOBS}/{digest}"


def test_a_bombs_preview_is_a_415_not_previewable_and_the_original_stays_fetchable(
    seeded: Seeded, tmp_path: Path, bomb: Path
) -> None:
    headers = {"Authorization": f"Bearer {seeded.accounts[AUTHOR].token}"}
    with TestClient(app=make_app(seeded, data_dir=tmp_path / "data")) as client:
        url = attached(client, headers, bomb.read_bytes())
        response = client.get(url, params={"w": 480}, headers=headers)
        assert response.status_code == 415
        assert response.json()["type"] == PROBLEM + "not-previewable"
        assert "13300 x 13300" in response.json()["detail"]
        assert client.get(url, headers=headers).content == bomb.read_bytes()


def test_a_preview_waits_for_a_free_render_slot_and_says_503_when_none_frees_up(
    seeded: Seeded, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    headers = {"Authorization": f"Bearer {seeded.accounts[AUTHOR].token}"}
    monkeypatch.setattr(previews, "RENDER_WAIT_S", 0.01)
    with TestClient(app=make_app(seeded, data_dir=tmp_path / "data")) as client:
        url = attached(client, headers, png_of_zeros(64, 48))
        taken = [previews._renders.acquire(timeout=1) for _ in range(previews.MAX_CONCURRENT_RENDERS)]  # pyright: ignore[reportPrivateUsage]
        try:
            assert all(taken)
            busy = client.get(url, params={"w": 120}, headers=headers)
        finally:
            for _ in taken:
                previews._renders.release()  # pyright: ignore[reportPrivateUsage]
        assert (busy.status_code, busy.json()["type"]) == (503, PROBLEM + "preview-busy")
        assert client.get(url, params={"w": 120}, headers=headers).status_code == 200
