"""Structured access logs and Prometheus metrics.

One JSON line per request on the ``studyvisit.access`` logger: method, route, path, status,
duration, account and sync client id — never a token (the Authorization header is not read
here, query strings are not logged, and a feed URL's path token is replaced by a placeholder).

Metrics cover every worker of a `studyvisit serve`: with several workers, `serve` points
PROMETHEUS_MULTIPROC_DIR at a directory of its own before they start, each worker's values live
in files there (prometheus_client's multiprocess mode), and a scrape that any worker answers adds
them all up. A single process keeps them in memory.
"""

import atexit
import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterable
from typing import Any, TextIO

import msgspec
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess

from server.feeds import redact_feed_token

access_log = logging.getLogger("studyvisit.access")

# Every label value comes from a closed set: a client that sends a made-up method or mutation type
# must not be able to mint a new time series (each costs memory and render time for ever).
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER = "other"
# prometheus_client's multiprocess mode is on when this names a directory (read when it is imported).
MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"


def closed_label(value: str, allowed: Iterable[str]) -> str:
    """The value itself when it is one of the allowed ones, else ``other``."""
    return value if value in allowed else OTHER


class Metrics:
    """The counters and histograms of one application."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "studyvisit_http_requests_total", "HTTP requests", ["method", "route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "studyvisit_http_request_duration_seconds",
            "Time to answer a request",
            ["method", "route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.mutations = Counter(
            "studyvisit_sync_mutations_total",
            "Sync mutations by type and outcome",
            ["type", "status"],
            registry=self.registry,
        )
        self.pull_changes = Histogram(
            "studyvisit_sync_pull_changes",
            "Changes per pull page",
            buckets=(0, 1, 10, 100, 500, 1000, 5000),
            registry=self.registry,
        )
        self.pull_bytes = Histogram(
            "studyvisit_sync_pull_bytes",
            "Encoded size of pull pages, before compression",
            buckets=(1e3, 1e4, 5e4, 1e5, 5e5, 1e6, 5e6),
            registry=self.registry,
        )

        # labels() validates and looks its child up again on every call (~7 µs for the two): each
        # (method, route, status) is a closed set, so its children are kept here once found.
        self._children: dict[tuple[str, str, str], tuple[Any, Any]] = {}

    def count_request(self, method: str, route: str, status: str, elapsed: float) -> None:
        """Count one answered request and observe its duration."""
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (self.requests.labels(*key), self.latency.labels(method, route))
        children[0].inc()
        children[1].observe(elapsed)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric (of every worker, in multiprocess mode)."""
        if os.environ.get(MULTIPROCESS_DIR):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)


def write_access_line(message: str) -> None:
    """Hand one access-log line to the logger's handlers.

    ``Logger.info`` would walk the stack to find the caller's file and line (``findCaller``), a third
    of a cached read's time; an access line's origin is always this module, so the record is made
    directly. Filters, levels and handlers (and pytest's caplog) see the same record as before.
    When every handler the line reaches only writes messages as lines (``serve``'s), no record is
    made at all: a ``LogRecord`` and its formatting were a third of a cached read's time again.
    """
    handlers = _line_handlers()
    if handlers is not None:
        for handler in handlers:
            handler.write_line(message)
        return
    access_log.handle(access_log.makeRecord(access_log.name, logging.INFO, __file__, 0, message, (), None))


def _line_handlers() -> "list[BufferedLineHandler] | None":
    """The handlers an access line reaches when each of them would write just its message, else None.

    Walked on every line (a few attribute reads), so that a handler or filter added later (pytest's
    caplog, an operator's config) gets the record as usual.
    """
    found: list[BufferedLineHandler] = []
    logger: logging.Logger | None = access_log
    while logger is not None:
        if logger.filters:
            return None
        for handler in logger.handlers:
            if not (
                type(handler) is BufferedLineHandler
                and handler.formatter is None  # logging's default: the message alone
                and not handler.filters
                and handler.level <= logging.INFO
            ):
                return None
            found.append(handler)
        if not logger.propagate:
            break
        logger = logger.parent
    return found or None  # none: logging's last resort decides, as for any record


class BufferedLineHandler(logging.Handler):
    """Writes formatted records as lines to a stream in batches, not one ``write()`` and flush each.

    A line reaches the stream at most ``interval_s`` after it was logged (a thread of its own flushes
    the batch), at once when ``max_lines`` are waiting, and at the process's exit: a process that is
    killed (SIGKILL, a crash of the interpreter) loses at most the last ``interval_s`` of lines.
    """

    def __init__(self, stream: TextIO, interval_s: float = 0.2, max_lines: int = 512) -> None:
        super().__init__()
        self.stream = stream
        self.interval_s = interval_s
        self.max_lines = max_lines
        self._lines: list[str] = []
        threading.Thread(target=self._flush_regularly, name="access-log-flush", daemon=True).start()
        atexit.register(self.flush)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._lines.append(self.format(record))  # Handler.handle holds self.lock around emit
        except Exception:  # logging's contract: a bad record must not break the request
            self.handleError(record)
            return
        if len(self._lines) >= self.max_lines:
            self.flush()

    def write_line(self, line: str) -> None:
        """What ``emit`` does with a formatted record, for a line that needs no record (write_access_line)."""
        with self.lock:  # type: ignore[union-attr]  # createLock() made it in Handler.__init__
            self._lines.append(line)
            full = len(self._lines) >= self.max_lines
        if full:
            self.flush()

    def flush(self) -> None:
        """Write every waiting line now."""
        with self.lock:  # type: ignore[union-attr]  # createLock() made it in Handler.__init__
            lines, self._lines = self._lines, []
            if lines:
                self.stream.write("\n".join(lines) + "\n")
                self.stream.flush()

    def _flush_regularly(self) -> None:
        while True:
            time.sleep(self.interval_s)
            with contextlib.suppress(Exception):  # a closed or broken stream must not end the flushing
                self.flush()


def flush_access_log() -> None:
    """Write what the access log's handlers hold (at shutdown)."""
    for handler in access_log.handlers:
        handler.flush()


def observe(metrics: Metrics, app: ASGIApp) -> ASGIApp:
    """ASGI middleware: time every HTTP request, count it, and write its access-log line."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await app(scope, receive, capture)
        finally:
            elapsed = time.perf_counter() - started
            # Route templates are the app's own (a closed set); statuses are three digits.
            route = scope.get("path_template") or "unmatched"
            method = scope["method"]
            label = closed_label(method, METHODS)
            metrics.count_request(label, route, str(status), elapsed)
            if access_log.isEnabledFor(logging.INFO):
                user: Any = scope.get("user")
                state: dict[str, Any] = scope.get("state") or {}
                line = {
                    "method": method,
                    "route": route,
                    "path": redact_feed_token(scope["path"]),
                    "status": status,
                    "ms": round(elapsed * 1000, 2),
                    "account": getattr(user, "id", None),
                    "client_id": state.get("client_id"),
                }
                write_access_line(msgspec.json.encode(line).decode())

    return middleware
