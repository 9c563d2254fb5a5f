"""In-process A/B of cached reads on PostgreSQL: each request's token check as a blocking statement on the
pool (``StatementTokenChecks``, what the server ran before) against the checks batched on an asynchronous
connection of the event loop (``PgTokenChecks``), alternating in one process.

    python -m bench.pg_reads_ab [--url postgresql://postgres@127.0.0.1:5432/test] [--requests 1920]
        [--rounds 5] [--concurrency 1,8,64] [--tokens one|many]

Makes a database of its own beside the URL's (the demo event), dropped at the end. ``concurrency``
requests run at once on one event loop (as uvicorn's connections do); per request it prints the
wall time, this process's CPU time and the CPU time of the database's PostgreSQL backends
(``/proc/<pid>/schedstat``, so PostgreSQL on this machine), medians of the rounds.
"""

import argparse
import asyncio
import contextlib
import logging
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

import server.app as app_module
from bench.reads_inprocess import _call  # pyright: ignore[reportPrivateUsage]
from server.fixtures import DEMO_FIXTURE, load_fixture, read_fixture
from server.settings import Settings
from server.storage.accounts import StatementTokenChecks
from server.storage.pg.database import PgDatabase

Case = Callable[[str], tuple[str, list[tuple[bytes, bytes]], int]]


def backends_cpu_ns(admin: str, database: str) -> int:
    """CPU time so far of every backend serving ``database`` (a local PostgreSQL)."""
    with psycopg.connect(admin, autocommit=True) as conn:
        pids = [r[0] for r in conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", (database,))]
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):  # a backend that ended meanwhile
            total += int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])
    return total


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--requests", type=int, default=1920)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", default="1,8,64")
    parser.add_argument("--tokens", choices=("one", "many"), default="many", help="one participant, or each in turn")
    args = parser.parse_args()
    name = "sv_reads_ab_" + uuid.uuid4().hex[:8]
    with psycopg.connect(args.url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = args.url.rsplit("/", 1)[0] + "/" + name
    try:
        run(args, url, name)
    finally:
        with psycopg.connect(args.url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def run(args: argparse.Namespace, url: str, name: str) -> None:
    db = PgDatabase(url)
    db.migrate()
    accounts = load_fixture(db, read_fixture(DEMO_FIXTURE))
    db.close()
    participants = [a for a in accounts if a.role == "participant"]
    tmp = tempfile.mkdtemp()
    access = logging.getLogger("studyvisit.access")  # on, to a file, as `studyvisit serve` logs
    access.setLevel(logging.INFO)
    access.propagate = False
    access.addHandler(logging.StreamHandler((Path(tmp) / "access.log").open("w", encoding="utf-8")))
    settings = Settings.from_env(database_url=url, data_dir=tmp)
    after = app_module.create_app(settings)
    batched = app_module.open_token_checks
    app_module.open_token_checks = StatementTokenChecks  # type: ignore[assignment]  # the path before
    before = app_module.create_app(settings)
    app_module.open_token_checks = batched
    event = participants[0].event_id
    tokens = [participants[0].token] if args.tokens == "one" else [a.token for a in participants]
    print(f"{len(tokens)} token(s)")

    async def measure() -> None:
        tags: dict[str, bytes] = {}
        for token in tokens:
            seen: dict[bytes, bytes] = {}
            await _call(after, f"/api/v1/events/{event}/sites", [(b"authorization", f"Bearer {token}".encode())], seen)
            tags[token] = seen[b"etag"]

        def auth(token: str) -> tuple[bytes, bytes]:
            return (b"authorization", f"Bearer {token}".encode())

        cases: dict[str, Case] = {
            "sites": lambda t: (f"/api/v1/events/{event}/sites", [auth(t), (b"accept-encoding", b"gzip")], 200),
            "304": lambda t: (f"/api/v1/events/{event}/sites", [auth(t), (b"if-none-match", tags[t])], 304),
        }
        results: dict[tuple[str, int, str], list[tuple[float, float, float]]] = {}
        for concurrency in [int(c) for c in args.concurrency.split(",")]:
            for _ in range(args.rounds):
                for case_name, case in cases.items():
                    for label, app in (("before", before), ("after", after)):
                        requests = [case(tokens[i % len(tokens)]) for i in range(concurrency)]
                        for path, headers, expect in requests:
                            assert await _call(app, path, headers) == expect
                        each = args.requests // concurrency

                        async def client(i: int, app: Any = app, requests: Any = requests, each: int = each) -> None:
                            path, headers, _ = requests[i]
                            for _ in range(each):
                                await _call(app, path, headers)

                        pg0, t0, c0 = backends_cpu_ns(args.url, name), time.perf_counter(), time.process_time()
                        await asyncio.gather(*(client(i) for i in range(concurrency)))
                        n = each * concurrency
                        wall, cpu = (time.perf_counter() - t0) / n * 1e6, (time.process_time() - c0) / n * 1e6
                        pg_cpu = (backends_cpu_ns(args.url, name) - pg0) / n / 1e3
                        results.setdefault((case_name, concurrency, label), []).append((wall, cpu, pg_cpu))
        print(f"µs per request, medians of {args.rounds}")
        print(f"{'case':6s} {'conc':>4s} {'path':7s} {'wall':>7s} {'py cpu':>7s} {'pg cpu':>7s} {'cpu sum':>7s}")
        for (case_name, concurrency, label), values in results.items():
            wall, cpu, pg_cpu = (statistics.median(v[i] for v in values) for i in range(3))
            print(
                f"{case_name:6s} {concurrency:4d} {label:7s} {wall:7.1f} {cpu:7.1f} {pg_cpu:7.1f} {cpu + pg_cpu:7.1f}"
            )
        await after.state.token_checks.close()

    asyncio.run(measure())
    after.state.db.close()
    before.state.db.close()


if __name__ == "__main__":
    main()
