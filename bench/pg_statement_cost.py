"""Where a token check's time goes on PostgreSQL: the same statement through each layer, one call at a time.

    python -m bench.pg_statement_cost [--url postgresql://postgres@127.0.0.1:5432/test] [--calls 2000]

Makes a database of its own beside the URL's (the demo event), dropped at the end. Per call: wall
time, this process's CPU time, and the CPU time of the PostgreSQL backend that ran it
(``/proc/<pid>/schedstat``, so PostgreSQL on this machine), medians of 5 rounds.
"""

import argparse
import asyncio
import statistics
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import psycopg
from psycopg import sql

from server.fixtures import DEMO_FIXTURE, load_fixture, read_fixture
from server.storage.accounts import (
    _SELECT_ACCOUNT_AND_VERSION,  # pyright: ignore[reportPrivateUsage]
    _USABLE,  # pyright: ignore[reportPrivateUsage]
    SELECT_BY_TOKEN_HASHES,
    StatementTokenChecks,
    hash_token,
)
from server.storage.db import utcnow
from server.storage.pg.database import ADAPTERS, PgDatabase, pg_row, translate
from server.storage.pg.token_checks import PgTokenChecks


class _Adapted:
    adapters = ADAPTERS
    connection = None


def cpu_ns(pid: int) -> int:
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    name = "sv_cost_" + uuid.uuid4().hex[:8]
    with psycopg.connect(args.url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        run(args.url.rsplit("/", 1)[0] + "/" + name, args.calls)
    finally:
        with psycopg.connect(args.url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def run(url: str, calls: int) -> None:
    db = PgDatabase(url, min_size=1, max_size=1)
    db.migrate()
    token = next(a for a in load_fixture(db, read_fixture(DEMO_FIXTURE)) if a.role == "participant").token
    with db.pool.connection() as pooled:
        pool_pid = pooled.info.backend_pid
    single = translate(f"{_SELECT_ACCOUNT_AND_VERSION['postgresql']} WHERE a.token_hash = ? AND {_USABLE}")
    batch = translate(SELECT_BY_TOKEN_HASHES)
    digest = hash_token(token)
    conn = psycopg.connect(url, autocommit=True, row_factory=pg_row, context=_Adapted())
    pid = conn.info.backend_pid
    pgconn = conn.pgconn
    pgconn.prepare(b"single", single.replace("%s", "$1", 1).replace("%s", "$2", 1).encode())
    statement = StatementTokenChecks(db)
    batched = PgTokenChecks(url)
    loop = asyncio.new_event_loop()
    batched_pid = 0

    def async_check() -> None:
        loop.run_until_complete(batched.check(token))

    loop.run_until_complete(batched.check(token))
    if batched._conn is not None:  # pyright: ignore[reportPrivateUsage]
        batched_pid = batched._conn.info.backend_pid  # pyright: ignore[reportPrivateUsage]
    cases: dict[str, tuple[Callable[[], object], int]] = {
        "libpq SELECT 1 (exec_)": (lambda: pgconn.exec_(b"SELECT 1"), pid),
        "psycopg SELECT 1": (lambda: conn.execute("SELECT 1").fetchone(), pid),
        "libpq statement, prepared": (
            lambda: pgconn.exec_prepared(b"single", [digest.encode(), utcnow().encode()]),
            pid,
        ),
        "psycopg statement, not prepared": (
            lambda: conn.execute(single, (digest, utcnow()), prepare=False).fetchone(),
            pid,
        ),
        "psycopg statement, prepared": (lambda: conn.execute(single, (digest, utcnow()), prepare=True).fetchone(), pid),
        "psycopg ANY statement, prepared": (
            lambda: conn.execute(batch, ([digest], utcnow()), prepare=True).fetchall(),
            pid,
        ),
        "before: pool + statement + Account": (lambda: loop.run_until_complete(statement.check(token)), pool_pid),
        "after: PgTokenChecks, 1 at a time": (async_check, batched_pid),
    }

    def pool_only() -> None:
        with db.pool.connection():
            pass

    cases = {"pool getconn+putconn only": (pool_only, pool_pid), **cases}
    results: dict[str, list[tuple[float, float, float]]] = {k: [] for k in cases}
    for call, _ in cases.values():
        for _ in range(200):
            call()
    for _ in range(5):
        for label, (call, backend) in cases.items():
            b0, t0, c0 = cpu_ns(backend), time.perf_counter(), time.process_time()
            for _ in range(calls):
                call()
            wall, cpu = (time.perf_counter() - t0) / calls * 1e6, (time.process_time() - c0) / calls * 1e6
            results[label].append((wall, cpu, (cpu_ns(backend) - b0) / calls / 1e3))
    print(f"µs per call, medians of 5 x {calls}")
    print(f"{'':36s} {'wall':>7s} {'py cpu':>7s} {'pg cpu':>7s}")
    for label, values in results.items():
        wall, cpu, pg_cpu = (statistics.median(v[i] for v in values) for i in range(3))
        print(f"{label:36s} {wall:7.1f} {cpu:7.1f} {pg_cpu:7.1f}")
    loop.run_until_complete(batched.close())
    loop.close()
    conn.close()
    db.close()


if __name__ == "__main__":
    main()
