"""A minimal keep-alive HTTP/1.1 client over asyncio streams, and a sync (pull until done) built on it.

The load generator shares two cores with the server, so it must spend as little CPU per request
as it can: requests are prebuilt bytes, and a response is read by its Content-Length without
parsing more headers than that. It speaks only to the servers under test.
"""

import asyncio
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urlencode

import msgspec

from sync.transport import RETRY_STATUSES

HOST = "127.0.0.1"
MAX_PAGES = 10_000  # bounds every pull loop; a large event needs a few dozen pages at most


class HTTPError(Exception):
    """A response the benchmark did not expect, or a broken exchange."""


def build_request(method: str, path: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    """A complete HTTP/1.1 request as bytes, ready to be written again and again."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {HOST}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


@dataclass
class Reply:
    """A response: status, the raw header block, and the body as sent (maybe gzip-compressed)."""

    status: int
    head: bytes
    body: bytes

    def header(self, name: str) -> str | None:
        """One header's value, or None."""
        marker = b"\r\n" + name.lower().encode() + b":"
        lower = self.head.lower()
        start = lower.find(marker)
        if start < 0:
            return None
        start += len(marker)
        return self.head[start : self.head.index(b"\r\n", start)].decode("latin-1").strip()

    def content(self) -> bytes:
        """The body, decompressed when the server gzipped it."""
        if self.header("content-encoding") == "gzip":
            return zlib.decompress(self.body, wbits=31)
        return self.body


class Connection:
    """One keep-alive connection; reopened transparently when the server closes it."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def _ensure_open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._reader is None or self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(HOST, self.port, limit=1 << 20)
        return self._reader, self._writer

    async def send(self, request: bytes, *, no_body: bool = False) -> Reply:
        """Send a prebuilt request and read the whole response (``no_body``: the answer to a HEAD has none)."""
        reader, writer = await self._ensure_open()
        try:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            lower = head.lower()
            body = b""
            if not no_body and status not in (204, 304) and status >= 200:
                start = lower.find(b"\r\ncontent-length:")
                if start >= 0:
                    end = lower.index(b"\r\n", start + 2)
                    body = await reader.readexactly(int(lower[start + 17 : end]))
                elif b"\r\ntransfer-encoding: chunked" in lower:
                    body = await _read_chunked(reader)
                else:
                    raise HTTPError("response without Content-Length or chunked encoding")
            if b"\r\nconnection: close" in lower:
                self.close()
            return Reply(status, head, body)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            self.close()
            raise HTTPError(f"{type(exc).__name__}: {exc}") from exc

    def close(self) -> None:
        """Close the socket; the next request opens a new one."""
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    for _ in range(1_000_000):
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)
    raise HTTPError("endless chunked body")


def _retry_after(reply: Reply) -> float:
    """The refusal's Retry-After in seconds (delay-seconds only), 1 s without one, never more than 5 s."""
    try:
        return min(5.0, max(0.0, float(reply.header("Retry-After") or 1)))
    except ValueError:
        return 1.0


def auth_headers(token: str, *, gzip: bool = True) -> dict[str, str]:
    """What every phone sends."""
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    if gzip:
        headers["Accept-Encoding"] = "gzip"
    return headers


# Only what a sync needs from a pull page; msgspec skips the records' data without building it.
class ChangeHead(msgspec.Struct):
    entity: str
    id: str
    op: str


class EntitySummary(msgspec.Struct):
    count: int
    checksum: str


class PullPage(msgspec.Struct):
    changes: list[ChangeHead]
    cursor: str
    has_more: bool
    last_mutation_id: int = 0
    summary: dict[str, EntitySummary] | None = None


_decode_page = msgspec.json.Decoder(PullPage).decode


@dataclass
class SyncResult:
    """One sync: every page until ``has_more`` was false."""

    changes: int = 0
    pages: int = 0
    wire_bytes: int = 0  # bodies as sent (gzip when asked for and worth it)
    json_bytes: int = 0  # bodies decompressed
    seconds: float = 0.0
    cursor: str = ""
    puts: dict[str, int] = field(default_factory=dict)
    deletes: int = 0
    summary: dict[str, int] = field(default_factory=dict)
    note_ids: set[str] = field(default_factory=set)
    refused: int = 0  # pages refused (429, 5xx) and asked again


async def pull_all(
    conn: Connection,
    event_id: str,
    token: str,
    *,
    cursor: str = "",
    limit: int = 500,
    gzip: bool = True,
    client_id: str | None = None,
    deadline_s: float = 120.0,
    retries: int = 0,
) -> SyncResult:
    """Pull from ``cursor`` until ``has_more`` is false, as a phone does. With ``retries``, a page refused
    with 429 or a 5xx is asked again after its Retry-After (at most 5 s), as the reference client does
    (``sync.transport``); each refusal is counted in ``refused``."""
    result = SyncResult(cursor=cursor)
    puts: Counter[str] = Counter()
    headers = auth_headers(token, gzip=gzip)
    started = time.perf_counter()
    left = retries
    for _ in range(MAX_PAGES):
        query = {"limit": limit, **({"cursor": result.cursor} if result.cursor else {})}
        if client_id:
            query["client_id"] = client_id
        reply = await conn.send(
            build_request("GET", f"/api/v1/events/{event_id}/sync/pull?{urlencode(query)}", headers)
        )
        if reply.status in RETRY_STATUSES and left > 0:
            left -= 1
            result.refused += 1
            await asyncio.sleep(_retry_after(reply))
            continue
        if reply.status != 200:
            raise HTTPError(f"pull answered {reply.status}: {reply.content()[:300]!r}")
        content = reply.content()
        page = _decode_page(content)
        result.pages += 1
        result.wire_bytes += len(reply.body)
        result.json_bytes += len(content)
        result.changes += len(page.changes)
        result.cursor = page.cursor
        for change in page.changes:
            if change.op == "put":
                puts[change.entity] += 1
                if change.entity == "note":
                    result.note_ids.add(change.id)
            else:
                result.deletes += 1
        if not page.has_more:
            result.summary = {kind: s.count for kind, s in (page.summary or {}).items()}
            break
        if time.perf_counter() - started > deadline_s:
            raise HTTPError(f"sync did not finish within {deadline_s:.0f} s")
    else:
        raise HTTPError(f"sync still had more after {MAX_PAGES} pages")
    result.seconds = time.perf_counter() - started
    result.puts = dict(puts)
    return result
