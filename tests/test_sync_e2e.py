"""End to end over real HTTP: a two-worker uvicorn server and field clients, one killed mid-sync."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from sync.client import FieldClient
from tests.conftest import LiveServer, Seeded
from tests.sync_helpers import rows

pytestmark = pytest.mark.both_backends  # CI runs it on SQLite, then on PostgreSQL

VISIT = "d1-g1-casa-quartiere-san-salvario"
KILLED_NOTES = 1500


def server_notes(seeded: Seeded, author: str) -> list[str]:
    return [r[0] for r in rows(seeded, "SELECT id FROM notes WHERE author_id = ? AND NOT deleted", author)]


def full_state(client: FieldClient) -> dict[tuple[str, str], int]:
    kinds = ("event", "site", "visit", "group", "question", "note", "feedback")
    return {(r.entity, r.id): r.version for kind in kinds for r in client.records(kind)}


def test_two_clients_converge_over_http_and_a_killed_client_finishes_on_its_next_sync(
    seeded: Seeded, tmp_path: Path
) -> None:
    participant, organizer = seeded.first("participant", group="G1"), seeded.first("organizer")
    server = LiveServer(seeded, workers=2).start()
    try:
        phone = FieldClient(server.url, participant.token, tmp_path / "phone.db")
        laptop = FieldClient(server.url, organizer.token, tmp_path / "laptop.db")
        for client in (phone, laptop):
            client.login()
            client.sync()

        shared = {
            phone.add_note(f"Nota {i}: cooperativa — تعاونية", visit_id=VISIT, share_with_organizers=True)
            for i in range(20)
        }
        private = {phone.add_note(f"Private {i}", visit_id=VISIT) for i in range(5)}
        phone.put_feedback(VISIT, rating=5, comment="Très instructif, grazie!")
        laptop.patch_site("casa-quartiere-san-salvario", accessibility="Step-free entrance from the courtyard")
        assert phone.sync().pending == 0
        assert laptop.sync().pending == 0
        phone.sync()  # brings the organizer's site correction

        assert {n.id for n in laptop.notes()} >= shared
        assert not {n.id for n in laptop.notes()} & private
        assert {s.id: s.accessibility for s in phone.sites()}["casa-quartiere-san-salvario"].startswith("Step-free")
        assert len(laptop.feedback()) == 1
        phone.close()

        # A second install of the phone's owner queues many notes and is killed while syncing them.
        killed_path = tmp_path / "killed.db"
        seed = FieldClient(server.url, participant.token, killed_path)
        seed.login()
        seed.close()
        script = textwrap.dedent(
            f"""
            from sync.client import FieldClient
            client = FieldClient.resume({str(killed_path)!r}, batch_size=20)
            for i in range({KILLED_NOTES}):
                client.add_note(f"queued offline {{i}} — Nguyễn", visit_id={VISIT!r})
            print("queued", flush=True)
            client.sync()
            print("synced", flush=True)
            """
        )
        before = len(server_notes(seeded, participant.id))
        child = subprocess.Popen(
            [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=os.environ.copy()
        )
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "queued"
        deadline = time.monotonic() + 60
        while len(server_notes(seeded, participant.id)) == before and time.monotonic() < deadline:
            time.sleep(0.005)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        landed_at_kill = len(server_notes(seeded, participant.id)) - before
        assert 0 < landed_at_kill < KILLED_NOTES  # killed in the middle of its sync

        revived = FieldClient.resume(killed_path)
        report = revived.sync()
        assert report.pending == 0
        assert len(server_notes(seeded, participant.id)) - before == KILLED_NOTES  # every note once, none twice
        phone = FieldClient.resume(tmp_path / "phone.db")
        phone.sync()
        laptop.sync()
        assert full_state(revived) == full_state(phone)
        assert len([n for n in revived.notes() if n.body.startswith("queued offline")]) == KILLED_NOTES
        for client in (revived, phone, laptop):
            client.close()
    finally:
        server.stop()
