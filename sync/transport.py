"""HTTP for the field client: bearer auth, bounded retries with backoff, and the error tree.

Errors the field client raises::

    SyncError                   anything that stopped a sync; the outbox is always left intact
    ├── OfflineError            the network failed on every attempt
    ├── ServerError             the server answered 5xx or 429 on every attempt
    ├── RequestRejectedError    a 4xx problem document the client cannot work around
    │   └── AuthenticationError 401 or 403: the token is wrong, revoked, or lacks the right
    ├── ProtocolError           an answer that breaks sync protocol v1
    ├── NotLoggedInError        no server, token or account stored yet
    └── AccountMismatchError    the token is another account's while this one's changes are queued
"""

import email.utils
import random
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx
import msgspec

from schemas.problems import Problem

# 507: the server's disk is full; nothing was written and the same push succeeds once there is room.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504, 507})
# ...but a 507 for a storage quota does not clear by waiting (the account's uploads fill it): not retried.
QUOTA_PROBLEM = "urn:studyvisit:problem:storage-quota-exceeded"
T = TypeVar("T")


class SyncError(Exception):
    """A sync could not finish; nothing queued on the device was lost."""


class OfflineError(SyncError):
    """The server could not be reached (connection, DNS or timeout) after every attempt."""


class ServerError(SyncError):
    """The server kept answering 5xx or 429."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class RequestRejectedError(SyncError):
    """The server refused a request with a problem document (RFC 9457)."""

    def __init__(self, problem: Problem, where: str = "") -> None:
        what = f"{problem.status} {problem.title}" + (f": {problem.detail}" if problem.detail else "")
        # The request it answered: a 404 from a wrong --url says where it looked.
        super().__init__(f"{where}: {what}" if where else what)
        self.problem = problem
        self.status = problem.status


class AuthenticationError(RequestRejectedError):
    """The token was refused (401) or its account may not do this (403)."""


class ProtocolError(SyncError):
    """The server's answer breaks sync protocol v1 (undecodable, or ids that cannot line up)."""


class NotLoggedInError(SyncError):
    """No server URL, token or account is stored: log in first."""


class AccountMismatchError(SyncError):
    """The token belongs to another account than the one whose changes are still queued here."""


def _retryable(response: httpx.Response) -> bool:
    if response.status_code not in RETRY_STATUSES:
        return False
    return response.status_code != 507 or problem_of(response).type != QUOTA_PROBLEM


def problem_of(response: httpx.Response) -> Problem:
    """The problem document of an error response, or one made up from its status line."""
    try:
        return msgspec.json.decode(response.content, type=Problem)
    except (msgspec.DecodeError, msgspec.ValidationError):
        reason = response.reason_phrase or "HTTP error"
        return Problem(type="about:blank", title=reason, status=response.status_code)


def raise_for_problem(response: httpx.Response) -> None:
    """Raise the documented error for a 4xx answer; do nothing for a success."""
    if response.is_success:
        return
    problem = problem_of(response)
    where = f"{response.request.method} {response.request.url}"
    if response.status_code in (401, 403):
        raise AuthenticationError(problem, where)
    raise RequestRejectedError(problem, where)


def check_base_url(base_url: str) -> None:
    """Refuse at once a server URL no request could go to (no scheme, no host): retrying would not help."""
    try:
        url = httpx.URL(base_url)
    except httpx.InvalidURL as exc:
        raise SyncError(f"{base_url!r} is not a server URL: {exc}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise SyncError(
            f"{base_url!r} is not a server URL: give it with http:// or https://, e.g. https://{base_url or 'example.org'}"
        )


def decode(response: httpx.Response, kind: type[T]) -> T:
    """A successful response's JSON body as ``kind``, or ProtocolError."""
    try:
        return msgspec.json.decode(response.content, type=kind, strict=False)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ProtocolError(f"{response.request.method} {response.request.url.path}: {exc}") from exc


class Transport:
    """Requests to one server with one token, retried with exponential backoff and full jitter."""

    def __init__(
        self,
        http: httpx.Client,
        base_url: str,
        token: str,
        *,
        timeout: float,
        max_attempts: int,
        backoff_base: float,
        backoff_cap: float,
        sleep: Callable[[float], None],
        rng: random.Random,
        on_retry: Callable[[str, float], None] | None = None,
    ) -> None:
        self.http = http
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.max_attempts = max(1, max_attempts)
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.sleep = sleep
        self.rng = rng
        # Told why and for how long before each wait, so a person at a terminal sees progress.
        self.on_retry = on_retry

    def delay(self, failures: int, retry_after: float | None = None) -> float:
        """How long to wait after the n-th consecutive failure (AWS "full jitter")."""
        ceiling = min(self.backoff_cap, self.backoff_base * 2 ** (failures - 1))
        jittered = self.rng.uniform(0, ceiling)
        if retry_after is not None:
            return min(self.backoff_cap, max(retry_after, jittered))
        return jittered

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        json: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        attempts: int | None = None,
    ) -> httpx.Response:
        """Send a request; retry network errors, 5xx and 429; return any other answer as is.

        Retrying a push is safe: the server processes each mutation id of a client once and
        answers ``duplicate`` to a resend, which is what makes delivery exactly-once. Callers
        whose requests are not safe to repeat blindly (a blob chunk: the server may have kept
        part of it) pass ``attempts=1`` and decide themselves what to send next.
        """
        sent_headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        if json is not None:
            content = msgspec.json.encode(json)
            sent_headers["Content-Type"] = "application/json"
        sent_headers |= headers or {}
        check_base_url(self.base_url)
        url = f"{self.base_url}{path}"
        max_attempts = self.max_attempts if attempts is None else max(1, attempts)
        for attempt in range(1, max_attempts + 1):
            retry_after: float | None = None
            reason = ""
            try:
                response = self.http.request(
                    method, url, params=params, content=content, headers=sent_headers, timeout=self.timeout
                )
            except httpx.TransportError as exc:
                if attempt == max_attempts:
                    raise OfflineError(f"{method} {url}: {_describe(exc)} after {attempt} attempts") from exc
                reason = _describe(exc)
            else:
                if not _retryable(response):
                    return response
                if attempt == max_attempts:
                    problem = problem_of(response)
                    raise ServerError(
                        f"{method} {url}: {response.status_code} {problem.title} after {attempt} attempts",
                        response.status_code,
                    )
                retry_after = _retry_after(response)
                reason = f"{response.status_code} {response.reason_phrase}".strip()
            wait = self.delay(attempt, retry_after)
            if self.on_retry is not None:
                self.on_retry(f"{method} {url}: {reason} (attempt {attempt} of {max_attempts})", wait)
            self.sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover


def _describe(exc: httpx.TransportError) -> str:
    """A network error in words: its kind and what the system said (``ConnectError: [Errno 111] ...``)."""
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _retry_after(response: httpx.Response) -> float | None:
    """Retry-After in seconds: either form of RFC 9110 §10.2.3, delay-seconds (``120``) or an
    HTTP-date (``Wed, 10 Dec 2025 14:02:00 GMT``), the date measured from the response's own
    ``Date`` when it has one (so a device clock that is off does not matter), else from now."""
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        until = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    try:
        sent = email.utils.parsedate_to_datetime(response.headers.get("Date", ""))
    except (TypeError, ValueError):
        sent = datetime.now(UTC)
    if until.tzinfo is None or sent.tzinfo is None:
        return None  # RFC 9110 dates are GMT; one without a zone is not one
    return max(0.0, (until - sent).total_seconds())
