"""In-process CPU per read request: the ASGI app called in a tight loop, no sockets; CPU time of this process (time.process_time), so other load on the machine matters less.

    python -m bench.reads_inprocess [--requests 3000] [--rounds 5] [--case sites|itinerary|304] [--floor]

Seeds a demo database in a temporary directory, then times GET sites, GET itinerary (a participant)
and a 304 revalidation, and prints the median µs per request of each over the rounds. The access
log is on (to a file), as in `studyvisit serve`. For instruction counts, which other load on the
machine does not change, run one case under callgrind with two request counts and divide the
difference (bench/RESULTS.md, "Reads: per-request CPU"). ``--floor`` times the floor instead
(bench/floor_app.py: bare Litestar answering each case's status with a body of the same size), so
that the two counts make the in-process ratio to the floor.
"""

import argparse
import asyncio
import logging
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.floor_app import create_floor_app
from server.app import create_app
from server.fixtures import load_fixture, read_fixture
from server.settings import Settings
from server.storage.stores import open_store

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "turin-sse-2025.json"


async def _call(app: Any, path: str, headers: list[tuple[bytes, bytes]], seen: dict[bytes, bytes] | None = None) -> int:
    """One request; ``seen`` receives the answer's headers and its body (under the key ``b""``)."""
    status = 0

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
            if seen is not None:
                seen.update(message["headers"])
        elif message["type"] == "http.response.body" and seen is not None:
            seen[b""] = seen.get(b"", b"") + message.get("body", b"")

    await app(http_scope("GET", path, headers), receive, send)
    return status


def http_scope(method: str, path: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    """An HTTP/1.1 ASGI scope for a request to the app in-process, as uvicorn would build it."""
    path_part, _, query = path.partition("?")
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path_part,
        "raw_path": path_part.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--case", choices=("sites", "itinerary", "304"), help="time only this one")
    parser.add_argument("--floor", action="store_true", help="time the floor app with the same statuses and sizes")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db_path = Path(tmp) / "bench.db"
        store = open_store(Settings.from_env(db_path=db_path).location())
        store.migrate()
        accounts = {a.role: a for a in load_fixture(store, read_fixture(FIXTURE))}
        store.close()
        log_file = (Path(tmp) / "access.log").open("w", encoding="utf-8")
        try:  # the handler `studyvisit serve` logs with (server/asgi.py)
            from server.observability import BufferedLineHandler

            handler: logging.Handler = BufferedLineHandler(log_file)
        except ImportError:
            handler = logging.StreamHandler(log_file)
        access = logging.getLogger("studyvisit.access")
        access.setLevel(logging.INFO)
        access.addHandler(handler)
        access.propagate = False
        app = create_app(Settings.from_env(db_path=db_path))
        participant = accounts["participant"]
        event = participant.event_id
        auth = (b"authorization", f"Bearer {participant.token}".encode())
        gz = (b"accept-encoding", b"gzip")
        seen: dict[bytes, bytes] = {}
        asyncio.run(_call(app, f"/api/v1/events/{event}/sites", [auth], seen))
        tag = seen[b"etag"].decode()
        cases = {
            "sites": (f"/api/v1/events/{event}/sites", [auth, gz], 200),
            "itinerary": (f"/api/v1/events/{event}/itinerary", [auth, gz], 200),
            "304": (f"/api/v1/events/{event}/sites", [auth, (b"if-none-match", tag.encode())], 304),
        }

        if args.case:
            cases = {args.case: cases[args.case]}
        if args.floor:
            sizes: dict[str, tuple[int, int]] = {}
            for name, (path, headers, expect) in cases.items():
                answer: dict[bytes, bytes] = {}
                asyncio.run(_call(app, path, headers, answer))
                sizes[name] = (expect, len(answer[b""]))
            app = create_floor_app(sizes)
            cases = {name: (f"/floor/{name}", [gz], expect) for name, (_, _, expect) in cases.items()}

        async def run() -> dict[str, list[float]]:
            times: dict[str, list[float]] = {name: [] for name in cases}
            for _ in range(args.rounds):
                for name, (path, headers, expect) in cases.items():
                    assert await _call(app, path, headers) == expect, name
                    started = time.process_time()
                    for _ in range(args.requests):
                        await _call(app, path, headers)
                    times[name].append((time.process_time() - started) / args.requests * 1e6)
            return times

        result = asyncio.run(run())
        for name, values in result.items():
            print(
                f"{name:10s} {statistics.median(values):7.1f} µs/request (rounds: {', '.join(f'{v:.0f}' for v in values)})"
            )


if __name__ == "__main__":
    main()
