"""The measurements: reads beside the floor, pushes beside raw SQLite, pulls, the Turin demo, the load test.

Each function drives a running server through the load generator's process and returns plain
data for the JSON report. Figures repeated over runs are reduced to their median.
"""

import hashlib
import io
import math
import multiprocessing
import os
import random
import shutil
import sqlite3
import statistics
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import msgspec
from PIL import Image

from bench.dataset import LARGE, SMALL, Dataset, ParticipantPool, Scale, stamp
from bench.http import SyncResult, auth_headers
from bench.loadgen import (
    Device,
    Job,
    NotesJob,
    PhonesJob,
    PhonesStats,
    Photo,
    PullJob,
    PushJob,
    PushStats,
    ReadJob,
    ReadStats,
    UploadJob,
    UploadStats,
    execute,
    note_batches,
)
from bench.machine import Interference, wait_until_quiet
from bench.servers import Server, floor_server
from server.storage.db import Database, migrate

Client = Literal["raw", "httpx"]


@dataclass(frozen=True)
class Config:
    """How much of everything to do."""

    smoke: bool
    scale: Scale
    runs: int
    warmup_s: float
    duration_s: float
    connections: int
    push_devices: int
    push_batches: int
    push_batch_size: int
    incremental_changes: int
    phones: int
    notes_per_phone: int
    upload_photos: int  # per mode and run; every photo is new
    upload_photo_bytes: int  # about this size each
    upload_part_bytes: int  # the Content-Range parts of the resumable mode
    upload_clients: int
    time_limit_s: int
    quiet_wait_s: float  # how long to wait at the start for other work on the machine to end
    settle_s: float  # and before each run of a figure (0: do not wait)


FULL = Config(
    smoke=False,
    scale=LARGE,
    runs=3,
    warmup_s=1.0,
    duration_s=5.0,
    connections=64,
    push_devices=16,
    push_batches=4,
    push_batch_size=500,
    incremental_changes=1000,
    phones=200,
    notes_per_phone=50,
    upload_photos=16,
    upload_photo_bytes=4 << 20,
    upload_part_bytes=1 << 20,
    upload_clients=4,
    time_limit_s=900,
    quiet_wait_s=120.0,
    settle_s=20.0,
)
SMOKE = Config(
    smoke=True,
    scale=SMALL,
    runs=1,
    warmup_s=0.2,
    duration_s=1.0,
    connections=16,
    push_devices=4,
    push_batches=1,
    push_batch_size=100,
    incremental_changes=100,
    phones=20,
    notes_per_phone=10,
    upload_photos=4,
    upload_photo_bytes=256 << 10,
    upload_part_bytes=64 << 10,
    upload_clients=2,
    time_limit_s=120,
    quiet_wait_s=0.0,
    settle_s=0.0,
)


class LoadGenerator:
    """The load generator: one separate process, reused for every job, stopped when the block ends."""

    def __init__(self) -> None:
        self._pool = multiprocessing.get_context("spawn").Pool(1)

    def __enter__(self) -> "LoadGenerator":
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def run(self, job: Job, timeout_s: float = 600.0) -> Any:
        """Run a job in the generator process and return its result."""
        return self._pool.apply_async(execute, (job,)).get(timeout_s)

    def close(self) -> None:
        """Stop the generator process at once."""
        self._pool.terminate()
        self._pool.join()


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per numeric key, the median over runs; other values from the first run."""
    merged: dict[str, Any] = {}
    for key, value in runs[0].items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            merged[key] = value
        else:
            merged[key] = statistics.median(run[key] for run in runs)
    return merged


def settle(config: Config) -> None:
    """Give other work on the machine (a test run, a type checker) a chance to end before a run is measured."""
    if config.settle_s > 0:
        wait_until_quiet(config.settle_s)


def _repeat(config: Config, measure_once: Callable[[int], dict[str, Any]]) -> dict[str, Any]:
    """``config.runs`` samples, each with the share of CPU other processes took meanwhile, and their medians."""
    samples: list[dict[str, Any]] = []
    for i in range(config.runs):
        settle(config)
        interference = Interference().start()
        samples.append({**measure_once(i), "foreign_cpu": interference.share()})
    return {**median_of(samples), "runs": samples}


def _devices(dataset: Dataset, pool: ParticipantPool, count: int, seed: int) -> tuple[Device, ...]:
    return tuple(
        Device(
            account_id=a.id,
            token=a.token,
            client_id=str(uuid.uuid4()),
            visit_ids=tuple(dataset.visits_by_group[a.group_id or ""]),
            seed=seed + i,
        )
        for i, a in enumerate(pool.take(count))
    )


# --- reads ---------------------------------------------------------------------------------


def _probe(server: Server, path: str, headers: dict[str, str]) -> tuple[int, str]:
    """(body bytes on the wire, ETag) of one GET; urllib leaves a gzip body compressed."""
    request = urllib.request.Request(server.url + path, headers=headers)
    with urllib.request.urlopen(request, timeout=30) as response:
        return len(response.read()), response.headers.get("ETag", "")


def measure_reads(
    gen: LoadGenerator, server: Server, dataset: Dataset, config: Config, workers: int = 1
) -> dict[str, Any]:
    """Throughput and latency of three GETs at ``connections`` concurrent clients, each beside the floor
    (served by as many uvicorn workers as the server under test)."""
    participant = dataset.by_role("participant")[0]
    base = f"/api/v1/events/{dataset.event_id}"
    headers = auth_headers(participant.token)
    sites_size, _ = _probe(server, f"{base}/sites", headers)
    itinerary_size, etag = _probe(server, f"{base}/itinerary", headers)
    requests = {
        "sites": (f"{base}/sites", headers, 200),
        "itinerary": (f"{base}/itinerary", headers, 200),
        "revalidate_304": (f"{base}/itinerary", {**headers, "If-None-Match": etag}, 304),
    }
    spec = {"sites": (200, sites_size), "itinerary": (200, itinerary_size), "revalidate_304": (304, 0)}
    results: dict[str, Any] = {}
    with floor_server(spec, dataset.path.parent, workers) as floor:

        def read(port: int, path: str, hdrs: dict[str, str], expect: int, client: Client) -> ReadStats:
            job = ReadJob(port, path, hdrs, expect, config.connections, config.warmup_s, config.duration_s, client)
            stats: ReadStats = gen.run(job)
            return stats

        settle(config)
        raw = read(floor.port, "/floor/sites", {"Accept-Encoding": "gzip"}, 200, "raw")
        via_httpx = read(floor.port, "/floor/sites", {"Accept-Encoding": "gzip"}, 200, "httpx")
        client: Client = "raw" if raw.rps >= via_httpx.rps else "httpx"
        results["generator"] = {"raw_floor_rps": raw.rps, "httpx_floor_rps": via_httpx.rps, "chosen": client}
        for name, (path, hdrs, expect) in requests.items():

            def one_run(
                _: int, name: str = name, path: str = path, hdrs: dict[str, str] = hdrs, expect: int = expect
            ) -> dict[str, Any]:
                real = read(server.port, path, hdrs, expect, client)
                flat = read(floor.port, f"/floor/{name}", {"Accept-Encoding": "gzip"}, expect, client)
                return {
                    "rps": real.rps,
                    "p50_ms": real.p50_ms,
                    "p99_ms": real.p99_ms,
                    "errors": real.errors,
                    "floor_rps": flat.rps,
                    "floor_p50_ms": flat.p50_ms,
                    "floor_p99_ms": flat.p99_ms,
                    "floor_errors": flat.errors,
                    "ratio": real.rps / flat.rps if flat.rps else 0.0,
                }

            results[name] = {"body_bytes": spec[name][1], **_repeat(config, one_run)}
    return results


# --- pushes --------------------------------------------------------------------------------


def _note_rows(event_id: str, devices: tuple[Device, ...], notes: int, batch_size: int) -> list[tuple[Any, ...]]:
    """The rows the server stores for these devices' pushes, built from the very same push bodies."""
    now = stamp(datetime.now(UTC))
    rows = []
    for device in devices:
        for body in note_batches(device, notes, batch_size)[0]:
            for mutation in msgspec.json.decode(body)["mutations"]:
                a = mutation["args"]
                tags = msgspec.json.encode(a["tags"]).decode()
                rows.append(
                    (
                        a["id"],
                        event_id,
                        device.account_id,
                        a["visit_id"],
                        None,
                        a["body"],
                        tags,
                        None,
                        None,
                        a["captured_at"],
                        0,
                        0,
                        1,
                        "[]",
                        now,
                    )
                )
    return rows


def sqlite_floor(rows: list[tuple[Any, ...]], directory: Path) -> float:
    """Seconds to insert these rows into the real ``notes`` table of a fresh file with ``executemany``, in one
    transaction, with the server's durability settings (WAL, synchronous=FULL)."""
    path = directory / f"floor-{uuid.uuid4().hex}.db"
    database = Database(path)
    migrate(database)
    database.close()
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        started = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "INSERT INTO notes (id, event_id, author_id, visit_id, site_id, body, tags, lat, lon, captured_at,"
            " share_with_organizers, deleted, version, conflicts, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        conn.execute("COMMIT")
        return time.perf_counter() - started
    finally:
        conn.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)


PushFloor = Callable[[list[tuple[Any, ...]]], dict[str, float]]


def _sqlite_push_floor(directory: Path) -> PushFloor:
    def floor(rows: list[tuple[Any, ...]]) -> dict[str, float]:
        with tempfile.TemporaryDirectory(prefix="studyvisit-floor-", dir=directory) as tmp:
            return {"seconds": sqlite_floor(rows, Path(tmp))}

    return floor


def measure_push(
    gen: LoadGenerator,
    server: Server,
    dataset: Dataset,
    pool: ParticipantPool,
    config: Config,
    floor: PushFloor | None = None,
) -> dict[str, Any]:
    """Notes per second from concurrent devices, each its own account, beside a raw insert of the same rows
    into the engine's own notes table (``floor``: its seconds, and any other figures it measured; by default
    SQLite's ``executemany``)."""
    notes = config.push_batches * config.push_batch_size
    insert = floor or _sqlite_push_floor(Path(tempfile.gettempdir()))

    def one_run(i: int) -> dict[str, Any]:
        devices = _devices(dataset, pool, config.push_devices, seed=100_000 * (i + 1))
        job = PushJob(server.port, dataset.event_id, devices, notes, config.push_batch_size)
        stats: PushStats = gen.run(job)
        timed = insert(_note_rows(dataset.event_id, devices, notes, config.push_batch_size))
        floor_rate = stats.notes / timed["seconds"]
        extra = {f"floor_{key}": value for key, value in timed.items() if key != "seconds"}
        return {
            **asdict(stats),
            "floor_seconds": timed["seconds"],
            "floor_notes_per_s": floor_rate,
            "ratio": stats.notes_per_s / floor_rate,
            **extra,
        }

    return {
        "devices": config.push_devices,
        "batch_size": config.push_batch_size,
        "notes_per_device": notes,
        **_repeat(config, one_run),
    }


# --- pulls ---------------------------------------------------------------------------------


def _sync_figures(compressed: SyncResult, plain: SyncResult) -> dict[str, Any]:
    consistent = all(compressed.puts.get(kind, 0) == count for kind, count in compressed.summary.items())
    return {
        "changes": compressed.changes,
        "pages": compressed.pages,
        "seconds_gzip": compressed.seconds,
        "bytes_gzip": compressed.wire_bytes,
        "seconds_identity": plain.seconds,
        "bytes_identity": plain.wire_bytes,
        "changes_per_s": compressed.changes / compressed.seconds if compressed.seconds else 0.0,
        # After a full sync the puts must match the server's own count of what the caller may see.
        "summary_matches": consistent,
    }


def _sync_both(gen: LoadGenerator, job: PullJob) -> tuple[dict[str, Any], str]:
    """The same sync with and without gzip; its figures and the cursor it ended at."""
    compressed: SyncResult = gen.run(job)
    plain: SyncResult = gen.run(replace(job, gzip=False))
    return _sync_figures(compressed, plain), compressed.cursor


def measure_pulls(
    gen: LoadGenerator, server: Server, dataset: Dataset, pool: ParticipantPool, config: Config
) -> dict[str, Any]:
    """Initial syncs of a participant and an organizer (limit 5000), and a participant's pull after N changes."""
    organizer = dataset.by_role("organizer")[0]
    samples: dict[str, list[dict[str, Any]]] = {
        "participant_initial": [],
        "organizer_initial": [],
        "participant_incremental": [],
    }
    for i in range(config.runs):
        settle(config)
        (device,) = _devices(dataset, pool, 1, seed=200_000 + i)
        pull = PullJob(server.port, dataset.event_id, device.token, limit=5000, client_id=device.client_id)
        initial, cursor = _sync_both(gen, pull)
        samples["participant_initial"].append(initial)
        organizer_pull = PullJob(server.port, dataset.event_id, organizer.token, limit=5000)
        samples["organizer_initial"].append(_sync_both(gen, organizer_pull)[0])
        # The same participant's second phone makes the changes; the first pulls them.
        second_phone = Device(device.account_id, device.token, str(uuid.uuid4()), device.visit_ids, device.seed + 1)
        applied = gen.run(NotesJob(server.port, dataset.event_id, second_phone, config.incremental_changes))
        incremental = _sync_both(gen, replace(pull, cursor=cursor))[0]
        incremental["summary_matches"] = incremental["changes"] == applied == config.incremental_changes
        samples["participant_incremental"].append(incremental)
    return {name: {**median_of(runs), "runs": runs} for name, runs in samples.items()}


def measure_turin(gen: LoadGenerator, server: Server, turin: Dataset, config: Config) -> dict[str, Any]:
    """A participant's initial sync of the small Turin demo event, as the reference client pulls (pages of 500)."""
    participant = turin.by_role("participant")[0]
    job = PullJob(server.port, turin.event_id, participant.token, limit=500, client_id=str(uuid.uuid4()))
    settle(config)
    gen.run(job)  # warm-up: the first request of a fresh process imports and compiles what it needs
    runs = [_sync_both(gen, job)[0] for _ in range(max(config.runs, 5))]
    return {**median_of(runs), "runs": runs}


# --- photo uploads -------------------------------------------------------------------------

# A JPEG of random noise at quality 95 without chroma subsampling takes about this many bytes per pixel.
NOISE_JPEG_BYTES_PER_PIXEL = 2.4
WRITE_CHUNK = 1 << 20  # the server writes what it receives in pieces of about this size


def make_photos(count: int, approx_bytes: int, seed: int) -> tuple[Photo, ...]:
    """``count`` distinct real JPEGs (4:3 noise, so they do not compress) of about ``approx_bytes`` each."""
    width = max(16, round(math.sqrt(approx_bytes / NOISE_JPEG_BYTES_PER_PIXEL * 4 / 3) / 16) * 16)
    height = width * 3 // 4
    rng = random.Random(seed)
    photos = []
    for _ in range(count):
        image = Image.frombytes("RGB", (width, height), rng.randbytes(width * height * 3))
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=95, subsampling=0)
        data = buffer.getvalue()
        photos.append(Photo(sha256=hashlib.sha256(data).hexdigest(), data=data))
    return tuple(photos)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def disk_floor(photos: tuple[Photo, ...], directory: Path) -> float:
    """Seconds to write these photos durably, one after another, in ``directory`` (the server's data directory)
    the way the server stores a blob: into a temporary file in 1 MiB pieces, fsync, rename to its final name,
    fsync of both directories. No HTTP, hashing or database: the disk's own speed for the same bytes."""
    root = directory / f"disk-floor-{uuid.uuid4().hex}"
    tmp, final = root / "tmp", root / "blobs"
    tmp.mkdir(parents=True)
    final.mkdir()
    try:
        started = time.perf_counter()
        for photo in photos:
            fd, name = tempfile.mkstemp(dir=tmp, prefix="upload-")
            with os.fdopen(fd, "wb") as file:
                view = memoryview(photo.data)
                for start in range(0, len(view), WRITE_CHUNK):
                    file.write(view[start : start + WRITE_CHUNK])
                file.flush()
                os.fsync(file.fileno())
            os.replace(name, final / photo.sha256)
            _fsync_dir(final)
            _fsync_dir(tmp)
        return time.perf_counter() - started
    finally:
        shutil.rmtree(root, ignore_errors=True)


def verify_blobs(db_path: Path, data_dir: Path, photos: tuple[Photo, ...]) -> int:
    """How many of these photos the server holds: a ``blobs`` row and a file, both of the photo's size."""
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        hashes = [p.sha256 for p in photos]
        marks = ", ".join("?" for _ in hashes)
        sizes = dict(conn.execute(f"SELECT sha256, size FROM blobs WHERE sha256 IN ({marks})", hashes).fetchall())
    finally:
        conn.close()
    held = 0
    for photo in photos:
        path = data_dir / "blobs" / photo.sha256[:2] / photo.sha256
        if sizes.get(photo.sha256) == len(photo.data) and path.is_file() and path.stat().st_size == len(photo.data):
            held += 1
    return held


def _filesystem(path: Path) -> str:
    """The type of the file system that holds ``path`` (from /proc/mounts: the longest mount point above it)."""
    best, kind = "", "unknown"
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            fields = line.split()
            if len(fields) >= 3 and str(path).startswith(fields[1]) and len(fields[1]) > len(best):
                best, kind = fields[1], f"{fields[2]} on {fields[0]}"
    except OSError:
        pass
    return kind


def measure_uploads(
    gen: LoadGenerator, server: Server, dataset: Dataset, pool: ParticipantPool, config: Config
) -> dict[str, Any]:
    """Photo uploads from concurrent clients, whole and in Content-Range parts, each beside the disk's own
    write speed for the same bytes in the same directory, measured in the same run."""
    data_dir = dataset.path.parent  # the server's data directory (see ``studyvisit_server``)
    tokens = tuple(a.token for a in pool.take(config.upload_clients))
    samples: dict[str, list[dict[str, Any]]] = {"whole": [], "parts": []}
    disk: list[dict[str, Any]] = []
    for i in range(config.runs):
        settle(config)
        interference = Interference().start()
        # Every photo new (a blob the server holds is answered at once, unread); generated before timing.
        seed = 400_000 + 10 * i
        photo_sets = {
            "whole": make_photos(config.upload_photos, config.upload_photo_bytes, seed),
            "parts": make_photos(config.upload_photos, config.upload_photo_bytes, seed + 1),
        }
        floor_s = disk_floor(photo_sets["whole"], data_dir)
        floor_bytes = sum(len(p.data) for p in photo_sets["whole"])
        floor_rate = floor_bytes / (1 << 20) / floor_s
        disk.append({"seconds": floor_s, "bytes": floor_bytes, "mib_per_s": floor_rate})
        for mode, photos in photo_sets.items():
            part = config.upload_part_bytes if mode == "parts" else 0
            stats: UploadStats = gen.run(UploadJob(server.port, dataset.event_id, tokens, photos, part))
            samples[mode].append(
                {
                    **asdict(stats),
                    "held_by_server": verify_blobs(dataset.path, data_dir, photos),
                    "disk_mib_per_s": floor_rate,
                    "ratio": stats.mib_per_s / floor_rate,
                }
            )
        share = interference.share()
        for mode in samples:
            samples[mode][-1]["foreign_cpu"] = share
        disk[-1]["foreign_cpu"] = share
    return {
        "clients": config.upload_clients,
        "photos": config.upload_photos,
        "photo_bytes_approx": config.upload_photo_bytes,
        "part_bytes": config.upload_part_bytes,
        "filesystem": _filesystem(data_dir.resolve()),
        "disk": {**median_of(disk), "runs": disk},
        **{mode: {**median_of(runs), "runs": runs} for mode, runs in samples.items()},
    }


# --- the load test -------------------------------------------------------------------------


StoredNotes = tuple[dict[str, int], dict[str, int], dict[str, int]]
NotesReader = Callable[[list[str], list[str]], StoredNotes]


def sqlite_notes(db_path: Path) -> NotesReader:
    """Reads, from the SQLite file: each note's version, its change-feed rows, each client's last mutation id."""

    def read(note_ids: list[str], clients: list[str]) -> StoredNotes:
        conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
        try:
            stored: dict[str, int] = {}
            feed_rows: dict[str, int] = {}
            for start in range(0, len(note_ids), 500):
                chunk = note_ids[start : start + 500]
                marks = ", ".join("?" for _ in chunk)
                stored.update(conn.execute(f"SELECT id, version FROM notes WHERE id IN ({marks})", chunk).fetchall())
                feed_rows.update(
                    conn.execute(
                        f"SELECT entity_id, COUNT(*) FROM changes WHERE entity = 'note' AND entity_id IN ({marks})"
                        " GROUP BY entity_id",
                        chunk,
                    ).fetchall()
                )
            marks = ", ".join("?" for _ in clients)
            last_ids = dict(
                conn.execute(
                    f"SELECT client_id, last_mutation_id FROM sync_clients WHERE client_id IN ({marks})", clients
                )
            )
        finally:
            conn.close()
        return stored, feed_rows, last_ids

    return read


def verify_notes(
    read: NotesReader, devices: tuple[Device, ...], note_ids: list[str], per_device: int
) -> dict[str, Any]:
    """Read the database: is every note the phones sent stored exactly once, and every client at its last id?"""
    clients = [d.client_id for d in devices]
    stored, feed_rows, last_ids = read(note_ids, clients)
    once = sum(1 for n in note_ids if stored.get(n) == 1 and feed_rows.get(n) == 1)
    complete = sum(1 for c in clients if last_ids.get(c) == per_device)
    return {
        "notes_sent": len(note_ids),
        "notes_unique": len(set(note_ids)),
        "notes_stored": len(stored),
        "notes_stored_once": once,
        "clients_at_last_id": complete,
        "exactly_once": once == len(note_ids) == len(set(note_ids)) == len(devices) * per_device
        and complete == len(devices),
    }


def load_test(
    gen: LoadGenerator,
    server: Server,
    dataset: Dataset,
    pool: ParticipantPool,
    config: Config,
    stored: NotesReader | None = None,
) -> dict[str, Any]:
    """Many phones at once, each pulling, pushing its notes and pulling again; then check the database."""
    devices = _devices(dataset, pool, config.phones, seed=300_000)
    settle(config)
    stats: PhonesStats = gen.run(PhonesJob(server.port, dataset.event_id, devices, config.notes_per_phone))
    check = verify_notes(stored or sqlite_notes(dataset.path), devices, stats.notes_sent, config.notes_per_phone)
    figures = asdict(stats)
    del figures["notes_sent"], figures["notes_acked"]
    return {**figures, "notes_acked": len(stats.notes_acked), **check}
