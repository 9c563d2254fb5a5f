"""Limits on what one client may make the server hold: header size and count, time, connections.

uvicorn's httptools protocol keeps every byte of an unfinished request head in memory, with no
limit on its size, its number of header fields, or the time it takes to arrive (uvicorn's
``h11_max_incomplete_event_size`` applies to h11 only, and ``timeout_keep_alive`` only to idle
connections between requests). ``LimitedHttpToolsProtocol`` adds those limits where the bytes
arrive, so a refused request is never held whole: past ``max_header_bytes`` of an unfinished
head, or ``max_header_count`` fields, it answers 431 and closes; a head that takes longer than
``header_timeout_seconds`` gets 408; a body that stalls for ``body_timeout_seconds`` while the
app waits for it drops the connection; connections past ``max_connections`` and requests past
``max_concurrent_requests`` get 503. ``limit_headers`` checks the header limits again in ASGI,
for servers other than uvicorn. Settings come from ``STUDYVISIT_*`` variables (docs/deployment.md).
"""

import asyncio
import functools
import weakref
from typing import Any, cast

import httptools  # pyright: ignore[reportMissingTypeStubs]
import msgspec
from litestar.types import ASGIApp, Receive, Scope, Send
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
from uvicorn.server import ServerState

from schemas.problems import Problem
from server.errors import PROBLEM_BASE, PROBLEM_MEDIA_TYPE, send_problem
from server.settings import Settings

# After a refusal the connection still reads (and drops) what the client sends for this long
# before closing, so that the client reads the answer instead of a reset (a "lingering close").
LINGER_SECONDS = 2.0

_REFUSALS: dict[int, tuple[str, str, str]] = {
    408: ("request-timeout", "Request Timeout", "The request line and headers did not arrive in time."),
    431: (
        "header-fields-too-large",
        "Request Header Fields Too Large",
        "The request has too many header fields, or they are too large.",
    ),
    503: ("service-unavailable", "Service Unavailable", "The server is at its limit of connections or requests."),
}


def refusal(status: int) -> Problem:
    """The problem document of a request the server refuses before it reaches the app."""
    slug, title, detail = _REFUSALS[status]
    return Problem(type=PROBLEM_BASE + slug, title=title, status=status, detail=detail)


@functools.cache
def server_limits() -> Settings:
    """This process's settings, read once from the environment (``studyvisit serve`` sets it)."""
    return Settings.from_env()


async def _busy(scope: Scope, receive: Receive, send: Send) -> None:
    """The app of a request past the concurrency limit: 503, and try again in a second."""
    if scope["type"] == "http":
        await send_problem(scope, send, refusal(503), {"Retry-After": "1", "Connection": "close"})


# Per server: the requests it is answering. A request counts from its head until its answer is sent,
# or until its handler ends if that comes first (a client that left does not free its handler).
# Not uvicorn's task set: a task stays in it for a moment after its answer is sent, and the client's
# next request on the same connection, often already there, was refused for it.
_answering: "weakref.WeakKeyDictionary[ServerState, set[RequestResponseCycle]]" = weakref.WeakKeyDictionary()


async def _counted(
    app: ASGIApp,
    answering: set[RequestResponseCycle],
    cycle: RequestResponseCycle,
    scope: Scope,
    receive: Receive,
    send: Send,
) -> None:
    try:
        await app(scope, receive, send)
    finally:
        answering.discard(cycle)


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with limits on request heads, slow clients, connections and requests."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits = server_limits()
        self._head_raw_bytes = 0  # bytes received since this request's head began
        self._head_bytes = 0  # bytes of the request line and header fields parsed so far
        self._header_count = 0
        self._in_head = True
        self._refused = False
        self._timer: asyncio.TimerHandle | None = None
        self._answering = _answering.setdefault(server_state, set())

    # -- connection ---------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            self._refuse(503)
            return
        # A connection that sends nothing at all is a slow head too.
        self._arm(self.limits.header_timeout_seconds, self._head_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        # uvicorn's own data_received, with the byte count of the head and our refusals.
        if self._refused:
            return  # lingering: read and drop, so that the client gets to read the answer
        self._unset_keepalive_if_required()
        if self._in_head:
            self._head_raw_bytes += len(data)
        try:
            parser: Any = self.parser  # None only after the connection is lost
            parser.feed_data(data)
        except httptools.HttpParserError:
            if not self._refused:  # else a limit stopped the parser, and the answer is written
                msg = "Invalid HTTP request received."
                self.logger.warning(msg)
                self.send_400_response(msg)
            return
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        # An unfinished head is refused as soon as it passes the limit: its bytes are never all held.
        if self._in_head and self._head_raw_bytes > self.limits.max_header_bytes:
            self._refuse(431)

    # -- parser callbacks ---------------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_bytes = self._header_count = 0
        if self._timer is None:
            self._arm(self.limits.header_timeout_seconds, self._head_timed_out)

    def on_url(self, url: bytes) -> None:
        self._head_bytes += len(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        self._head_bytes += len(name) + len(value) + 4  # ": " and CRLF
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._disarm()
        if self._header_count > self.limits.max_header_count or self._head_bytes > self.limits.max_header_bytes:
            self._refuse(431)
            raise _RefusedError  # stops the parser: this request never reaches the app
        self._in_head = False
        self._head_raw_bytes = 0
        app = self.app
        if len(self._answering) >= self.limits.max_concurrent_requests:
            self.app = _busy  # type: ignore[assignment]
        try:
            super().on_headers_complete()
        finally:
            self.app = app
        cycle = cast(RequestResponseCycle | None, self.cycle)  # uvicorn's None before the first request
        if cycle is not None and cycle.more_body:
            self._arm(self.limits.body_timeout_seconds, self._body_timed_out)

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        if app is not _busy:
            self._answering.add(cycle)
            app = functools.partial(_counted, app, self._answering, cycle)
        super()._start_asgi_task(cycle, app)

    def on_response_complete(self) -> None:
        # The answered cycle is this one, or (pipelined) the one before it, which its task ends soon.
        self._answering.discard(self.cycle)
        super().on_response_complete()

    def on_body(self, body: bytes) -> None:
        super().on_body(body)
        self._arm(self.limits.body_timeout_seconds, self._body_timed_out)

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()
        self._in_head = True
        self._head_raw_bytes = 0

    # -- timers and refusals ------------------------------------------------------------------

    def _arm(self, seconds: float, callback: Any) -> None:
        self._disarm()
        self._timer = self.loop.call_later(seconds, callback)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _head_timed_out(self) -> None:
        self._timer = None
        cycle = cast(RequestResponseCycle | None, self.cycle)
        if cycle is not None and not cycle.response_complete:
            # A pipelined request's head is arriving while the previous answer is written: wait.
            self._arm(self.limits.header_timeout_seconds, self._head_timed_out)
            return
        self._refuse(408)

    def _body_timed_out(self) -> None:
        self._timer = None
        if self.flow.read_paused:
            # The app is not reading what came: the client is not the slow one.
            self._arm(self.limits.body_timeout_seconds, self._body_timed_out)
            return
        # The app is waiting for this body and may answer any moment: no second answer can be
        # written safely, so the connection is dropped (the app sees a disconnect).
        self.transport.close()

    def _refuse(self, status: int) -> None:
        """Answer with a problem before the app sees the request, then close after a linger."""
        if self._refused or self.transport.is_closing():
            return
        self._refused = True
        self._disarm()
        self._unset_keepalive_if_required()
        body = msgspec.json.encode(refusal(status))
        head = (
            f"HTTP/1.1 {status} {_REFUSALS[status][1]}\r\ncontent-type: {PROBLEM_MEDIA_TYPE}\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n"
        )
        if status == 503:
            head += "retry-after: 1\r\n"
        self.transport.write(head.encode() + b"\r\n" + body)
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_SECONDS, self.transport.close)


class _RefusedError(Exception):
    """Raised from a parser callback to stop parsing a refused request."""


def limit_headers(app: ASGIApp, settings: Settings) -> ASGIApp:
    """ASGI layer: 431 for a request with more header fields, or larger ones, than the settings allow.

    Under ``studyvisit serve`` the protocol refuses such requests first, before they are held in
    memory; this layer keeps the limit under any other ASGI server (and in the test client).
    """

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = scope["headers"]
            size = sum(len(name) + len(value) + 4 for name, value in headers)
            if len(headers) > settings.max_header_count or size > settings.max_header_bytes:
                await send_problem(scope, send, refusal(431), {"Connection": "close"})
                return
        await app(scope, receive, send)

    return middleware
