"""The floor: a bare Litestar app that answers each measured request with a constant body of the same size.

It does no authentication, no database work, no compression and no logging, so what it reaches
on this machine, served by uvicorn exactly like the real server, is the most the real server
could reach with the same framework and the same bytes on the wire.

``BENCH_FLOOR_SPEC`` holds a JSON object ``{name: [status, body_size]}``; ``GET /floor/<name>``
answers that status with a JSON body of exactly that many bytes (none for a 304).
"""

import json
import os
import sys

import uvicorn
from litestar import Litestar, Response, get
from litestar.handlers import HTTPRouteHandler


def constant_json(size: int) -> bytes:
    """A JSON document of exactly ``size`` bytes: a string of x, or nothing for size 0."""
    if size <= 0:
        return b""
    if size == 1:
        return b"0"
    return b'"' + b"x" * (size - 2) + b'"'


def _handler(name: str, status: int, body: bytes) -> HTTPRouteHandler:
    async def answer() -> Response[bytes]:
        return Response(content=body, status_code=status, media_type="application/json")

    return get(f"/floor/{name}", name=f"floor-{name}")(answer)


def create_floor_app(spec: dict[str, tuple[int, int]]) -> Litestar:
    """One GET route per measured request, each with its constant answer."""
    routes = [_handler(name, status, constant_json(size)) for name, (status, size) in spec.items()]
    routes.append(_handler("health", 200, b"{}"))
    return Litestar(route_handlers=routes, openapi_config=None, logging_config=None, debug=False)


def _spec_from_env() -> dict[str, tuple[int, int]]:
    raw: dict[str, list[int]] = json.loads(os.environ.get("BENCH_FLOOR_SPEC", "{}"))
    return {name: (int(status), int(size)) for name, (status, size) in raw.items()}


app = create_floor_app(_spec_from_env())

if __name__ == "__main__":
    port = int(sys.argv[sys.argv.index("--port") + 1]) if "--port" in sys.argv else 8001
    workers = int(sys.argv[sys.argv.index("--workers") + 1]) if "--workers" in sys.argv else 1
    uvicorn.run(
        "bench.floor_app:app", host="127.0.0.1", port=port, workers=workers, log_level="warning", access_log=False
    )
