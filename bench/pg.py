"""The PostgreSQL side of ``bench.run --database-url``: a database of its own, the event in it, the push floor,
and the exactly-once check read from PostgreSQL.

The benchmark never writes to the database the URL names: it connects there only to create a
database of its own beside it (``studyvisit_bench_<random>``) and to drop it, ``WITH (FORCE)``,
when the run ends, however it ends.
"""

import json
import time
import uuid
from collections.abc import Generator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from bench.machine import count_as_ours
from server.storage.copy import copy_sqlite_to_postgres

NOTE_COLUMNS = (
    "id, event_id, author_id, visit_id, site_id, body, tags, lat, lon, captured_at,"
    " share_with_organizers, deleted, version, conflicts, updated_at"
)


def database_url(server_url: str, name: str) -> str:
    """``server_url`` with its database replaced by ``name`` (user, host, port and options kept)."""
    return urlsplit(server_url)._replace(path=f"/{name}").geturl()


def database_name(url: str) -> str:
    """The database a URL names."""
    return urlsplit(url).path.lstrip("/")


@contextmanager
def bench_database(server_url: str) -> Generator[str]:
    """A fresh, empty database on the server ``server_url`` names, its URL; dropped when the block ends."""
    name = f"studyvisit_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield database_url(server_url, name)
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@contextmanager
def backends_counted_as_ours(url: str) -> Generator[None]:
    """While the block runs, the CPU time of PostgreSQL's backends connected to this database is the
    benchmark's own (``bench.machine``), not another process's: they do the servers' work. The server's
    shared helpers (WAL writer, checkpointer) are not counted: other databases use them too."""
    conn = psycopg.connect(url, autocommit=True)

    def pids() -> list[int]:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
        return [int(row[0]) for row in rows]

    undo = count_as_ours(pids)
    try:
        yield
    finally:
        undo()
        conn.close()


def load_event(source: Path, url: str) -> dict[str, Any]:
    """Copy the generated SQLite event into the empty database the way an operator would (``studyvisit db
    copy``: migrate, COPY every table, compare counts and checksums), then ANALYZE, as after any bulk load."""
    started = time.perf_counter()
    tables = copy_sqlite_to_postgres(source, url)
    different = [t.table for t in tables if not t.same]
    if different:
        raise RuntimeError(f"the copy into PostgreSQL differs from the SQLite event: {different}")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ANALYZE")
        version = str(conn.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]
        settings = dict(
            conn.execute(
                "SELECT name, setting FROM pg_settings WHERE name IN"
                " ('synchronous_commit', 'fsync', 'shared_buffers', 'max_connections', 'wal_level')"
            ).fetchall()
        )
    return {
        "seconds": time.perf_counter() - started,
        "tables": len(tables),
        "rows": sum(t.target_rows for t in tables),
        "server_version": version,
        "settings": settings,
    }


def _pg_note_row(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """A row of ``measure._note_rows`` in PostgreSQL's types: JSON as jsonb, 0/1 as booleans."""
    (id_, event, author, visit, site, body, tags, lat, lon, captured, shared, deleted, version, conflicts, at) = row
    return (
        id_,
        event,
        author,
        visit,
        site,
        body,
        Jsonb(json.loads(tags)),
        lat,
        lon,
        captured,
        bool(shared),
        bool(deleted),
        version,
        Jsonb(json.loads(conflicts)),
        at,
    )


def push_floor(rows: list[tuple[Any, ...]], url: str) -> dict[str, float]:
    """Seconds to insert these rows through psycopg, in one transaction, into a table of the ``notes`` table's
    shape (``LIKE notes INCLUDING ALL``: its columns, defaults, identity, primary key and indexes; no foreign
    keys, as the SQLite floor's connection does not enforce them), with ``executemany`` (pipelined) and, on an
    emptied table, with ``COPY``. The server's own durability: ``synchronous_commit`` as the database has it."""
    values = [_pg_note_row(r) for r in rows]
    table = sql.Identifier(f"push_floor_{uuid.uuid4().hex[:12]}")
    insert = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
        table, sql.SQL(NOTE_COLUMNS), sql.SQL(", ").join(sql.Placeholder() * len(values[0]))
    )
    copy = sql.SQL("COPY {} ({}) FROM STDIN").format(table, sql.SQL(NOTE_COLUMNS))
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        conn.execute(sql.SQL("CREATE TABLE {} (LIKE notes INCLUDING ALL)").format(table))
        try:
            started = time.perf_counter()
            with conn.transaction(), conn.cursor() as cur:
                cur.executemany(insert, values)
            executemany_s = time.perf_counter() - started
            conn.execute(sql.SQL("TRUNCATE {}").format(table))
            started = time.perf_counter()
            with conn.transaction(), conn.cursor() as cur, cur.copy(copy) as writer:
                for value in values:
                    writer.write_row(value)
            copy_s = time.perf_counter() - started
        finally:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))
    return {"seconds": executemany_s, "copy_seconds": copy_s}


def stored_notes(
    url: str, note_ids: list[str], client_ids: list[str]
) -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
    """What PostgreSQL holds of these notes and clients: each note's version, its change-feed rows, and
    each client's last mutation id."""
    with psycopg.connect(url) as conn:
        versions = dict(conn.execute("SELECT id, version FROM notes WHERE id = ANY(%s)", (note_ids,)).fetchall())
        feed = dict(
            conn.execute(
                "SELECT entity_id, COUNT(*) FROM changes WHERE entity = 'note' AND entity_id = ANY(%s)"
                " GROUP BY entity_id",
                (note_ids,),
            ).fetchall()
        )
        last = dict(
            conn.execute(
                "SELECT client_id, last_mutation_id FROM sync_clients WHERE client_id = ANY(%s)", (client_ids,)
            ).fetchall()
        )
    return versions, feed, last
