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

import random
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import httpx
import msgspec

from schemas.problems import Problem

# 507: the server's disk is full; nothing was written and the same push succeeds once there is room.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504, 507})
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

    def __init__(self, problem: Problem) -> None:
        super().__init__(f"{problem.status} {problem.title}" + (f": {problem.detail}" if problem.detail else ""))
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
    if response.status_code in (401, 403):
        raise AuthenticationError(problem)
    raise RequestRejectedError(problem)


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
        url = f"{self.base_url}{path}"
        max_attempts = self.max_attempts if attempts is None else max(1, attempts)
        for attempt in range(1, max_attempts + 1):
            retry_after: float | None = None
            try:
                response = self.http.request(
                    method, url, params=params, content=content, headers=sent_headers, timeout=self.timeout
                )
            except httpx.TransportError as exc:
                if attempt == max_attempts:
                    raise OfflineError(f"{method} {url}: {exc!r} after {attempt} attempts") from exc
            else:
                if response.status_code not in RETRY_STATUSES:
                    return response
                if attempt == max_attempts:
                    problem = problem_of(response)
                    raise ServerError(
                        f"{method} {url}: {response.status_code} {problem.title} after {attempt} attempts",
                        response.status_code,
                    )
                retry_after = _retry_after(response)
            self.sleep(self.delay(attempt, retry_after))
        raise AssertionError("unreachable")  # pragma: no cover


def _retry_after(response: httpx.Response) -> float | None:
    """Retry-After in seconds, when the server sent it as a number."""
    value = response.headers.get("Retry-After", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
