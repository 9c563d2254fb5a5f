"""The benchmark's read figures on PostgreSQL only (1 server process, the large event), for this tree and,
alternating, for another tree of the server (an export of an older commit), each beside its floor.

    git archive <commit> server schemas sync | tar -x -C /tmp/before
    python -m bench.pg_reads_live [--before /tmp/before] [--rounds 2] [--url postgresql://postgres@127.0.0.1:5432/test]

The same measurement as ``python -m bench.run --database-url …`` makes for reads (bench/measure.py,
``measure_reads``: 64 connections, 3 s after 1 s of warm-up, the floor app right after), without the
SQLite phases, pulls, pushes and the load test; one run per round. The database is the run's own,
dropped at the end.
"""

import argparse
import dataclasses
import sys
import tempfile
from pathlib import Path

from bench import measure, pg
from bench.dataset import generate
from bench.servers import Server


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--before", type=Path, help="a tree holding server/, schemas/ and sync/ to compare with")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    trees = [("before", args.before)] if args.before else []
    trees.append(("this", Path.cwd()))
    config = dataclasses.replace(measure.FULL, runs=1, duration_s=3.0, settle_s=3.0)
    with tempfile.TemporaryDirectory(prefix="pg-reads-") as work:
        workdir = Path(work)
        dataset = generate(workdir / "event.db", config.scale)
        with measure.LoadGenerator() as gen, pg.bench_database(args.url) as url:
            pg.load_event(dataset.path, url)
            for round_ in range(args.rounds):
                for label, tree in trees:
                    command = [sys.executable, "-m", "server.cli", "serve", "--database-url", url, "--workers", "1"]
                    env = {"STUDYVISIT_DATA_DIR": str(workdir)}
                    with Server(f"{label}{round_}", command, "/health", workdir, env=env, cwd=tree) as server:
                        figures = measure.measure_reads(gen, server, dataset, config, 1)
                    for name in ("sites", "itinerary", "revalidate_304"):
                        f = figures[name]
                        print(
                            f"round {round_} {label:6s} {name:15s} {f['rps']:7.0f} req/s, floor {f['floor_rps']:7.0f}"
                            f" ({f['ratio']:.0%}), p99 {f['p99_ms']:.1f} ms, other processes"
                            f" {f['runs'][0]['foreign_cpu']:.0%} of the CPU",
                            flush=True,
                        )


if __name__ == "__main__":
    main()
