"""Encoded GET responses with strong ETags, 304 revalidation and gzip, cached per data version.

Compressing a 50 KB body costs about 2 ms of CPU, which would cap a 2-core server near 500
requests/s. So a representation is encoded and compressed once per (request key, data version)
and the cached bytes are served to the next phone; only its ETag is compared on revalidation.
"""

import gzip
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

import msgspec
from litestar import Request, Response

GZIP_MIN_BYTES = 1024
GZIP_LEVEL = 6

_encoder = msgspec.json.Encoder()


class Representation(msgspec.Struct, frozen=True):
    """One encoded body with its ETag and, when worth it, its gzip form."""

    body: bytes
    media_type: str
    etag: str
    gzipped: bytes | None


def represent(
    body: bytes, media_type: str, version: int | None = None, *, compress: bool = True, level: int = GZIP_LEVEL
) -> Representation:
    """Hash and (when large enough) compress a body once.

    The ETag of a versioned record starts with its version (``v3-...``), so that ``If-Match``
    names the version an edit was based on, whatever language or encoding the editor read. ``level``: gzip's.
    """
    digest = hashlib.blake2b(body, digest_size=12).hexdigest()
    if version is not None:
        digest = f"v{version}-{digest}"
    worth_it = compress and len(body) > GZIP_MIN_BYTES
    gzipped = gzip.compress(body, compresslevel=level, mtime=0) if worth_it else None
    return Representation(body=body, media_type=media_type, etag=digest, gzipped=gzipped)


def version_from_etag(header: str) -> set[int]:
    """The record versions named by an ``If-Match`` header's versioned ETags."""
    versions: set[int] = set()
    for tag in header.split(","):
        tag = tag.strip().removeprefix("W/").strip('"')
        head = tag.split("-", 1)[0]
        if head.startswith("v") and head[1:].isdigit():
            versions.add(int(head[1:]))
    return versions


def encode_json(value: Any) -> bytes:
    """JSON bytes of a Struct or builtin value."""
    return _encoder.encode(value)


class RepresentationCache:
    """A bounded LRU of representations, keyed by whatever identifies the request and the data version."""

    def __init__(self, max_entries: int = 512) -> None:
        self._entries: OrderedDict[Hashable, Representation] = OrderedDict()
        self._max = max_entries
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Representation | None:
        """The cached representation for ``key``, or None."""
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
            return found

    def get_or_build(self, key: Hashable, build: Callable[[], Representation]) -> Representation:
        """The cached representation for ``key``, building it on a miss."""
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
                return found
        rep = build()
        with self._lock:
            self._entries[key] = rep
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)
        return rep

    def clear(self) -> None:
        """Forget everything."""
        with self._lock:
            self._entries.clear()


def accepts_gzip(request: Request[Any, Any, Any]) -> bool:
    for part in request.headers.get("accept-encoding", "").split(","):
        coding, _, params = part.strip().partition(";")
        if coding.strip().lower() in ("gzip", "x-gzip"):
            return params.replace(" ", "") not in ("q=0", "q=0.0", "q=0.00", "q=0.000")
    return False


def _matches(if_none_match: str, etags: tuple[str, ...]) -> bool:
    if if_none_match.strip() == "*":
        return True
    candidates = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return any(f'"{etag}"' in candidates for etag in etags)


def serve(
    request: Request[Any, Any, Any],
    rep: Representation,
    cache_control: str = "private, no-cache",
    *,
    vary: str = "Accept-Encoding, Authorization",
) -> Response[bytes]:
    """Answer a GET with this representation: 304 when the client has it, gzip when it asks for it.

    The gzip form is a different representation, so it gets its own strong ETag (RFC 9110 §8.8.3);
    either tag revalidates, since both stand for the same data. ``vary``: the request headers the
    answer depends on (an account's data on its token; the app's static files on nothing else).
    """
    gz_etag = rep.etag + "-gz"
    use_gzip = rep.gzipped is not None and accepts_gzip(request)
    etag = gz_etag if use_gzip else rep.etag
    headers = {"ETag": f'"{etag}"', "Cache-Control": cache_control, "Vary": vary}
    inm = request.headers.get("if-none-match")
    if inm is not None and _matches(inm, (rep.etag, gz_etag)):
        return Response(content=b"", status_code=304, headers=headers, media_type=rep.media_type)
    if use_gzip:
        assert rep.gzipped is not None
        headers["Content-Encoding"] = "gzip"
        return Response(content=rep.gzipped, status_code=200, headers=headers, media_type=rep.media_type)
    return Response(content=rep.body, status_code=200, headers=headers, media_type=rep.media_type)
