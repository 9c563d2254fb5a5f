"""Shared helpers of the sync tests: pushing batches, pulling every page, and snapshotting what was written."""

import sqlite3
import uuid
from pathlib import Path
from typing import Any

import psycopg
from httpx import Response
from litestar import Litestar
from litestar.testing import TestClient

from server.storage.pg.database import PgDatabase, translate
from tests.databases import Seeded

EVENT_ID = "turin-sse-2025"
BASE = f"/api/v1/events/{EVENT_ID}/sync"
PUSH_URL = f"{BASE}/push"
PULL_URL = f"{BASE}/pull"
MSGPACK = "application/msgpack"
PROBLEM = "urn:studyvisit:problem:"

# Deterministic ids: tests never depend on randomness.
CLIENT_A = "00000000-0000-4000-8000-00000000000a"
CLIENT_B = "00000000-0000-4000-8000-00000000000b"

G1_VISIT = "d1-g1-casa-quartiere-san-salvario"
G1_SITE = "casa-quartiere-san-salvario"
G2_VISIT = "d1-g2-triciclo"
G2_SITE = "triciclo"

# Everything a sync request may write; "nothing written" means all of these are unchanged.
WRITTEN_TABLES = (
    "notes", "feedback", "feedback_aliases", "sync_clients", "sync_results", "changes", "history", "sites", "events",
)  # fmt: skip

Client = TestClient[Litestar]


def uid(n: int) -> str:
    """A fixed, valid UUID for record number ``n``."""
    return str(uuid.UUID(int=n))


def mutation(mutation_id: int, type_: str, args: dict[str, Any], client_time: str | None = None) -> dict[str, Any]:
    """One mutation as it goes on the wire."""
    body: dict[str, Any] = {"id": mutation_id, "type": type_, "args": args}
    if client_time is not None:
        body["client_time"] = client_time
    return body


def note_put(mutation_id: int, note_id: str, **args: Any) -> dict[str, Any]:
    """A ``note.put`` on the G1 visit unless a place is given."""
    if "visit_id" not in args and "site_id" not in args:
        args["visit_id"] = G1_VISIT
    return mutation(mutation_id, "note.put", {"id": note_id, **args})


def feedback_put(mutation_id: int, feedback_id: str, visit_id: str = G1_VISIT, **args: Any) -> dict[str, Any]:
    """A ``feedback.put`` on a visit (the G1 visit by default)."""
    return mutation(mutation_id, "feedback.put", {"id": feedback_id, "visit_id": visit_id, **args})


def site_patch(mutation_id: int, site_id: str, base_version: int, **fields: Any) -> dict[str, Any]:
    """A ``site.patch`` of some fields."""
    return mutation(mutation_id, "site.patch", {"site_id": site_id, "base_version": base_version, "fields": fields})


def push(
    client: Client,
    headers: dict[str, str],
    mutations: list[dict[str, Any]],
    *,
    client_id: str = CLIENT_A,
    protocol: Any = 1,
    expect: int | None = 200,
) -> Any:
    """Push a batch as JSON; returns the decoded body (asserting the status unless ``expect`` is None)."""
    response = client.post(
        PUSH_URL, json={"client_id": client_id, "protocol": protocol, "mutations": mutations}, headers=headers
    )
    if expect is not None:
        assert response.status_code == expect, response.text
    return response.json()


def push_raw(
    client: Client, headers: dict[str, str], content: bytes, content_type: str = "application/json"
) -> Response:
    """Push bytes exactly as given."""
    return client.post(PUSH_URL, content=content, headers={**headers, "Content-Type": content_type})


def pull(
    client: Client,
    headers: dict[str, str],
    cursor: str = "",
    *,
    limit: int | None = None,
    client_id: str | None = None,
    expect: int | None = 200,
) -> Any:
    """One pull page as decoded JSON."""
    params: dict[str, Any] = {"cursor": cursor} if cursor else {}
    if limit is not None:
        params["limit"] = limit
    if client_id is not None:
        params["client_id"] = client_id
    response = client.get(PULL_URL, params=params, headers=headers)
    if expect is not None:
        assert response.status_code == expect, response.text
    return response.json()


class Replica:
    """What a device holds after applying pulls: records keyed by (entity, id), and the cursor."""

    def __init__(self) -> None:
        self.records: dict[tuple[str, str], dict[str, Any]] = {}
        self.tombstones: dict[tuple[str, str], dict[str, Any]] = {}
        self.cursor = ""
        self.pages: list[dict[str, Any]] = []

    def apply(self, page: dict[str, Any]) -> None:
        """Apply one pull page as a client does."""
        self.pages.append(page)
        for change in page["changes"]:
            key = (change["entity"], change["id"])
            if change["op"] == "put":
                self.records[key] = change
                self.tombstones.pop(key, None)
            else:
                self.records.pop(key, None)
                self.tombstones[key] = change
        self.cursor = page["cursor"]

    @property
    def last(self) -> dict[str, Any]:
        return self.pages[-1]

    def ids(self, entity: str) -> set[str]:
        """Ids of live records of one kind."""
        return {i for (e, i) in self.records if e == entity}

    def data(self, entity: str, record_id: str) -> dict[str, Any]:
        return self.records[(entity, record_id)]["data"]  # type: ignore[no-any-return]

    def versions(self, entity: str) -> list[tuple[str, int]]:
        """(id, version) of live records of one kind, as the checksum takes them."""
        return [(i, c["version"]) for (e, i), c in self.records.items() if e == entity]


def pull_all(
    client: Client,
    headers: dict[str, str],
    replica: Replica | None = None,
    *,
    limit: int | None = None,
    client_id: str | None = None,
    max_pages: int = 1000,
) -> Replica:
    """Pull pages until ``has_more`` is false, applying each to the replica (a new one by default)."""
    replica = replica or Replica()
    for _ in range(max_pages):
        page = pull(client, headers, replica.cursor, limit=limit, client_id=client_id)
        replica.apply(page)
        if not page["has_more"]:
            return replica
    raise AssertionError(f"still has_more after {max_pages} pages")


def read(where: Path | Seeded, sql: str, *params: Any) -> list[Any]:
    """Rows (by index and by column name) read through a fresh connection, from a SQLite file or
    a seeded database of either engine; `?` placeholders."""
    if isinstance(where, Seeded) and where.url:
        database = PgDatabase(where.url, min_size=1, max_size=1)
        try:
            with database.read() as tx:
                return list(tx.execute(sql, params).fetchall())
        finally:
            database.close()
    conn = sqlite3.connect(where.path if isinstance(where, Seeded) else where)
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def execute(where: Path | Seeded, *statements: str | tuple[str, tuple[Any, ...]], checked: bool = True) -> None:
    """Run statements in one committed transaction through a fresh connection, on a SQLite file or a
    seeded database of either engine (`?` placeholders); `checked=False` turns foreign keys off for it."""
    pairs = [(s, ()) if isinstance(s, str) else s for s in statements]
    if isinstance(where, Seeded) and where.url:
        with psycopg.connect(where.url) as conn:  # one transaction, committed on exit
            if not checked:
                conn.execute("SET LOCAL session_replication_role = replica")  # no foreign-key triggers
            for sql, params in pairs:
                conn.execute(translate(sql), params)
        return
    conn = sqlite3.connect(where.path if isinstance(where, Seeded) else where)
    try:
        if not checked:
            conn.execute("PRAGMA foreign_keys=OFF")
        with conn:
            for sql, params in pairs:
                conn.execute(sql, params)
    finally:
        conn.close()


def snapshot(where: Path | Seeded, tables: tuple[str, ...] = WRITTEN_TABLES) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the tables a sync request may write, through a fresh connection."""
    return {table: sorted(map(tuple, read(where, f"SELECT * FROM {table}"))) for table in tables}


def scalar(where: Path | Seeded, sql: str, *params: Any) -> Any:
    """One value read through a fresh connection."""
    found = read(where, sql, *params)
    return found[0][0] if found else None


def rows(where: Path | Seeded, sql: str, *params: Any) -> list[Any]:
    """Rows read through a fresh connection."""
    return read(where, sql, *params)
