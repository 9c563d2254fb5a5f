"""PostgreSQL: the schema and its migrations, the database URL setting, and `studyvisit db copy`,
against the machine's real PostgreSQL (each test in a schema of its own)."""

import hashlib
import io
import os
import random
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import psycopg
import pytest
from click.testing import CliRunner
from litestar import Litestar
from litestar.testing import TestClient
from psycopg import sql

from server.cli import main
from server.storage.db import Database, migrate
from server.storage.location import PostgresLocation, SqliteLocation, parse_database_url
from server.storage.pg.schema import PG_MIGRATIONS
from tests.conftest import EVENT_ID, Seeded, free_port, make_app
from tests.sync_helpers import CLIENT_A, G1_SITE, feedback_put, note_put, push, site_patch, uid

# The machine's PostgreSQL (trust authentication); .ci/run starts it when it is down.
SERVER = os.environ.get("STUDYVISIT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A URL whose tables live in a fresh schema of this test's own (search_path in libpq's options)."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(SERVER, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    except psycopg.OperationalError as error:  # a failure, never a skip: CI has PostgreSQL
        pytest.fail(f"PostgreSQL is not reachable at {SERVER}: {error}")
    yield f"{SERVER}?options=-csearch_path%3D{schema}"
    with psycopg.connect(SERVER, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


def pg_rows(url: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(query, params).fetchall()  # type: ignore[arg-type]  # tests' own literal SQL


def cli(*args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(main, list(args), env=env)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "postgresql://app@db.example.org:5433/visits",
            PostgresLocation("postgresql://app@db.example.org:5433/visits"),
        ),
        ("postgres://localhost/test", PostgresLocation("postgres://localhost/test")),
        ("sqlite:///data/a.db", SqliteLocation(Path("data/a.db"))),
        ("sqlite:////srv/studyvisit/a.db", SqliteLocation(Path("/srv/studyvisit/a.db"))),
        ("data/studyvisit.db", SqliteLocation(Path("data/studyvisit.db"))),
        ("sqlite:///Turín%202025.db", SqliteLocation(Path("Turín 2025.db"))),
    ],
)
def test_a_database_url_names_postgresql_or_a_sqlite_file(text: str, expected: object) -> None:
    assert parse_database_url(text) == expected


@pytest.mark.parametrize(
    ("text", "says"),
    [("", "empty"), ("mysql://root@localhost/db", "unknown database URL scheme 'mysql'"),
     ("sqlite://a.db", "names a file"), ("sqlite:///", "names a file")],
)  # fmt: skip
def test_a_database_url_that_names_nothing_usable_is_refused(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_database_url(text)


@pytest.mark.sqlite_only  # the source is a seeded SQLite file; the target is PostgreSQL on either run
def test_every_sqlite_table_and_column_has_a_postgresql_counterpart(db: Database, pg_url: str) -> None:
    cli("db", "migrate", "--database-url", pg_url)
    sqlite_columns = {
        (table, column)
        for (table,) in db.query("SELECT name FROM sqlite_master WHERE type = 'table' AND name != 'sqlite_sequence'")
        for (_, column, *_rest) in db.query(f'PRAGMA table_info("{table}")')
    }
    pg_columns = set(
        pg_rows(
            pg_url,
            "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = current_schema()",
        )
    )
    assert sqlite_columns - pg_columns == set()
    # PostgreSQL's own: the feed clocks that number the change feed in commit order, and the photo
    # store in the database (server/storage/pg/blobs.py), which SQLite keeps in the data directory.
    photo_store = {"blob_chunks", "blob_uploads", "upload_chunks", "blob_previews"}
    assert {t for t, _ in pg_columns - sqlite_columns} == {"feed_clocks", *photo_store}


def test_four_migrators_started_at_once_apply_each_migration_exactly_once(pg_url: str) -> None:
    command = [sys.executable, "-m", "server.cli", "db", "migrate", "--database-url", pg_url]
    runs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    outputs = [run.communicate(timeout=120) for run in runs]
    assert [run.returncode for run in runs] == [0, 0, 0, 0], outputs
    said = sorted(out.strip() for out, _ in outputs)
    everything = "applied " + ", ".join(str(m.version) for m in PG_MIGRATIONS)
    assert said == [everything, "up to date", "up to date", "up to date"]
    assert pg_rows(pg_url, "SELECT version FROM schema_migrations ORDER BY version") == [
        (m.version,) for m in PG_MIGRATIONS
    ]


def test_db_status_lists_postgresql_migrations_pending_then_applied(pg_url: str) -> None:
    before = cli("db", "status", "--database-url", pg_url)
    assert before.exit_code == 0, before.output
    assert before.output.split("\n")[0].endswith("pending")
    cli("db", "migrate", "--database-url", pg_url)
    after = cli("db", "status", env={"STUDYVISIT_DATABASE_URL": pg_url})
    assert after.exit_code == 0, after.output
    assert "applied 20" in after.output.split("\n")[0]


def eventful(client: TestClient[Litestar], seeded: Seeded) -> None:
    """Notes in several scripts, feedback and a host's edit: rows in the sync tables and history."""
    participant = seeded.headers("participant", group="G1")
    bodies = ["Sổ tay của Nguyễn Thị Thu", "김민준의 메모", "ملاحظة من القاهرة", "Casa del quartiere: très accueillant"]
    push(
        client,
        participant,
        [note_put(i + 1, uid(100 + i), body=b, tags=["économie", "협동조합"]) for i, b in enumerate(bodies)]
        + [feedback_put(5, uid(200), rating=5, comment="Grazie mille — شكرا")],
    )
    host = seeded.headers("host", site=G1_SITE)
    push(client, host, [site_patch(1, G1_SITE, 1, accessibility="Rampa all'ingresso laterale")], client_id=CLIENT_A)


@pytest.mark.sqlite_only  # the source is a seeded SQLite file; the target is PostgreSQL on either run
def test_db_copy_moves_every_row_and_shows_equal_counts_and_checksums(
    client: TestClient[Litestar], seeded: Seeded, pg_url: str
) -> None:
    eventful(client, seeded)
    result = cli("db", "copy", "--from", f"sqlite:///{seeded.path}", "--to", pg_url)
    assert result.exit_code == 0, result.output
    lines = {
        line.split()[0]: line.split() for line in result.output.splitlines()[1:] if line and " rows in " not in line
    }
    source = sqlite3.connect(seeded.path)
    for table in ("events", "sites", "visits", "accounts", "notes", "feedback", "history", "changes", "sync_results"):
        (count,) = source.execute(f'SELECT count(*) FROM "{table}"').fetchone()
        assert count > 0, f"the test data has no {table}"
        assert lines[table][1:3] == [str(count), str(count)]
        assert lines[table][3] == lines[table][4]
    assert "DIFFERS" not in result.output
    # Text in any script, and a visit's time as written (with its offset), arrive unchanged.
    assert sorted(pg_rows(pg_url, "SELECT body FROM notes")) == sorted(
        source.execute("SELECT body FROM notes").fetchall()
    )
    assert (
        pg_rows(pg_url, "SELECT id, starts_at FROM visits ORDER BY id")
        == source.execute("SELECT id, starts_at FROM visits ORDER BY id").fetchall()
    )
    # New feed positions start above every position SQLite gave out; new history ids above the copied ones.
    (given,) = source.execute("SELECT seq FROM sqlite_sequence WHERE name = 'changes'").fetchone()
    assert pg_rows(pg_url, "SELECT DISTINCT seq FROM feed_clocks") == [(given,)]
    (top,) = source.execute("SELECT max(id) FROM history").fetchone()
    new_id = pg_rows(
        pg_url,
        "INSERT INTO history (event_id, entity, entity_id, version, at, changes)"
        " VALUES ('turin-sse-2025', 'site', 'x', 1, now(), '{}') RETURNING id",
    )
    assert new_id[0][0] > top


def photo_notes(client: TestClient[Litestar], seeded: Seeded) -> tuple[dict[str, str], list[bytes]]:
    """Two photos uploaded with the notes that carry them (one over a chunk, one small)."""
    from PIL import Image

    participant = seeded.headers("participant", group="G1")
    photos: list[bytes] = []
    for n, size in enumerate((1024 * 1024 * 2 + 17, 5000)):
        rng, out = random.Random(n), io.BytesIO()
        Image.frombytes("RGB", (32, 24), rng.randbytes(32 * 24 * 3)).save(out, "JPEG")
        data = out.getvalue() + rng.randbytes(size - len(out.getvalue()))
        digest = hashlib.sha256(data).hexdigest()
        attachment = {"sha256": digest, "media_type": "image/jpeg", "bytes": len(data), "caption": ""}
        push(client, participant, [note_put(n + 1, uid(300 + n), body=f"photo {n}", attachments=[attachment])])
        response = client.put(f"/api/v1/events/{EVENT_ID}/blobs/{digest}", content=data, headers=participant)
        assert response.status_code == 201, response.text
        photos.append(data)
    return participant, photos


@pytest.mark.sqlite_only  # the source is a seeded SQLite file; the target is PostgreSQL on either run
def test_db_copy_into_the_database_blob_store_moves_the_photos_and_verifies_them(
    client: TestClient[Litestar], seeded: Seeded, pg_url: str, tmp_path: Path
) -> None:
    participant, photos = photo_notes(client, seeded)
    result = cli("db", "copy", "--from", str(seeded.path), "--to", pg_url, "--blob-store", "database")
    assert result.exit_code == 0, result.output
    (line,) = [line.split() for line in result.output.splitlines() if line.startswith("blob bytes")]
    assert line[2:4] == ["2", "2"]
    assert line[4] == line[5]
    assert "2 photos copied and verified" in result.output
    settings = {"database_url": pg_url, "blob_store": "database", "data_dir": str(tmp_path / "no-photos-here")}
    with TestClient(app=make_app(seeded, **settings)) as served:
        for data in photos:
            response = served.get(
                f"/api/v1/events/{EVENT_ID}/blobs/{hashlib.sha256(data).hexdigest()}", headers=participant
            )
            assert response.status_code == 200
            assert response.content == data
    assert not any(p.is_file() for p in (tmp_path / "no-photos-here").rglob("*"))


@pytest.mark.sqlite_only  # the source is a seeded SQLite file; the target is PostgreSQL on either run
def test_db_copy_of_a_photo_whose_file_is_missing_fails_and_writes_nothing(
    client: TestClient[Litestar], seeded: Seeded, pg_url: str
) -> None:
    _, photos = photo_notes(client, seeded)
    digest = hashlib.sha256(photos[1]).hexdigest()
    (seeded.path.parent / "blobs" / digest[:2] / digest).unlink()
    result = cli("db", "copy", "--from", str(seeded.path), "--to", pg_url, "--blob-store", "database")
    assert result.exit_code == 1
    assert f"photo {digest} has no file" in result.output
    assert "nothing was written" in result.output
    assert pg_rows(pg_url, "SELECT count(*) FROM blobs") == [(0,)]
    assert pg_rows(pg_url, "SELECT count(*) FROM blob_chunks") == [(0,)]


@pytest.mark.sqlite_only  # the source is a seeded SQLite file; the target is PostgreSQL on either run
def test_db_copy_refuses_a_target_that_already_holds_data(seeded: Seeded, pg_url: str) -> None:
    assert cli("db", "copy", "--from", str(seeded.path), "--to", pg_url).exit_code == 0
    again = cli("db", "copy", "--from", str(seeded.path), "--to", pg_url)
    assert again.exit_code == 1
    assert "already holds data" in again.output
    (count,) = sqlite3.connect(seeded.path).execute("SELECT count(*) FROM sites").fetchone()
    assert pg_rows(pg_url, "SELECT count(*) FROM sites") == [(count,)]


@pytest.mark.sqlite_only  # the source is a seeded SQLite file; the target is PostgreSQL on either run
def test_a_copy_that_fails_half_way_leaves_the_target_empty(seeded: Seeded, pg_url: str) -> None:
    with sqlite3.connect(seeded.path) as conn:
        conn.execute("UPDATE accounts SET created_at = 'last Tuesday' WHERE id = (SELECT max(id) FROM accounts)")
    result = cli("db", "copy", "--from", str(seeded.path), "--to", pg_url)
    assert result.exit_code == 1
    assert "nothing was written" in result.output
    assert "'last Tuesday'" in result.output
    tables = [t for (t,) in pg_rows(pg_url, "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")]
    assert "events" in tables  # migrated, then the copy rolled back whole
    for table in tables:
        if table != "schema_migrations":
            assert pg_rows(pg_url, f'SELECT count(*) FROM "{table}"') == [(0,)], table


def test_db_copy_refuses_a_source_with_pending_migrations(tmp_path: Path, pg_url: str) -> None:
    old = tmp_path / "old.db"
    with sqlite3.connect(old) as conn:
        conn.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT, applied_at TEXT)")
        conn.execute("INSERT INTO schema_migrations VALUES (1, 'first', '2025-01-01T00:00:00Z')")
    result = cli("db", "copy", "--from", str(old), "--to", pg_url)
    assert result.exit_code == 1
    assert "pending migrations [2," in result.output


@pytest.mark.parametrize("how", ["option", "environment"])
def test_the_demo_loads_into_postgresql_and_prints_links_that_work(how: str, pg_url: str) -> None:
    args, env = (["--database-url", pg_url], {}) if how == "option" else ([], {"STUDYVISIT_DATABASE_URL": pg_url})
    result = cli("demo", "--no-serve", "--json", *args, env=env)
    assert result.exit_code == 0, result.output
    accounts = [msgspec.json.decode(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert {a["role"] for a in accounts} == {"organizer", "host", "participant"}
    assert pg_rows(pg_url, "SELECT count(*) FROM sites")[0][0] > 0
    assert all(a["token"] for a in accounts)
    assert {(a["id"],) for a in accounts} <= set(pg_rows(pg_url, "SELECT id FROM accounts"))


def test_an_explicit_db_file_beats_the_database_url_of_the_environment(tmp_path: Path, pg_url: str) -> None:
    target = tmp_path / "explicit.db"
    result = cli("demo", "--no-serve", "--db", str(target), env={"STUDYVISIT_DATABASE_URL": pg_url})
    assert result.exit_code == 0, result.output
    assert target.exists()
    assert pg_rows(pg_url, "SELECT to_regclass('sites') IS NULL") == [(True,)]


def test_serving_from_an_unreachable_postgresql_says_why_and_exits() -> None:
    result = cli("serve", "--port", str(free_port()), "--database-url", "postgresql://nobody@127.0.0.1:1/none")
    assert result.exit_code == 1
    assert "PostgreSQL" in result.output
    assert "Traceback" not in result.output


def test_a_sqlite_database_url_selects_the_file_to_serve_from(tmp_path: Path) -> None:
    target = tmp_path / "from-url.db"
    result = cli("demo", "--no-serve", env={"STUDYVISIT_DATABASE_URL": f"sqlite:///{target}"})
    assert result.exit_code == 0, result.output
    migrated = Database(target)
    assert migrate(migrated) == []  # created and migrated by the demo
    assert migrated.query("SELECT count(*) FROM sites")[0][0] > 0
