"""``python -m bench.run [--smoke] [--out PATH] [--database-url URL]``: every measurement, a printed table, and a
JSON file. With ``--database-url`` (a PostgreSQL server), the reads, pulls, pushes and the load test again on
PostgreSQL, with 1 and 2 server processes, each beside its own floor.

The run stops by itself: each job has its own deadline, and an alarm ends the whole run past
``Config.time_limit_s`` (the servers and the generator process are stopped on the way out).
"""

import argparse
import contextlib
import dataclasses
import os
import platform
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import msgspec

from bench import measure, pg
from bench.dataset import Dataset, ParticipantPool, generate, load_turin
from bench.machine import Interference, wait_until_quiet
from bench.report import evaluate, render
from bench.servers import Server, studyvisit_server

DEFAULT_OUT = Path("bench/out/results.json")


class BenchTimeoutError(Exception):
    """The whole run took longer than its limit."""


def _on_alarm(signum: int, frame: FrameType | None) -> None:
    raise BenchTimeoutError("the benchmark ran past its time limit")


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def server_version() -> str:
    """The commit under test, marked when the working tree differs from it (read-only git commands)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "server", "schemas", "sync"], capture_output=True, text=True
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head.stdout.strip() + (" with uncommitted server changes" if dirty.stdout.strip() else "")


def run(
    config: measure.Config, workdir: Path, database_url: str | None = None, workers: tuple[int, ...] = (1, 2)
) -> dict[str, Any]:
    """Generate the data, start the servers, measure everything; the results as plain data."""
    _log(f"generating the {'small' if config.smoke else 'large'} event")
    dataset = generate(workdir / "event.db", config.scale)
    turin = load_turin(workdir / "turin.db")
    _log(f"generated {dataset.counts} in {dataset.seconds:.1f} s")
    pool = ParticipantPool(dataset)
    results: dict[str, Any] = {}
    foreign: dict[str, float] = {}
    peaks: dict[str, float] = {}

    def phase(name: str, server: Server, measure_it: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        _log(name)
        interference = Interference().start()
        figures = measure_it()
        foreign[name] = interference.share()
        peaks[name] = server.peak_rss_mb()
        if foreign[name] > 0.05:
            _log(f"warning: other processes used {foreign[name]:.0%} of the CPU during {name}")
        return figures

    with contextlib.ExitStack() as stack:
        gen = stack.enter_context(measure.LoadGenerator())
        pg_url = ""
        loaded: dict[str, Any] = {}
        if database_url:
            pg_url = stack.enter_context(pg.bench_database(database_url))
            # Copied before any server touches the file, so that both engines start from the same event.
            _log("copying the event into PostgreSQL (studyvisit db copy)")
            loaded = {"database": pg.database_name(pg_url), **pg.load_event(dataset.path, pg_url)}
            _log(f"copied {loaded['rows']:,} rows in {loaded['seconds']:.1f} s")
            stack.enter_context(pg.backends_counted_as_ours(pg_url))
        with studyvisit_server(dataset.path) as server:
            _log(f"server on {server.url}")
            for name, measure_it in (
                ("reads", lambda: measure.measure_reads(gen, server, dataset, config)),
                ("pull", lambda: measure.measure_pulls(gen, server, dataset, pool, config)),
                ("push", lambda: measure.measure_push(gen, server, dataset, pool, config)),
                ("uploads", lambda: measure.measure_uploads(gen, server, dataset, pool, config)),
                ("load_test", lambda: measure.load_test(gen, server, dataset, pool, config)),
            ):
                results[name] = phase(name, server, measure_it)
            with studyvisit_server(turin.path, "turin") as turin_server:
                results["turin"] = phase(
                    "turin", turin_server, lambda: measure.measure_turin(gen, turin_server, turin, config)
                )
        if database_url:
            results["postgresql"] = {
                "load": loaded,
                **_postgresql(config, dataset, pool, gen, pg_url, workers, phase, peaks),
            }
    results["rss"] = {
        "server_peak_mb": peaks["load_test"],
        "turin_server_peak_mb": peaks["turin"],
        # The large event's server: its peak so far after each phase, to tell which phase drives it.
        "peak_after_phase_mb": {name: peaks[name] for name in ("reads", "pull", "push", "uploads", "load_test")},
    }
    # Share of the cores used by processes outside the benchmark during each phase (0 = a quiet machine).
    results["foreign_cpu"] = foreign
    results["dataset"] = {**dataset.counts, "generation_s": dataset.seconds}
    return results


def _postgresql(
    config: measure.Config,
    dataset: Dataset,
    pool: ParticipantPool,
    gen: measure.LoadGenerator,
    url: str,
    workers: tuple[int, ...],
    phase: Callable[[str, Server, Callable[[], dict[str, Any]]], dict[str, Any]],
    peaks: dict[str, float],
) -> dict[str, Any]:
    """Reads, pulls and pushes on the PostgreSQL copy of the event, with each number of server processes in
    turn (one database, so the later servers see the earlier ones' pushes, as after a restart); the load test
    once, with the most processes, where exactly-once has the most to lose."""
    figures: dict[str, Any] = {}

    def measure_with(count: int) -> None:
        server = studyvisit_server(dataset.path, f"postgresql-{count}", database_url=url, workers=count)
        with server:
            _log(f"server on {server.url}, PostgreSQL, {count} process(es)")
            tag = f"pg{count}"
            figures[f"workers_{count}"] = {
                "reads": phase(
                    f"{tag}_reads", server, lambda: measure.measure_reads(gen, server, dataset, config, count)
                ),
                "pull": phase(f"{tag}_pull", server, lambda: measure.measure_pulls(gen, server, dataset, pool, config)),
                "push": phase(
                    f"{tag}_push",
                    server,
                    lambda: measure.measure_push(
                        gen, server, dataset, pool, config, lambda rows: pg.push_floor(rows, url)
                    ),
                ),
            }
            last = f"{tag}_push"
            if count == max(workers):

                def stored(notes: list[str], clients: list[str]) -> measure.StoredNotes:
                    return pg.stored_notes(url, notes, clients)

                load = phase(
                    f"{tag}_load_test", server, lambda: measure.load_test(gen, server, dataset, pool, config, stored)
                )
                figures["load_test"] = {"workers": count, **load}
                last = f"{tag}_load_test"
            figures[f"workers_{count}"]["peak_rss_mb"] = peaks[last]

    for count in workers:
        measure_with(count)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="a tiny, quick run that proves the benchmark works")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON results (default {DEFAULT_OUT})")
    parser.add_argument("--runs", type=int, help="runs per figure (default 3; smoke 1)")
    parser.add_argument("--duration", type=float, help="seconds per read measurement (default 5; smoke 1)")
    parser.add_argument(
        "--database-url",
        help="also measure on PostgreSQL: a server URL (postgresql://user@host:port/db); the run creates a"
        " database of its own beside db and drops it at the end",
    )
    parser.add_argument(
        "--workers", default="1,2", help="server processes on PostgreSQL, each measured in turn (default 1,2)"
    )
    parser.add_argument(
        "--settle", type=float, help="seconds to wait for a quiet machine before each run (default 20; smoke 0)"
    )
    args = parser.parse_args(argv)
    config = measure.SMOKE if args.smoke else measure.FULL
    if args.runs:
        config = dataclasses.replace(config, runs=args.runs)
    if args.duration:
        config = dataclasses.replace(config, duration_s=args.duration)
    if args.settle is not None:
        config = dataclasses.replace(config, settle_s=args.settle)
    workers = tuple(int(w) for w in args.workers.split(","))
    if args.database_url:
        # Every PostgreSQL phase again, for each number of processes: room for them in the time limit.
        config = dataclasses.replace(config, time_limit_s=config.time_limit_s * (1 + len(workers)))
    busy_before = wait_until_quiet(config.quiet_wait_s)
    if busy_before >= 0.1:
        _log(f"warning: {busy_before:.0%} of the CPU is busy before the run; the figures will be low")
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.alarm(config.time_limit_s)
    started = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix="studyvisit-bench-") as workdir:
            results = run(config, Path(workdir), args.database_url, workers)
    finally:
        signal.alarm(0)
    results["meta"] = {
        "command": shlex.join(["python", "-m", "bench.run", *(argv if argv is not None else sys.argv[1:])]),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": server_version(),
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "smoke": config.smoke,
        "runs": config.runs,
        "connections": config.connections,
        "duration_s": config.duration_s,
        "settle_s": config.settle_s,
        "postgresql_workers": list(workers) if args.database_url else [],
        "wall_s": time.perf_counter() - started,
        # Anything else running on the machine takes cores from the server and the generator.
        "cpu_busy_before": busy_before,
        "loadavg_after": os.getloadavg(),
    }
    targets = evaluate(results)
    results["targets"] = [dataclasses.asdict(t) for t in targets]
    print(render(results, targets))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(msgspec.json.format(msgspec.json.encode(results), indent=2) + b"\n")
    _log(f"wrote {args.out} in {results['meta']['wall_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
