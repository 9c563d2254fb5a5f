"""Acknowledged writes survive the server being killed (SIGKILL) mid-push; retries never double them."""

import signal
import threading
import uuid
from dataclasses import dataclass, field

import httpx
import pytest

from tests.conftest import EVENT_ID, LiveServer, Seeded
from tests.sync_helpers import rows, scalar

pytestmark = pytest.mark.both_backends  # CI runs it on SQLite, then on PostgreSQL

PUSH = f"/api/v1/events/{EVENT_ID}/sync/push"
VISIT = "d1-g1-casa-quartiere-san-salvario"
BATCH = 20
MUTATIONS_PER_CLIENT = 200


@dataclass
class Pusher:
    """A phone pushing notes in batches, retrying whatever was not acknowledged."""

    token: str
    client_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    note_ids: list[str] = field(default_factory=lambda: [str(uuid.uuid4()) for _ in range(MUTATIONS_PER_CLIENT)])
    acked: int = 0  # last mutation id the server acknowledged
    applied: set[str] = field(default_factory=set)  # notes the server said it applied
    errors: int = 0

    def batch(self) -> dict[str, object]:
        first = self.acked + 1
        ids = range(first, min(first + BATCH, MUTATIONS_PER_CLIENT + 1))
        mutations = [
            {
                "id": i,
                "type": "note.put",
                "args": {"id": self.note_ids[i - 1], "visit_id": VISIT, "body": f"note {i} ✓"},
            }
            for i in ids
        ]
        return {"client_id": self.client_id, "protocol": 1, "mutations": mutations}

    def run(self, server: LiveServer, stop: threading.Event) -> None:
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=5) as http:
            while self.acked < MUTATIONS_PER_CLIENT and not stop.is_set():
                body = self.batch()
                try:
                    response = http.post(PUSH, json=body)
                except httpx.TransportError:
                    self.errors += 1
                    stop.wait(0.05)
                    continue
                if response.status_code != 200:
                    self.errors += 1
                    stop.wait(0.05)
                    continue
                result = response.json()
                for r in result["results"]:
                    if r["status"] == "applied":
                        self.applied.add(self.note_ids[r["id"] - 1])
                    assert r["status"] in ("applied", "duplicate"), r
                self.acked = result["last_mutation_id"]


def stored_notes(seeded: Seeded) -> dict[str, int]:
    return {r[0]: r[1] for r in rows(seeded, "SELECT id, version FROM notes")}


def test_sigkill_during_pushes_loses_no_acknowledged_note_and_doubles_none(seeded: Seeded) -> None:
    tokens = [a.token for a in seeded.accounts.values() if a.role == "participant"][:4]
    pushers = [Pusher(token) for token in tokens]
    server = LiveServer(seeded, workers=2).start()
    stop = threading.Event()
    threads = [threading.Thread(target=p.run, args=(server, stop)) for p in pushers]
    for t in threads:
        t.start()
    try:
        # Kill the server once some, but not all, pushes were acknowledged.
        while sum(p.acked for p in pushers) < MUTATIONS_PER_CLIENT and all(t.is_alive() for t in threads):
            threading.Event().wait(0.01)
        server.stop(signal.SIGKILL)
        acked_at_kill = {p.client_id: set(p.applied) for p in pushers}
        assert sum(map(len, acked_at_kill.values())) < len(pushers) * MUTATIONS_PER_CLIENT  # killed mid-way
        notes = stored_notes(seeded)
        for applied in acked_at_kill.values():
            assert applied <= notes.keys()  # acknowledged means on disk
        server.start()  # same file, same port: the pushers retry on their own
        for t in threads:
            t.join(timeout=120)
    finally:
        stop.set()
        server.stop()
    assert not any(t.is_alive() for t in threads)
    notes = stored_notes(seeded)
    for p in pushers:
        assert p.acked == MUTATIONS_PER_CLIENT
        assert set(p.note_ids) <= notes.keys()
        assert all(notes[n] == 1 for n in p.note_ids)  # each applied exactly once: never re-applied as an edit
    assert len(notes) == len(pushers) * MUTATIONS_PER_CLIENT
    if not seeded.url:  # SQLite's page-by-page check of its file (PostgreSQL has none of its own)
        assert scalar(seeded, "PRAGMA integrity_check") == "ok"
    assert {r[0]: r[1] for r in rows(seeded, "SELECT client_id, last_mutation_id FROM sync_clients")} == {
        p.client_id: MUTATIONS_PER_CLIENT for p in pushers
    }
