"""The offline field client against an in-memory server that speaks sync protocol v1.

``FakeServer`` keeps what the protocol promises and nothing more: a last mutation id per
client, note/feedback/site mutations, a change log read through opaque cursors in pages,
tombstones, 410 for cursors older than the log, and a count/checksum summary on the last page.
It also speaks the blob upload contract (HEAD for the offset, PUT parts with Content-Range,
the hash checked when the last part lands). Faults (network errors, 5xx, lost responses,
crashes, connections that break after N bytes of an upload) are queued per endpoint.
"""

import copy
import hashlib
import random
import re
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from click.testing import CliRunner

import sync.replica
from schemas.sync import Change, EntitySummary, Mutation, NotePutArgs, PullResponse, PushRequest, PushResponse
from server.cli_field import field
from sync import transport as transport_module
from sync.checksum import checksum
from sync.client import (
    AccountMismatchError,
    FieldClient,
    OfflineError,
    ProtocolError,
    RecordNotFoundError,
    RequestRejectedError,
    ServerError,
    SyncError,
)
from sync.cursor import Cursor, decode_cursor, encode_cursor
from sync.rules import NOTE_DEFAULTS, edited_fields

pytestmark = pytest.mark.both_backends  # CI runs it on SQLite, then on PostgreSQL

BASE_URL = "http://studyvisit.test"
TOKEN = "token-hoa"
EVENT = "turin-test"
ME = {"id": "p-hoa", "name": "Nguyễn Thị Hoa", "role": "participant", "event_id": EVENT, "group_id": "G1"}
OTHER = {"id": "p-aicha", "name": "Aïcha Diallo", "role": "participant", "event_id": EVENT, "group_id": "G2"}
CET = timezone(timedelta(hours=1))
NOW = datetime(2025, 12, 10, 9, 30, tzinfo=CET)
MAX_ATTEMPTS = 4
BACKOFF_BASE = 0.5
SEED: list[tuple[str, str, dict[str, Any]]] = [
    ("event", EVENT, {"title": "Turin test event", "starts_on": "2025-12-10", "ends_on": "2025-12-12"}),
    ("group", "G1", {"name": "Community houses"}),
    ("group", "G2", {"name": "Circular economy"}),
    ("site", "casa", {"name": "Casa del Quartiere", "kind": "community_house", "lat": 45.05, "lon": 7.68}),
    ("site", "dar", {"name": "دار الأمل", "kind": "association", "lat": 45.07, "lon": 7.69, "city": "Torino"}),
    ("visit", "v-afternoon", {"title": "Casa", "starts_at": "2025-12-10T14:00:00+01:00",
                              "ends_at": "2025-12-10T16:00:00+01:00", "group_ids": ["G1"], "site_id": "casa"}),
    ("visit", "v-morning", {"title": "Dar al-Amal", "starts_at": "2025-12-10T10:00:00+01:00",
                            "ends_at": "2025-12-10T12:00:00+01:00", "group_ids": ["G1"], "site_id": "dar"}),
    ("visit", "v-other", {"title": "Elsewhere", "starts_at": "2025-12-10T09:00:00+01:00",
                          "ends_at": "2025-12-10T10:00:00+01:00", "group_ids": ["G2"]}),
    ("visit", "v-plenary", {"title": "Plenary", "starts_at": "2025-12-10T08:30:00+01:00",
                            "ends_at": "2025-12-10T09:00:00+01:00", "group_ids": []}),
]  # fmt: skip


class Crash(Exception):
    """The process dying mid-sync, injected where the test wants it."""


Fault = str | int | Callable[[httpx.Request], None] | None


class FakeServer:
    """Sync protocol v1 in memory, for one event, answering one participant's token."""

    def __init__(self) -> None:
        self.state: dict[tuple[str, str], tuple[int, dict[str, Any] | None]] = {}  # data None: tombstone
        self.log: dict[tuple[str, str], int] = {}  # the latest change seq of each record
        self.edited: dict[tuple[str, str], int] = {}  # the version of each record's latest field change
        self.seq = 0
        self.horizon = 0  # cursors before this seq were issued before a compaction: gone (410)
        self.last_mutation: dict[str, int] = {}
        self.results: dict[tuple[str, int], dict[str, Any]] = {}  # kept to answer retries, as the server does
        self.processed: list[int] = []  # every mutation id applied, rejected or conflicted, in order
        self.pushes: list[list[int]] = []  # mutation ids of each push that arrived
        self.full_pulls = 0
        self.faults: dict[str, list[Fault]] = {}
        self.process_at_most: int | None = None  # stop early in a push: the rest is out_of_order
        self.max_batch: int | None = None  # larger pushes get 413
        self.summary_lies = False
        self.account = ME
        # Blobs: whole ones, unfinished uploads, every blob request, and upload bytes kept.
        self.blobs: dict[str, bytes] = {}
        self.partial: dict[str, bytearray] = {}
        self.blob_requests: list[tuple[str, str, str]] = []  # (method, sha256, Content-Range)
        self.received = 0
        self.cuts: list[int] = []  # offsets at which an upload's connection breaks, each once
        self.down_after_cut = False  # a cut takes the blob endpoint down (blobs_down) until the test lifts it
        self.blobs_down = False
        self.garble = 0  # flip a byte in the next n parts received
        self.max_blob_bytes = 20 << 20
        self.calls: list[str] = []  # the endpoint of every request, in order
        for entity, record_id, data in SEED:
            self.put(entity, record_id, data)

    # --- the server's own writes ----------------------------------------------------------

    def put(self, entity: str, record_id: str, data: dict[str, Any], *, content: bool = True) -> int:
        """Write a record; ``content=False``: a new version that changes no field (a blob landed)."""
        version = self.state.get((entity, record_id), (0, None))[0] + 1
        self.state[entity, record_id] = (version, {**data, "id": record_id, "version": version})
        self.seq += 1
        self.log[entity, record_id] = self.seq
        if content:
            self.edited[entity, record_id] = version
        return version

    def delete(self, entity: str, record_id: str, tombstone: dict[str, Any] | None = None) -> None:
        version = self.state[entity, record_id][0] + 1
        self.state[entity, record_id] = (version, None if tombstone is None else {"tombstone": tombstone})
        self.seq += 1
        self.log[entity, record_id] = self.seq

    def compact(self) -> None:
        """Rewrite the change log without tombstones: cursors issued before are gone (410)."""
        for key in [k for k, (_, d) in self.state.items() if d is None or "tombstone" in d]:
            del self.state[key], self.log[key]
        self.horizon = self.seq + 1
        for _, key in sorted((seq, key) for key, seq in self.log.items()):
            self.seq += 1
            self.log[key] = self.seq

    def live(self, entity: str) -> dict[str, dict[str, Any]]:
        return {i: d for (e, i), (_, d) in self.state.items() if e == entity and d is not None and "tombstone" not in d}

    def fail(self, endpoint: str, *faults: Fault) -> None:
        """Queue faults for the next requests to ``push``, ``pull``, ``me`` or ``blobs`` (None: answer normally)."""
        self.faults.setdefault(endpoint, []).extend(faults)

    # --- HTTP -----------------------------------------------------------------------------

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return problem(401, "unauthorized")
        endpoint = "blobs" if "/blobs/" in request.url.path else request.url.path.rsplit("/", 1)[-1]
        self.calls.append(endpoint)
        if endpoint == "blobs" and self.blobs_down:
            raise httpx.ConnectError("blob storage unreachable", request=request)
        queued = self.faults.get(endpoint) or []
        fault = queued.pop(0) if queued else None
        if fault == "network":
            raise httpx.ConnectError("network unreachable", request=request)
        if fault == "crash":
            raise Crash(endpoint)
        if isinstance(fault, int):
            return problem(fault, "injected")
        if callable(fault):
            fault(request)
        if endpoint == "me":
            response = httpx.Response(200, json=self.account)
        elif endpoint == "blobs" and request.url.path.startswith(f"/api/v1/events/{EVENT}/blobs/"):
            response = self.blob(request)
        elif request.url.path != f"/api/v1/events/{EVENT}/sync/{endpoint}":
            response = problem(404, "not-found")
        else:
            response = self.push(request) if endpoint == "push" else self.pull(request)
        if fault == "drop":
            raise httpx.ReadError("connection reset after the server answered", request=request)
        return response

    def push(self, request: httpx.Request) -> httpx.Response:
        body = msgspec.json.decode(request.content, type=PushRequest)
        self.pushes.append([m.id for m in body.mutations])
        if self.max_batch is not None and len(body.mutations) > self.max_batch:
            return problem(413, "payload-too-large")
        last = self.last_mutation.get(body.client_id, 0)
        results: list[dict[str, Any]] = []
        budget = len(body.mutations) if self.process_at_most is None else self.process_at_most
        for mutation in body.mutations:
            if mutation.id <= last:
                earlier = self.results.get((body.client_id, mutation.id))
                results.append({"id": mutation.id, "status": "duplicate", "result": earlier})
            elif mutation.id != last + 1 or budget == 0:
                results.append({"id": mutation.id, "status": "out_of_order"})
            else:
                results.append({"id": mutation.id, **self.apply(mutation)})
                self.results[body.client_id, mutation.id] = results[-1]
                self.processed.append(mutation.id)
                last, budget = mutation.id, budget - 1
        self.last_mutation[body.client_id] = last
        answer = msgspec.convert({"last_mutation_id": last, "results": results}, PushResponse)  # the wire shape
        return httpx.Response(200, content=msgspec.json.encode(answer))

    def apply(self, mutation: Mutation) -> dict[str, Any]:
        args = mutation.args
        entity = {"note.put": "note", "note.delete": "note", "feedback.put": "feedback"}.get(mutation.type, "site")
        record_id = args["site_id"] if entity == "site" else args["id"]
        current_version, current = self.state.get((entity, record_id), (0, None))
        if args.get("visit_id") and args["visit_id"] not in self.live("visit"):
            return rejected("unknown-visit", f"No visit {args['visit_id']!r} in this event.")
        if mutation.type == "note.delete":
            if current is None or "tombstone" in current:
                return rejected("not-found", f"No note {record_id!r}.")
            self.delete("note", record_id)
            return {"status": "applied"}
        if current is not None and "tombstone" in current:
            return rejected("deleted", f"The {entity} {record_id!r} was deleted.")
        control = ("base_version", "resolve_conflicts")
        fields = args["fields"] if entity == "site" else {k: v for k, v in args.items() if k not in control}
        if entity == "note":
            fields = edited_fields(fields, {"id": None, **NOTE_DEFAULTS})  # null resets, as the server does
        base = current or {"author_id": self.account["id"], "conflicts": []}
        if args.get("resolve_conflicts"):
            base = {**base, "conflicts": []}
        edited = self.edited.get((entity, record_id), current_version)
        lost = {} if args.get("base_version", 0) >= edited else {k: v for k, v in fields.items() if base.get(k) != v}
        if lost:
            conflicts = [{"field": k, "value": v, "mutation_id": mutation.id} for k, v in lost.items()]
            version = self.put(entity, record_id, {**base, "conflicts": base.get("conflicts", []) + conflicts})
            return {"status": "conflict", "version": version, "conflicts": sorted(lost)} | self.lacking(record_id)
        version = self.put(entity, record_id, {**base, **fields})
        return {"status": "applied", "version": version} | self.lacking(record_id)

    def lacking(self, record_id: str) -> dict[str, Any]:
        """``pending_blobs`` of a note's result: its attachments whose bytes are not here yet."""
        _, data = self.state.get(("note", record_id), (0, None))
        missing = {a["sha256"] for a in (data or {}).get("attachments", [])} - self.blobs.keys()
        return {"pending_blobs": sorted(missing)} if missing else {}

    def blob(self, request: httpx.Request) -> httpx.Response:
        sha256, content_range = request.url.path.rsplit("/", 1)[-1], request.headers.get("Content-Range", "")
        self.blob_requests.append((request.method, sha256, content_range))
        offset = str(len(self.partial.get(sha256, b"")))
        if request.method == "HEAD":
            if sha256 in self.blobs:
                return httpx.Response(200, headers={"Content-Length": str(len(self.blobs[sha256]))})
            return httpx.Response(404, headers={"Upload-Offset": offset})
        if request.method == "GET":
            return (
                httpx.Response(200, content=self.blobs[sha256]) if sha256 in self.blobs else problem(404, "not-found")
            )
        if sha256 in self.blobs:
            return httpx.Response(200)
        first, last, total = map(int, re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", content_range).groups())  # type: ignore[union-attr]
        if total > self.max_blob_bytes:
            return problem(413, "payload-too-large")
        held = self.partial.setdefault(sha256, bytearray())
        if first != len(held):
            return problem(409, "upload-offset-mismatch", {"Upload-Offset": offset})
        body = request.content
        assert len(body) == last - first + 1
        if self.garble:
            self.garble -= 1
            body = bytes([body[0] ^ 0xFF]) + body[1:]
        cut = next((c for c in self.cuts if first <= c <= last), None)
        if cut is not None:  # the server keeps what arrived before the connection broke
            self.cuts.remove(cut)
            held += body[: cut - first]
            self.received += cut - first
            self.blobs_down = self.down_after_cut
            raise httpx.WriteError(f"connection broke after byte {cut}", request=request)
        held += body
        self.received += len(body)
        if len(held) < total:
            return httpx.Response(308, headers={"Upload-Offset": str(len(held))})
        del self.partial[sha256]
        if hashlib.sha256(held).hexdigest() != sha256:
            return problem(422, "blob-hash-mismatch")
        self.blobs[sha256] = bytes(held)
        # Devices that see a note referencing the blob learn from its new version that it landed.
        for note_id, note in self.live("note").items():
            if any(a["sha256"] == sha256 for a in note.get("attachments", [])):
                self.put("note", note_id, note, content=False)
        return httpx.Response(201)

    def pull(self, request: httpx.Request) -> httpx.Response:
        position = decode_cursor(request.url.params.get("cursor"))
        since = position.seq if position else 0
        if since and since < self.horizon:
            return problem(410, "cursor-gone")
        self.full_pulls += since == 0
        limit = int(request.url.params["limit"])
        pending = sorted((seq, key) for key, seq in self.log.items() if seq > since)
        if since == 0:  # a full pull: the live state, no tombstones
            pending = [
                (seq, key) for seq, key in pending if self.state[key][1] and "tombstone" not in self.state[key][1]
            ]
        page, has_more = pending[:limit], len(pending) > limit
        changes = [self.change(entity, record_id) for _, (entity, record_id) in page]
        answer = PullResponse(
            changes=changes,
            cursor=encode_cursor(Cursor(1, page[-1][0] if has_more else self.seq)),
            has_more=has_more,
            last_mutation_id=self.last_mutation.get(request.url.params["client_id"], 0),
            summary=None if has_more else self.summary(),
        )
        return httpx.Response(200, content=msgspec.json.encode(answer))

    def change(self, entity: str, record_id: str) -> Change:
        version, data = self.state[entity, record_id]
        if data is None or "tombstone" in data:
            return Change(entity=entity, id=record_id, op="delete", version=version, data=(data or {}).get("tombstone"))
        if entity == "note":
            attachments = [
                {**a, "status": "available" if a["sha256"] in self.blobs else "pending"}
                for a in data.get("attachments", [])
            ]
            data = {**data, "attachments": attachments}
        return Change(entity=entity, id=record_id, op="put", version=version, data=data)

    def summary(self) -> dict[str, EntitySummary]:
        kinds = {entity for entity, _ in self.state}
        summary = {k: EntitySummary(count=len(r), checksum=checksum((i, d["version"]) for i, d in r.items()))
                   for k in kinds if (r := self.live(k))}  # fmt: skip
        if self.summary_lies:
            summary["site"] = EntitySummary(count=99, checksum="0" * 16)
        return summary


def problem(status: int, slug: str, headers: dict[str, str] | None = None) -> httpx.Response:
    body = {"type": f"https://studyvisit.test/problems/{slug}", "title": slug.replace("-", " "), "status": status}
    return httpx.Response(status, json=body, headers={"Content-Type": "application/problem+json", **(headers or {})})


def rejected(slug: str, detail: str) -> dict[str, Any]:
    error = {"type": f"https://studyvisit.test/problems/{slug}", "title": slug, "status": 422, "detail": detail}
    return {"status": "rejected", "error": error}


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture
def server() -> FakeServer:
    return FakeServer()


@pytest.fixture
def delays() -> list[float]:
    """The backoff delays the client asked to sleep, instead of sleeping."""
    return []


@pytest.fixture
def http(server: FakeServer) -> Iterator[httpx.Client]:
    with httpx.Client(transport=httpx.MockTransport(server.handle)) as client:
        yield client


@pytest.fixture
def options(http: httpx.Client, delays: list[float]) -> dict[str, Any]:
    return {
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
        opened.append(FieldClient(BASE_URL, TOKEN, tmp_path / "replica.db", **(options | overrides)))
        return opened[-1]

    yield make
    for client in opened:
        client.close()


@pytest.fixture
def client(open_client: Callable[..., FieldClient]) -> FieldClient:
    return open_client()


@pytest.fixture
def synced(client: FieldClient) -> FieldClient:
    """A client that has logged in and pulled the event once."""
    assert client.sync().verified
    return client


def assert_converged(client: FieldClient, server: FakeServer) -> None:
    """The replica holds exactly the server's live state and nothing is queued."""
    for entity in {e for e, _ in server.state}:
        mine = {r.id: r.version for r in client.records(entity)}
        assert mine == {i: d["version"] for i, d in server.live(entity).items()}, entity
    assert client.status().pending == 0


def sent_mutations(server: FakeServer, requests: list[httpx.Request]) -> list[Mutation]:
    return [m for r in requests for m in msgspec.json.decode(r.content, type=PushRequest).mutations]


# --- outbox durability and exactly-once delivery ----------------------------------------------


def test_outbox_survives_a_restart_and_is_sent_by_the_next_sync(
    open_client: Callable[..., FieldClient], server: FakeServer
) -> None:
    first = open_client()
    ids = [
        first.add_note("Cooperative kitchen", visit_id="v-morning"),
        first.add_note("ملاحظة", tags=["كتب"], site_id="dar"),
    ]
    first.close()

    again = open_client()
    assert again.status().pending == 2
    assert [(n.id, n.pending) for n in again.notes()] == [(i, True) for i in sorted(ids)]
    report = again.sync()

    assert (report.applied, report.verified) == (2, True)
    assert set(server.live("note")) == set(ids)
    assert [n.pending for n in again.notes()] == [False, False]
    assert_converged(again, server)


@pytest.mark.parametrize("lost_responses", [1, MAX_ATTEMPTS], ids=["retried-in-sync", "next-sync"])
def test_a_push_whose_response_was_lost_is_applied_exactly_once(
    synced: FieldClient, server: FakeServer, lost_responses: int
) -> None:
    note_id = synced.add_note("Lost in transit", visit_id="v-morning")
    server.fail("push", *["drop"] * lost_responses)
    if lost_responses == MAX_ATTEMPTS:
        with pytest.raises(OfflineError):
            synced.sync()
        assert synced.status().pending == 1  # the server has it, but the device cannot know yet
    report = synced.sync()

    assert server.processed == [1]
    assert report.duplicate == 1
    assert server.state["note", note_id][0] == 1
    assert_converged(synced, server)


def test_out_of_order_answers_are_resent_from_the_last_processed_id(synced: FieldClient, server: FakeServer) -> None:
    server.process_at_most = 2
    for i in range(5):
        synced.add_note(f"note {i}", visit_id="v-morning")
    report = synced.sync()

    assert server.pushes == [[1, 2, 3, 4, 5], [3, 4, 5], [5]]
    assert server.processed == [1, 2, 3, 4, 5]
    assert (report.applied, report.out_of_order) == (5, 4)
    assert_converged(synced, server)


def create_then_edit(client: FieldClient) -> None:
    client.edit_note(client.add_note("typo", visit_id="v-morning"), body="fixed")


def create_then_delete(client: FieldClient) -> None:
    client.delete_note(client.add_note("never mind", visit_id="v-morning"))


def edit_twice_then_delete(client: FieldClient) -> None:
    [note] = client.notes()
    client.edit_note(note.id, body="once")
    client.edit_note(note.id, body="twice")
    client.delete_note(note.id)


def feedback_twice(client: FieldClient) -> None:
    client.put_feedback("v-morning", rating=2)
    client.put_feedback("v-morning", rating=4, comment="better after lunch")


def patch_site_twice(client: FieldClient) -> None:
    client.patch_site("dar", description={"fr": "Maison"}, city="Torino")
    client.patch_site("dar", description={"it": "Casa"}, meeting_point="Cortile")


@pytest.mark.parametrize(
    ("edits", "sent"),
    [
        (create_then_edit, [("note.put", 0)]),
        (create_then_delete, []),
        (edit_twice_then_delete, [("note.delete", 1)]),
        (feedback_twice, [("feedback.put", 0)]),
        (patch_site_twice, [("site.patch", 1)]),
    ],
)
def test_unsent_edits_of_one_record_travel_as_one_mutation(
    synced: FieldClient, server: FakeServer, edits: Callable[[FieldClient], None], sent: list[tuple[str, int]]
) -> None:
    synced.add_note("already on the server", visit_id="v-morning")
    synced.sync()
    seen: list[httpx.Request] = []
    server.fail("push", seen.append)
    edits(synced)
    shown = ([n.body for n in synced.notes()], [(f.rating, f.comment) for f in synced.feedback()])
    report = synced.sync()

    assert [(m.id, m.type, m.args["base_version"]) for m in sent_mutations(server, seen)] == [
        (2 + n, kind, base) for n, (kind, base) in enumerate(sent)
    ]
    assert (report.conflict, report.rejected) == (0, 0)
    assert ([n.body for n in synced.notes()], [(f.rating, f.comment) for f in synced.feedback()]) == shown
    assert_converged(synced, server)
    if edits is patch_site_twice:
        dar = server.live("site")["dar"]
        assert (dar["description"], dar["city"], dar["meeting_point"]) == (
            {"fr": "Maison", "it": "Casa"},
            "Torino",
            "Cortile",
        )


def test_an_edit_after_a_push_that_may_have_arrived_is_queued_apart(synced: FieldClient, server: FakeServer) -> None:
    note_id = synced.add_note("first", visit_id="v-morning")
    server.fail("push", *["drop"] * MAX_ATTEMPTS)
    with pytest.raises(OfflineError):
        synced.sync()
    synced.edit_note(note_id, body="second")
    synced.sync()

    assert server.pushes[-1] == [1, 2]
    # Whether the server takes it or keeps it as a conflict of this device's own creation, it is not lost.
    note = server.live("note")[note_id]
    assert "second" in [note["body"], *(c["value"] for c in note["conflicts"])]


def test_a_server_that_never_moves_on_is_a_protocol_error(synced: FieldClient, server: FakeServer) -> None:
    server.process_at_most = 0
    synced.add_note("stuck", visit_id="v-morning")
    with pytest.raises(ProtocolError):
        synced.sync()
    assert synced.status().pending == 1


@pytest.mark.parametrize(
    ("batch_size", "max_batch", "pushes"),
    [
        (3, None, [[1, 2, 3], [4, 5, 6], [7]]),
        (5, 2, [[1, 2, 3, 4, 5], [1, 2], [3, 4], [5, 6], [7]]),
    ],
    ids=["batches", "413-splits"],
)
def test_the_outbox_is_pushed_in_order_in_batches(
    open_client: Callable[..., FieldClient],
    server: FakeServer,
    batch_size: int,
    max_batch: int | None,
    pushes: list[list[int]],
) -> None:
    client = open_client(batch_size=batch_size)
    server.max_batch = max_batch
    for i in range(7):
        client.add_note(f"note {i}", visit_id="v-morning")
    client.sync()

    assert server.pushes == pushes
    assert server.processed == list(range(1, 8))
    assert_converged(client, server)


# --- errors and retries -----------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["network", 500, 503, 507, 429])
def test_network_errors_and_5xx_are_retried_with_backoff(
    synced: FieldClient, server: FakeServer, delays: list[float], fault: str | int
) -> None:
    synced.add_note("retry me", visit_id="v-morning")
    server.fail("push", fault, fault)
    server.fail("pull", fault)
    synced.sync()

    assert len(delays) == 3
    # Full jitter: each delay is drawn below a ceiling that doubles with each failure in a row.
    assert all(0 <= d <= BACKOFF_BASE * 2**i for d, i in zip(delays, [0, 1, 0], strict=True))
    assert server.processed == [1]
    assert_converged(synced, server)


@pytest.mark.parametrize(("fault", "error"), [("network", OfflineError), (503, ServerError)])
def test_giving_up_raises_and_keeps_the_outbox(
    synced: FieldClient, server: FakeServer, delays: list[float], fault: str | int, error: type[SyncError]
) -> None:
    note_id = synced.add_note("kept", visit_id="v-morning")
    server.fail("push", *[fault] * MAX_ATTEMPTS)
    with pytest.raises(error):
        synced.sync()

    assert len(delays) == MAX_ATTEMPTS - 1
    assert synced.status().pending == 1
    assert [n.id for n in synced.notes() if n.pending] == [note_id]
    synced.sync()
    assert_converged(synced, server)


def test_a_refused_request_raises_its_problem_and_keeps_the_outbox(synced: FieldClient, server: FakeServer) -> None:
    synced.add_note("kept", visit_id="v-morning")
    server.fail("push", 400)
    with pytest.raises(RequestRejectedError) as raised:
        synced.sync()
    assert raised.value.status == 400
    assert synced.status().pending == 1


# --- attention: rejected mutations and conflicts ----------------------------------------------


def queue_a_note_on_an_unknown_visit(client: FieldClient, server: FakeServer) -> None:
    client.add_note("about nothing", visit_id="no-such-visit")


def delete_a_note_deleted_elsewhere(client: FieldClient, server: FakeServer) -> None:
    note_id = client.add_note("gone", visit_id="v-morning")
    client.sync()
    server.delete("note", note_id)  # by the same person on another device
    client.delete_note(note_id)


@pytest.mark.parametrize(
    ("change", "reason"),
    [(queue_a_note_on_an_unknown_visit, "unknown-visit"), (delete_a_note_deleted_elsewhere, "not-found")],
)
def test_rejected_mutations_stay_in_attention_until_dismissed(
    synced: FieldClient, server: FakeServer, change: Callable[[FieldClient, FakeServer], None], reason: str
) -> None:
    change(synced, server)
    report = synced.sync()

    assert report.rejected == 1
    [item] = synced.attention()
    assert (item.kind, item.detail["error"]["title"]) == ("rejected", reason)
    assert item.detail["args"]  # what the user wrote is still there to read
    assert synced.status().pending == 0
    assert all(not n.pending for n in synced.notes())
    synced.dismiss(item.id)
    assert synced.attention() == []
    assert [i.id for i in synced.attention(include_dismissed=True)] == [item.id]
    with pytest.raises(RecordNotFoundError):
        synced.dismiss(item.id + 100)


@pytest.mark.parametrize(
    ("change", "reason"),
    [(queue_a_note_on_an_unknown_visit, "unknown-visit"), (delete_a_note_deleted_elsewhere, "not-found")],
)
def test_a_rejection_whose_response_was_lost_reaches_attention_from_the_retry(
    synced: FieldClient, server: FakeServer, change: Callable[[FieldClient, FakeServer], None], reason: str
) -> None:
    change(synced, server)
    server.fail("push", "drop")  # processed, but the answer never arrives; the retry is a duplicate

    report = synced.sync()

    assert (report.duplicate, report.rejected) == (1, 0)
    [item] = synced.attention()
    assert (item.kind, item.detail["error"]["title"]) == ("rejected", reason)
    assert synced.status().pending == 0


def test_a_conflicting_edit_is_kept_in_attention_and_the_server_state_stands(
    synced: FieldClient, server: FakeServer
) -> None:
    note_id = synced.add_note("first draft", visit_id="v-morning")
    synced.sync()
    server.put("note", note_id, {**server.live("note")[note_id], "body": "edited on the laptop"})
    synced.edit_note(note_id, body="edited on the phone")
    assert [n.body for n in synced.notes()] == ["edited on the phone"]  # optimistic, until acknowledged
    report = synced.sync()

    assert report.conflict == 1
    [note] = synced.notes()
    assert (note.body, note.pending) == ("edited on the laptop", False)
    assert [c.value for c in note.conflicts] == ["edited on the phone"]
    kinds = {(i.kind, i.mutation_id is None) for i in synced.attention()}
    assert kinds == {("conflict", False), ("conflict", True)}  # the push result, and the pulled record

    synced.edit_note(note_id, body="merged", resolve_conflicts=True)
    synced.sync()
    assert [i.mutation_id for i in synced.attention()] == [2]  # the record's conflicts are resolved


def test_conflicts_sent_with_a_deleted_note_are_kept(synced: FieldClient, server: FakeServer) -> None:
    note_id = synced.add_note("shared draft", visit_id="v-morning")
    synced.sync()
    server.delete("note", note_id, {"conflicts": [{"field": "body", "value": "unsaved words"}]})
    synced.sync()

    assert synced.notes() == []
    [item] = synced.attention()
    assert (item.entity_id, item.detail["op"], item.detail["conflicts"][0]["value"]) == (
        note_id,
        "delete",
        "unsaved words",
    )


# --- pulling: 410, checksums, crashes -----------------------------------------------------------


def test_a_gone_cursor_rebuilds_the_replica_and_keeps_the_outbox(synced: FieldClient, server: FakeServer) -> None:
    server.delete("site", "dar")
    server.put("site", "casa", {**server.live("site")["casa"], "name": "Casa del Quartiere (new)"})
    server.compact()  # the site's removal is no longer in any change feed
    typed: list[str] = []
    # The user writes a note while the sync is pulling: it must survive the rebuild.
    server.fail("pull", lambda _: typed.append(synced.add_note("typed during sync", visit_id="v-morning")))
    report = synced.sync()

    assert (report.full_pull, report.verified) == (True, True)
    assert [s.name for s in synced.sites()] == ["Casa del Quartiere (new)"]
    assert [(n.id, n.pending) for n in synced.notes()] == [(typed[0], True)]
    synced.sync()
    assert_converged(synced, server)


@pytest.mark.parametrize(
    "drift",
    [
        lambda c, s: c.replica.conn.execute("DELETE FROM records WHERE entity = 'group'"),
        lambda c, s: c.replica.conn.execute("INSERT INTO records VALUES ('site', 'stray', 1, '{}')"),
        lambda c, s: s.state.update({("site", "casa"): (7, {**s.live("site")["casa"], "version": 7})}),
    ],
    ids=["replica-lost-a-record", "replica-holds-a-stray", "server-change-never-logged"],
)
def test_a_checksum_mismatch_triggers_one_full_pull(
    synced: FieldClient, server: FakeServer, drift: Callable[[FieldClient, FakeServer], Any]
) -> None:
    drift(synced, server)
    report = synced.sync()

    assert (report.full_pull, report.verified, server.full_pulls) == (True, True, 2)
    assert_converged(synced, server)


def test_a_persistent_mismatch_is_reported_after_one_full_pull(synced: FieldClient, server: FakeServer) -> None:
    server.summary_lies = True
    report = synced.sync()

    assert (report.verified, report.mismatched, server.full_pulls) == (False, ["site"], 2)


def crash_in_transport(server: FakeServer, monkeypatch: pytest.MonkeyPatch, pull: str) -> None:
    """Die while the second page is on its way (after the 410 when there is one)."""
    server.fail("pull", *[None] * (2 if pull == "full-after-410" else 1), "crash")


def crash_in_replica(server: FakeServer, monkeypatch: pytest.MonkeyPatch, pull: str) -> None:
    """Die inside the second page's SQLite transaction, after some of its rows were written."""
    calls = {"n": 0}
    original = sync.replica._note_conflicts

    def note_conflicts(*args: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 4:
            raise Crash("replica")
        original(*args)

    monkeypatch.setattr(sync.replica, "_note_conflicts", note_conflicts)


@pytest.mark.parametrize("crash", [crash_in_transport, crash_in_replica], ids=["transport", "replica"])
@pytest.mark.parametrize("pull", ["first-full", "incremental", "full-after-410"])
def test_a_sync_killed_mid_pull_is_finished_by_the_next_one(
    open_client: Callable[..., FieldClient],
    server: FakeServer,
    monkeypatch: pytest.MonkeyPatch,
    pull: str,
    crash: Callable[[FakeServer, pytest.MonkeyPatch, str], None],
) -> None:
    client = open_client(page_limit=3)
    if pull != "first-full":
        client.sync()
        for i in range(5):
            server.put("visit", f"v-extra-{i}", {**server.live("visit")["v-other"], "title": f"Extra {i}"})
    if pull == "full-after-410":
        server.compact()
    before = sorted(s.name for s in client.sites())
    crash(server, monkeypatch, pull)
    with pytest.raises(Crash):
        client.sync()

    if pull == "full-after-410":
        assert sorted(s.name for s in client.sites()) == before  # the old replica is intact
    client.close()
    monkeypatch.undo()
    again = open_client(page_limit=3)
    assert again.sync().verified
    assert_converged(again, server)


# --- reading: overlay, itinerary, sites ---------------------------------------------------------


def test_notes_overlay_queued_changes_on_the_replica(synced: FieldClient, server: FakeServer) -> None:
    kept, edited, deleted = (synced.add_note(body, visit_id="v-morning") for body in ("kept", "to edit", "to delete"))
    synced.sync()
    synced.edit_note(edited, body="edited offline", tags=["offline"])
    synced.delete_note(deleted)
    added = synced.add_note("added offline", site_id="dar", lat=45.07, lon=7.69)

    shown = {n.id: (n.body, n.pending) for n in synced.notes()}
    assert shown == {kept: ("kept", False), edited: ("edited offline", True), added: ("added offline", True)}
    assert {r.id: r.data["body"] for r in synced.records("note")} == {  # the replica: server state only
        kept: "kept",
        edited: "to edit",
        deleted: "to delete",
    }
    assert synced.status().pending == 3


def test_acknowledged_changes_stay_visible_until_a_pull_brings_them(synced: FieldClient, server: FakeServer) -> None:
    note_id = synced.add_note("sent, not yet pulled", visit_id="v-morning")
    server.fail("pull", *["network"] * MAX_ATTEMPTS)
    with pytest.raises(OfflineError):
        synced.sync()

    assert (synced.status().pending, synced.status().unconfirmed) == (0, 1)
    assert [(n.id, n.pending) for n in synced.notes()] == [(note_id, True)]
    synced.sync()
    assert [(n.id, n.pending) for n in synced.notes()] == [(note_id, False)]
    assert server.processed == [1]


def test_edits_send_only_what_they_change_based_on_the_replica_version(synced: FieldClient, server: FakeServer) -> None:
    seen: list[httpx.Request] = []
    server.fail("push", seen.append, seen.append, seen.append)
    note_id = synced.add_note("body", visit_id="v-morning", tags=["a"])
    synced.sync()
    synced.edit_note(note_id, tags=["a", "b"])
    first = synced.put_feedback("v-morning", rating=4, comment="Très bien")
    synced.sync()
    second = synced.put_feedback("v-morning", rating=5)
    synced.patch_site("dar", meeting_point="Main gate")
    synced.sync()

    edit, *_, feedback, patch = sent_mutations(server, seen)[1:]
    # An edit that omits share_with_organizers or rating must never unshare or wipe them (docs §4).
    assert edit.args == {"id": note_id, "tags": ["a", "b"], "base_version": 1}
    assert msgspec.convert(edit.args, NotePutArgs).body is msgspec.UNSET
    assert (first, feedback.args) == (second, {"id": second, "visit_id": "v-morning", "rating": 5, "base_version": 1})
    assert [(f.rating, f.comment) for f in synced.feedback()] == [(5, "Très bien")]
    assert (patch.type, patch.args) == (
        "site.patch",
        {"site_id": "dar", "base_version": 1, "fields": {"meeting_point": "Main gate"}, "resolve_conflicts": False},
    )
    assert [f.rating for f in synced.feedback()] == [5]
    assert_converged(synced, server)


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda c: c.edit_note("0b7e5a57-0000-4000-8000-000000000000", body="x"), RecordNotFoundError),
        (lambda c: c.patch_site("nowhere", city="Torino"), RecordNotFoundError),
        (lambda c: c.patch_site("casa", colour="red"), TypeError),
        (lambda c: c.put_feedback("v-morning", rating=9), msgspec.ValidationError),
        (lambda c: c.add_note("about nowhere"), ValueError),
        (lambda c: c.add_note("half a place", visit_id="v-morning", lat=45.0), ValueError),
        (lambda c: c.add_note("x", visit_id="v-morning", tags=[""]), msgspec.ValidationError),
    ],
    ids=["unknown-note", "unknown-site", "unknown-field", "invalid-rating", "no-place", "lat-without-lon", "empty-tag"],
)
def test_invalid_local_changes_are_refused_before_queueing(
    synced: FieldClient, call: Callable[[FieldClient], Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        call(synced)
    assert synced.status().pending == 0


@pytest.mark.parametrize(
    ("group", "visits"),
    [
        (None, ["v-plenary", "v-morning", "v-afternoon"]),
        ("G2", ["v-plenary", "v-other"]),
    ],
)
def test_itinerary_lists_a_groups_visits_by_start(synced: FieldClient, group: str | None, visits: list[str]) -> None:
    assert [v.id for v in synced.itinerary(group)] == visits


def test_logging_in_as_someone_else_keeps_the_previous_accounts_queue(synced: FieldClient, server: FakeServer) -> None:
    synced.add_note("Hoa's note", visit_id="v-morning")
    server.account = OTHER
    with pytest.raises(AccountMismatchError):
        synced.login()
    synced.sync()  # still Hoa's stored account
    assert synced.login().id == OTHER["id"]
    assert (synced.records("note"), synced.status().pending) == ([], 0)


# --- the command line ---------------------------------------------------------------------------


def test_the_field_commands_work_offline_after_login_and_sync(
    tmp_path: Path, server: FakeServer, options: dict[str, Any]
) -> None:
    runner = CliRunner()
    data = ["--data", str(tmp_path / "field")]

    def run(*args: str) -> str:
        result = runner.invoke(field, [*args, *data], obj={"client_options": options})
        assert result.exit_code == 0, result.output
        return result.output

    assert "Nguyễn Thị Hoa" in run("login", "--url", BASE_URL, "--token", TOKEN)
    assert "Data verified" in run("sync")
    assert "دار الأمل" in run("sites")
    assert run("itinerary").index("08:30–09:00  Plenary") < run("itinerary").index("Dar al-Amal · دار الأمل")
    assert "saved" in run("note", "Ottima accoglienza", "--visit", "v-morning", "--tag", "food", "--share")
    assert "saved" in run("feedback", "v-morning", "--rating", "5", "--comment", "ممتاز")
    assert "Unsynced:    2 change(s)" in run("status")
    nowhere = runner.invoke(field, ["note", "about nowhere", *data], obj={"client_options": options})
    assert (nowhere.exit_code, "give --visit VISIT or --site SITE" in nowhere.output) == (1, True)

    server.fail("push", *["network"] * MAX_ATTEMPTS)
    offline = runner.invoke(field, ["sync", *data], obj={"client_options": options})
    assert (offline.exit_code, "offline" in offline.output) == (1, True)
    assert "Unsynced:    2 change(s)" in run("status")
    assert "Sent 2 change(s): 2 applied" in run("sync")
    assert "Ottima accoglienza" in run("notes")


def test_field_commands_need_a_login_first(tmp_path: Path) -> None:
    result = CliRunner().invoke(field, ["sites", "--data", str(tmp_path)])
    assert (result.exit_code, "not logged in" in result.output) == (1, True)


def test_two_unsent_partial_edits_travel_as_one_carrying_both_changes(synced: FieldClient, server: FakeServer) -> None:
    note_id = synced.add_note("Sportello lavoro", visit_id="v-morning", tags=["jobs"], share_with_organizers=True)
    synced.sync()
    seen: list[httpx.Request] = []
    server.fail("push", seen.append)
    synced.edit_note(note_id, body="Sportello lavoro: 12 volontari")
    synced.edit_note(note_id, tags=None)  # None resets to the default: no tags

    synced.sync()

    [edit] = sent_mutations(server, seen)
    assert {k: v for k, v in edit.args.items() if k != "resolve_conflicts"} == {
        "id": note_id, "body": "Sportello lavoro: 12 volontari", "tags": None, "base_version": 1
    }  # fmt: skip
    [note] = synced.notes()
    assert (note.body, note.tags, note.share_with_organizers) == ("Sportello lavoro: 12 volontari", [], True)


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"Retry-After": "120"}, 120.0),
        ({"Retry-After": "Wed, 10 Dec 2025 14:02:00 GMT", "Date": "Wed, 10 Dec 2025 14:00:00 GMT"}, 120.0),
        ({"Retry-After": "Wed, 10 Dec 2025 13:59:00 GMT", "Date": "Wed, 10 Dec 2025 14:00:00 GMT"}, 0.0),
        ({"Retry-After": "Wed, 10 Dec 2025 14:02:00", "Date": "Wed, 10 Dec 2025 14:00:00 GMT"}, None),
        ({"Retry-After": "soon"}, None),
        ({}, None),
    ],
    ids=["delay-seconds", "http-date", "http-date-past", "date-without-zone", "garbage", "absent"],
)
def test_retry_after_is_read_in_both_forms_against_the_servers_date(
    headers: dict[str, str], seconds: float | None
) -> None:
    response = httpx.Response(429, headers=headers)
    assert transport_module._retry_after(response) == seconds  # pyright: ignore[reportPrivateUsage]


def test_a_server_restored_from_a_backup_is_met_as_a_new_client_without_losing_the_outbox(
    synced: FieldClient, server: FakeServer
) -> None:
    backup = copy.deepcopy(
        {k: getattr(server, k) for k in ("state", "log", "edited", "seq", "last_mutation", "results")}
    )
    lost = synced.add_note("acknowledged, then lost in the restore", visit_id="v-morning")
    synced.sync()  # mutation 1 is applied and pulled back: the device drops it
    old_client = synced.replica.client_id
    for key, value in backup.items():
        setattr(server, key, value)  # the server comes back from a backup taken before mutation 1
    kept = synced.add_note("written after the restore", visit_id="v-morning")  # mutation 2: a gap

    report = synced.sync()

    assert report.restarted_client
    assert synced.replica.client_id != old_client
    assert server.last_mutation[synced.replica.client_id] == 1  # renumbered from 1 under the new id
    assert [n.id for n in synced.notes()] == [kept]
    assert lost not in server.live("note")
    assert report.full_pull
    assert_converged(synced, server)
