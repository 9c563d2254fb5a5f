"""The machine the benchmark runs on: how busy it is, and how much of that is someone else's work.

On a 2-core machine any other process (a test run, a type checker) takes CPU from the server or
the generator, and every figure drops. The benchmark cannot stop such work, so it measures it:
the CPU time spent outside the benchmark's own processes during each measurement.
"""

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")
CORES = os.cpu_count() or 1


def _busy_ticks() -> int:
    """Non-idle CPU time of the whole machine since boot, in clock ticks."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(values) - values[3] - values[4]  # minus idle and iowait


def _tree(pid: int) -> list[int]:
    pids = [pid]
    for index in range(256):  # bounded: the benchmark has a handful of processes
        if index >= len(pids):
            break
        for task in Path(f"/proc/{pids[index]}/task").glob("*"):
            try:
                pids.extend(int(child) for child in (task / "children").read_text().split())
            except OSError:
                continue
    return pids


# Processes outside the benchmark's tree that work for it (PostgreSQL's backends for its database).
_ALSO_OURS: list[Callable[[], Iterable[int]]] = []


def count_as_ours(pids: Callable[[], Iterable[int]]) -> Callable[[], None]:
    """Count the CPU time of the processes ``pids()`` names as the benchmark's own; returns the undoing."""
    _ALSO_OURS.append(pids)
    return lambda: _ALSO_OURS.remove(pids)


def _own_ticks() -> int:
    """CPU time of this process and all its descendants (servers, generator), in clock ticks.

    Each process's own time plus that of its children it has reaped, so that a server which
    was stopped during the span still counts as the benchmark's.
    """
    total = 0
    pids = dict.fromkeys(_tree(os.getpid()))
    for also in _ALSO_OURS:
        pids.update(dict.fromkeys(also()))
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime
    return total


@dataclass
class Interference:
    """Share of the machine's cores used by processes outside the benchmark over a span of time."""

    started: float = 0.0
    busy0: int = 0
    own0: int = 0

    def start(self) -> "Interference":
        self.started, self.busy0, self.own0 = time.monotonic(), _busy_ticks(), _own_ticks()
        return self

    def share(self) -> float:
        """Foreign CPU time since ``start`` over the cores available in that time (0 = a quiet machine)."""
        elapsed = time.monotonic() - self.started
        if elapsed <= 0:
            return 0.0
        # Processes of the benchmark that ended during the span take their CPU time with them: never below 0.
        foreign = max(0, (_busy_ticks() - self.busy0) - (_own_ticks() - self.own0)) / TICKS
        return foreign / (elapsed * CORES)


def cpu_busy(seconds: float = 1.0) -> float:
    """The share of all cores busy over a short window, whoever is busy."""
    try:
        busy0, started = _busy_ticks(), time.monotonic()
        time.sleep(seconds)
        return (_busy_ticks() - busy0) / TICKS / ((time.monotonic() - started) * CORES)
    except (OSError, ValueError, IndexError):
        return 0.0


def wait_until_quiet(max_wait_s: float, threshold: float = 0.1) -> float:
    """Wait (at most ``max_wait_s``) until less than ``threshold`` of the CPU is busy; the last reading."""
    deadline = time.monotonic() + max_wait_s
    busy = cpu_busy()
    while busy >= threshold and time.monotonic() < deadline:
        busy = cpu_busy(2.0)
    return busy
