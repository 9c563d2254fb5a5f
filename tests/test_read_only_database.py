"""A database file that was read-only for a while: pushes answer 503 (not 500) and write nothing,
/health says so, and once the file is writable again the server recovers without a restart.

How the file is made read-only, honestly: by its permission bits (chmod 0444 on the file, its
-wal and -shm), with a real server process over it. Tests run as root here, and root ignores
permission bits through CAP_DAC_OVERRIDE; so as root the server is started under `setpriv` with
that capability (and CAP_DAC_READ_SEARCH) dropped, and then the kernel refuses its writes exactly
as it refuses an unprivileged service account's. A mount remounted read-only would be closer to a
failing disk, but Linux refuses to remount a file system read-only while the server holds the file
open for writing, and a test hook inside the storage layer would prove only the hook.

The file is read-only when the server opens it: SQLite then silently opens a read-only connection,
and before this fix such a connection stayed read-only for good (every push a 500 until restart),
while /health (SELECT 1) said ok.
"""

import os
import shutil
import sqlite3
from pathlib import Path

import httpx
import pytest

from tests.conftest import EVENT_ID, LiveServer, Seeded
from tests.sync_helpers import PROBLEM, snapshot, uid

PUSH = f"/api/v1/events/{EVENT_ID}/sync/push"
PULL = f"/api/v1/events/{EVENT_ID}/sync/pull"
VISIT = "d1-g1-casa-quartiere-san-salvario"

# The file's own permission bits, and SQLite's read-only connections, are what is tested.
pytestmark = pytest.mark.sqlite_only


def without_root_override() -> tuple[str, ...]:
    """A command prefix under which file permission bits bind this process, root or not."""
    if os.geteuid() != 0:
        return ()
    setpriv = shutil.which("setpriv")
    assert setpriv is not None, "util-linux's setpriv is needed to drop CAP_DAC_OVERRIDE"
    caps = "-dac_override,-dac_read_search"
    return (setpriv, "--bounding-set", caps, "--inh-caps", caps)


def database_files(path: Path) -> list[Path]:
    return [p for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists()]


def set_writable(path: Path, writable: bool) -> None:
    for file in database_files(path):
        file.chmod(0o644 if writable else 0o444)


def test_a_database_file_read_only_for_a_while_answers_503_then_recovers_without_restart(seeded: Seeded) -> None:
    token = next(a.token for a in seeded.accounts.values() if a.role == "participant" and a.group_id == "G1")
    headers = {"Authorization": f"Bearer {token}"}
    body = {
        "client_id": uid(0xD1),
        "protocol": 1,
        "mutations": [{"id": 1, "type": "note.put", "args": {"id": uid(1), "visit_id": VISIT, "body": "Ciao 👋"}}],
    }
    before = snapshot(seeded)
    set_writable(seeded.path, False)
    server = LiveServer(seeded, prefix=without_root_override(), ready_path="/health/ready").start()
    try:
        with httpx.Client(base_url=server.url, headers=headers, timeout=30) as http:
            # Honest health: ready (reads are served) but not healthy (it cannot write).
            health = http.get("/health")
            assert health.status_code == 503, health.text
            assert health.json()["type"] == PROBLEM + "database-unavailable"
            assert int(health.headers["retry-after"]) > 0
            assert http.get("/health/ready").status_code == 200
            assert http.get(PULL).status_code == 200

            for _ in range(2):  # every retry is told the same, and nothing is half-written
                pushed = http.post(PUSH, json=body)
                assert pushed.status_code == 503, pushed.text
                assert pushed.headers["content-type"].startswith("application/problem+json")
                assert pushed.json()["type"] == PROBLEM + "database-unavailable"

            set_writable(seeded.path, True)
            # A connection opened while the file was read-only is found out and replaced: at most
            # one more 503 (the check that finds it), then healthy, on the same server process.
            statuses = [http.get("/health").status_code for _ in range(2)]
            assert statuses[-1] == 200, statuses
            assert set(statuses) <= {200, 503}
            pushed = http.post(PUSH, json=body)
            assert pushed.status_code == 200, pushed.text
            assert [r["status"] for r in pushed.json()["results"]] == ["applied"]
            assert server.process is not None
            assert server.process.poll() is None
    finally:
        server.stop()
        set_writable(seeded.path, True)
    after = snapshot(seeded)
    assert len(after["notes"]) == len(before["notes"]) + 1
    with sqlite3.connect(seeded.path) as conn:
        assert conn.execute("SELECT body FROM notes WHERE id = ?", (uid(1),)).fetchone() == ("Ciao 👋",)
