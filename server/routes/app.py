"""The field app: the static files of the ``web`` package at /app/, under a strict Content-Security-Policy."""

import hashlib
import html
import json
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from litestar import Request, Response, get
from litestar.exceptions import NotFoundException

from server.representation import Representation, represent, serve
from server.settings import Settings

MEDIA_TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".json": "application/json",
    ".webmanifest": "application/manifest+json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".txt": "text/plain",
    ".md": "text/plain",
}
# What the service worker precaches: everything the app needs to open offline. Python files and the
# vendored libraries' notes (README.md, LICENSE.txt) are not part of the shell.
SHELL_SUFFIXES = {".html", ".js", ".css", ".json", ".webmanifest", ".svg", ".png"}
# sw.js carries this placeholder; the server puts the shell's file list and content hash in its place,
# so that any change to a shell file changes sw.js's bytes, which is what makes browsers update it.
SHELL_PLACEHOLDER = '"__SHELL_MANIFEST__"'
# index.html carries this placeholder in <meta name="tile-url" content="...">; the server fills in the tile URL
# template. A meta tag, not a JSON file the app fetches: it arrives with the page (and offline, with the
# precached page) before any script runs, needs no inline script under the CSP, and since the shell's
# version hash covers the setting, a changed tile URL reaches installed apps like any other shell change.
TILE_PLACEHOLDER = "__TILE_URL__"


def web_root() -> Path:
    """The directory of the installed ``web`` package."""
    return Path(str(files("web")))


def shell_files(root: Path) -> list[str]:
    """The app shell: paths relative to /app/, sorted; "" stands for /app/ itself (index.html)."""
    names = sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and p.suffix in SHELL_SUFFIXES and p.name != "sw.js" and "__pycache__" not in p.parts
    )
    return ["", *[n for n in names if n != "index.html"]]


@cache
def service_worker(root: Path, tile_url: str) -> bytes:
    """sw.js with the shell manifest filled in: its files, their content hash and the tile URL template, whose
    tiles it caches (cached: the package's files and the settings do not change while serving)."""
    digest = hashlib.sha256()
    listed = shell_files(root)
    for name in listed:
        digest.update(name.encode() + b"\0" + (root / (name or "index.html")).read_bytes())
    source = (root / "sw.js").read_bytes()
    digest.update(source)
    digest.update(b"\0" + tile_url.encode())
    manifest = json.dumps(
        {"version": digest.hexdigest()[:16], "files": listed, "tiles": tile_url}, separators=(",", ":")
    )
    return source.replace(SHELL_PLACEHOLDER.encode(), manifest.encode(), 1)


@cache
def index_html(root: Path, tile_url: str) -> bytes:
    """index.html with the tile URL template in its tile-url meta tag (escaped for the attribute)."""
    source = (root / "index.html").read_bytes()
    return source.replace(TILE_PLACEHOLDER.encode(), html.escape(tile_url, quote=True).encode(), 1)


@cache
def read_file(path: Path) -> bytes:
    """A shell file's bytes, read once: a few small files, unchanged while the server runs, so the
    handler (run on the event loop, without a thread) touches the disk only on the first request."""
    return path.read_bytes()


@cache
def represented(body: bytes, media_type: str) -> Representation:
    """A shell file's ETag and gzip form, made once per content: the handler runs on the event loop, and
    the bytes of each file (and of sw.js and index.html as filled in) are the same objects every time."""
    return represent(body, media_type)


def tile_origin(tile_url: str) -> str:
    """The scheme and host of a tile URL template, for the CSP ("" when the setting is empty). A "{s}"
    subdomain (Leaflet picks a, b or c) as the host's first label allows them all ("https://*.tile…")."""
    parts = urlsplit(tile_url)
    host = "*" + parts.netloc[3:] if parts.netloc.startswith("{s}.") else parts.netloc.replace("{s}", "a")
    return f"{parts.scheme}://{host}" if parts.scheme and host else ""


def content_security_policy(settings: Settings) -> str:
    """No inline script or style, nothing from another host but map tiles."""
    tiles = tile_origin(settings.tile_url)
    extra = f" {tiles}" if tiles else ""
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; "
        f"img-src 'self' data: blob:{extra}; connect-src 'self'{extra}; "
        "manifest-src 'self'; worker-src 'self'; font-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )


def _security_headers(settings: Settings) -> dict[str, str]:
    return {
        "Content-Security-Policy": content_security_policy(settings),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }


@get(["/app", "/app/{path:path}"], exclude_from_auth=True, include_in_schema=False, sync_to_thread=False)
def app_file(request: Request[Any, Any, Any], path: str = "") -> Response[bytes]:
    """A file of the app shell; /app/ is index.html. No token needed: the shell holds no data."""
    # Litestar strips a trailing slash from the routed path; the raw path still has it.
    raw = request.scope.get("raw_path") or request.scope["path"].encode()
    if not raw.split(b"?")[0].startswith(b"/app/"):
        return Response(b"", status_code=308, headers={"Location": "/app/"})  # relative URLs need /app/
    settings: Settings = request.app.state["settings"]
    root = web_root()
    name = path.lstrip("/") or "index.html"
    target = (root / name).resolve()
    if not target.is_relative_to(root.resolve()) or not target.is_file() or target.suffix not in MEDIA_TYPES:
        raise NotFoundException(f"No file {name!r} in the app")
    headers = _security_headers(settings)
    if name == "sw.js":
        # Checked on every navigation: a new shell reaches phones at their next visit.
        headers["Service-Worker-Allowed"] = "/app/"
        body = service_worker(root, settings.tile_url)
    elif name == "index.html":
        body = index_html(root, settings.tile_url)
    else:
        body = read_file(target)
    # Revalidated when online (a 304 for an unchanged file; offline the service worker's cache answers),
    # gzipped for a client that takes it: the shell is some 470 KB as it is, 150 KB gzipped.
    response = serve(request, represented(body, MEDIA_TYPES[target.suffix]), "no-cache", vary="Accept-Encoding")
    response.headers.update(headers)
    return response
