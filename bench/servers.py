"""Starting and stopping the servers under test, and reading their peak memory."""

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Generator
from pathlib import Path
from types import TracebackType

START_TIMEOUT_S = 60.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """A uvicorn server in its own process group, on a free local port."""

    def __init__(
        self,
        name: str,
        command: list[str],
        health_path: str,
        log_dir: Path,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        # Its output (the server's access log among it) goes to a file, as a deployment's would, not to a terminal.
        self.log_path = log_dir / f"{name}-server.log"
        self.port = free_port()
        self.command = [*command, "--port", str(self.port)]
        self.health_path = health_path
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.cwd = cwd
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "Server":
        """Start the process and wait until it answers its health path."""
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command, start_new_session=True, env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=self.cwd
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} server exited with {self.process.returncode}: {self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + self.health_path, timeout=1) as response:
                    if response.status == 200:
                        return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} server did not answer within {START_TIMEOUT_S:.0f} s")

    def log_tail(self, size: int = 2000) -> str:
        """The end of the server's output, for error messages."""
        try:
            return self.log_path.read_text(errors="replace")[-size:]
        except OSError:
            return ""

    def peak_rss_mb(self) -> float:
        """Peak resident memory (VmHWM) of the server process and its children, added up, in MB."""
        if self.process is None:
            return 0.0
        return sum(_vm_hwm_kb(pid) for pid in _process_tree(self.process.pid)) / 1024

    def stop(self) -> None:
        """Stop the server's process group (SIGTERM, then SIGKILL after 15 s)."""
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=15)

    def __enter__(self) -> "Server":
        return self.start()

    def __exit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()


def studyvisit_server(
    db_path: Path, name: str = "studyvisit", *, database_url: str | None = None, workers: int = 1
) -> Server:
    """``studyvisit serve`` with one uvicorn worker, as deployed (or ``workers``); its log and its blobs beside
    the database. With ``database_url`` it serves from that PostgreSQL database instead of the file."""
    where = ["--database-url", database_url] if database_url else ["--db", str(db_path)]
    command = [sys.executable, "-m", "server.cli", "serve", *where, "--workers", str(workers)]
    # The data directory named outright (it is the database's own by default), so that the photo
    # upload benchmark knows where the server writes and measures the disk there.
    env = {"STUDYVISIT_DATA_DIR": str(db_path.parent)}
    return Server(name, command, "/health", db_path.parent, env=env)


@contextlib.contextmanager
def tree_servers(database: Path, work: Path, trees: dict[str, Path | None]) -> Generator[dict[str, Server]]:
    """One ``studyvisit serve`` per source tree (None: this one), each on its own copy of ``database``
    in ``work/<name>``, started in order and stopped at the end: the A/B benches' contestants."""
    servers: dict[str, Server] = {}
    try:
        for name, cwd in trees.items():
            (work / name).mkdir()
            shutil.copy(database, work / name / "event.db")
            server = studyvisit_server(work / name / "event.db", name)
            server.cwd = cwd
            servers[name] = server.start()
        yield servers
    finally:
        for server in servers.values():
            server.stop()


def floor_server(spec: dict[str, tuple[int, int]], log_dir: Path, workers: int = 1) -> Server:
    """The bare Litestar floor app, answering ``/floor/<name>`` with ``spec[name]`` = (status, body size),
    served by ``workers`` uvicorn workers."""
    command = [sys.executable, "-m", "bench.floor_app", "--workers", str(workers)]
    return Server(f"floor-{workers}", command, "/floor/health", log_dir, env={"BENCH_FLOOR_SPEC": json.dumps(spec)})


def _process_tree(pid: int) -> list[int]:
    pids = [pid]
    for index in range(64):  # bounded: uvicorn has a supervisor and a few workers at most
        if index >= len(pids):
            break
        for task in Path(f"/proc/{pids[index]}/task").glob("*"):
            try:
                pids.extend(int(child) for child in (task / "children").read_text().split())
            except OSError:
                continue
    return pids


def _vm_hwm_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0
