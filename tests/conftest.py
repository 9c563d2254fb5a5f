"""Shared fixtures: a fresh database file per test, the app in-process, and a real server on a free port."""

import os
import shutil
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

from schemas.accounts import NewAccount
from server.app import create_app
from server.fixtures import DEMO_FIXTURE, load_fixture, read_fixture
from server.settings import Settings
from server.storage.db import Database, migrate

# The browser fixtures (web, browser, context) for tests/test_web_*.py.
pytest_plugins = ["tests.browser_app"]

EVENT_ID = "turin-sse-2025"


class Seeded:
    """A database holding the Turin demo event, with every account's token."""

    def __init__(self, path: Path, accounts: list[NewAccount]) -> None:
        self.path = path
        self.accounts = {a.id: a for a in accounts}

    def first(self, role: str, *, site: str | None = None, group: str | None = None) -> NewAccount:
        """The first account with this role (and hosted site or group)."""
        return next(
            a
            for a in self.accounts.values()
            if a.role == role and (site is None or site in a.site_ids) and (group is None or a.group_id == group)
        )

    def token(self, role: str, **kwargs: str) -> str:
        return self.first(role, **kwargs).token

    def headers(self, role: str, **kwargs: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(role, **kwargs)}"}


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "studyvisit.db"


@pytest.fixture
def db(db_path: Path, request: pytest.FixtureRequest) -> Iterator[Database]:
    """A fresh, migrated database file (the seeded one, when the test also asks for ``seeded``)."""
    if "seeded" in request.fixturenames:
        request.getfixturevalue("seeded")  # copy the seeded file in place before opening it
    database = Database(db_path)
    migrate(database)
    yield database
    database.close()


@pytest.fixture(scope="session")
def seeded_template(tmp_path_factory: pytest.TempPathFactory) -> Seeded:
    """The Turin demo event loaded once per test session, to be copied for each test."""
    path = tmp_path_factory.mktemp("template") / "studyvisit.db"
    database = Database(path)
    migrate(database)
    accounts = load_fixture(database, read_fixture(DEMO_FIXTURE))
    database.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    database.close()
    return Seeded(path, accounts)


@pytest.fixture
def seeded(seeded_template: Seeded, db_path: Path) -> Seeded:
    """A fresh database file of this test's own, holding the Turin demo event."""
    shutil.copyfile(seeded_template.path, db_path)
    return Seeded(db_path, list(seeded_template.accounts.values()))


def make_app(path: Path, **settings: object) -> Litestar:
    return create_app(Settings.from_env(db_path=path, **settings))


@pytest.fixture
def client(seeded: Seeded) -> Iterator[TestClient[Litestar]]:
    """The app in-process, over the seeded database."""
    with TestClient(app=make_app(seeded.path)) as test_client:
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
        db_path: Path,
        workers: int = 1,
        *,
        prefix: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
        ready_path: str = "/health",
        log_path: Path | None = None,
    ) -> None:
        self.db_path = db_path
        self.workers = workers
        self.prefix = prefix  # e.g. a command that drops privileges before the server starts
        self.env = env or {}
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
        cmd = [*self.prefix, sys.executable, "-m", "server.cli", "serve", "--db", str(self.db_path)]
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
    server = LiveServer(seeded.path).start()
    yield server
    server.stop()
