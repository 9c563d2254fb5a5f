"""Run-time settings, read from the command line or the environment."""

import ipaddress
import os
from pathlib import Path

import msgspec

from server.storage.location import Location, PostgresLocation, SqliteLocation, parse_database_url

BLOB_STORES = ("directory", "database")


class Settings(msgspec.Struct, kw_only=True):
    """Everything a deployment can tune."""

    db_path: str = "data/studyvisit.db"
    # postgresql://user@host/db (or sqlite:///file.db) serves from that database instead of db_path.
    database_url: str = ""
    # Sync limits, checked before any work is done (413 past them).
    max_push_bytes: int = 1024 * 1024
    max_push_mutations: int = 1000
    pull_default_limit: int = 500
    pull_max_limit: int = 5000
    # Megabytes of encoded changes a server keeps for pulls, with their keys; half for sites and
    # visits. The large event's event-wide records take about 4, its organizer view about 37: a full
    # benchmark run at 40 took the server to 248 MB of RSS, at 16 to 204 (bench/RESULTS.md, "Pull").
    # 0 turns the cache off.
    pull_cache_mb: int = 8
    metrics_enabled: bool = True
    # /metrics: when set, a scrape must send "Authorization: Bearer <metrics_token>" (401 otherwise).
    metrics_token: str = ""
    # /metrics: when set, only clients in these comma-separated networks may scrape (403 otherwise),
    # e.g. "127.0.0.1/32,10.0.0.0/8". Behind a reverse proxy the client is the proxy, unless uvicorn
    # trusts its X-Forwarded-For (FORWARDED_ALLOW_IPS).
    metrics_allow_from: str = ""
    # Photos and documents attached to notes. "" means the database's own directory, so blobs land
    # beside it in <db dir>/blobs (with partial/, previews/ and tmp/ next to that).
    data_dir: str = ""
    # Where blob bytes live: "directory" (data_dir, the default) or "database" (chunked rows in the
    # PostgreSQL database, so that several servers need no shared disk; PostgreSQL only).
    blob_store: str = "directory"
    # One blob's size limit (413 past it, checked before the body is read when the request says its size).
    max_blob_bytes: int = 20 * 1024 * 1024
    # Seconds a write waits for the database's write lock before it is answered 503 database-busy
    # (with Retry-After): a prompt "try again" beats a request held for half a minute.
    db_lock_timeout_s: float = 5.0

    # Failed authentications (a token that is not valid) per client address and process, before 429.
    auth_failures_allowed: int = 20
    # The window those failures are counted over; Retry-After says when the next attempt is allowed.
    auth_failure_window_seconds: float = 300.0
    # The server's public address, for feed URLs (e.g. "https://visit.example.org"); "" means the
    # address the request came to (its Host header and scheme).
    public_url: str = ""
    # The field app's map tiles: a URL template whose host the app's Content-Security-Policy allows
    # (connect-src and img-src). "" means no tiles: the map draws on a plain background.
    tile_url: str = "https://tile.openstreetmap.org/{z}/{x}/{y}.png"
    # HTTP limits enforced by the server process (see docs/deployment.md). Past a header limit the
    # request is refused with 431 and the connection closed before the headers are held in memory.
    max_header_bytes: int = 32 * 1024
    max_header_count: int = 100
    # A client must finish its request line and headers this many seconds after it connected (or
    # began the request); while a body is awaited, no gap between its bytes may be longer than
    # body_timeout_seconds. Slow clients are dropped (408, or a closed connection).
    header_timeout_seconds: float = 10.0
    body_timeout_seconds: float = 30.0
    # Idle seconds a keep-alive connection is kept open between requests.
    keep_alive_timeout_seconds: float = 5.0
    # Open connections per process: one more is closed at once (with a 503).
    max_connections: int = 1000
    # Requests in flight per process: past this, uvicorn answers 503 at once.
    max_concurrent_requests: int = 200
    # The listen socket's queue of connections not yet accepted.
    backlog: int = 2048

    # Storage quotas (507 past them): the bytes one account's uploads, and one event's, may hold.
    max_account_blob_bytes: int = 200 * 1024 * 1024
    max_event_blob_bytes: int = 5 * 1024 * 1024 * 1024

    def __post_init__(self) -> None:
        if self.blob_store not in BLOB_STORES:
            raise ValueError(f"blob_store: one of {', '.join(BLOB_STORES)}, not {self.blob_store!r}")
        if self.blob_store == "database" and not isinstance(self.location(), PostgresLocation):
            raise ValueError("blob_store: 'database' keeps blobs in PostgreSQL; a SQLite server keeps them in data_dir")
        # A mistyped network must stop the start-up, not turn every scrape into a 500.
        try:
            self.metrics_networks()
        except ValueError as exc:
            raise ValueError(f"metrics_allow_from: {exc}") from None

    def metrics_networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        """The networks of ``metrics_allow_from``."""
        return [ipaddress.ip_network(n.strip(), strict=False) for n in self.metrics_allow_from.split(",") if n.strip()]

    def location(self) -> Location:
        """The database to serve from: database_url when set, else the SQLite file db_path."""
        return parse_database_url(self.database_url) if self.database_url else SqliteLocation(Path(self.db_path))

    @classmethod
    def from_env(cls, **overrides: object) -> "Settings":
        """Defaults, then ``STUDYVISIT_*`` environment variables, then explicit overrides."""
        values: dict[str, object] = {}
        for field in cls.__struct_fields__:
            env = os.environ.get("STUDYVISIT_" + field.upper())
            if env is not None:
                values[field] = env
        values.update(
            {k: (os.fspath(v) if isinstance(v, os.PathLike) else v) for k, v in overrides.items() if v is not None}
        )
        return msgspec.convert(values, cls, strict=False)
