"""Calendar feeds at secret URLs, for apps that cannot send an ``Authorization`` header.

``/api/v1/feeds/<feed token>/itinerary.ics`` and ``…/schedule.xml`` are the account's own
``/api/v1/events/<event>/itinerary.ics`` and ``…/schedule.xml``, answered by the same handlers:
this ASGI layer checks the feed token, then hands the request on under the event path with the
account attached (``FEED_ACCOUNT``), so the feed is byte for byte what the account reads with
its bearer token, ETags included. Nothing else is reachable with a feed token: only these two
paths are rewritten, and the bearer-token lookup never sees feed tokens.
"""

import re
from typing import Any, cast

from litestar.types import ASGIApp, Receive, Scope, Send

from schemas.accounts import FeedUrls
from server.auth import FEED_ACCOUNT, count_failed_auth
from server.errors import NotFoundError, TooManyAuthFailuresError, send_problem
from server.ratelimit import FailedAuthLimiter
from server.storage.accounts import account_by_feed_token
from server.storage.unit import Store

FEEDS_PREFIX = "/api/v1/feeds/"
FEED_FILES = ("itinerary.ics", "schedule.xml")
_FEED_PATH = re.compile(r"/api/v1/feeds/([^/]+)/(itinerary\.ics|schedule\.xml)")
_TOKEN_IN_PATH = re.compile(r"^(/api/v1/feeds/)[^/]+")


def redact_feed_token(path: str) -> str:
    """A path fit for logs: the feed token of a feed URL replaced by a placeholder."""
    return _TOKEN_IN_PATH.sub(r"\1{feed_token}", path)


def feed_urls(base_url: str, feed_token: str) -> FeedUrls:
    """The feed URLs of a feed token, under the server's public address."""
    base = base_url.rstrip("/") + FEEDS_PREFIX + feed_token
    ics = f"{base}/itinerary.ics"
    # webcal:// is http(s):// for calendar apps: opening it offers "subscribe" instead of a download.
    return FeedUrls(ics=ics, schedule_xml=f"{base}/schedule.xml", webcal="webcal://" + ics.partition("://")[2])


def serve_feeds(app: ASGIApp, db: Store, limiter: FailedAuthLimiter) -> ASGIApp:
    """ASGI layer: answer feed URLs with the feeds of the account whose feed token is in the path."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        match = _FEED_PATH.fullmatch(scope["path"])
        if match is None or scope["method"] not in ("GET", "HEAD"):
            await app(scope, receive, send)
            return
        token, name = match.groups()
        # The route label of metrics and logs: a closed set, and never the token.
        scope["path_template"] = f"{FEEDS_PREFIX}{{feed_token}}/{name}"  # type: ignore[typeddict-unknown-key]
        with db.read() as tx:
            account = account_by_feed_token(tx, token)
        if account is None:
            client = scope.get("client")
            try:
                count_failed_auth(limiter, client[0] if client else "")
            except TooManyAuthFailuresError as exc:
                await send_problem(scope, send, exc.problem(), {"Retry-After": str(exc.retry_after)})
                return
            missing = NotFoundError("No feed at this URL: it was rotated or revoked, or never existed.")
            await send_problem(scope, send, missing.problem())
            return
        scope["user"] = account  # the access log names the account
        path = f"/api/v1/events/{account.event_id}/{name}"
        inner: dict[str, Any] = {**scope, "path": path, "raw_path": path.encode(), FEED_ACCOUNT: account}
        await app(cast(Scope, inner), receive, send)

    return middleware
