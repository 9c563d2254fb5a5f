"""``python -m bench.run [--smoke] [--out PATH]``: every measurement, a printed table, and a JSON file.

The run stops by itself: each job has its own deadline, and an alarm ends the whole run past
``Config.time_limit_s`` (the servers and the generator process are stopped on the way out).
"""

import argparse
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

from bench import measure
from bench.dataset import ParticipantPool, generate, load_turin
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


def run(config: measure.Config, workdir: Path) -> dict[str, Any]:
    """Generate the data, start the servers, measure everything; the results as plain data."""
    _log(f"generating the {'small' if config.smoke else 'large'} event")
    dataset = generate(workdir / "event.db", config.scale)
    turin = load_turin(workdir / "turin.db")
    _log(f"generated {dataset.counts} in {dataset.seconds:.1f} s")
    pool = ParticipantPool(dataset)
    results: dict[str, Any] = {}
    foreign: dict[str, float] = {}
    peaks: dict[str, float] = {}

    def phase(name: str, server: Server, measure_it: Callable[[], dict[str, Any]]) -> None:
        _log(name)
        interference = Interference().start()
        results[name] = measure_it()
        foreign[name] = interference.share()
        peaks[name] = server.peak_rss_mb()
        if foreign[name] > 0.05:
            _log(f"warning: other processes used {foreign[name]:.0%} of the CPU during {name}")

    with measure.LoadGenerator() as gen, studyvisit_server(dataset.path) as server:
        _log(f"server on {server.url}")
        phase("reads", server, lambda: measure.measure_reads(gen, server, dataset, config))
        phase("pull", server, lambda: measure.measure_pulls(gen, server, dataset, pool, config))
        phase("push", server, lambda: measure.measure_push(gen, server, dataset, pool, config))
        phase("uploads", server, lambda: measure.measure_uploads(gen, server, dataset, pool, config))
        phase("load_test", server, lambda: measure.load_test(gen, server, dataset, pool, config))
        with studyvisit_server(turin.path, "turin") as turin_server:
            phase("turin", turin_server, lambda: measure.measure_turin(gen, turin_server, turin, config))
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="a tiny, quick run that proves the benchmark works")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON results (default {DEFAULT_OUT})")
    parser.add_argument("--runs", type=int, help="runs per figure (default 3; smoke 1)")
    parser.add_argument("--duration", type=float, help="seconds per read measurement (default 5; smoke 1)")
    args = parser.parse_args(argv)
    config = measure.SMOKE if args.smoke else measure.FULL
    if args.runs:
        config = dataclasses.replace(config, runs=args.runs)
    if args.duration:
        config = dataclasses.replace(config, duration_s=args.duration)
    busy_before = wait_until_quiet(config.quiet_wait_s)
    if busy_before >= 0.1:
        _log(f"warning: {busy_before:.0%} of the CPU is busy before the run; the figures will be low")
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.alarm(config.time_limit_s)
    started = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix="studyvisit-bench-") as workdir:
            results = run(config, Path(workdir))
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
