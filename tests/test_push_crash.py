"""A real server SIGKILLed at named places inside a push: what was acknowledged is stored exactly once,
and the client's retry after the restart converges (nothing lost, nothing doubled).

The server is `studyvisit serve` (uvicorn, one process) on a free port over a real database (SQLite or PostgreSQL);
`STUDYVISIT_FAULT_POINT=name:N` (server/faults.py) kills it the Nth time it passes `name`.
"""

import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from tests.conftest import EVENT_ID, LiveServer, Seeded
from tests.sync_helpers import rows, scalar

pytestmark = pytest.mark.both_backends  # CI runs it on SQLite, then on PostgreSQL

PUSH = f"/api/v1/events/{EVENT_ID}/sync/push"
VISIT = "d1-g1-casa-quartiere-san-salvario"
BATCHES = 3
PER_BATCH = 6


@dataclass
class Device:
    """A phone's outbox: numbered mutations, resent from the first unacknowledged one."""

    token: str
    client_id: str = field(default_factory=lambda: str(uuid.UUID(int=0xC0FFEE)))
    acked: int = 0
    acknowledged: dict[int, str] = field(default_factory=dict)  # mutation id -> status the server gave
    outbox: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        note = str(uuid.UUID(int=1))
        n = 0
        for batch in range(BATCHES):
            for i in range(PER_BATCH):
                n += 1
                if batch == 1 and i == 0:  # an edit of a note created in the first batch
                    args = {"id": note, "visit_id": VISIT, "body": "modifié à Torino ✓", "base_version": 1}
                elif batch == 2 and i == 0:
                    args = {"id": str(uuid.UUID(int=0xFEED)), "visit_id": VISIT, "rating": 4, "comment": "Rất hay"}
                    self.outbox.append({"id": n, "type": "feedback.put", "args": args})
                    continue
                else:
                    args = {"id": str(uuid.UUID(int=n)), "visit_id": VISIT, "body": f"nota {n} — ملاحظة"}
                self.outbox.append({"id": n, "type": "note.put", "args": args})

    def push(self, server: LiveServer) -> bool:
        """Send the next batch; False when the server died before answering."""
        batch = self.outbox[self.acked : self.acked + PER_BATCH]
        body = {"client_id": self.client_id, "protocol": 1, "mutations": batch}
        try:
            response = httpx.post(
                server.url + PUSH, json=body, headers={"Authorization": f"Bearer {self.token}"}, timeout=30
            )
        except httpx.TransportError:
            return False
        assert response.status_code == 200, response.text
        result = response.json()
        for r in result["results"]:
            assert r["status"] in ("applied", "duplicate"), r
            self.acknowledged.setdefault(r["id"], r["status"])
        self.acked = result["last_mutation_id"]
        return True


def stored(seeded: Seeded) -> dict[str, Any]:
    """What the database holds after the crash, read through fresh connections (either engine)."""
    state: dict[str, Any] = {
        "notes": {r[0]: r[1] for r in rows(seeded, "SELECT id, version FROM notes")},
        "feedback": {r[0]: r[1] for r in rows(seeded, "SELECT id, version FROM feedback")},
        "feed": [
            tuple(r)
            for r in rows(
                seeded,
                "SELECT entity, entity_id, audience, COUNT(*) FROM changes WHERE entity IN ('note', 'feedback')"
                " GROUP BY entity, entity_id, audience HAVING COUNT(*) > 1",
            )
        ],
        "history": {
            r[0]: r[1]
            for r in rows(seeded, "SELECT entity_id, COUNT(*) FROM history WHERE entity = 'note' GROUP BY entity_id")
        },
        "last": scalar(seeded, "SELECT MAX(last_mutation_id) FROM sync_clients") or 0,
    }
    # SQLite's file is checked page by page; PostgreSQL has no such check of its own (its WAL
    # replay is what makes a killed server's transactions all or nothing), so the key is SQLite's.
    state["integrity"] = "ok" if seeded.url else scalar(seeded, "PRAGMA integrity_check")
    return state


def expected_end_state(device: Device, state: dict[str, Any]) -> None:
    """Every mutation applied exactly once: new notes at version 1, the edited one at 2, one feedback."""
    edited = str(uuid.UUID(int=1))
    note_ids = {m["args"]["id"] for m in device.outbox if m["type"] == "note.put"}
    assert set(state["notes"]) == note_ids
    assert {k: v for k, v in state["notes"].items() if k != edited} == dict.fromkeys(note_ids - {edited}, 1)
    assert state["notes"][edited] == 2
    assert state["history"] == {edited: 1}  # the edit recorded once, not re-applied on the retry
    assert state["feedback"] == {str(uuid.UUID(int=0xFEED)): 1}
    assert state["feed"] == []  # one change-feed row per record and audience
    assert state["last"] == BATCHES * PER_BATCH
    assert state["integrity"] == "ok"


@pytest.mark.parametrize(
    ("fault", "committed"),
    [
        pytest.param("push.before_commit:1", False, id="first-push-before-commit"),
        pytest.param("push.after_commit:1", True, id="first-push-after-commit"),
        pytest.param("push.before_commit:2", False, id="second-push-before-commit"),
        pytest.param("push.after_commit:2", True, id="second-push-after-commit"),
        pytest.param("push.after_commit:3", True, id="last-push-after-commit"),
    ],
)
def test_a_push_killed_at_a_fault_point_keeps_what_was_acknowledged_and_its_retry_converges(
    seeded: Seeded, fault: str, committed: bool
) -> None:
    token = next(a.token for a in seeded.accounts.values() if a.role == "participant" and a.group_id == "G1")
    device = Device(token)
    server = LiveServer(seeded, env={"STUDYVISIT_FAULT_POINT": fault}).start()
    try:
        while device.push(server):
            assert device.acked < BATCHES * PER_BATCH, "the fault point was never reached"
        assert server.process is not None
        assert server.process.wait(timeout=30) == -9  # killed by the fault point, not by a bug
    finally:
        server.stop()

    # Everything acknowledged before the kill is on disk; the killed batch is all or nothing.
    state = stored(seeded)
    assert state["integrity"] == "ok"
    killed_batch = device.outbox[device.acked : device.acked + PER_BATCH]
    assert state["last"] == device.acked + (len(killed_batch) if committed else 0)
    acked_notes = {m["args"]["id"] for m in device.outbox[: device.acked] if m["type"] == "note.put"}
    assert acked_notes <= set(state["notes"])
    killed_new_notes = {
        m["args"]["id"] for m in killed_batch if m["type"] == "note.put" and "base_version" not in m["args"]
    }
    assert killed_new_notes
    if committed:
        assert killed_new_notes <= set(state["notes"])
    else:
        assert not killed_new_notes & set(state["notes"])
    acked_at_kill = device.acked

    # The phone never heard back: after the restart it resends from its last acknowledged id.
    server = LiveServer(seeded).start()
    try:
        assert len(device.acknowledged) == acked_at_kill
        while device.acked < BATCHES * PER_BATCH:
            assert device.push(server)
        retried = [device.acknowledged[m["id"]] for m in killed_batch]
        assert retried == (["duplicate"] * len(killed_batch) if committed else ["applied"] * len(killed_batch))
    finally:
        server.stop()
    expected_end_state(device, stored(seeded))
