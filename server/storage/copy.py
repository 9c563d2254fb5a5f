"""`studyvisit db copy`: a SQLite database into an empty PostgreSQL one, verified table by table.

Every table is copied whole (every event it holds) in one PostgreSQL transaction, so a failure
leaves the target empty. The target's catalog says how each value is stored (jsonb, boolean,
timestamptz, ...), so nothing here repeats the schema. Afterwards both sides are read again, each
row brought to one canonical form (JSON by value, instants in UTC), and per table the counts and a
checksum are compared.

With `blob_dir`, the photos' bytes are copied too, from the files of that data directory into the
database blob store's chunks (server/storage/pg/blobs.py), in the same transaction, and read back
afterwards: the line "blob bytes" compares their count and a checksum over each photo's SHA-256 as
computed from the bytes on each side. Previews are made again on demand; uploads left unfinished
are not copied (a phone resumes them from byte 0).

Not copied: `schema_migrations` (each backend has its own) and SQLite's `sqlite_sequence`, whose
`changes` counter becomes every event's feed clock instead: a device's cursor may stand at any
position the old database gave out, so new positions must start above all of them.
"""

import hashlib
import json
import sqlite3
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime
from graphlib import TopologicalSorter
from pathlib import Path
from typing import Any, NamedTuple

import msgspec
import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from server.storage.blobs import CHUNK, blob_file
from server.storage.migrations import MIGRATIONS
from server.storage.pg.migrate import connect, migrate

_SKIPPED = {"schema_migrations", "sqlite_sequence"}
# PostgreSQL-only tables, filled from the copied data rather than copied.
_DERIVED = {"feed_clocks"}


class CopyError(Exception):
    """The copy cannot start or failed; nothing was written to the target."""


class TableCopy(NamedTuple):
    table: str
    source_rows: int
    target_rows: int
    source_checksum: str
    target_checksum: str

    @property
    def same(self) -> bool:
        return self.source_rows == self.target_rows and self.source_checksum == self.target_checksum


def copy_sqlite_to_postgres(source: Path, target_url: str, blob_dir: Path | None = None) -> list[TableCopy]:
    """Copy every table of the SQLite file into the PostgreSQL database (migrated first, and empty),
    and the photos of ``blob_dir`` into its blob store when given."""
    if not source.is_file():
        raise CopyError(f"no SQLite database at {source}")
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    try:
        _check_source(src)
        migrate(target_url)
        with connect(target_url) as dst:
            types = _target_types(dst)
            tables = _copy_order(src, types)
            with dst.transaction():
                _check_empty(dst, tables)
                for table in tables:
                    _copy_table(src, dst, table, types[table])
                _set_counters(src, dst)
                hashes = _copy_blobs(src, dst, blob_dir) if blob_dir is not None else None
            compared = [_compare(src, dst, table, types[table]) for table in tables]
            return compared if hashes is None else [*compared, _compare_blobs(dst, hashes)]
    except (sqlite3.Error, psycopg.Error, ValueError, OSError) as exc:
        raise CopyError(f"the copy failed and nothing was written: {exc}") from exc
    finally:
        src.close()


def _check_source(src: sqlite3.Connection) -> None:
    try:
        done = {row[0] for row in src.execute("SELECT version FROM schema_migrations")}
    except sqlite3.OperationalError as exc:
        raise CopyError("the source is not a studyvisit database (no schema_migrations)") from exc
    pending = [m.version for m in MIGRATIONS if m.version not in done]
    if pending:
        raise CopyError(f"the source has pending migrations {pending}: open it once with this version first")


def _target_types(dst: psycopg.Connection[Any]) -> dict[str, dict[str, str]]:
    """Each table of the target's schema: its columns and their types, in column order."""
    rows = dst.execute(
        """SELECT table_name, column_name, data_type FROM information_schema.columns
           WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position"""
    ).fetchall()
    types: dict[str, dict[str, str]] = {}
    for table, column, data_type in rows:
        types.setdefault(table, {})[column] = data_type
    return types


def _copy_order(src: sqlite3.Connection, types: dict[str, dict[str, str]]) -> list[str]:
    """The source's tables, each after the tables it references; each must match the target's columns."""
    names = [r[0] for r in src.execute("SELECT name FROM sqlite_master WHERE type = 'table'") if r[0] not in _SKIPPED]
    graph: dict[str, set[str]] = {}
    for name in names:
        if name not in types:
            raise CopyError(f"table {name} has no counterpart in PostgreSQL")
        columns = [r[1] for r in src.execute(f"PRAGMA table_info({_quoted(name)})")]
        if set(columns) != set(types[name]):
            raise CopyError(f"table {name}: SQLite has {sorted(columns)}, PostgreSQL {sorted(types[name])}")
        graph[name] = {r[2] for r in src.execute(f"PRAGMA foreign_key_list({_quoted(name)})")} - {name}
    return list(TopologicalSorter(graph).static_order())


def _check_empty(dst: psycopg.Connection[Any], tables: Iterable[str]) -> None:
    for table in [*tables, *_DERIVED]:
        if dst.execute(sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(sql.Identifier(table))).fetchone() == (True,):
            raise CopyError(f"the target already holds data (table {table}): copy into an empty database")


def _copy_table(src: sqlite3.Connection, dst: psycopg.Connection[Any], table: str, types: dict[str, str]) -> None:
    columns = list(types)
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    with dst.cursor() as cur, cur.copy(statement) as copy:
        for row in _source_rows(src, table, types):
            copy.write_row(
                [Jsonb(v) if types[c] == "jsonb" and v is not None else v for c, v in zip(columns, row, strict=True)]
            )


def _source_rows(src: sqlite3.Connection, table: str, types: dict[str, str]) -> Iterator[list[Any]]:
    """The table's rows, each value in the Python type of its target column."""
    names = ", ".join(_quoted(c) for c in types)
    kinds = list(types.values())
    for row in src.execute(f"SELECT {names} FROM {_quoted(table)}"):
        yield [_convert(value, kind, table) for value, kind in zip(row, kinds, strict=True)]


def _convert(value: Any, kind: str, table: str) -> Any:
    if value is None:
        return None
    if kind == "jsonb":
        return json.loads(value)
    if kind == "boolean":
        return bool(value)
    if kind == "timestamp with time zone":
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is None:
            raise ValueError(f"{table}: time {value!r} has no offset")
        return moment
    if kind == "date":
        return date.fromisoformat(value)
    if kind == "bytea":
        return bytes(value)
    return value


def _set_counters(src: sqlite3.Connection, dst: psycopg.Connection[Any]) -> None:
    # Above every feed position SQLite gave out (deleted rows included), for every event.
    (highest,) = src.execute(
        "SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'changes'), 0),"
        " coalesce((SELECT max(seq) FROM changes), 0))"
    ).fetchone()
    dst.execute("INSERT INTO feed_clocks (event_id, seq) SELECT id, %s FROM events", (highest,))
    dst.execute("SELECT setval(pg_get_serial_sequence('history', 'id'), coalesce(max(id), 0) + 1, false) FROM history")
    dst.execute(
        "SELECT setval(pg_get_serial_sequence('notes', 'arrival'), coalesce(max(arrival), 0) + 1, false) FROM notes"
    )


def _copy_blobs(src: sqlite3.Connection, dst: psycopg.Connection[Any], blob_dir: Path) -> list[str]:
    """Every recorded blob's file, a chunk at a time, into ``blob_chunks``; the hashes of the bytes read."""
    if dst.execute("SELECT EXISTS (SELECT 1 FROM blob_chunks)").fetchone() == (True,):
        raise CopyError("the target already holds photos (table blob_chunks): copy into an empty database")
    read: list[str] = []
    for (sha256,) in src.execute("SELECT sha256 FROM blobs ORDER BY sha256"):
        path = blob_file(blob_dir, sha256)
        if not path.is_file():
            raise CopyError(f"photo {sha256} has no file at {path}: nothing was written")
        digest, start = hashlib.sha256(), 0
        with (
            path.open("rb") as file,
            dst.cursor() as cur,
            cur.copy("COPY blob_chunks (sha256, start, data) FROM STDIN") as copy,
        ):
            while chunk := file.read(CHUNK):
                copy.write_row((sha256, start, chunk))
                digest.update(chunk)
                start += len(chunk)
        read.append(digest.hexdigest())
    return read


def _compare_blobs(dst: psycopg.Connection[Any], source: list[str]) -> TableCopy:
    """The photos as read from the files, against the photos as read back from the database."""
    target: list[str] = []
    for (sha256,) in dst.execute("SELECT DISTINCT sha256 FROM blob_chunks ORDER BY sha256").fetchall():
        digest, start = hashlib.sha256(), -1
        while row := dst.execute(
            "SELECT start, data FROM blob_chunks WHERE sha256 = %s AND start > %s ORDER BY start LIMIT 1",
            (sha256, start),
        ).fetchone():
            start = row[0]
            digest.update(row[1])
        target.append(digest.hexdigest())
    source_rows, source_sum = _digest([h] for h in source)
    target_rows, target_sum = _digest([h] for h in target)
    return TableCopy("blob bytes", source_rows, target_rows, source_sum, target_sum)


def _compare(src: sqlite3.Connection, dst: psycopg.Connection[Any], table: str, types: dict[str, str]) -> TableCopy:
    source = _digest(_source_rows(src, table, types))
    names = sql.SQL(", ").join(map(sql.Identifier, types))
    target = _digest(dst.execute(sql.SQL("SELECT {} FROM {}").format(names, sql.Identifier(table))))
    return TableCopy(table, source[0], target[0], source[1], target[1])


def _digest(rows: Iterable[Iterable[Any]]) -> tuple[int, str]:
    """How many rows, and SHA-256 over them in canonical form, sorted (the order rows come in is no data)."""
    encoded = sorted(msgspec.json.encode([_canonical(v) for v in row]) for row in rows)
    digest = hashlib.sha256()
    for line in encoded:
        digest.update(line + b"\n")
    return len(encoded), digest.hexdigest()[:16]


def _canonical(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="microseconds")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    if isinstance(value, bytes | memoryview):
        return bytes(value).hex()
    return value


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
