"""Only the bench's pull figures (bench.measure.measure_pulls: over HTTP, gzip, limit 5000), for this tree and
another source tree, alternating in one run.

``python -m bench.pull_ab --other DIR [--runs N]``: the large event generated once (by this tree) and copied
for each server; per run each server measures a new participant's initial sync, the first organizer's,
and that participant's pull after its second phone pushed 1,000 notes, the trees taking turns to go first. ``--other`` is a checkout (``git
archive``) whose ``server`` package the second server runs, as in bench.push_ab. A tree from before
migration 11 serves the copy as it is (its feed rows' payload columns unused).
"""

import argparse
import dataclasses
import statistics
import tempfile
from pathlib import Path

from bench.dataset import LARGE, ParticipantPool, generate
from bench.measure import FULL, LoadGenerator, measure_pulls
from bench.servers import tree_servers

CASES = ("participant_initial", "organizer_initial", "participant_incremental")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.pull_ab", description=__doc__)
    parser.add_argument("--other", type=Path, action="append", default=[], help="another source tree")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    config = dataclasses.replace(FULL, runs=1, settle_s=0)
    with tempfile.TemporaryDirectory(prefix="pull-ab-") as tmp:
        work = Path(tmp)
        dataset = generate(work / "event.db", LARGE)
        trees: dict[str, Path | None] = {"this": None, **{path.name: path.resolve() for path in args.other}}
        rates: dict[tuple[str, str], list[float]] = {}
        with LoadGenerator() as gen, tree_servers(dataset.path, work, trees) as servers:
            # One pool per server, taken from in the same order: run i pulls as the same new participant on each copy.
            pools = {name: ParticipantPool(dataset) for name in servers}
            for i in range(args.runs):
                # Each tree goes first in every other run: what runs first may meet a busier machine.
                order = list(servers.items())
                for name, server in order if i % 2 == 0 else order[::-1]:
                    figures = measure_pulls(gen, server, dataset, pools[name], config)
                    line = []
                    for case in CASES:
                        rate = figures[case]["runs"][-1]["changes_per_s"]
                        rates.setdefault((name, case), []).append(rate)
                        line.append(f"{case} {rate:9,.0f}/s")
                    print(f"run {i + 1} {name:10}: " + "; ".join(line), flush=True)
        for case in CASES:
            medians = {name: statistics.median(rates[name, case]) for name in trees}
            base = medians.get(next(iter(trees)), 0.0)
            print(f"{case:24} " + ", ".join(f"{name} {m:9,.0f}/s ({m / base:.2f}x)" for name, m in medians.items()))


if __name__ == "__main__":
    main()
