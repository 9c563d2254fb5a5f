"""The load generator's jobs, run in a separate process (``execute``) so that it never shares a GIL with the caller.

Every job is bounded: reads run for a fixed time, pushes and phones send a fixed number of
requests, and each has a deadline after which it stops and reports what it saw.
"""

import asyncio
import math
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import httpx
import msgspec

from bench import corpus
from bench.dataset import uuid7
from bench.http import Connection, HTTPError, SyncResult, auth_headers, build_request, pull_all


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


# --- reads ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReadStats:
    """Closed-loop read load: completed requests in the measured window and their latencies."""

    requests: int
    errors: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float


@dataclass(frozen=True)
class ReadJob:
    """``connections`` clients sending the same GET back to back for ``duration_s`` after a warm-up."""

    port: int
    path: str
    headers: dict[str, str]
    expect: int
    connections: int
    warmup_s: float
    duration_s: float
    client: Literal["raw", "httpx"] = "raw"

    async def run(self) -> ReadStats:
        latencies: list[float] = []
        errors = 0
        loop = asyncio.get_running_loop()
        begin = loop.time() + self.warmup_s
        end = begin + self.duration_s
        request = build_request("GET", self.path, self.headers)

        def record(t0: float, status: int) -> None:
            nonlocal errors
            t1 = loop.time()
            if t0 >= begin and t1 <= end:
                if status == self.expect:
                    latencies.append(t1 - t0)
                else:
                    errors += 1

        async def raw_client() -> None:
            conn = Connection(self.port)
            while loop.time() < end:
                t0 = loop.time()
                try:
                    status = (await conn.send(request)).status
                except HTTPError:
                    status = 0
                record(t0, status)
            conn.close()

        async def httpx_clients(client: httpx.AsyncClient) -> None:
            while loop.time() < end:
                t0 = loop.time()
                try:
                    status = (await client.get(self.path, headers=self.headers)).status_code
                except httpx.HTTPError:
                    status = 0
                record(t0, status)

        async with asyncio.timeout(self.warmup_s + self.duration_s + 60):
            if self.client == "raw":
                await asyncio.gather(*(raw_client() for _ in range(self.connections)))
            else:
                limits = httpx.Limits(max_connections=self.connections, max_keepalive_connections=self.connections)
                async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.port}", limits=limits) as client:
                    await asyncio.gather(*(httpx_clients(client) for _ in range(self.connections)))
        ms = [x * 1000 for x in latencies]
        return ReadStats(
            requests=len(ms),
            errors=errors,
            seconds=self.duration_s,
            rps=len(ms) / self.duration_s,
            p50_ms=percentile(ms, 0.50),
            p99_ms=percentile(ms, 0.99),
        )


# --- pushes --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Device:
    """One install of the app: its account's token, its own client id, the visits it takes notes on."""

    account_id: str
    token: str
    client_id: str
    visit_ids: tuple[str, ...]
    seed: int


def note_batches(device: Device, notes: int, batch_size: int, *, shared: bool = False) -> tuple[list[bytes], list[str]]:
    """Push bodies of ``note.put`` mutations (ids 1..notes) and the note ids they create (``shared``: with
    the organizers, so that their sync carries them)."""
    rng = random.Random(device.seed)
    now = datetime.now(UTC).astimezone()
    base_ms = time.time_ns() // 1_000_000
    language = rng.choice(corpus.LANGUAGES)
    note_ids = [uuid7(base_ms + i, rng) for i in range(notes)]
    mutations = [
        {
            "id": i + 1,
            "type": "note.put",
            "client_time": now.isoformat(),
            "args": {
                "id": note_ids[i],
                "visit_id": rng.choice(device.visit_ids),
                "body": corpus.note_body(rng, language),
                "tags": rng.sample(corpus.TAGS, rng.randint(0, 3)),
                "captured_at": now.isoformat(),
                **({"share_with_organizers": True} if shared else {}),
            },
        }
        for i in range(notes)
    ]
    bodies = [
        msgspec.json.encode({"client_id": device.client_id, "protocol": 1, "mutations": mutations[i : i + batch_size]})
        for i in range(0, notes, batch_size)
    ]
    return bodies, note_ids


class PushOutcome(msgspec.Struct):
    last_mutation_id: int
    results: list[dict[str, Any]]


_decode_push = msgspec.json.Decoder(PushOutcome).decode


async def push_batch(conn: Connection, event_id: str, token: str, body: bytes, attempts: int = 3) -> tuple[int, int]:
    """Push one batch, retrying transport errors, 5xx and 429 like a phone; (applied count, errors seen)."""
    headers = {**auth_headers(token), "Content-Type": "application/json"}
    request = build_request("POST", f"/api/v1/events/{event_id}/sync/push", headers, body)
    errors = 0
    for attempt in range(attempts):
        try:
            reply = await conn.send(request)
        except HTTPError:
            errors += 1
            await asyncio.sleep(0.2 * (attempt + 1))
            continue
        if reply.status == 200:
            outcome = _decode_push(reply.content())
            applied = sum(r["status"] == "applied" for r in outcome.results)
            bad = sum(r["status"] not in ("applied", "duplicate") for r in outcome.results)
            return applied, errors + bad
        errors += 1
        if reply.status < 500 and reply.status != 429:
            break
        await asyncio.sleep(0.2 * (attempt + 1))
    return 0, errors


@dataclass(frozen=True)
class PushStats:
    """Notes pushed by concurrent devices, end to end."""

    notes: int
    applied: int
    errors: int
    seconds: float
    notes_per_s: float
    batch_p50_ms: float
    batch_p99_ms: float


@dataclass(frozen=True)
class PushJob:
    """Each device pushes its notes in batches, one after another; the devices push at once."""

    port: int
    event_id: str
    devices: tuple[Device, ...]
    notes_per_device: int
    batch_size: int
    deadline_s: float = 300.0
    shared: bool = False

    async def run(self) -> PushStats:
        prepared = [
            note_batches(d, self.notes_per_device, self.batch_size, shared=self.shared)[0] for d in self.devices
        ]
        latencies: list[float] = []
        totals = [0, 0]

        async def device(token: str, bodies: list[bytes]) -> None:
            conn = Connection(self.port)
            for body in bodies:
                t0 = time.perf_counter()
                applied, errors = await push_batch(conn, self.event_id, token, body)
                latencies.append((time.perf_counter() - t0) * 1000)
                totals[0] += applied
                totals[1] += errors
            conn.close()

        started = time.perf_counter()
        async with asyncio.timeout(self.deadline_s):
            await asyncio.gather(*(device(d.token, b) for d, b in zip(self.devices, prepared, strict=True)))
        seconds = time.perf_counter() - started
        return PushStats(
            notes=self.notes_per_device * len(self.devices),
            applied=totals[0],
            errors=totals[1],
            seconds=seconds,
            notes_per_s=totals[0] / seconds,
            batch_p50_ms=percentile(latencies, 0.5),
            batch_p99_ms=percentile(latencies, 0.99),
        )


# --- pulls ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PullJob:
    """One sync from ``cursor`` (empty: the initial sync)."""

    port: int
    event_id: str
    token: str
    cursor: str = ""
    limit: int = 5000
    gzip: bool = True
    client_id: str | None = None

    async def run(self) -> SyncResult:
        conn = Connection(self.port)
        try:
            return await pull_all(
                conn,
                self.event_id,
                self.token,
                cursor=self.cursor,
                limit=self.limit,
                gzip=self.gzip,
                client_id=self.client_id,
            )
        finally:
            conn.close()


@dataclass(frozen=True)
class NotesJob:
    """One device pushes ``notes`` notes in batches (setup for incremental pulls; not timed)."""

    port: int
    event_id: str
    device: Device
    notes: int
    batch_size: int = 500

    async def run(self) -> int:
        conn = Connection(self.port)
        bodies, _ = note_batches(self.device, self.notes, self.batch_size)
        applied = 0
        for body in bodies:
            done, errors = await push_batch(conn, self.event_id, self.device.token, body)
            if errors:
                raise HTTPError(f"{errors} error(s) while pushing setup notes")
            applied += done
        conn.close()
        return applied


# --- photo uploads -------------------------------------------------------------------------


@dataclass(frozen=True)
class Photo:
    """A photo to upload: its bytes and the SHA-256 that names it."""

    sha256: str
    data: bytes


@dataclass(frozen=True)
class UploadStats:
    """Photos uploaded by concurrent clients, end to end."""

    photos: int
    stored: int  # answered 201 with the photo's size
    bytes: int
    requests: int
    errors: int
    seconds: float
    mib_per_s: float
    photo_p50_ms: float
    photo_p99_ms: float
    messages: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class UploadJob:
    """``clients`` clients at once, each uploading its share of the photos one after another, as the reference
    client does: ``HEAD`` (the server must not hold it yet), then one ``PUT`` of the whole photo
    (``part_size`` 0) or ``PUT``s of ``part_size``-byte parts with ``Content-Range``, 308 until the last, 201."""

    port: int
    event_id: str
    tokens: tuple[str, ...]
    photos: tuple[Photo, ...]
    part_size: int = 0
    deadline_s: float = 300.0

    def _requests(self, token: str, photo: Photo) -> tuple[bytes, list[tuple[bytes, int]]]:
        """The HEAD and the PUTs of one photo, prebuilt, each PUT with the status it must get."""
        path = f"/api/v1/events/{self.event_id}/blobs/{photo.sha256}"
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        head = build_request("HEAD", path, headers)
        put_headers = {**headers, "Content-Type": "image/jpeg"}
        size = len(photo.data)
        if not self.part_size or self.part_size >= size:
            return head, [(build_request("PUT", path, put_headers, photo.data), 201)]
        puts = []
        for first in range(0, size, self.part_size):
            last = min(first + self.part_size, size) - 1
            part_headers = {**put_headers, "Content-Range": f"bytes {first}-{last}/{size}"}
            body = photo.data[first : last + 1]
            puts.append((build_request("PUT", path, part_headers, body), 201 if last == size - 1 else 308))
        return head, puts

    async def run(self) -> UploadStats:
        clients = len(self.tokens)
        # Prebuilt, so that the generator's CPU goes to sending, not to copying bytes.
        plans = [
            [(photo, *self._requests(self.tokens[k], photo)) for photo in self.photos[k::clients]]
            for k in range(clients)
        ]
        latencies: list[float] = []
        counts = {"stored": 0, "requests": 0, "errors": 0}
        messages: list[str] = []

        def fail(message: str) -> None:
            counts["errors"] += 1
            if len(messages) < 10:
                messages.append(message)

        async def client(plan: list[tuple[Photo, bytes, list[tuple[bytes, int]]]]) -> None:
            conn = Connection(self.port)
            for photo, head, puts in plan:
                t0 = time.perf_counter()
                try:
                    reply = await conn.send(head, no_body=True)
                    counts["requests"] += 1
                    if reply.status != 404 or reply.header("upload-offset") != "0":
                        fail(f"HEAD of a new photo answered {reply.status}, offset {reply.header('upload-offset')}")
                        continue
                    for request, expect in puts:
                        reply = await conn.send(request)
                        counts["requests"] += 1
                        if reply.status != expect:
                            fail(f"PUT answered {reply.status} (expected {expect}): {reply.content()[:200]!r}")
                            break
                    else:
                        outcome = msgspec.json.decode(reply.content())
                        if outcome.get("sha256") == photo.sha256 and outcome.get("size") == len(photo.data):
                            counts["stored"] += 1
                        else:
                            fail(f"the upload's answer does not describe the photo: {outcome!r:.200}")
                except HTTPError as exc:
                    fail(str(exc))
                latencies.append((time.perf_counter() - t0) * 1000)
            conn.close()

        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.deadline_s):
                await asyncio.gather(*(client(plan) for plan in plans))
        except TimeoutError:
            fail(f"the uploads did not finish within {self.deadline_s:.0f} s")
        seconds = time.perf_counter() - started
        total = sum(len(p.data) for p in self.photos)
        return UploadStats(
            photos=len(self.photos),
            stored=counts["stored"],
            bytes=total,
            requests=counts["requests"],
            errors=counts["errors"],
            seconds=seconds,
            mib_per_s=total / (1 << 20) / seconds,
            photo_p50_ms=percentile(latencies, 0.5),
            photo_p99_ms=percentile(latencies, 0.99),
            messages=messages,
        )


# --- the load test -------------------------------------------------------------------------


@dataclass
class PhonesStats:
    """200 phones at once: pull, push, pull again."""

    phones: int
    errors: int
    seconds: float
    requests: int
    notes_sent: list[str] = field(default_factory=list)
    notes_acked: list[str] = field(default_factory=list)
    phones_seeing_all_their_notes: int = 0
    phone_p50_s: float = 0.0
    phone_p99_s: float = 0.0
    messages: list[str] = field(default_factory=list)
    # Pull pages refused (503 at the server's concurrency limit, 429, 5xx) and asked again after
    # Retry-After, as the reference client does; each is counted in ``errors`` too.
    pulls_refused: int = 0


@dataclass(frozen=True)
class PhonesJob:
    """Every device at once: an initial sync, one push of its notes, and a sync from the cursor it got."""

    port: int
    event_id: str
    devices: tuple[Device, ...]
    notes_per_phone: int
    page_limit: int = 500
    deadline_s: float = 300.0

    async def run(self) -> PhonesStats:
        stats = PhonesStats(phones=len(self.devices), errors=0, seconds=0.0, requests=0)
        durations: list[float] = []

        async def phone(device: Device) -> None:
            conn = Connection(self.port)
            t0 = time.perf_counter()
            bodies, note_ids = note_batches(device, self.notes_per_phone, self.notes_per_phone)
            stats.notes_sent.extend(note_ids)
            try:
                first = await pull_all(
                    conn, self.event_id, device.token, limit=self.page_limit, client_id=device.client_id, retries=3
                )
                stats.pulls_refused += first.refused
                stats.errors += first.refused
                applied, errors = await push_batch(conn, self.event_id, device.token, bodies[0])
                stats.errors += errors
                if applied == len(note_ids):
                    stats.notes_acked.extend(note_ids)
                second = await pull_all(
                    conn,
                    self.event_id,
                    device.token,
                    cursor=first.cursor,
                    limit=self.page_limit,
                    client_id=device.client_id,
                    retries=3,
                )
                stats.pulls_refused += second.refused
                stats.errors += second.refused
                stats.requests += first.pages + 1 + second.pages + first.refused + second.refused
                if set(note_ids) <= second.note_ids:
                    stats.phones_seeing_all_their_notes += 1
            except HTTPError as exc:
                stats.errors += 1
                if len(stats.messages) < 10:
                    stats.messages.append(str(exc))
            finally:
                conn.close()
                durations.append(time.perf_counter() - t0)

        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.deadline_s):
                await asyncio.gather(*(phone(d) for d in self.devices))
        except TimeoutError:
            stats.errors += 1
            stats.messages.append(f"load test did not finish within {self.deadline_s:.0f} s")
        stats.seconds = time.perf_counter() - started
        stats.phone_p50_s = percentile(durations, 0.5)
        stats.phone_p99_s = percentile(durations, 0.99)
        return stats


Job = ReadJob | PushJob | PullJob | NotesJob | PhonesJob | UploadJob


def execute(job: Job) -> Any:
    """Run one job in this (the generator's) process; the entry point for the process pool."""
    return asyncio.run(job.run())
