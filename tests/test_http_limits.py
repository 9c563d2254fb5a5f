"""Server limits, tried with raw sockets against a live server: header size and count, slow clients,
keep-alive, connections and requests in flight. Timeouts are small settings, not long sleeps."""

import http.client
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import EVENT_ID, LiveServer, Seeded, make_app
from litestar.testing import TestClient

FAST = {
    "STUDYVISIT_HEADER_TIMEOUT_SECONDS": "0.5",
    "STUDYVISIT_BODY_TIMEOUT_SECONDS": "0.5",
    "STUDYVISIT_KEEP_ALIVE_TIMEOUT_SECONDS": "0.5",
}
# Well past the 0.5 s settings, and short of uvicorn's own 5 s keep-alive default, so that a server
# which ignores the settings (or never drops a slow client) fails the test.
SOCKET_TIMEOUT = 4


@pytest.fixture
def server(seeded: Seeded) -> Iterator[LiveServer]:
    live = LiveServer(seeded, env=FAST).start()
    yield live
    live.stop()


def connect(server: LiveServer) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=SOCKET_TIMEOUT)


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection; fails if it never does."""
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data
        except TimeoutError:
            pytest.fail(f"the server kept the connection open for {SOCKET_TIMEOUT} s; got {data[:200]!r}")
        if not chunk:
            return data
        data += chunk


def send_all(sock: socket.socket, data: bytes) -> bool:
    """Send, as far as the server lets us; False when it closed the connection first."""
    try:
        sock.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        return False
    return True


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def rss_kib(server: LiveServer) -> int:
    assert server.process is not None
    status = Path(f"/proc/{server.process.pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1])


def head(path: str, fields: list[str]) -> bytes:
    return (f"GET {path} HTTP/1.1\r\nHost: localhost\r\n" + "".join(f + "\r\n" for f in fields) + "\r\n").encode()


@pytest.mark.parametrize(
    ("fields", "status"),
    [
        pytest.param([f"X-Field-{i}: v" for i in range(20_000)], 431, id="20000-fields"),
        pytest.param(["a: b"] * 100, 431, id="101-fields"),
        pytest.param(["X-Long: " + "x" * 40_000], 431, id="one-40KB-field"),
        pytest.param(["a: b"] * 98 + ["Connection: close"], 200, id="100-fields"),
    ],
)
def test_requests_past_the_header_limits_are_refused_with_431_and_closed(
    server: LiveServer, fields: list[str], status: int
) -> None:
    with connect(server) as sock:
        send_all(sock, head("/health", fields))
        response = read_until_closed(sock)
    assert status_of(response) == status, response[:300]
    if status == 431:
        assert b"content-type: application/problem+json" in response
        assert b"urn:studyvisit:problem:header-fields-too-large" in response


def test_unfinished_huge_headers_get_the_connection_closed_and_memory_stays_bounded(server: LiveServer) -> None:
    before = rss_kib(server)
    chunk = b"a" * 65536
    for _ in range(4):
        with connect(server) as sock:
            sent = send_all(sock, b"GET /health HTTP/1.1\r\nHost: localhost\r\nX-Huge: ")
            for _ in range(256):  # 16 MiB of a header that never ends
                sent = sent and send_all(sock, chunk)
            response = read_until_closed(sock)
        assert response == b"" or status_of(response) == 431, response[:200]
    # 64 MiB were sent; the server held at most a few of its 32 KiB limits of it.
    assert rss_kib(server) - before < 32 * 1024
    with connect(server) as sock:  # and it still serves
        send_all(sock, head("/health", ["Connection: close"]))
        assert status_of(read_until_closed(sock)) == 200


@pytest.mark.parametrize(
    "sent",
    [
        pytest.param(b"", id="nothing"),
        pytest.param(b"GET /health HTTP/1.1\r\nHost: loc", id="half-a-head"),
    ],
)
def test_a_client_slow_to_send_its_head_is_dropped_with_408(server: LiveServer, sent: bytes) -> None:
    with connect(server) as sock:
        send_all(sock, sent)
        response = read_until_closed(sock)
    assert status_of(response) == 408
    assert b"urn:studyvisit:problem:request-timeout" in response


def test_a_client_slow_to_send_its_body_is_dropped_and_that_is_no_server_error(seeded: Seeded, tmp_path: Path) -> None:
    server = LiveServer(seeded, env=FAST, log_path=tmp_path / "server.log").start()
    token = seeded.token("participant")
    with connect(server) as sock:
        send_all(
            sock,
            (
                f"POST /api/v1/events/{EVENT_ID}/sync/push HTTP/1.1\r\nHost: localhost\r\n"
                f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
                '{"client_id": '
            ).encode(),
        )
        response = read_until_closed(sock)
    server.stop()
    assert b"200 OK" not in response
    assert server.log_path is not None
    log = server.log_path.read_text(encoding="utf-8")
    assert "Traceback" not in log
    assert (
        '"route":"/api/v1/events/{event_id}/sync/push","path":"/api/v1/events/turin-sse-2025/sync/push","status":400'
        in log
    )


def test_an_idle_keep_alive_connection_is_closed_after_the_keep_alive_timeout(server: LiveServer) -> None:
    with connect(server) as sock:
        send_all(sock, head("/health", []))
        first = http.client.HTTPResponse(sock)
        first.begin()
        assert first.status == 200
        first.read()
        assert not first.will_close
        assert read_until_closed(sock) == b""


def test_connections_past_the_limit_get_503_at_once(seeded: Seeded) -> None:
    live = LiveServer(seeded, env={"STUDYVISIT_MAX_CONNECTIONS": "2"}).start()
    try:
        open_ones = [connect(live) for _ in range(2)]
        for sock in open_ones:  # each answered, and kept open
            send_all(sock, head("/health", []))
            response = http.client.HTTPResponse(sock)
            response.begin()
            assert response.status == 200
            response.read()
        with connect(live) as third:
            refused = read_until_closed(third)
        assert status_of(refused) == 503
        assert b"retry-after: 1" in refused
        for sock in open_ones:
            sock.close()
    finally:
        live.stop()


def test_requests_past_the_concurrency_limit_get_503(seeded: Seeded) -> None:
    live = LiveServer(seeded, env={"STUDYVISIT_MAX_CONCURRENT_REQUESTS": "1"}).start()
    token = seeded.token("participant")
    try:
        with connect(live) as busy:
            # A request in flight: its handler waits for a body that has not all come.
            send_all(
                busy,
                (
                    f"POST /api/v1/events/{EVENT_ID}/sync/push HTTP/1.1\r\nHost: localhost\r\n"
                    f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{"
                ).encode(),
            )
            with connect(live) as other:
                send_all(other, head("/health", []))
                refused = read_until_closed(other)
            assert status_of(refused) == 503
            assert b"urn:studyvisit:problem:service-unavailable" in refused
        # Once the request in flight has ended (its task finishes just after the client leaves), served again.
        statuses: list[int] = []
        while 200 not in statuses and len(statuses) < 50:
            time.sleep(0.05 * len(statuses))
            with connect(live) as after:
                send_all(after, head("/health", ["Connection: close"]))
                statuses.append(status_of(read_until_closed(after)))
        assert statuses[-1] == 200, statuses
    finally:
        live.stop()


# The test client adds five fields of its own (host, accept, accept-encoding, connection, user-agent).
@pytest.mark.parametrize(("count", "status"), [(96, 431), (95, 200)])
def test_the_header_count_limit_holds_under_any_asgi_server(seeded: Seeded, count: int, status: int) -> None:
    with TestClient(app=make_app(seeded)) as client:
        response = client.get("/health", headers=[(f"x-field-{i}", "v") for i in range(count)])
    assert response.status_code == status
    if status == 431:
        assert response.json()["type"] == "urn:studyvisit:problem:header-fields-too-large"


def test_a_phone_asking_again_at_once_on_its_connection_is_not_counted_twice(seeded: Seeded) -> None:
    # With a limit of one request in flight, one client asking one request after another on a kept-alive
    # connection is always within it: an answered request stops counting when its answer is sent, not
    # when its handler's task is done (a moment later, when the next request may already be here).
    live = LiveServer(seeded, env={"STUDYVISIT_MAX_CONCURRENT_REQUESTS": "1"}).start()
    headers = {"Authorization": f"Bearer {seeded.token('participant')}"}
    try:
        connection = http.client.HTTPConnection("127.0.0.1", live.port, timeout=SOCKET_TIMEOUT)
        statuses: list[int] = []
        for _ in range(300):
            connection.request("GET", f"/api/v1/events/{EVENT_ID}/sites", headers=headers)
            response = connection.getresponse()
            response.read()
            statuses.append(response.status)
            if response.will_close:
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", live.port, timeout=SOCKET_TIMEOUT)
        connection.close()
        assert statuses == [200] * 300, {s: statuses.count(s) for s in set(statuses)}
    finally:
        live.stop()
