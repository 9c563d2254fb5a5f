"""Hostile input: oversize and deeply nested bodies, header floods, SQL- and path-looking strings, stolen tokens.

Each attack must end in a 4xx problem document (or, for what the HTTP parser refuses, a closed connection),
never a 500, with nothing written and the server still answering. Every response the in-process tests get
is scanned for tokens, token hashes and stack traces, and so are the access log and the live server's stderr.
"""

import ast
import functools
import hashlib
import logging
import socket
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from conftest import EVENT_ID, LiveServer, Seeded, make_app
from litestar import Litestar, get
from litestar.exceptions import HTTPException, ImproperlyConfiguredException
from litestar.testing import TestClient
from sync_helpers import CLIENT_A, G1_SITE, G1_VISIT, PROBLEM, PULL_URL, PUSH_URL, note_put, rows, scalar, uid

from schemas.accounts import Account
from schemas.fixtures import Fixture
from schemas.places import Event, Site
from server.errors import EXCEPTION_HANDLERS
from server.fixtures import DEMO_FIXTURE, read_fixture
from tests.databases import loaded

pytestmark = pytest.mark.both_backends  # CI runs it on SQLite, then on PostgreSQL

E = f"/api/v1/events/{EVENT_ID}"
PROBLEM_MEDIA_TYPE = "application/problem+json"
MERGE_PATCH = "application/merge-patch+json"
SQL_STRINGS = ["'; DROP TABLE notes; --", '" OR 1=1 --']
# What a leaked stack trace looks like in a body, a header or a log line.
TRACE_MARKERS = ["Traceback (most recent call last)", 'File "/']
PASSWD_MARKERS = ["root:", "/bin/sh", "/bin/bash", "nologin"]

# A second, small event: its tokens must open nothing in Turin.
OTHER_EVENT_ID = "lyon-ess-2026"
OTHER = Fixture(
    source="test_hostile_input.py",
    event=Event(
        id=OTHER_EVENT_ID,
        title="Économie sociale et solidaire — Lyon 2026",
        starts_on=date(2026, 5, 4),
        ends_on=date(2026, 5, 5),
        timezone="Europe/Paris",
        venue="Halles de la Martinière, Lyon",
    ),
    sites=[Site(id="halles-martiniere", name="Halles de la Martinière", kind="cooperative", lat=45.7676, lon=4.8279)],
    accounts=[
        Account(id="lyon-organizer", name="Camille Martin", role="organizer", event_id=OTHER_EVENT_ID),
        Account(id="lyon-participant", name="Idriss Benali", role="participant", event_id=OTHER_EVENT_ID),
    ],
)


def sha256_hex(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class World(Seeded):
    """The Turin demo event and the small Lyon event in one database, with every account's token."""

    def other_token(self, role: str) -> str:
        return self.accounts[f"lyon-{role}"].token

    def secrets(self) -> list[str]:
        """Every token and every token hash: none may ever leave the server."""
        tokens = [a.token for a in self.accounts.values()]
        return tokens + [sha256_hex(t) for t in tokens]


def assert_no_leak(text: str, secrets: list[str], where: str) -> None:
    """No token, token hash or stack trace in ``text``."""
    for secret in secrets:
        assert secret not in text, f"a token or token hash leaked in {where}"
    for marker in TRACE_MARKERS:
        assert marker not in text, f"a stack trace leaked in {where}: {text[:500]}"


def assert_response_clean(response: httpx.Response, secrets: list[str]) -> None:
    headers = "\n".join(f"{k}: {v}" for k, v in response.headers.multi_items())
    assert_no_leak(headers, secrets, f"the headers of {response.request.method} {response.request.url.path}")
    assert_no_leak(
        response.content.decode("utf-8", "replace"),
        secrets,
        f"the body of {response.request.method} {response.request.url.path}",
    )


def assert_problem(response: httpx.Response, *statuses: int) -> dict[str, Any]:
    """A problem document with one of these statuses."""
    assert response.status_code in statuses, (response.status_code, response.text[:500])
    assert response.headers["content-type"].startswith(PROBLEM_MEDIA_TYPE), response.headers
    problem: dict[str, Any] = response.json()
    assert problem["status"] == response.status_code
    assert problem["type"].startswith(PROBLEM)
    return problem


class Scanned:
    """A test client whose every response is checked for leaked tokens, hashes and stack traces."""

    def __init__(self, client: TestClient[Litestar], secrets: list[str]) -> None:
        self.client = client
        self.secrets = secrets

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        response = self.client.request(method, url, **kwargs)
        assert_response_clean(response, self.secrets)
        return response

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def assert_healthy(self) -> None:
        assert self.get("/health").json() == {"status": "ok"}


def table_state(where: Path | Seeded) -> dict[str, int]:
    """Every table of the database with its row count: a dropped or emptied table changes it."""
    if isinstance(where, Seeded) and where.url:
        names = [r[0] for r in rows(where, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        return {name: scalar(where, f'SELECT COUNT(*) FROM "{name}"') for name in sorted(names)}
    conn = sqlite3.connect(where.path if isinstance(where, Seeded) else where)
    try:
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        return {name: conn.execute(f'SELECT COUNT(*) FROM "{name}"').fetchone()[0] for name in names}
    finally:
        conn.close()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> World:
    """Both events in a database of this module's own (on the engine the run is on), for the tests that write nothing."""
    both = loaded(tmp_path_factory.mktemp("hostile") / "studyvisit.db", request, read_fixture(DEMO_FIXTURE), OTHER)
    return World(both.path, list(both.accounts.values()), both.url)


@pytest.fixture(scope="module")
def http(world: World) -> Iterator[Scanned]:
    """The app in-process over the module's database, every response scanned."""
    with TestClient(app=make_app(world)) as client:
        yield Scanned(client, world.secrets())


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- oversize and deeply nested bodies -----------------------------------------------------------------

OVERSIZE = 50 * 1024 * 1024
DEPTH = 100_000
DEEP = b"[" * DEPTH + b"]" * DEPTH
BODY_TARGETS = [
    pytest.param("PATCH", f"{E}/sites/{G1_SITE}", MERGE_PATCH, id="site-patch"),
    pytest.param("PATCH", f"{E}/visits/{G1_VISIT}", MERGE_PATCH, id="visit-patch"),
    pytest.param("POST", PUSH_URL, "application/json", id="sync-push"),
]


def chunked(body: bytes, size: int = 1024 * 1024) -> Iterator[bytes]:
    """The body as a stream: sent without Content-Length, so only counting the bytes can stop it."""
    for start in range(0, len(body), size):
        yield body[start : start + size]


@pytest.mark.parametrize("streamed", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize(("method", "url", "content_type"), BODY_TARGETS)
def test_50_mib_body_is_refused_with_413_and_the_server_keeps_answering(
    http: Scanned, world: World, method: str, url: str, content_type: str, streamed: bool
) -> None:
    before = table_state(world)
    body = b'{"name": "' + b"a" * OVERSIZE + b'"}'
    headers = {**bearer(world.token("organizer")), "Content-Type": content_type, "If-Match": '"1"'}
    response = http.request(method, url, content=chunked(body) if streamed else body, headers=headers)
    assert assert_problem(response, 413)["type"] == PROBLEM + "payload-too-large"
    assert table_state(world) == before
    http.assert_healthy()


DEEP_BODIES = [
    pytest.param("PATCH", f"{E}/sites/{G1_SITE}", MERGE_PATCH, b'{"name": ' + DEEP + b"}", id="site-patch-field"),
    pytest.param("PATCH", f"{E}/sites/{G1_SITE}", MERGE_PATCH, DEEP, id="site-patch-whole-body"),
    pytest.param("PATCH", f"{E}/visits/{G1_VISIT}", MERGE_PATCH, b'{"title": ' + DEEP + b"}", id="visit-patch-field"),
    pytest.param(
        "POST",
        PUSH_URL,
        "application/json",
        msgspec.json.encode(
            {"client_id": CLIENT_A, "protocol": 1, "mutations": [note_put(1, uid(1), body="x")]}
        ).replace(b'"body":"x"', b'"deep":' + DEEP),
        id="push-mutation-args",
    ),
    pytest.param("POST", PUSH_URL, "application/json", DEEP, id="push-whole-body"),
]


@pytest.mark.parametrize(("method", "url", "content_type", "body"), DEEP_BODIES)
def test_100k_deep_json_nesting_is_refused_with_400_and_no_crash(
    http: Scanned, world: World, method: str, url: str, content_type: str, body: bytes
) -> None:
    before = table_state(world)
    headers = {**bearer(world.token("organizer")), "Content-Type": content_type, "If-Match": '"1"'}
    response = http.request(method, url, content=body, headers=headers)
    assert_problem(response, 400)
    assert table_state(world) == before
    http.assert_healthy()


# Typed bodies: every handler that takes a Struct reads it through routes/bodies.py. These once answered
# 500: msgspec raises UnicodeDecodeError and RecursionError, which are no DecodeError.
HOSTILE = "@HOSTILE@"
TYPED_BODIES = [
    pytest.param(
        "participant", "PUT", f"{E}/visits/{G1_VISIT}/feedback", {"rating": 4, "comment": HOSTILE}, id="feedback"
    ),
    pytest.param(
        "organizer", "PUT", f"{E}/questions/overall", {"kind": "text", "texts": {"en": HOSTILE}}, id="question"
    ),
    pytest.param(
        "organizer",
        "POST",
        f"{E}/visits",
        {
            "id": "hostile-visit",
            "title": HOSTILE,
            "starts_at": "2025-12-10T09:00:00+01:00",
            "ends_at": "2025-12-10T10:00:00+01:00",
        },
        id="visit",
    ),
    pytest.param("organizer", "PUT", f"{E}/groups/G1/members", {"account_ids": [HOSTILE]}, id="group-members"),
    pytest.param("organizer", "POST", f"{E}/itinerary/reorder", {"visit_ids": [G1_VISIT, HOSTILE]}, id="reorder"),
    pytest.param("organizer", "PATCH", f"{E}/sites/{G1_SITE}", {"name": HOSTILE}, id="site-patch"),
    pytest.param("organizer", "PATCH", f"{E}/visits/{G1_VISIT}", {"title": HOSTILE}, id="visit-patch"),
]
DEPTH_3000 = b"[" * 3000 + b"]" * 3000
HOSTILE_VALUES = [
    pytest.param(b'"Caf\xc3\xa9 \xff\xfe"', id="invalid-utf8-in-a-field"),
    pytest.param(b'"ok", "unknown": "\xff"', id="invalid-utf8-in-an-ignored-field"),
    pytest.param(DEPTH_3000, id="3000-deep-in-a-field"),
    pytest.param(None, id="3000-deep-whole-body"),
]


@pytest.mark.parametrize("value", HOSTILE_VALUES)
@pytest.mark.parametrize(("role", "method", "url", "template"), TYPED_BODIES)
def test_hostile_typed_body_is_a_400_problem_and_writes_nothing(
    http: Scanned, world: World, role: str, method: str, url: str, template: dict[str, Any], value: bytes | None
) -> None:
    before = table_state(world)
    body = DEPTH_3000 if value is None else msgspec.json.encode(template).replace(b'"' + HOSTILE.encode() + b'"', value)
    token = world.token(role, group="G1") if role == "participant" else world.token(role)
    headers = {**bearer(token), "Content-Type": "application/json", "If-Match": '"v1"'}
    response = http.request(method, url, content=body, headers=headers)
    assert_problem(response, 400)
    assert table_state(world) == before
    http.assert_healthy()


# --- SQL-looking strings --------------------------------------------------------------------------------

# Every query parameter the API documents, with the other parameters a request needs to reach it.
QUERY_PARAMETERS: list[tuple[str, str, dict[str, str]]] = [
    (f"{E}/sites", "lang", {}),
    (f"{E}/sites", "theme", {}),
    (f"{E}/sites", "near", {}),
    (f"{E}/sites/{G1_SITE}", "lang", {}),
    (f"{E}/sites.geojson", "lang", {}),
    (f"{E}/itinerary", "group", {}),
    (f"{E}/itinerary.ics", "group", {}),
    (f"{E}/schedule.xml", "group", {}),
    (PULL_URL, "cursor", {}),
    (PULL_URL, "limit", {}),
    (PULL_URL, "client_id", {}),
    (PULL_URL, "protocol", {}),
    (f"{E}/notes/shared", "visit", {}),
    (f"{E}/notes/shared", "site", {}),
    (f"{E}/notes/shared.csv", "visit", {}),
    (f"{E}/notes/shared.csv", "site", {}),
    (f"{E}/changes", "since", {}),
    (f"{E}/changes", "lang", {"since": "2025-12-01T00:00:00Z"}),
    (f"{E}/changes/delivery", "since", {}),
    (f"{E}/changes/delivery", "lang", {"since": "2025-12-01T00:00:00Z"}),
    (f"{E}/blobs/{'0' * 64}", "w", {}),
    (f"{E}/export.zip", "visit", {}),
]


def test_every_documented_query_parameter_is_probed_with_sql(http: Scanned) -> None:
    """A new query parameter must join QUERY_PARAMETERS, so the SQL probe below keeps covering the whole API."""
    document = http.get("/schema/openapi.json").json()
    documented = {
        (
            path.replace("{event_id}", EVENT_ID).replace("{site_id}", G1_SITE).replace("{sha256}", "0" * 64),
            parameter["name"],
        )
        for path, item in document["paths"].items()
        for operation in item.values()
        if isinstance(operation, dict)
        for parameter in operation.get("parameters", [])
        if parameter["in"] == "query"
    }
    assert documented == {(path, name) for path, name, _ in QUERY_PARAMETERS}


@pytest.mark.parametrize("value", SQL_STRINGS)
@pytest.mark.parametrize(
    ("path", "name", "base"), [pytest.param(*q, id=f"{q[0][len(E) :]}?{q[1]}") for q in QUERY_PARAMETERS]
)
def test_sql_in_a_query_parameter_is_data_not_sql(
    http: Scanned, world: World, path: str, name: str, base: dict[str, str], value: str
) -> None:
    before = table_state(world)
    response = http.get(path, params={**base, name: value}, headers=bearer(world.token("organizer")))
    if response.status_code != 200:
        assert_problem(response, 400)
    assert table_state(world) == before


@pytest.mark.parametrize("value", SQL_STRINGS)
def test_sql_in_a_note_body_is_stored_and_served_verbatim(
    client: TestClient[Litestar], seeded: Seeded, value: str
) -> None:
    http = Scanned(client, [a.token for a in seeded.accounts.values()])
    before = table_state(seeded)
    participant = bearer(seeded.token("participant", group="G1"))
    batch = {
        "client_id": CLIENT_A,
        "protocol": 1,
        "mutations": [note_put(1, uid(1), body=value, share_with_organizers=True)],
    }
    pushed = http.request("POST", PUSH_URL, json=batch, headers=participant).json()
    assert [r["status"] for r in pushed["results"]] == ["applied"]

    after = table_state(seeded)
    assert after.keys() == before.keys()
    assert after["notes"] == before["notes"] + 1
    assert scalar(seeded, "SELECT body FROM notes WHERE id = ?", uid(1)) == value
    pulled = http.get(PULL_URL, headers=participant).json()
    assert [c["data"]["body"] for c in pulled["changes"] if c["entity"] == "note"] == [value]
    shared = http.get(f"{E}/notes/shared", headers=bearer(seeded.token("organizer"))).json()
    assert [n["body"] for n in shared] == [value]


# --- path traversal and odd bytes in ids, over real HTTP ------------------------------------------------

TRAVERSAL_IDS = [
    pytest.param("../../etc/passwd", id="dot-dot-slash"),
    pytest.param("..%2F..%2F..%2Fetc%2Fpasswd", id="encoded-slash"),
    pytest.param("%2e%2e%2f%2e%2e%2fetc%2fpasswd", id="all-encoded"),
    pytest.param("%2e%2e/%2e%2e/etc/passwd", id="encoded-dots"),
    pytest.param("..%5C..%5Cetc%5Cpasswd", id="encoded-backslash"),
    pytest.param("%00", id="nul"),
    pytest.param(f"{G1_SITE}%00.json", id="nul-after-real-id"),
    pytest.param("..%00/etc/passwd", id="nul-in-traversal"),
    pytest.param("%27%3B%20DROP%20TABLE%20notes%3B%20--", id="sql"),
]
ID_PATHS = [
    pytest.param("/api/v1/events/{id}/sites", id="event"),
    pytest.param(E + "/sites/{id}", id="site"),
    pytest.param(E + "/sites/{id}/history", id="site-history"),
    pytest.param(E + "/sites/{id}/visits", id="site-visits"),
    pytest.param(E + "/visits/{id}", id="visit"),
    pytest.param(E + "/visits/{id}/history", id="visit-history"),
]


class LoggedLiveServer(LiveServer):
    """``studyvisit serve`` with its stderr (where the access log goes) kept in a file."""

    def __init__(self, db_path: Path | Seeded, log_path: Path) -> None:
        super().__init__(db_path)
        self.log_path = log_path

    def start(self) -> "LoggedLiveServer":
        with self.log_path.open("wb") as log, pytest.MonkeyPatch.context() as patch:
            patch.setattr(subprocess, "Popen", functools.partial(subprocess.Popen, stderr=log))
            super().start()
        return self

    def log(self) -> str:
        return self.log_path.read_text("utf-8", "replace")


@pytest.fixture(scope="module")
def live(world: World) -> Iterator[LoggedLiveServer]:
    server = LoggedLiveServer(world, world.path.with_name("server-stderr.log")).start()
    yield server
    server.stop()


class RawResponse:
    """What came back on a socket: a status and the bytes, or nothing if the server closed the connection."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        head, _, self.body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1]) if lines[0].startswith("HTTP/") else None
        self.headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}

    @property
    def text(self) -> str:
        return self.data.decode("utf-8", "replace")


def raw_request(server: LiveServer, request: bytes) -> RawResponse:
    """Send bytes exactly as given (no client normalises the path), read until the server closes."""
    received = b""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        try:
            sock.sendall(request)
            while chunk := sock.recv(65536):
                received += chunk
        except (ConnectionResetError, BrokenPipeError):
            pass  # a server may refuse a request by closing the connection
    return RawResponse(received)


def raw_get(server: LiveServer, target: bytes, headers: list[bytes]) -> RawResponse:
    head = [b"GET " + target + b" HTTP/1.1", b"Host: 127.0.0.1", *headers, b"Connection: close"]
    return raw_request(server, b"\r\n".join(head) + b"\r\n\r\n")


def assert_live_server_healthy(server: LiveServer) -> None:
    assert httpx.get(server.url + "/health", timeout=10).json() == {"status": "ok"}


@pytest.mark.parametrize("path", ID_PATHS)
@pytest.mark.parametrize("bad_id", TRAVERSAL_IDS)
def test_traversal_in_an_id_is_a_problem_never_file_content(
    live: LoggedLiveServer, world: World, path: str, bad_id: str
) -> None:
    before = table_state(world)
    token = world.token("organizer")
    response = raw_get(live, path.format(id=bad_id).encode(), [b"Authorization: Bearer " + token.encode()])
    assert response.status in (400, 404), response.text[:500]
    assert response.headers["content-type"].startswith(PROBLEM_MEDIA_TYPE)
    assert msgspec.json.decode(response.body)["status"] == response.status
    for marker in PASSWD_MARKERS:
        assert marker not in response.text
    assert_no_leak(response.text, world.secrets(), f"the response to {path.format(id=bad_id)}")
    assert table_state(world) == before


def test_raw_nul_byte_in_the_request_line_is_refused_by_the_http_parser(live: LoggedLiveServer, world: World) -> None:
    response = raw_get(
        live, f"{E}/sites/x\x00y".encode(), [b"Authorization: Bearer " + world.token("organizer").encode()]
    )
    assert response.status in (None, 400), response.text[:500]
    assert_live_server_healthy(live)


# --- header floods over real HTTP -----------------------------------------------------------------------

KIB = 1024
HEADER_FLOODS = [
    pytest.param([b"X-Padding: " + b"a" * (64 * KIB)], id="one-64KiB-value"),
    pytest.param([b"X-Padding-%d: %d" % (i, i) for i in range(200)], id="200-headers"),
    pytest.param([b"Cookie: " + b"c" * (64 * KIB)], id="64KiB-cookie"),
    pytest.param([b"X-Padding: " + b"a" * (1024 * KIB)], id="one-1MiB-value"),
]


@pytest.mark.parametrize("flood", HEADER_FLOODS)
@pytest.mark.parametrize("authorization", ["none", "64KiB-token", "valid"])
def test_header_flood_is_never_a_server_error_and_the_server_stays_up(
    live: LoggedLiveServer, world: World, flood: list[bytes], authorization: str
) -> None:
    auth = {
        "none": [],
        "64KiB-token": [b"Authorization: Bearer sv_" + b"t" * (64 * KIB)],
        "valid": [b"Authorization: Bearer " + world.token("organizer").encode()],
    }[authorization]
    response = raw_get(live, b"/api/v1/me", [*auth, *flood])
    # None: the HTTP parser refused the request by closing the connection.
    if authorization == "valid":
        assert response.status is None or response.status < 500, response.text[:500]
    else:
        assert response.status is None or 400 <= response.status < 500, response.text[:500]
    assert_no_leak(response.text, world.secrets(), "a response to a header flood")
    assert_live_server_healthy(live)


# --- tokens of other events and roles, and tokens that are almost right ---------------------------------

TURIN_ENDPOINTS = [
    pytest.param("GET", E, id="event"),
    pytest.param("GET", f"{E}/sites", id="sites"),
    pytest.param("GET", f"{E}/sites/{G1_SITE}", id="site"),
    pytest.param("GET", f"{E}/visits/{G1_VISIT}", id="visit"),
    pytest.param("GET", f"{E}/itinerary", id="itinerary"),
    pytest.param("GET", f"{E}/itinerary.ics", id="calendar"),
    pytest.param("GET", f"{E}/schedule.xml", id="frab"),
    pytest.param("GET", PULL_URL, id="pull"),
    pytest.param("POST", PUSH_URL, id="push"),
    pytest.param("PATCH", f"{E}/sites/{G1_SITE}", id="site-patch"),
    pytest.param("GET", f"{E}/feedback.csv", id="feedback-csv"),
    pytest.param("GET", f"{E}/notes/shared", id="shared-notes"),
    pytest.param("DELETE", f"{E}/questions/overall", id="question-delete"),
]


@pytest.mark.parametrize("role", ["organizer", "participant"])
@pytest.mark.parametrize(("method", "url"), TURIN_ENDPOINTS)
def test_token_of_another_event_finds_nothing_in_turin(
    http: Scanned, world: World, method: str, url: str, role: str
) -> None:
    before = table_state(world)
    headers = {**bearer(world.other_token(role)), "If-Match": '"1"'}
    response = http.request(method, url, headers=headers, json={"name": "taken over"})
    assert_problem(response, 404)
    assert table_state(world) == before


def test_token_of_another_event_still_names_its_own_account(http: Scanned, world: World) -> None:
    me = http.get("/api/v1/me", headers=bearer(world.other_token("organizer"))).json()
    assert (me["id"], me["event_id"]) == ("lyon-organizer", OTHER_EVENT_ID)


ORGANIZER_ENDPOINTS = [
    pytest.param("GET", f"{E}/export.zip", None, id="export-zip"),
    pytest.param("GET", f"{E}/feedback.csv", None, id="feedback-csv"),
    pytest.param("GET", f"{E}/notes/shared", None, id="shared-notes"),
    pytest.param("GET", f"{E}/notes/shared.csv", None, id="shared-notes-csv"),
    pytest.param("PUT", f"{E}/questions/overall", {"kind": "rating", "texts": {"en": "?"}}, id="question-put"),
    pytest.param("DELETE", f"{E}/questions/overall", None, id="question-delete"),
    pytest.param("POST", f"{E}/visits/{G1_VISIT}/feedback/close", None, id="feedback-close"),
    pytest.param("POST", f"{E}/visits/{G1_VISIT}/feedback/open", None, id="feedback-open"),
    pytest.param("PUT", f"{E}/groups/G1/members", {"account_ids": []}, id="group-members"),
    pytest.param("POST", f"{E}/history/1/revert", None, id="revert"),
    pytest.param("GET", f"{E}/itinerary/check", None, id="itinerary-check"),
    pytest.param("POST", f"{E}/itinerary/reorder", {"visit_ids": [G1_VISIT]}, id="reorder"),
]


@pytest.mark.parametrize("role", ["participant", "host"])
@pytest.mark.parametrize(("method", "url", "body"), ORGANIZER_ENDPOINTS)
def test_participant_or_host_token_on_an_organizer_endpoint_is_forbidden(
    http: Scanned, world: World, method: str, url: str, body: Any, role: str
) -> None:
    before = table_state(world)
    response = http.request(method, url, headers=bearer(world.token(role)), json=body)
    assert_problem(response, 403)
    assert table_state(world) == before


def near_misses(token: str) -> list[tuple[str, str]]:
    """Tokens that share most of their characters with a real one."""
    half = len(token) // 2
    return [
        ("missing-last-char", token[:-1]),
        ("missing-first-char", token[1:]),
        ("first-half", token[:half]),
        ("second-half", token[half:]),
        ("extra-char-after", token + "A"),
        ("extra-char-before", "A" + token),
        ("last-char-changed", token[:-1] + ("B" if token[-1] != "B" else "C")),
        ("upper-cased", token.upper()),
        ("prefix-only", "sv_"),
        ("its-sha256", sha256_hex(token)),
    ]


NEAR_MISS_KINDS = [kind for kind, _ in near_misses("sv_example-token")]


@pytest.mark.parametrize("kind", NEAR_MISS_KINDS)
def test_token_that_is_almost_a_real_one_is_unauthorized(http: Scanned, world: World, kind: str) -> None:
    token = dict(near_misses(world.token("organizer")))[kind]
    response = http.get(f"{E}/sites", headers=bearer(token))
    assert_problem(response, 401)
    assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.sqlite_only  # traces SQLite's statements and reads its file (PostgreSQL: the same storage code binds the hash)
def test_token_is_looked_up_by_its_hash_so_comparing_leaks_no_timing(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite compares SHA-256 digests, not the token: how long a comparison takes says nothing about the token.

    Every statement the server runs is traced; the account lookup must bind the token's hash, and the token
    itself must never reach SQL (nor be stored: the database files hold the hash only).
    """
    statements: list[str] = []
    connect = sqlite3.connect

    def traced_connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        conn = connect(*args, **kwargs)
        conn.set_trace_callback(statements.append)
        return conn

    monkeypatch.setattr(sqlite3, "connect", traced_connect)
    token, wrong = world.token("organizer"), world.token("organizer")[:-1]
    with TestClient(app=make_app(world)) as client:
        assert client.get("/api/v1/me", headers=bearer(token)).status_code == 200
        assert client.get("/api/v1/me", headers=bearer(wrong)).status_code == 401

    lookups = [s for s in statements if "FROM accounts" in s and "token_hash" in s]
    assert any(sha256_hex(token) in s for s in lookups), lookups
    assert any(sha256_hex(wrong) in s for s in lookups), lookups
    assert not [s for s in statements if token in s or wrong in s]
    stored = b"".join(p.read_bytes() for p in world.path.parent.glob(world.path.name + "*"))
    assert token.encode() not in stored
    assert sha256_hex(token).encode() in stored


def test_auth_code_never_compares_a_token_with_an_operator() -> None:
    """``==`` on secrets stops at the first differing byte; tokens are hashed and looked up instead."""
    root = Path(__file__).resolve().parent.parent / "server"
    for module in ("auth.py", "storage/accounts.py"):
        tree = ast.parse((root / module).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Compare):
                names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
                names |= {n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)}
                assert not names & {"token", "token_hash"}, f"{module}:{node.lineno} compares a token directly"


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(
            ImproperlyConfiguredException("'user' is not defined in scope, install an AuthMiddleware"),
            id="improperly-configured",
        ),
        pytest.param(
            HTTPException(status_code=500, detail="sqlite3.OperationalError at /srv/studyvisit/db.py"), id="http-500"
        ),
    ],
)
def test_server_error_raised_inside_the_framework_reveals_nothing_of_the_server(error: HTTPException) -> None:
    """A 5xx tells the client to retry, never what broke: the framework's own 5xx go through the same door."""

    @get("/boom", sync_to_thread=False)
    def boom() -> None:
        raise error

    with TestClient(app=Litestar([boom], exception_handlers=EXCEPTION_HANDLERS, logging_config=None)) as client:
        response = client.get("/boom")
    assert assert_problem(response, 500)["type"] == PROBLEM + "internal-error"
    assert error.detail not in response.text


# --- out-of-range values --------------------------------------------------------------------------------

OUT_OF_RANGE = [
    pytest.param("POST", f"{E}/history/{2**63}/revert", id="history-id-2**63"),
    pytest.param("POST", f"{E}/history/{10**30}/revert", id="history-id-10**30"),
    pytest.param("GET", f"{E}/sites/{G1_SITE}/history?x={2**64}", id="unknown-huge-query"),
    pytest.param("GET", f"{PULL_URL}?limit={2**64}", id="pull-limit-2**64"),
    pytest.param("GET", f"{PULL_URL}?protocol={2**64}", id="pull-protocol-2**64"),
    pytest.param("GET", f"{E}/changes?since=0001-01-01T00:00:00%2B14:00", id="since-before-year-1-in-utc"),
    pytest.param("GET", f"{E}/changes?since=9999-12-31T23:59:59-14:00", id="since-after-year-9999-in-utc"),
    pytest.param("GET", f"{E}/sites?near=1e400,1e400", id="near-overflowing-float"),
]


@pytest.mark.parametrize(("method", "url"), OUT_OF_RANGE)
def test_out_of_range_number_or_time_is_never_a_server_error(
    http: Scanned, world: World, method: str, url: str
) -> None:
    before = table_state(world)
    response = http.request(method, url, headers=bearer(world.token("organizer")))
    if response.status_code != 200:
        assert_problem(response, 400, 404)
    assert table_state(world) == before


# --- what the logs keep ---------------------------------------------------------------------------------


def authenticated_traffic(world: World) -> list[tuple[str, str, dict[str, str]]]:
    """Requests with real, wrong and foreign tokens, some of which fail: (method, url, headers)."""
    organizer, participant = world.token("organizer"), world.token("participant", group="G1")
    return [
        ("GET", "/api/v1/me", bearer(organizer)),
        ("GET", f"{E}/sites", bearer(participant)),
        ("GET", f"{PULL_URL}?client_id={CLIENT_A}", bearer(participant)),
        ("GET", f"{E}/feedback.csv", bearer(participant)),
        ("GET", f"{E}/sites", bearer(organizer[:-1])),
        ("GET", f"{E}/sites", bearer(sha256_hex(organizer))),
        ("GET", f"{E}/sites", bearer(world.other_token("organizer"))),
        ("GET", f"{E}/sites/..%2F..%2Fetc%2Fpasswd", bearer(organizer)),
        ("GET", "/api/v1/me", {"Authorization": organizer}),
    ]


def test_access_log_never_holds_a_token_or_its_hash(
    http: Scanned, world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    for method, url, headers in authenticated_traffic(world):
        http.request(method, url, headers=headers)
    access = [msgspec.json.decode(r.getMessage()) for r in caplog.records if r.name == "studyvisit.access"]
    assert access[0]["account"] == world.first("organizer").id
    assert_no_leak(caplog.text, world.secrets(), "the logs")


def test_access_log_records_the_status_each_client_got(
    http: Scanned, world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """A refused token is a 401 in the log and the metrics too: logged as 500, it would page someone."""
    caplog.set_level(logging.INFO, logger="studyvisit.access")
    token = world.token("organizer")
    sent = [
        http.get("/api/v1/me", headers=bearer(token)),
        http.get("/api/v1/me", headers=bearer(token[:-1])),
        http.get("/api/v1/me"),
        http.get(f"{E}/feedback.csv", headers=bearer(world.token("participant"))),
    ]
    logged = [msgspec.json.decode(r.getMessage()) for r in caplog.records if r.name == "studyvisit.access"]
    assert [line["status"] for line in logged] == [r.status_code for r in sent] == [200, 401, 401, 403]
    metrics = http.get("/metrics").text
    assert 'route="/api/v1/me",status="500"' not in metrics


def test_access_log_records_requests_to_unknown_paths(
    http: Scanned, world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """Probes for ``../../etc/passwd`` and made-up paths are what an operator most wants to see."""
    caplog.set_level(logging.INFO, logger="studyvisit.access")
    http.get(f"{E}/sites/..%2F..%2Fetc%2Fpasswd", headers=bearer(world.token("organizer")))
    http.get("/wp-login.php")
    logged = [msgspec.json.decode(r.getMessage()) for r in caplog.records if r.name == "studyvisit.access"]
    assert [(line["route"], line["status"]) for line in logged] == [("unmatched", 404), ("unmatched", 404)]


def access_lines(log: str) -> list[dict[str, Any]]:
    """The access-log lines of the server's stderr (one JSON object each)."""
    return [msgspec.json.decode(line) for line in log.splitlines() if line.startswith('{"method"')]


def test_live_server_stderr_never_holds_a_token_or_its_hash(live: LoggedLiveServer, world: World) -> None:
    sentinel = f"/api/v1/events/log-sentinel-{time.monotonic_ns()}/sites"
    with httpx.Client(base_url=live.url, timeout=10) as client:
        for method, url, headers in authenticated_traffic(world):
            assert_response_clean(client.request(method, url, headers=headers), world.secrets())
        client.get(sentinel, headers=bearer(world.token("organizer")))
    # The worker writes a request's access line after answering it; requests on one connection are
    # handled in order, so once the last one is logged, all are.
    deadline = time.monotonic() + 10
    while sentinel not in live.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    log = live.log()
    assert sentinel in log, log[-2000:]
    assert any(line["account"] == world.first("organizer").id for line in access_lines(log))
    for secret in world.secrets():
        assert secret not in log, "a token or token hash reached the server's stderr"
    for marker in TRACE_MARKERS:
        assert all(marker not in str(line) for line in access_lines(log))
