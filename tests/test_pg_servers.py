"""Several `studyvisit serve` processes on one PostgreSQL database (issue 13), always on PostgreSQL.

Devices reach the servers through a load balancer with no affinity: every request goes to either
server. A server killed in the middle of a push (before its commit, or after it but before its
answer) and restarted loses nothing and doubles nothing; the same batch sent to two servers at the
same moment is applied once; and an edit at one server is what the other serves at once (its read
cache validates against the data version in the database, not against anything it remembers).
Photos are files here: the servers share one data directory, so a photo's chunks may go to either
(tests/test_pg_blobs.py keeps them in the database instead, with no directory shared).
"""

import io
import random
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from schemas.accounts import NewAccount
from sync.client import FieldClient, OfflineError, ServerError
from tests.conftest import EVENT_ID, LiveServer
from tests.databases import Seeded, pg_demo

PUSH = f"/api/v1/events/{EVENT_ID}/sync/push"
SITE = "triciclo"
SITES = ("triciclo", "barrito", "casa-quartiere-san-salvario")
NOTES_PER_ROUND = 3
MIN_ROUNDS = 3
MAX_ROUNDS = 40
# Devices give up on an answer after this; pushes held at the feed clock past it are sent again.
DEVICE_TIMEOUT_S = 1.0
HOLD_AFTER_TIMEOUT_S = 1.5


@pytest.fixture
def pg_seeded(tmp_path: Path) -> Iterator[Seeded]:
    """A PostgreSQL database of this test's own holding the demo event; photos in one data dir for all servers."""
    data_dir = tmp_path / "shared-data"
    data_dir.mkdir()
    with pg_demo(data_dir / "studyvisit.db", "sv_servers") as seeded:
        yield seeded


def named(seeded: Seeded, application_name: str) -> Seeded:
    """The same database, its connections named (pg_stat_activity tells which server a backend serves)."""
    return Seeded(seeded.path, list(seeded.accounts.values()), f"{seeded.url}?application_name={application_name}")


def query(seeded: Seeded, statement: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(seeded.url, autocommit=True) as conn:
        return conn.execute(statement, params).fetchall()  # type: ignore[arg-type]  # the tests' own text


class Balancer(httpx.BaseTransport):
    """A load balancer without affinity: each request (and each retry) goes to a server chosen at random."""

    def __init__(self, servers: list[LiveServer], rng: random.Random) -> None:
        self.servers = servers
        self.rng = rng
        self.inner = httpx.HTTPTransport()
        self.sent: list[tuple[int, str, str]] = []  # port, method, path

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        server = self.rng.choice(self.servers)
        request.url = request.url.copy_with(host="127.0.0.1", port=server.port)
        self.sent.append((server.port, request.method, request.url.path))
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


@dataclass
class Device:
    """A field device and what it queued: note id -> (body, version it must end at)."""

    account: NewAccount
    client: FieldClient
    notes: dict[str, tuple[str, int]] = field(default_factory=dict)
    shared: set[str] = field(default_factory=lambda: set())
    site_edits: int = 0
    mutations: int = 0
    rounds: int = 0

    def sync_until_done(self, deadline: float) -> None:
        """Sync until nothing is queued; a server that stays unreachable for every retry is tried again."""
        while time.monotonic() < deadline:
            try:
                report = self.client.sync()
            except (OfflineError, ServerError):
                time.sleep(0.05)
                continue
            # A retry that raced its first delivery and was applied again would be rejected or in conflict.
            assert (report.rejected, report.conflict, report.attention) == (0, 0, 0), report
            if report.pending == 0:
                return
        raise AssertionError(f"{self.account.id} still has queued mutations")

    def work(self, stop: threading.Event, deadline: float) -> None:
        """Rounds of new notes, an edit of an earlier one, and (organizers) a site correction, each synced."""
        rng = random.Random(self.account.id)
        while self.rounds < MAX_ROUNDS and (self.rounds < MIN_ROUNDS or not stop.is_set()):
            r = self.rounds
            for i in range(NOTES_PER_ROUND):
                body = f"{self.account.id} {r}.{i}: cooperativa — تعاونية — Nguyễn"
                share = i == 0
                note_id = self.client.add_note(body, site_id=rng.choice(SITES), share_with_organizers=share)
                self.notes[note_id] = (body, 1)
                self.shared |= {note_id} if share else set()
                self.mutations += 1
            synced = [n for n, (_, version) in self.notes.items() if version == 1][:-NOTES_PER_ROUND]
            if synced:  # a note pulled back already (version 1 in the replica): its edit is based on it
                edited = rng.choice(synced)
                body = f"{self.notes[edited][0]} (modifié)"
                self.client.edit_note(edited, body=body)
                self.notes[edited] = (body, 2)
                self.mutations += 1
            if self.account.role == "organizer":
                self.client.patch_site(SITE, accessibility=f"Step-free, checked in round {r}")
                self.site_edits += 1
                self.mutations += 1
            self.sync_until_done(deadline)
            self.rounds += 1


def wait_for(condition: Callable[[], bool], timeout: float = 20) -> bool:
    """Whether ``condition`` came true within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def kill_mid_push(server: LiveServer, seeded: Seeded, application_name: str, tries: int = 8) -> None:
    """SIGKILL `server` while one of its pushes is inside its transaction, waiting for the feed clock.

    Holding the event's feed clock holds every writing transaction at its last statement before
    COMMIT; once pg_stat_activity shows one of this server's backends waiting there, the server dies.
    The balancer may send every push of the moment to the other server: then let go and try again.
    """

    def blocked_push() -> bool:
        return bool(
            query(
                seeded,
                "SELECT 1 FROM pg_stat_activity WHERE application_name = %s AND wait_event_type = 'Lock'"
                " AND query LIKE '%%feed_clocks%%'",
                application_name,
            )
        )

    for _ in range(tries):
        with psycopg.connect(seeded.url) as holder:
            holder.execute("SELECT seq FROM feed_clocks WHERE event_id = %s FOR UPDATE", (EVENT_ID,))
            # Well under the lock timeout (5 s), past which the push gives up with a 503, with the hold below.
            if wait_for(blocked_push, timeout=2.5):
                # Devices waiting longer than their timeout send their batch again, to either server,
                # while its first delivery is still open: the retry must wait for it, then be a duplicate.
                time.sleep(HOLD_AFTER_TIMEOUT_S)
                server.stop(signal.SIGKILL)
                return
            holder.rollback()
        time.sleep(0.2)
    raise AssertionError(f"no push reached {application_name} in {tries} tries")


def test_devices_alternating_between_two_servers_one_killed_mid_push_store_every_note_once_and_converge(
    pg_seeded: Seeded, tmp_path: Path
) -> None:
    seeded = pg_seeded
    a = LiveServer(named(seeded, "studyvisit-a"))
    # B dies by its own hand on its 4th push, after the commit and before the answer.
    b = LiveServer(named(seeded, "studyvisit-b"), env={"STUDYVISIT_FAULT_POINT": "push.after_commit:4"})
    servers = [a.start(), b.start()]
    accounts = [
        seeded.first("participant", group="G1"),
        seeded.first("participant", group="G2"),
        seeded.first("participant", group="G3"),
        seeded.first("organizer"),
    ]
    devices: list[Device] = []
    try:
        for n, account in enumerate(accounts):
            http = httpx.Client(transport=Balancer(servers, random.Random(n)), timeout=DEVICE_TIMEOUT_S)
            client = FieldClient(
                "http://studyvisit.test", account.token, tmp_path / f"device-{n}.db", http=http, batch_size=2,
                timeout=DEVICE_TIMEOUT_S, backoff_base=0.05, backoff_cap=0.5, max_attempts=8,
            )  # fmt: skip
            client.login()
            devices.append(Device(account, client))
            devices[-1].sync_until_done(time.monotonic() + 20)  # the event's records, to edit a site
        stop = threading.Event()
        deadline = time.monotonic() + 40
        with ThreadPoolExecutor(len(devices)) as pool:
            running = [pool.submit(d.work, stop, deadline) for d in devices]
            try:
                assert b.process is not None
                assert wait_for(lambda: b.process is not None and b.process.poll() is not None)
                assert b.process.returncode == -signal.SIGKILL  # killed mid-push, not by a bug
                b.env.pop("STUDYVISIT_FAULT_POINT")
                b.start()  # the same port: devices keep sending to it

                kill_mid_push(a, seeded, "studyvisit-a")
                assert a.process is not None
                assert a.process.returncode == -signal.SIGKILL
                a.start()
            finally:
                stop.set()
            for done in running:
                done.result()

        # Exactly once: each acknowledged note once, at the version its edits give, each edit in history once.
        for device in devices:
            stored = {
                r[0]: (r[1], r[2])
                for r in query(seeded, "SELECT id, body, version FROM notes WHERE author_id = %s", device.account.id)
            }
            assert stored == device.notes
            edits = query(
                seeded,
                "SELECT entity_id, COUNT(*) FROM history WHERE entity = 'note' AND entity_id = ANY(%s)"
                " GROUP BY entity_id",
                list(device.notes),
            )
            assert dict(edits) == {n: 1 for n, (_, version) in device.notes.items() if version == 2}
            ledger = query(
                seeded,
                "SELECT last_mutation_id FROM sync_clients WHERE account_id = %s AND client_id = %s",
                device.account.id,
                device.client.replica.client_id,
            )
            assert ledger == [(device.mutations,)]
        site_version, accessibility = query(seeded, "SELECT version, accessibility FROM sites WHERE id = %s", SITE)[0]
        organizer = devices[-1]
        assert accessibility == f"Step-free, checked in round {organizer.rounds - 1}"

        # Every replica converges to the server's state, whichever server answers its pulls.
        states: list[dict[tuple[str, str], int]] = []
        for device in devices:
            report = device.client.sync()
            assert (report.pending, report.verified) == (0, True)
            visible = query(
                seeded,
                "SELECT id, version FROM notes WHERE NOT deleted AND (author_id = %s OR (%s AND share_with_organizers))",
                device.account.id,
                device.account.role == "organizer",
            )
            assert {n.id: n.version for n in device.client.notes()} == dict(visible)
            assert {s.id: s.version for s in device.client.sites()}[SITE] == site_version
            states.append(event_wide(device.client))
        assert all(state == states[0] for state in states)
        assert organizer.shared < {n.id for n in organizer.client.notes()}  # and the others' shared notes
    finally:
        for device in devices:
            device.client.close()
            device.client.http.close()
        for server in servers:
            server.stop()


def event_wide(client: FieldClient) -> dict[tuple[str, str], int]:
    kinds = ("event", "site", "visit", "group", "question")
    return {(r.entity, r.id): r.version for kind in kinds for r in client.records(kind)}


def test_one_batch_sent_to_two_servers_at_the_same_moment_is_applied_once(pg_seeded: Seeded) -> None:
    seeded = pg_seeded
    participant = seeded.first("participant", group="G1")
    a, b = LiveServer(seeded).start(), LiveServer(seeded).start()
    headers = {"Authorization": f"Bearer {participant.token}"}
    clients = [httpx.Client(base_url=s.url, headers=headers, timeout=30) for s in (a, b)]
    try:
        for c in clients:
            assert c.get("/health").status_code == 200  # connected before the race starts
        expected: dict[str, int] = {}
        for attempt in range(6):
            client_id = str(uuid.UUID(int=0xD0 + attempt // 2))
            first = 1 if attempt % 2 == 0 else 5  # a device's first push (no ledger row yet), then its next
            mutations: list[dict[str, Any]] = []
            for m in range(first, first + 4):
                note = str(uuid.uuid4())
                args = {"id": note, "site_id": SITE, "body": f"same batch {attempt}/{m} — 同じ"}
                mutations.append({"id": m, "type": "note.put", "args": args})
                expected[note] = 1
            body = {"client_id": client_id, "protocol": 1, "mutations": mutations}
            barrier = threading.Barrier(2)

            def send(c: httpx.Client, body: dict[str, Any] = body, barrier: threading.Barrier = barrier) -> Any:
                barrier.wait()
                response = c.post(PUSH, json=body)
                assert response.status_code == 200, response.text
                return response.json()

            with ThreadPoolExecutor(2) as pool:
                answers = list(pool.map(send, clients))
            statuses = sorted("/".join(sorted({r["status"] for r in answer["results"]})) for answer in answers)
            assert statuses == ["applied", "duplicate"], answers
            assert [answer["last_mutation_id"] for answer in answers] == [first + 3] * 2
            ledger = query(seeded, "SELECT last_mutation_id FROM sync_clients WHERE client_id = %s", client_id)
            assert ledger == [(first + 3,)]
        stored = query(seeded, "SELECT id, version FROM notes WHERE author_id = %s", participant.id)
        assert dict(stored) == expected
        feed = query(
            seeded,
            "SELECT entity_id, COUNT(*) FROM changes WHERE entity = 'note' GROUP BY entity_id HAVING COUNT(*) > 1",
        )
        assert feed == []  # one feed row per note (its author's audience only: none is shared)
    finally:
        for c in clients:
            c.close()
        a.stop()
        b.stop()


def test_a_site_edited_at_one_server_is_served_fresh_by_the_other_at_once(pg_seeded: Seeded) -> None:
    seeded = pg_seeded
    host = seeded.first("host", site=SITE)
    a, b = LiveServer(seeded).start(), LiveServer(seeded).start()
    auth = {"Authorization": f"Bearer {host.token}"}
    at_a = httpx.Client(base_url=a.url, headers=auth, timeout=30)
    at_b = httpx.Client(base_url=b.url, headers=auth, timeout=30)
    paths = (f"/api/v1/events/{EVENT_ID}/sites/{SITE}", f"/api/v1/events/{EVENT_ID}/sites")
    try:
        old: dict[str, str] = {}
        for path in paths:
            at_b.get(path)  # B has it cached now
            response = at_b.get(path)
            assert response.status_code == 200
            old[path] = response.headers["ETag"]
            assert at_b.get(path, headers={"If-None-Match": old[path]}).status_code == 304
        before = at_a.get(paths[0])
        assert before.json()["accessibility"] != "Ramp at the side door, bell at 1.2 m"

        for n, accessibility in enumerate(("Ramp at the side door, bell at 1.2 m", "Lift to the first floor")):
            edit = at_a.patch(
                paths[0],
                json={"accessibility": accessibility},
                headers={"If-Match": before.headers["ETag"], "Content-Type": "application/merge-patch+json"},
            )
            assert edit.status_code == 200, edit.text
            assert edit.json()["version"] == before.json()["version"] + 1

            # At once, at the other server: the new data, a new ETag, and the old ETag no longer matches.
            site = at_b.get(paths[0])
            assert site.status_code == 200
            assert site.json()["accessibility"] == accessibility
            assert site.json()["version"] == edit.json()["version"]
            listed = at_b.get(paths[1])
            assert {s["id"]: s["accessibility"] for s in listed.json()}[SITE] == accessibility
            for path, response in zip(paths, (site, listed), strict=True):
                assert response.headers["ETag"] != old[path]
                revalidated = at_b.get(path, headers={"If-None-Match": old[path]})
                assert revalidated.status_code == 200, f"{path}: {n}"
                assert revalidated.headers["ETag"] == response.headers["ETag"]
                # Both servers name the same data alike: a phone sent to the other one revalidates with a 304.
                assert at_a.get(path, headers={"If-None-Match": response.headers["ETag"]}).status_code == 304
                old[path] = response.headers["ETag"]
            before = site
    finally:
        at_a.close()
        at_b.close()
        a.stop()
        b.stop()


def jpeg(size: int) -> bytes:
    """A real JPEG of noise, padded to ``size`` bytes (decoders ignore what follows its end)."""
    from PIL import Image

    out = io.BytesIO()
    rng = random.Random(size)
    Image.frombytes("RGB", (64, 48), rng.randbytes(64 * 48 * 3)).save(out, "JPEG")
    return out.getvalue().ljust(size, b"\0")


def test_a_photo_uploaded_in_chunks_through_both_servers_is_served_whole_by_either(
    pg_seeded: Seeded, tmp_path: Path
) -> None:
    seeded = pg_seeded
    servers = [LiveServer(seeded).start(), LiveServer(seeded).start()]
    photo = tmp_path / "cortile.jpg"
    photo.write_bytes(data := jpeg(300_000))
    clients: list[FieldClient] = []
    balancers = [Balancer(servers, random.Random(n)) for n in range(2)]
    try:
        for balancer, role in zip(balancers, ("participant", "organizer"), strict=True):
            http = httpx.Client(transport=balancer, timeout=30)
            client = FieldClient(
                "http://studyvisit.test", seeded.token(role), tmp_path / f"{role}.db", http=http,
                upload_chunk_size=64 * 1024,
            )  # fmt: skip
            client.login()
            clients.append(client)
        phone, laptop = clients
        note = phone.add_note("Il cortile", site_id=SITE, share_with_organizers=True, photos=[photo])
        report = phone.sync()
        assert (report.uploaded, report.uploads_pending, report.pending) == (1, 0, 0)
        chunks = [port for port, method, path in balancers[0].sent if method != "GET" and "/blobs/" in path]
        assert len(chunks) >= 5
        assert set(chunks) == {s.port for s in servers}  # one upload, its chunks through both servers

        laptop.sync()
        (attachment,) = next(n for n in laptop.notes() if n.id == note).attachments
        for server in servers:  # one data directory: each server has every byte
            response = httpx.get(
                f"{server.url}/api/v1/events/{EVENT_ID}/blobs/{attachment.sha256}",
                headers=seeded.headers("organizer"),
            )
            assert response.status_code == 200
            assert response.content == data
    finally:
        for client in clients:
            client.close()
            client.http.close()
        for server in servers:
            server.stop()
