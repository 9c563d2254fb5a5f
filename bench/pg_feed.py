"""The change feed on PostgreSQL: three cursor designs under concurrent writers, each checked for skips.

SQLite has one writer, so a feed ordered by an AUTOINCREMENT seq is in commit order and `seq > cursor`
never skips (server/storage/migrations.py). PostgreSQL hands out sequence values before commit: a
transaction that took seq 10 and commits after one that took 11 lands behind a reader whose cursor
already passed 11. This module measures three designs on a real server, side by side in one run:

* ``naive``: seq from a sequence, pull ``seq > cursor`` (the design that skips; the control);
* ``horizon``: each row is stamped with its transaction's id (``pg_current_xact_id()``); a pull
  serves only rows whose transaction id is below the xmin of its own snapshot (every transaction
  below it has ended, so no row can still appear there), in (xid, seq) order; the cursor is the
  last (xid, seq) served;
* ``lock``: a transaction takes its feed positions last, from a per-event counter row it updates
  (so holds locked) until it commits: positions are handed out in commit order; pull ``pos > cursor``.

Writers insert new rows only (one per change), so a skip is a row that a reader never saw after
catching up at the end. Run: ``python -m bench.pg_feed`` (see ``--help``); docs/sync-protocol.md
§5.3 has the argument and bench/RESULTS.md the figures.
"""

import argparse
import json
import random
import statistics
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, LiteralString

import psycopg
from psycopg import sql

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"
SCHEMA = "bench_feed"
EVENT = "bench-event"
Cursor = tuple[int, int]  # (xid, seq) for horizon; (0, position) for the others


def _no_wait() -> None:
    pass


class Design:
    """One way to number the feed: its table, its write transaction and its pull."""

    # LiteralString: psycopg runs only SQL the source spells out.
    name: LiteralString = ""
    columns: LiteralString = ""

    def create(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute(f"CREATE TABLE changes_{self.name} ({self.columns})")

    def write(
        self,
        conn: psycopg.Connection[Any],
        ids: list[str],
        work: Callable[[], None],
        hold: Callable[[], None] = _no_wait,
    ) -> None:
        """One transaction writing `ids`: `work()` per change, then its feed rows; `hold()` just before
        COMMIT (tests use it to commit two transactions in the order they choose)."""
        raise NotImplementedError

    def pull(self, conn: psycopg.Connection[Any], cursor: Cursor, limit: int) -> tuple[list[str], Cursor]:
        raise NotImplementedError


def apply(conn: psycopg.Connection[Any], ids: list[str], work: Callable[[], None]) -> None:
    """What every design's transaction does first: per change, the application's work and its record."""
    for entity_id in ids:
        work()
        conn.execute("INSERT INTO records (id, event_id) VALUES (%s, %s)", (entity_id, EVENT))


def feed_rows(conn: psycopg.Connection[Any], statement: LiteralString, ids: list[str]) -> None:
    with conn.cursor() as cur:
        cur.executemany(statement, [(EVENT, entity_id) for entity_id in ids])


class Naive(Design):
    name: LiteralString = "naive"
    columns: LiteralString = "seq bigserial PRIMARY KEY, event_id text NOT NULL, entity_id text NOT NULL"

    def write(
        self,
        conn: psycopg.Connection[Any],
        ids: list[str],
        work: Callable[[], None],
        hold: Callable[[], None] = _no_wait,
    ) -> None:
        with conn.transaction():
            apply(conn, ids, work)
            feed_rows(conn, f"INSERT INTO changes_{self.name} (event_id, entity_id) VALUES (%s, %s)", ids)
            hold()

    def pull(self, conn: psycopg.Connection[Any], cursor: Cursor, limit: int) -> tuple[list[str], Cursor]:
        rows = conn.execute(
            "SELECT seq, entity_id FROM changes_naive WHERE event_id = %s AND seq > %s ORDER BY seq LIMIT %s",
            (EVENT, cursor[1], limit),
        ).fetchall()
        return [r[1] for r in rows], ((0, rows[-1][0]) if rows else cursor)


class Horizon(Design):
    name: LiteralString = "horizon"
    columns: LiteralString = (
        "seq bigserial PRIMARY KEY, xid xid8 NOT NULL DEFAULT pg_current_xact_id(), "
        "event_id text NOT NULL, entity_id text NOT NULL"
    )

    def create(self, conn: psycopg.Connection[Any]) -> None:
        super().create(conn)
        conn.execute("CREATE INDEX ON changes_horizon (event_id, xid, seq)")

    # The same transaction as naive's: only the stamp (a column default) and the pull differ.
    write = Naive.write

    def pull(self, conn: psycopg.Connection[Any], cursor: Cursor, limit: int) -> tuple[list[str], Cursor]:
        # One statement, one snapshot: the rows read and the xmin compared with come from the same one.
        rows = conn.execute(
            """SELECT xid::text::bigint, seq, entity_id FROM changes_horizon
                WHERE event_id = %s
                  AND (xid, seq) > (%s::text::xid8, %s)
                  AND xid < pg_snapshot_xmin(pg_current_snapshot())
                ORDER BY xid, seq LIMIT %s""",
            (EVENT, cursor[0], cursor[1], limit),
        ).fetchall()
        return [r[2] for r in rows], ((rows[-1][0], rows[-1][1]) if rows else cursor)


class Lock(Design):
    name: LiteralString = "lock"
    columns: LiteralString = "pos bigint PRIMARY KEY, event_id text NOT NULL, entity_id text NOT NULL"

    def create(self, conn: psycopg.Connection[Any]) -> None:
        super().create(conn)
        conn.execute("CREATE TABLE feed_clock (event_id text PRIMARY KEY, pos bigint NOT NULL)")
        conn.execute("INSERT INTO feed_clock VALUES (%s, 0)", (EVENT,))

    def write(
        self,
        conn: psycopg.Connection[Any],
        ids: list[str],
        work: Callable[[], None],
        hold: Callable[[], None] = _no_wait,
    ) -> None:
        with conn.transaction():
            apply(conn, ids, work)
            # The lock on the event's clock row is held from here to COMMIT: the next writer's positions
            # come after this one's, and it can take them only once this one is visible.
            (last,) = conn.execute(
                "UPDATE feed_clock SET pos = pos + %s WHERE event_id = %s RETURNING pos", (len(ids), EVENT)
            ).fetchone() or (0,)
            first = last - len(ids) + 1
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO changes_lock (pos, event_id, entity_id) VALUES (%s, %s, %s)",
                    [(first + i, EVENT, entity_id) for i, entity_id in enumerate(ids)],
                )
            hold()

    def pull(self, conn: psycopg.Connection[Any], cursor: Cursor, limit: int) -> tuple[list[str], Cursor]:
        rows = conn.execute(
            "SELECT pos, entity_id FROM changes_lock WHERE event_id = %s AND pos > %s ORDER BY pos LIMIT %s",
            (EVENT, cursor[1], limit),
        ).fetchall()
        return [r[1] for r in rows], ((0, rows[-1][0]) if rows else cursor)


DESIGNS: dict[str, Design] = {d.name: d for d in (Naive(), Horizon(), Lock())}


def connect(url: str, schema: str, *, autocommit: bool = False) -> psycopg.Connection[Any]:
    """A connection whose tables are the schema's (the SQL names no schema, so tests can use their own)."""
    return psycopg.connect(url, autocommit=autocommit, options=f"-c search_path={schema}")


def reset(url: str, schema: str = SCHEMA) -> None:
    """A fresh schema holding every design's tables."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    with connect(url, schema, autocommit=True) as conn:
        # The records a change describes (a note, say): written by every design alike.
        conn.execute("CREATE TABLE records (id text PRIMARY KEY, event_id text NOT NULL)")
        for design in DESIGNS.values():
            design.create(conn)


@dataclass
class Outcome:
    design: str
    writers: int
    seconds: float
    transactions: int = 0
    rows: int = 0
    seen: int = 0
    skipped: int = 0
    duplicates: int = 0
    latency_ms: list[float] = field(default_factory=list[float])

    def report(self) -> dict[str, Any]:
        lat = sorted(self.latency_ms)

        def q(p: float) -> float:
            return round(lat[min(len(lat) - 1, int(p * len(lat)))], 2) if lat else 0.0

        return {
            "design": self.design,
            "writers": self.writers,
            "seconds": round(self.seconds, 3),
            "transactions": self.transactions,
            "rows": self.rows,
            "rows_per_s": round(self.rows / self.seconds) if self.seconds else 0,
            "transactions_per_s": round(self.transactions / self.seconds) if self.seconds else 0,
            "seen": self.seen,
            "skipped": self.skipped,
            "duplicates": self.duplicates,
            "latency_p50_ms": q(0.5),
            "latency_p99_ms": q(0.99),
            "latency_max_ms": round(lat[-1], 2) if lat else 0.0,
        }


@dataclass
class Load:
    """What the writers do: `writers` connections, transactions of `batch` changes with up to `work_ms`
    of work per change, for `duration` seconds; with `straggler_s`, one more transaction that writes a
    row and stays open that long (a long import, say), from a third of the way in."""

    writers: int = 8
    duration: float = 5.0
    batch: int = 10
    work_ms: float = 1.0
    straggler_s: float = 0.0


# How long the reader goes on pulling after the writers stopped before it calls a change skipped.
CATCH_UP_S = 5.0


def run(url: str, design: Design, load: Load, *, schema: str = SCHEMA, seed: int = 1) -> Outcome:
    """Writers insert for `load.duration` seconds while one reader pulls; then the reader catches up."""
    committed: dict[str, float] = {}
    seen: dict[str, float] = {}
    lock = threading.Lock()
    stop = threading.Event()
    writing = threading.Event()
    writing.set()
    counts = [0] * load.writers
    errors: list[BaseException] = []
    result = Outcome(design.name, load.writers, load.duration)

    def writer(n: int) -> None:
        rng = random.Random(seed * 1000 + n)

        def work() -> None:
            # The application's work inside the transaction (decoding, checks, reading): what lets a
            # transaction that started later commit first.
            if load.work_ms:
                time.sleep(rng.uniform(0, load.work_ms) / 1000)

        try:
            with connect(url, schema) as conn:
                i = 0
                while not stop.is_set():
                    ids = [f"w{n}-{i + k}" for k in range(load.batch)]
                    design.write(conn, ids, work)
                    now = time.perf_counter()
                    with lock:
                        committed.update(dict.fromkeys(ids, now))
                    counts[n] += 1
                    i += load.batch
        except BaseException as error:  # reported after the run, never swallowed
            errors.append(error)

    def straggler() -> None:
        try:
            time.sleep(load.duration / 3)
            with connect(url, schema) as conn, conn.transaction():
                conn.execute("INSERT INTO records (id, event_id) VALUES ('straggler', 'elsewhere')")
                time.sleep(load.straggler_s)
        except BaseException as error:
            errors.append(error)

    def reader() -> None:
        try:
            with connect(url, schema, autocommit=True) as conn:
                cursor: Cursor = (0, 0)
                idle_after_writers = 0
                quiet_since = 0.0
                # Caught up: three empty pulls since the writers stopped, and either every committed
                # change seen or CATCH_UP_S gone by since the first of them. The wait is for the
                # horizon design, whose xmin is the whole cluster's: any transaction in any database
                # (another test's CREATE DATABASE, say) holds it back for as long as it runs.
                while idle_after_writers < 3 or (
                    time.perf_counter() - quiet_since < CATCH_UP_S and len(seen) < len(committed)
                ):
                    ids, cursor = design.pull(conn, cursor, 500)
                    now = time.perf_counter()
                    with lock:
                        for entity_id in ids:
                            if entity_id in seen:
                                result.duplicates += 1
                            else:
                                seen[entity_id] = now
                    if ids:
                        idle_after_writers = 0
                    else:
                        if not writing.is_set():
                            quiet_since = quiet_since or now
                            idle_after_writers += 1
                        time.sleep(0.002)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=writer, args=(n,), daemon=True) for n in range(load.writers)]
    if load.straggler_s:
        threads.append(threading.Thread(target=straggler, daemon=True))
    pulling = threading.Thread(target=reader, daemon=True)
    pulling.start()
    started = time.perf_counter()
    for t in threads:
        t.start()
    time.sleep(load.duration)
    stop.set()
    for t in threads:
        t.join(timeout=60 + load.straggler_s)
    result.seconds = time.perf_counter() - started
    writing.clear()
    pulling.join(timeout=60)
    if errors:
        raise RuntimeError(f"{design.name}: {errors[0]!r}") from errors[0]
    result.transactions = sum(counts)
    result.rows = len(committed)
    result.seen = len(seen)
    result.skipped = len(committed.keys() - seen.keys())
    result.latency_ms = [(seen[i] - committed[i]) * 1000 for i in committed.keys() & seen.keys()]
    return result


def measure(url: str, names: Iterable[str], load: Load, *, runs: int) -> list[dict[str, Any]]:
    """Each design `runs` times, interleaved (a slow moment of the machine hits every design alike)."""
    samples: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    try:
        for r in range(runs):
            for name in samples:
                reset(url)
                samples[name].append(run(url, DESIGNS[name], load, seed=r + 1).report())
    finally:
        drop(url)
    table: list[dict[str, Any]] = []
    for name, reports in samples.items():
        keys = ("rows_per_s", "transactions_per_s", "latency_p50_ms", "latency_p99_ms", "latency_max_ms")
        median = {key: statistics.median(r[key] for r in reports) for key in keys}
        table.append(
            {
                "design": name,
                **median,
                "skipped": [r["skipped"] for r in reports],
                "duplicates": sum(r["duplicates"] for r in reports),
                "runs": reports,
            }
        )
    base = next((t["rows_per_s"] for t in table if t["design"] == "naive"), 0)
    for t in table:
        t["ratio_to_naive"] = round(t["rows_per_s"] / base, 3) if base else None
    return table


def drop(url: str, schema: str = SCHEMA) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def render(table: list[dict[str, Any]], load: Load, runs: int) -> str:
    straggler = f"; one transaction open {load.straggler_s:g} s" if load.straggler_s else ""
    lines = [
        f"Change feed on PostgreSQL: {load.writers} writers x {load.duration:g} s, {load.batch} changes per "
        f"transaction, 0-{load.work_ms:g} ms of work per change{straggler}; one reader, pages of 500; "
        f"medians of {runs}",
        f"{'design':<9} {'changes/s':>9} {'txn/s':>7} {'vs naive':>9} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>8}"
        "  skipped per run",
    ]
    for t in table:
        ratio = f"{t['ratio_to_naive']:.0%}" if t["ratio_to_naive"] is not None else "-"
        lines.append(
            f"{t['design']:<9} {t['rows_per_s']:>9,.0f} {t['transactions_per_s']:>7,.0f} {ratio:>9} "
            f"{t['latency_p50_ms']:>7.1f} {t['latency_p99_ms']:>7.1f} {t['latency_max_ms']:>8.1f}  {t['skipped']}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.pg_feed", description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--url", default=DEFAULT_URL, help=f"the PostgreSQL to use (its schema {SCHEMA} is replaced)")
    parser.add_argument("--designs", default="naive,horizon,lock")
    parser.add_argument("--writers", type=int, default=Load.writers)
    parser.add_argument("--duration", type=float, default=Load.duration, help="seconds of writing per run")
    parser.add_argument("--batch", type=int, default=Load.batch, help="changes per transaction (a push batch)")
    parser.add_argument("--work-ms", type=float, default=Load.work_ms, help="work per change inside the transaction")
    parser.add_argument("--straggler-s", type=float, default=0.0, help="keep one write transaction open this long")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", help="write the figures as JSON here")
    args = parser.parse_args(argv)
    load = Load(args.writers, args.duration, args.batch, args.work_ms, args.straggler_s)
    table = measure(args.url, [n for n in args.designs.split(",") if n], load, runs=args.runs)
    print(render(table, load, args.runs))
    if args.out:
        with open(args.out, "w", encoding="utf-8") as out:
            json.dump({"load": vars(load), "runs": args.runs, "designs": table}, out, indent=2)


if __name__ == "__main__":
    main()
