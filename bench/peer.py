"""``python -m bench.peer``: studyvisit beside pouchdb-server, the same notes pushed and pulled, in one run.

CouchDB's replication protocol is what most offline-first apps sync over, and pouchdb-server is
its lightest server: it is the peer a reader would compare studyvisit's sync with. Each run pushes
the same notes (the bench's own ``note.put`` bodies, shared with the organizers, turned into
documents of the same fields for the peer)
from the same number of concurrent devices in batches of the same size — studyvisit's
``sync/push`` against ``_bulk_docs`` — and then pulls everything back in pages of 5,000 —
studyvisit's organizer sync (whole records) against ``_changes?include_docs=true``. The systems
take turns, in an order that alternates from run to run, each on a fresh database; the figures are
medians of the runs, and the ratios are studyvisit's over each peer's.

pouchdb-server comes from the npm registry, installed once into ``--npm-dir`` (outside the
repository; nothing of it is committed). It stays out of CI, which has no npm to spare.

Durability differs, and the report says so: studyvisit commits every push with SQLite's
``synchronous=FULL`` (fsynced before the answer); pouchdb-server's LevelDB adapter writes without
fsync, and its in-memory adapter keeps nothing at all.
"""

import argparse
import asyncio
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from bench.dataset import SMALL, generate
from bench.http import Connection, HTTPError, build_request, pull_all
from bench.loadgen import Device, PushJob, PushStats, note_batches, percentile
from bench.machine import Interference, wait_until_quiet
from bench.measure import LoadGenerator
from bench.run import server_version
from bench.servers import Server, studyvisit_server

POUCHDB_SERVER = "pouchdb-server@4.2.0"
DEFAULT_NPM_DIR = Path.home() / ".cache" / "studyvisit-bench" / "pouchdb-server"
DEFAULT_OUT = Path("bench/out/peer.json")
PAGE = 5000
DATABASE = "notes"


@dataclass(frozen=True)
class PouchPushJob:
    """The devices' notes as ``_bulk_docs`` requests: each device its batches one after another, devices at once."""

    port: int
    devices: tuple[Device, ...]
    notes_per_device: int
    batch_size: int
    deadline_s: float = 300.0

    async def run(self) -> PushStats:
        prepared = [_bulk_bodies(d, self.notes_per_device, self.batch_size) for d in self.devices]
        latencies: list[float] = []
        totals = [0, 0]

        async def device(bodies: list[bytes]) -> None:
            conn = Connection(self.port)
            headers = {"Content-Type": "application/json", "Accept": "application/json"}
            for body in bodies:
                t0 = time.perf_counter()
                reply = await conn.send(build_request("POST", f"/{DATABASE}/_bulk_docs", headers, body))
                latencies.append((time.perf_counter() - t0) * 1000)
                if reply.status != 201:
                    raise HTTPError(f"_bulk_docs answered {reply.status}: {reply.content()[:300]!r}")
                results = msgspec.json.decode(reply.content())
                totals[0] += sum(1 for r in results if r.get("ok"))
                totals[1] += sum(1 for r in results if not r.get("ok"))
            conn.close()

        started = time.perf_counter()
        async with asyncio.timeout(self.deadline_s):
            await asyncio.gather(*(device(b) for b in prepared))
        seconds = time.perf_counter() - started
        return PushStats(
            notes=self.notes_per_device * len(self.devices),
            applied=totals[0],
            errors=totals[1],
            seconds=seconds,
            notes_per_s=totals[0] / seconds,
            batch_p50_ms=percentile(latencies, 0.5),
            batch_p99_ms=percentile(latencies, 0.99),
        )


def _bulk_bodies(device: Device, notes: int, batch_size: int) -> list[bytes]:
    """The very notes of ``note_batches`` as CouchDB documents: the same fields, the same text."""
    bodies: list[bytes] = []
    for push in note_batches(device, notes, batch_size, shared=True)[0]:
        docs = [
            {"_id": m["args"]["id"], "type": "note", "author_id": device.account_id, **m["args"]}
            for m in msgspec.json.decode(push)["mutations"]
        ]
        for doc in docs:
            del doc["id"]
        bodies.append(msgspec.json.encode({"docs": docs}))
    return bodies


class _ChangesPage(msgspec.Struct):
    results: list[msgspec.Raw]
    last_seq: int | str


@dataclass(frozen=True)
class PouchPullJob:
    """Every change with its document, in pages, as a replicating client reads them."""

    port: int

    async def run(self) -> dict[str, Any]:
        conn = Connection(self.port)
        headers = {"Accept": "application/json", "Accept-Encoding": "gzip"}
        since: int | str = 0
        changes = wire = 0
        started = time.perf_counter()
        try:
            for _ in range(10_000):
                path = f"/{DATABASE}/_changes?include_docs=true&limit={PAGE}&since={since}"
                reply = await conn.send(build_request("GET", path, headers))
                if reply.status != 200:
                    raise HTTPError(f"_changes answered {reply.status}: {reply.content()[:300]!r}")
                page = msgspec.json.decode(reply.content(), type=_ChangesPage)
                wire += len(reply.body)
                if not page.results:
                    break
                changes += len(page.results)
                since = page.last_seq
        finally:
            conn.close()
        seconds = time.perf_counter() - started
        return {"changes": changes, "seconds": seconds, "changes_per_s": changes / seconds, "wire_bytes": wire}


@dataclass(frozen=True)
class StudyvisitPullJob:
    """The organizer's full sync: every record of the event, whole, in pages of 5,000."""

    port: int
    event_id: str
    token: str

    async def run(self) -> dict[str, Any]:
        conn = Connection(self.port)
        try:
            result = await pull_all(conn, self.event_id, self.token, limit=PAGE)
        finally:
            conn.close()
        return {
            "changes": result.changes,
            "notes": result.puts.get("note", 0),
            "seconds": result.seconds,
            "changes_per_s": result.changes / result.seconds,
            "wire_bytes": result.wire_bytes,
        }


def install_pouchdb_server(npm_dir: Path) -> Path:
    """The pouchdb-server executable, installed from the npm registry on first use."""
    executable = npm_dir / "node_modules" / ".bin" / "pouchdb-server"
    if not executable.exists():
        npm = shutil.which("npm")
        if npm is None:
            raise SystemExit("bench.peer needs npm (Node.js) to install pouchdb-server")
        npm_dir.mkdir(parents=True, exist_ok=True)
        _log(f"installing {POUCHDB_SERVER} into {npm_dir}")
        subprocess.run(
            [npm, "install", "--prefix", str(npm_dir), "--no-audit", "--no-fund", POUCHDB_SERVER],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    return executable


def pouchdb_server(executable: Path, directory: Path, *, in_memory: bool) -> Server:
    """pouchdb-server on a free port, its config, log and (LevelDB) files in ``directory``."""
    command = [str(executable), "--dir", str(directory), "--config", str(directory / "config.json"), "-n"]
    if in_memory:
        command.append("--in-memory")
    name = "pouchdb-memory" if in_memory else "pouchdb-leveldb"
    return Server(name, command, "/", directory, cwd=directory)


def _devices(dataset_accounts: list[Any], visits_by_group: dict[str, list[str]], seed: int) -> tuple[Device, ...]:
    return tuple(
        Device(a.id, a.token, str(uuid.uuid4()), tuple(visits_by_group[a.group_id or ""]), seed + i)
        for i, a in enumerate(dataset_accounts)
    )


def run_studyvisit(gen: LoadGenerator, workdir: Path, args: argparse.Namespace, seed: int) -> dict[str, Any]:
    dataset = generate(workdir / "event.db", SMALL)
    devices = _devices(dataset.by_role("participant")[: args.devices], dataset.visits_by_group, seed)
    organizer = dataset.by_role("organizer")[0]
    with studyvisit_server(dataset.path) as server:
        push: PushStats = gen.run(
            PushJob(server.port, dataset.event_id, devices, args.notes, args.batch_size, shared=True)
        )
        pull = gen.run(StudyvisitPullJob(server.port, dataset.event_id, organizer.token))
    return {"push": push.__dict__, "pull": pull}


def run_pouchdb(
    gen: LoadGenerator, executable: Path, workdir: Path, args: argparse.Namespace, seed: int, *, in_memory: bool
) -> dict[str, Any]:
    # The same accounts and seeds as studyvisit's devices, so the same notes word for word.
    dataset = generate(workdir / "event.db", SMALL)
    devices = _devices(dataset.by_role("participant")[: args.devices], dataset.visits_by_group, seed)
    (workdir / "pouch").mkdir()
    with pouchdb_server(executable, workdir / "pouch", in_memory=in_memory) as server:
        request = urllib.request.Request(f"{server.url}/{DATABASE}", method="PUT")
        with urllib.request.urlopen(request, timeout=30) as response:
            if response.status != 201:
                raise HTTPError(f"creating the database answered {response.status}")
        push: PushStats = gen.run(PouchPushJob(server.port, devices, args.notes, args.batch_size))
        pull = gen.run(PouchPullJob(server.port))
    return {"push": push.__dict__, "pull": pull}


SYSTEMS = ("studyvisit", "pouchdb-memory", "pouchdb-leveldb")


def measure(args: argparse.Namespace, executable: Path) -> dict[str, list[dict[str, Any]]]:
    """Every system once per run, in an order that alternates between runs."""
    samples: dict[str, list[dict[str, Any]]] = {name: [] for name in SYSTEMS}
    with LoadGenerator() as gen:
        for i in range(args.runs):
            order = SYSTEMS if i % 2 == 0 else tuple(reversed(SYSTEMS))
            for name in order:
                wait_until_quiet(args.settle)
                interference = Interference().start()
                with tempfile.TemporaryDirectory(prefix="studyvisit-peer-") as tmp:
                    seed = 300_000 + 1000 * i
                    if name == "studyvisit":
                        sample = run_studyvisit(gen, Path(tmp), args, seed)
                    else:
                        sample = run_pouchdb(gen, executable, Path(tmp), args, seed, in_memory=name == "pouchdb-memory")
                sample["foreign_cpu"] = interference.share()
                _log(
                    f"run {i + 1} {name}: push {sample['push']['notes_per_s']:,.0f} notes/s,"
                    f" pull {sample['pull']['changes_per_s']:,.0f} changes/s"
                )
                samples[name].append(sample)
    return samples


def summarize(samples: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Medians per system, and studyvisit's ratio to each peer."""
    medians = {
        name: {
            "push_notes_per_s": statistics.median(s["push"]["notes_per_s"] for s in runs),
            "push_batch_p99_ms": statistics.median(s["push"]["batch_p99_ms"] for s in runs),
            "pull_changes_per_s": statistics.median(s["pull"]["changes_per_s"] for s in runs),
            "pull_changes": statistics.median(s["pull"]["changes"] for s in runs),
            "pull_wire_bytes": statistics.median(s["pull"]["wire_bytes"] for s in runs),
            "errors": sum(s["push"]["errors"] for s in runs),
            "every_note_applied": all(s["push"]["applied"] == s["push"]["notes"] for s in runs),
            # Share of the cores other processes used meanwhile: figures taken at a high share are low.
            "foreign_cpu": statistics.median(s["foreign_cpu"] for s in runs),
        }
        for name, runs in samples.items()
    }
    ours = medians["studyvisit"]
    ratios = {
        peer: {
            "push": ours["push_notes_per_s"] / medians[peer]["push_notes_per_s"],
            "pull": ours["pull_changes_per_s"] / medians[peer]["pull_changes_per_s"],
        }
        for peer in SYSTEMS[1:]
    }
    return {"medians": medians, "ratios": ratios}


def render(summary: dict[str, Any]) -> str:
    medians, ratios = summary["medians"], summary["ratios"]
    rows = [f"{'':34}" + "".join(f"{name:>18}" for name in SYSTEMS)]
    figures = [
        ("push, notes/s", "push_notes_per_s", "{:,.0f}"),
        ("push, batch p99 ms", "push_batch_p99_ms", "{:,.1f}"),
        ("full pull, changes/s", "pull_changes_per_s", "{:,.0f}"),
        ("full pull, changes", "pull_changes", "{:,.0f}"),
        ("full pull, bytes on the wire", "pull_wire_bytes", "{:,.0f}"),
        ("other processes' share of the CPU", "foreign_cpu", "{:.0%}"),
    ]
    for label, key, fmt in figures:
        rows.append(f"{label:34}" + "".join(f"{fmt.format(medians[name][key]):>18}" for name in SYSTEMS))
    for peer in SYSTEMS[1:]:
        rows.append(f"studyvisit / {peer}: push {ratios[peer]['push']:.2f}x, pull {ratios[peer]['pull']:.2f}x")
    return "\n".join(rows)


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.peer", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs of each system (default 3)")
    parser.add_argument("--devices", type=int, default=16, help="devices pushing at once (default 16)")
    parser.add_argument("--notes", type=int, default=2000, help="notes per device (default 2000)")
    parser.add_argument("--batch-size", type=int, default=500, help="notes per request (default 500)")
    parser.add_argument(
        "--settle", type=float, default=20.0, help="seconds to wait for a quiet machine before each run"
    )
    parser.add_argument(
        "--npm-dir", type=Path, default=DEFAULT_NPM_DIR, help=f"where pouchdb-server is installed ({DEFAULT_NPM_DIR})"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON results (default {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    executable = install_pouchdb_server(args.npm_dir)
    started = time.perf_counter()
    samples = measure(args, executable)
    summary = summarize(samples)
    results = {
        **summary,
        "runs": samples,
        "meta": {
            "command": shlex.join(["python", "-m", "bench.peer", *(argv if argv is not None else sys.argv[1:])]),
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "commit": server_version(),
            "peer": POUCHDB_SERVER,
            "wall_s": time.perf_counter() - started,
        },
    }
    print(render(summary))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(msgspec.json.format(msgspec.json.encode(results), indent=2) + b"\n")
    _log(f"wrote {args.out} in {results['meta']['wall_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
