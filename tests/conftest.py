"""Shared fixtures: a fresh database per test, the app in-process, and a real server on a free port.

`--backend postgres` (or STUDYVISIT_TEST_BACKEND=postgres) runs them on the machine's PostgreSQL
(STUDYVISIT_TEST_POSTGRES_URL): each test gets a database of its own, made from a seeded template
and dropped after it. Tests that read SQLite's file themselves are marked `sqlite_only`; on
PostgreSQL they are deselected (they test SQLite, which the SQLite run covers).
"""

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from litestar import Litestar
from litestar.testing import TestClient

from server.app import create_app
from server.fixtures import DEMO_FIXTURE, load_fixture, read_fixture
from server.settings import Settings
from server.storage.db import Database, migrate
from tests.databases import PG_DATABASES, Seeded, copy_of, empty, fresh_pg, pg_demo

# The browser fixtures (web, browser, context) for tests/test_web_*.py.
pytest_plugins = ["tests.browser_app"]

EVENT_ID = "turin-sse-2025"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--backend",
        choices=("sqlite", "postgres"),
        default=os.environ.get("STUDYVISIT_TEST_BACKEND", "sqlite"),
        help="the database the server's fixtures run on",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "sqlite_only: reads or breaks SQLite's own file (deselected on PostgreSQL)")
    config.addinivalue_line("markers", "both_backends: CI runs it on SQLite, then again with --backend postgres")


# The modules that hold the suite's longest tests (a benchmark run, servers killed and restarted, a
# browser per module), measured with --durations: they run first, so that with `-n 2` the last
# minutes are many short tests that even out both workers, not one long test that leaves the other
# idle. Only the order of whole modules changes (a module's tests keep theirs, and so their shared
# fixtures); a module missing from the list keeps its place after these.
SLOW_FIRST = (
    "test_bench_smoke.py",
    "test_sync_e2e.py",
    "test_durability.py",
    "test_sync_convergence.py",
    "test_fixture_reload.py",
    "test_pg_servers.py",
    "test_metrics_workers.py",
    "test_readme_tour.py",
    "test_upload_faults.py",
    "test_pg_feed_servers.py",
    "test_push_crash.py",
    "test_web_notes.py",
    "test_web_organizer_feedback.py",
    "test_web_participant.py",
    "test_web_a11y.py",
    "test_pg_blobs.py",
    "test_web_feedback.py",
    "test_web_host.py",
    "test_web_map.py",
    "test_web_photos.py",
    "test_web_programme.py",
    "test_web_install.py",
    "test_web_static.py",
    "test_preview_memory.py",
    "test_read_cache.py",
    "test_cli.py",
    "test_blobs.py",
)


def _slow_rank(item: pytest.Item) -> int:
    name = item.path.name
    return SLOW_FIRST.index(name) if name in SLOW_FIRST else len(SLOW_FIRST)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    items.sort(key=_slow_rank)  # stable: every worker gets the same order, as xdist requires
    if config.getoption("--backend") != "postgres":
        return
    kept = [item for item in items if item.get_closest_marker("sqlite_only") is None]
    config.hook.pytest_deselected(items=[item for item in items if item.get_closest_marker("sqlite_only")])
    items[:] = kept


def pytest_sessionfinish(session: pytest.Session) -> None:
    PG_DATABASES.close()  # waits for the last tests' databases to be dropped, and fails if one was not


def on_postgres(config: pytest.Config) -> bool:
    return config.getoption("--backend") == "postgres"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # A test that asks for `blob_store` runs on each store its backend has: PostgreSQL keeps blobs
    # in its data directory or in the database itself; SQLite only in the directory.
    if "blob_store" in metafunc.fixturenames:
        stores = ["directory", "database"] if on_postgres(metafunc.config) else ["directory"]
        metafunc.parametrize("blob_store", stores)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "studyvisit.db"


@pytest.fixture
def db(db_path: Path, request: pytest.FixtureRequest) -> Iterator[Database]:
    """A fresh, migrated database (the seeded one, when the test also asks for ``seeded``)."""
    if on_postgres(request.config):
        if "seeded" in request.fixturenames:
            database = request.getfixturevalue("seeded").store()
        else:
            database = fresh_pg(db_path, request, template=None).store()
        yield database  # type: ignore[misc]  # the same unit-of-work interface, on PostgreSQL
        database.close()
        return
    if "seeded" in request.fixturenames:
        request.getfixturevalue("seeded")  # copy the seeded file in place before opening it
    database = Database(db_path)
    migrate(database)
    yield database
    database.close()


@pytest.fixture(scope="session")
def seeded_template(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Seeded]:
    """The Turin demo event loaded once per test session, to be copied for each test."""
    path = tmp_path_factory.mktemp("template") / "studyvisit.db"
    if on_postgres(request.config):
        with pg_demo(path, "sv_template") as template:
            yield template
        return
    database = Database(path)
    migrate(database)
    accounts = load_fixture(database, read_fixture(DEMO_FIXTURE))
    database.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    database.close()
    yield Seeded(path, accounts)


@pytest.fixture
def seeded(seeded_template: Seeded, db_path: Path, request: pytest.FixtureRequest) -> Seeded:
    """A fresh database of this test's own, holding the Turin demo event."""
    return copy_of(seeded_template, db_path, request)


@pytest.fixture
def blank(db_path: Path, request: pytest.FixtureRequest) -> Seeded:
    """A fresh database of this test's own with nothing in it yet, on the engine the run is on."""
    return empty(db_path, request)


def make_app(where: Path | Seeded, **settings: object) -> Litestar:
    """The app over a SQLite file, or over a seeded database of either engine."""
    chosen = where.settings() if isinstance(where, Seeded) else {"db_path": where}
    return create_app(Settings.from_env(**{**chosen, **settings}))


@pytest.fixture
def client(seeded: Seeded) -> Iterator[TestClient[Litestar]]:
    """The app in-process, over the seeded database."""
    with TestClient(app=make_app(seeded)) as test_client:
        yield test_client


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        # As uvicorn binds: a port whose old connections linger in TIME_WAIT is free, a listener is not.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


class PortTakenError(RuntimeError):
    """The server's port was taken by another process before the server could bind it."""


class LiveServer:
    """``studyvisit serve`` in a child process, on a free local port."""

    def __init__(
        self,
        db_path: Path | Seeded,
        workers: int = 1,
        *,
        prefix: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
        ready_path: str = "/health",
        log_path: Path | None = None,
    ) -> None:
        seeded = db_path if isinstance(db_path, Seeded) else None
        self.db_path = seeded.path if seeded else db_path
        self.database_url = seeded.url if seeded else ""
        self.workers = workers
        self.prefix = prefix  # e.g. a command that drops privileges before the server starts
        self.env = {**(seeded.env() if seeded else {}), **(env or {})}
        self.ready_path = ready_path
        self.log_path = log_path  # where its stderr (the access log) goes, when given
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> "LiveServer":
        if self.process is not None:
            # A restart keeps its port (clients retry the same URL); the killed server's processes
            # may hold it for a moment longer, so there is nothing to check beforehand.
            return self._start(check_port=False)
        # free_port() cannot reserve the port: another test's server may bind it first. `serve` then
        # exits at once (it checks the port before anything else), and a fresh port is tried.
        for _ in range(3):
            try:
                return self._start()
            except PortTakenError:
                self.port = free_port()
                self.url = f"http://127.0.0.1:{self.port}"
        return self._start()

    def _start(self, check_port: bool = True) -> "LiveServer":
        if check_port and not _port_free(self.port):  # taken already: its answers would not be ours
            raise PortTakenError(self.port)
        where = ["--database-url", self.database_url] if self.database_url else ["--db", str(self.db_path)]
        cmd = [*self.prefix, sys.executable, "-m", "server.cli", "serve", *where]
        cmd += ["--port", str(self.port), "--workers", str(self.workers)]
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        stderr = self.log_path.open("ab") if self.log_path else None
        self.process = subprocess.Popen(cmd, start_new_session=True, env=env, stderr=stderr)
        if stderr is not None:
            stderr.close()  # the child has its own copy
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                if check_port and not _port_free(self.port):
                    raise PortTakenError(self.port)
                raise RuntimeError(f"server exited with {self.process.returncode}")
            try:
                if httpx.get(self.url + self.ready_path, timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.1)
        self.stop()  # never left running behind a failed test
        raise RuntimeError("server did not start within 30 s")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, sig)
            self.process.wait(timeout=30)


@pytest.fixture
def live_server(seeded: Seeded) -> Iterator[LiveServer]:
    """A real server (uvicorn, one worker) over the seeded database."""
    server = LiveServer(seeded).start()
    yield server
    server.stop()
