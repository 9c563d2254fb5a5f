"""Repeat reads answered before routing, with the very messages the routed path sent for them.

A cached read (routes/common.py, ``serve_cached``) is a dictionary look-up inside Litestar's
routing, guards, dependency injection and ``Response`` building, which cost most of its time. This
ASGI layer, in front of Litestar, keeps what the routed path sent for such a request (status, every
header, body) and sends it again for the same request, so the answer is the same byte for byte.

What such an answer depends on, and so its key: the method, path and query string; the Host header
(Litestar refuses invalid ones); Accept-Encoding and If-None-Match (gzip or not, 200 or 304); the
whole account record the token belongs to (role, group, sites, name, …); and the content version of
its event. Every request still runs the one statement the routed path runs (server/auth.py), here:
the token is checked (revoked, retired or expired: nothing is answered from here) and the account
and the version are read from the database, never from memory, so several servers over one database
answer alike and an edit anywhere changes the next answer. Only answers that ``serve_cached`` marked
as made from a cached representation (``ANSWER_VERSION``: the content version it was made at), with
status 200 or 304, are kept.

Everything else goes on to Litestar, with the statement's result handed over (``CHECKED_BEARER``) so
that it is not run twice; an invalid token is refused there, and counted by the failed-auth limiter,
as without this layer. Bounded: an LRU of entries, with a cap on the bytes they hold.
"""

from collections import OrderedDict
from collections.abc import Hashable
from typing import Any, NamedTuple, cast

import msgspec
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from schemas.accounts import Account
from server.auth import ANSWER_VERSION, CHECKED_BEARER, bearer_token
from server.storage.accounts import TokenChecks

# Only the event API's reads are ever marked by serve_cached; anything else passes with one check.
_PREFIX = "/api/v1/events/"
_KEYED_HEADERS = frozenset({b"host", b"accept-encoding", b"if-none-match"})
_ENTRY_OVERHEAD = 400  # bytes of an entry besides its body and header values: key, tuples, dict slots


class Answer(NamedTuple):
    """What the routed path sent for one request, and what the access log and metrics read of it."""

    status: int
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes
    path: str  # the path as Litestar's router normalised it (the access log's "path")
    route: str  # the route template (the access log's "route", the metrics' label)
    size: int


class AnswerCache:
    """A bounded LRU of answers. Used from the event loop only, as ASGI layers are: no lock."""

    def __init__(self, max_entries: int = 4096, max_bytes: int = 32 * 1024 * 1024) -> None:
        self._entries: OrderedDict[Hashable, Answer] = OrderedDict()
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.bytes = 0
        self.hits = 0  # answers sent from here (tests and benchmarks read it)

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Hashable) -> Answer | None:
        """The answer kept for ``key``, or None."""
        found = self._entries.get(key)
        if found is not None:
            self._entries.move_to_end(key)
            self.hits += 1
        return found

    def put(self, key: Hashable, answer: Answer) -> None:
        """Keep ``answer``, forgetting the least recently used ones past the caps."""
        old = self._entries.pop(key, None)
        if old is not None:
            self.bytes -= old.size
        if answer.size > self.max_bytes:
            return
        self._entries[key] = answer
        self.bytes += answer.size
        while len(self._entries) > self.max_entries or self.bytes > self.max_bytes:
            self.bytes -= self._entries.popitem(last=False)[1].size

    def clear(self) -> None:
        """Forget everything."""
        self._entries.clear()
        self.bytes = 0


def _kept(sent: list[Message], scope: Scope) -> Answer | None:
    """The answer to keep of what the routed path sent: one start and one whole body, 200 or 304."""
    if len(sent) != 2:
        return None
    start, body = sent
    if start["type"] != "http.response.start" or start["status"] not in (200, 304) or start.get("trailers"):
        return None
    if body["type"] != "http.response.body" or body.get("more_body", False):
        return None
    headers = tuple((bytes(name), bytes(value)) for name, value in start["headers"])
    content = bytes(body.get("body", b""))
    size = _ENTRY_OVERHEAD + len(content) + sum(len(n) + len(v) for n, v in headers)
    route = scope.get("path_template") or "unmatched"
    return Answer(start["status"], headers, content, scope["path"], route, size)


def answer_cached_reads(app: ASGIApp, checks: TokenChecks, cache: AnswerCache) -> ASGIApp:
    """ASGI layer: answer a repeated cached read from ``cache``, after checking its token (see above)."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD") or not scope["path"].startswith(_PREFIX):
            await app(scope, receive, send)
            return
        authorization: list[bytes] = []
        keyed: list[tuple[bytes, bytes]] = []
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization.append(value)
            elif name in _KEYED_HEADERS:
                keyed.append((name, value))
        # Read as BearerTokenMiddleware reads it; anything else is refused there, not here.
        token = bearer_token(authorization[0].decode("latin-1")) if len(authorization) == 1 else ""
        if not token:
            await app(scope, receive, send)
            return
        try:  # the one statement of a read: token, account, content version (sent after this request came)
            found = await checks.check(token)
        except Exception:  # e.g. a database that is down: Litestar runs it again and answers its problem
            await app(scope, receive, send)
            return
        scope[CHECKED_BEARER] = (found,)  # type: ignore[literal-required]  # server code's own key
        if found is None:
            await app(scope, receive, send)  # 401, and the failed-auth limiter counts it
            return
        account, version = found
        # The whole account record: whatever about the caller an answer may depend on is in the key.
        request_key = (
            scope["method"],
            scope.get("root_path", ""),
            scope["path"],
            scope["query_string"],
            tuple(keyed),
            msgspec.json.encode(account),
        )
        answer = cache.get((*request_key, version))
        if answer is not None:
            _as_routed(scope, account, answer)
            await send({"type": "http.response.start", "status": answer.status, "headers": list(answer.headers)})
            await send({"type": "http.response.body", "body": answer.body, "more_body": False})
            return
        sent: list[Message] = []

        async def recording(message: Message) -> None:
            sent.append(message)
            await send(message)

        await app(scope, receive, recording)
        made_at: int | None = scope.get(ANSWER_VERSION)  # type: ignore[assignment]
        if made_at is not None and scope.get("user") is not None:
            kept = _kept(sent, scope)
            if kept is not None:
                cache.put((*request_key, made_at), kept)

    return middleware


def _as_routed(scope: Scope, account: Account, answer: Answer) -> None:
    """Leave in the scope what the routed path leaves for the access log and the metrics (observe)."""
    fields = cast(dict[str, Any], scope)
    fields["user"] = account
    fields["path"] = answer.path
    fields["path_template"] = answer.route
