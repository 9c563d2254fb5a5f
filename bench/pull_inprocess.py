"""In-process CPU per pulled change on the large event: the ASGI app called directly, no sockets; CPU time of
this process (time.process_time) spent inside the app, so other load on the machine matters less.

    python -m bench.pull_inprocess [--rounds 3] [--case organizer|participant|incremental] [--plain] [--ab]

Generates the large event (bench/dataset.py) in a temporary directory, then, each round, times with gzip
(as bench.run's changes/s figure does; ``--plain`` without) a fresh participant's initial sync, the first
organizer's initial sync (limit 5000, as bench.run), and that participant's pull after a second phone of
theirs pushed 1,000 notes. Prints changes/s per case and round: the first round starts from a fresh
process (whatever the server keeps per record version is cold), later rounds are warm. ``--ab`` times
each case twice per round, alternately, with the feed rows' stored payloads and summary shares
ignored (``A``: every change shaped at pull time, as before they were kept) and used (``B``),
and prints the B/A ratio of each case at the end. For instruction
counts, run one case under callgrind (``--tool=callgrind --collect-atstart=no`` is not needed: divide the
whole run's count by the changes, or compare two commits on the same case).
"""

import argparse
import asyncio
import gzip
import logging
import resource
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

import msgspec

from bench.dataset import LARGE, SMALL, generate
from bench.loadgen import Device, note_batches
from bench.reads_inprocess import http_scope
from server.app import create_app
from server.services import pull as pull_service
from server.settings import Settings

INCREMENTAL_NOTES = 1000


class _App:
    """The app, called as an ASGI server would; counts the CPU time spent inside it."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.cpu = 0.0

    async def call(self, method: str, path: str, headers: list[tuple[bytes, bytes]], body: bytes = b"") -> bytes:
        status = [0]
        chunks: list[bytes] = []
        sent: dict[bytes, bytes] = {}

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                sent.update(message["headers"])
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        scope = http_scope(method, path, headers)
        started = time.process_time()
        await self.app(scope, receive, send)
        self.cpu += time.process_time() - started
        data = b"".join(chunks)
        if status[0] != 200:
            raise RuntimeError(f"{method} {path}: {status[0]} {data[:300]!r}")
        return gzip.decompress(data) if sent.get(b"content-encoding") == b"gzip" else data


async def _sync(
    app: _App, event_id: str, token: str, client_id: str | None, cursor: str, *, plain: bool
) -> tuple[int, str]:
    """Pull pages until caught up; the changes received and the cursor reached."""
    headers = [(b"authorization", f"Bearer {token}".encode())]
    if not plain:
        headers.append((b"accept-encoding", b"gzip"))
    changes = 0
    while True:
        query = f"limit=5000&cursor={quote(cursor)}" + (f"&client_id={client_id}" if client_id else "")
        page = msgspec.json.decode(await app.call("GET", f"/api/v1/events/{event_id}/sync/pull?{query}", headers))
        changes += len(page["changes"])
        cursor = page["cursor"]
        if not page["has_more"]:
            return changes, cursor


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--case", choices=("organizer", "participant", "incremental"), help="time only this one")
    parser.add_argument("--plain", action="store_true", help="without gzip")
    parser.add_argument("--small", action="store_true", help="the small event (a quick check)")
    parser.add_argument("--ab", action="store_true", help="alternate shaping every change (A) with payloads (B)")
    args = parser.parse_args()
    logging.getLogger("studyvisit.access").disabled = True
    with tempfile.TemporaryDirectory() as tmp:
        dataset = generate(Path(tmp) / "event.db", SMALL if args.small else LARGE)
        app = _App(create_app(Settings.from_env(db_path=dataset.path)))
        organizer = dataset.by_role("organizer")[0]
        participants = dataset.by_role("participant")

        rates: dict[tuple[str, str], list[float]] = {}

        async def run() -> None:
            for round_ in range(args.rounds):
                person = participants[round_]
                client_id = str(uuid.uuid4())
                figures: list[str] = []

                async def timed(
                    name: str, token: str, client: str | None, cursor: str, figures: list[str] = figures
                ) -> str:
                    reached = cursor
                    for mode in ("A", "B") if args.ab else ("",):
                        # A and B pull from the same cursor; the cursor a caught-up pull reaches is the same.
                        pull_service.USE_PAYLOADS = mode != "A"
                        app.cpu = 0.0
                        changes, reached = await _sync(app, dataset.event_id, token, client, cursor, plain=args.plain)
                        rates.setdefault((name, mode), []).append(changes / app.cpu)
                        figures.append(f"{name}{mode} {changes:,} changes {changes / app.cpu:9,.0f}/s")
                    return reached

                cursor = ""
                if args.case in (None, "participant", "incremental"):
                    cursor = await timed("participant", person.token, client_id, "")
                if args.case in (None, "organizer"):
                    await timed("organizer", organizer.token, None, "")
                if args.case in (None, "incremental"):
                    phone = Device(
                        person.id,
                        person.token,
                        str(uuid.uuid4()),
                        tuple(dataset.visits_by_group[person.group_id or ""]),
                        round_,
                    )
                    bodies, _ = note_batches(phone, INCREMENTAL_NOTES, 500)
                    headers = [
                        (b"authorization", f"Bearer {person.token}".encode()),
                        (b"content-type", b"application/json"),
                    ]
                    for body in bodies:
                        await app.call("POST", f"/api/v1/events/{dataset.event_id}/sync/push", headers, body)
                    await timed("incremental", person.token, client_id, cursor)
                print(f"round {round_ + 1}: " + "; ".join(figures), flush=True)

        asyncio.run(run())
        if args.ab:
            for name in dict.fromkeys(n for n, _ in rates):
                a, b = statistics.median(rates[name, "A"]), statistics.median(rates[name, "B"])
                print(f"{name}: A median {a:,.0f}/s, B median {b:,.0f}/s, B/A {b / a:.2f}")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
