"""Only the bench's push figure, for this tree and (optionally) another source tree, alternating in one run.

``python -m bench.push_ab [--other DIR]... [--runs N]``: the large event generated once and copied for each
server; per run 16 new devices push 2,000 notes each in batches of 500 at once (bench/README.md, "Push"),
then the same rows go into the sqlite floor. ``--other`` is a checkout (``git worktree add`` or ``git
archive``) whose ``server`` package the second server runs, so that a change is measured against its base
on the same disk in the same minutes.
"""

import argparse
import os
import statistics
import tempfile
from pathlib import Path

from bench.dataset import LARGE, ParticipantPool, generate
from bench.loadgen import PushJob
from bench.measure import FULL, LoadGenerator, _devices, _note_rows, _sqlite_push_floor
from bench.servers import Server, _process_tree, tree_servers

TICK_S = 1 / os.sysconf("SC_CLK_TCK")


def cpu_seconds(server: Server) -> float:
    """CPU time (user + system) the server's processes have used so far: on a busy machine the
    wall-clock figure follows the other load, the CPU per note much less."""
    assert server.process is not None
    total = 0.0
    for pid in _process_tree(server.process.pid):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) * TICK_S
    return total


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.push_ab", description=__doc__)
    parser.add_argument(
        "--other",
        type=Path,
        action="append",
        default=[],
        help="another source tree to measure beside this one (repeatable)",
    )
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    config = FULL
    notes = config.push_batches * config.push_batch_size
    with tempfile.TemporaryDirectory(prefix="push-ab-") as tmp:
        work = Path(tmp)
        dataset = generate(work / "event.db", LARGE)
        pool = ParticipantPool(dataset)
        trees: dict[str, Path | None] = {"this": None, **{path.name: path.resolve() for path in args.other}}
        floor = _sqlite_push_floor(work)
        rates: dict[str, list[float]] = {name: [] for name in trees}
        cpu_per_note: dict[str, list[float]] = {name: [] for name in trees}
        floors: list[float] = []
        with LoadGenerator() as gen, tree_servers(dataset.path, work, trees) as servers:
            for i in range(args.runs):
                for name, server in servers.items():
                    devices = _devices(dataset, pool, config.push_devices, seed=1_000_000 * (i + 1))
                    cpu = cpu_seconds(server)
                    stats = gen.run(PushJob(server.port, dataset.event_id, devices, notes, config.push_batch_size))
                    if stats.applied != stats.notes:
                        raise RuntimeError(f"{name}: not every note was applied: {stats}")
                    cpu_us = (cpu_seconds(server) - cpu) / stats.notes * 1e6
                    cpu_per_note[name].append(cpu_us)
                    rows = _note_rows(dataset.event_id, devices, notes, config.push_batch_size)
                    floor_rate = stats.notes / floor(rows)["seconds"]
                    floors.append(floor_rate)
                    rates[name].append(stats.notes_per_s)
                    print(
                        f"run {i + 1} {name:10}: {stats.notes_per_s:8,.0f} notes/s, floor {floor_rate:8,.0f}"
                        f" ({stats.notes_per_s / floor_rate:.1%}), batch p50 {stats.batch_p50_ms:.0f} ms,"
                        f" p99 {stats.batch_p99_ms:.0f} ms, server CPU {cpu_us:.1f} µs/note, errors (retried) {stats.errors}",
                        flush=True,
                    )
        floor_median = statistics.median(floors)
        for name, values in rates.items():
            median = statistics.median(values)
            print(
                f"{name:10} median {median:8,.0f} notes/s, {median / floor_median:.1%} of the floor's median,"
                f" server CPU {statistics.median(cpu_per_note[name]):.1f} µs/note"
            )


if __name__ == "__main__":
    main()
