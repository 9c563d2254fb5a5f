"""push() of 500-note batches in-process, with the batch's lookups read once (services/mutations.py
`Known`) and with them switched off (two single-row queries per note, as before), on SQLite and
PostgreSQL, alternating. Run: ``python -m bench.push_lookups [postgresql://…/db-to-create-databases-in]``.
"""

import statistics
import sys
import time
import uuid
from pathlib import Path
from tempfile import TemporaryDirectory

import psycopg

from schemas.sync import Mutation, PushRequest
from server.fixtures import DEMO_FIXTURE, load_fixture, read_fixture
from server.services import mutations
from server.services import push as push_service
from server.storage.accounts import get_account
from server.storage.db import Database
from server.storage.pg.database import PgDatabase

SERVER = sys.argv[1] if len(sys.argv) > 1 else "postgresql://postgres@127.0.0.1/test"


def store(kind, directory):
    if kind == "sqlite":
        return Database(Path(directory) / f"{uuid.uuid4().hex}.db"), None
    name = "push_lookups_" + uuid.uuid4().hex[:10]
    with psycopg.connect(SERVER, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")
    return PgDatabase(SERVER.rsplit("/", 1)[0] + "/" + name), name


def drop(name):
    with psycopg.connect(SERVER, autocommit=True) as c:
        c.execute(f"DROP DATABASE {name} WITH (FORCE)")


def loaded(kind, directory):
    db, name = store(kind, directory)
    db.migrate()
    accounts = load_fixture(db, read_fixture(DEMO_FIXTURE))
    return db, name, accounts


def run(kind, off, directory):
    db, name, accounts = loaded(kind, directory)
    p = next(a for a in accounts if a.role == "participant")
    with db.read() as tx:
        account = get_account(tx, p.id)
    visit = "d1-g1-casa-quartiere-san-salvario"
    original = mutations.Known.__init__
    if off:

        def init(self, tx, event_id, ms):
            original(self, tx, event_id, [])
            self.valid = False

        mutations.Known.__init__ = init
    times = []
    client = str(uuid.uuid4())
    n = 0
    for _ in range(12):
        ms = [
            Mutation(
                id=n + i + 1, type="note.put", args={"id": str(uuid.uuid4()), "visit_id": visit, "body": "x" * 200}
            )
            for i in range(500)
        ]
        n += 500
        t = time.perf_counter()
        r = push_service.push(db, account, PushRequest(client_id=client, protocol=1, mutations=ms))
        times.append(time.perf_counter() - t)
        assert all(x.status == "applied" for x in r.results)
    mutations.Known.__init__ = original
    db.close()
    if name:
        drop(name)
    return 500 / statistics.median(times[2:])  # the first two batches warm up


if __name__ == "__main__":
    with TemporaryDirectory() as directory:
        for kind in ("sqlite", "postgres"):
            for off in (True, False, True, False):
                label = "per-note lookups" if off else "batch lookups  "
                print(kind, label, f"{run(kind, off, directory):,.0f} notes/s", flush=True)
