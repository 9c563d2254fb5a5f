"""The databases tests run on: a SQLite file, or a database of its own on the machine's PostgreSQL."""

import os
import shutil
import threading
import uuid
from collections.abc import Generator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from schemas.accounts import NewAccount
from schemas.fixtures import Fixture
from server.fixtures import DEMO_FIXTURE, load_fixture, read_fixture
from server.storage.db import Database
from server.storage.pg.database import PgDatabase

# The machine's PostgreSQL (trust authentication); .ci/run starts it when it is down.
PG_SERVER = os.environ.get("STUDYVISIT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def pg_url(database: str) -> str:
    """The URL of a database on the test server."""
    return PG_SERVER.rsplit("/", 1)[0] + "/" + database


def pg_admin(*statements: sql.Composable) -> None:
    """Run statements outside any transaction (CREATE and DROP DATABASE), on the server's own database."""
    try:
        with psycopg.connect(PG_SERVER, autocommit=True) as conn:
            for statement in statements:
                conn.execute(statement)
    except psycopg.OperationalError as error:  # a failure, never a skip: CI has PostgreSQL
        pytest.fail(f"PostgreSQL is not reachable at {PG_SERVER}: {error}")


class Seeded:
    """A database holding the Turin demo event, with every account's token: a SQLite file at `path`,
    or a PostgreSQL database at `url` (with its photos in the directory `path` is in)."""

    def __init__(self, path: Path, accounts: list[NewAccount], url: str = "") -> None:
        self.path = path
        self.url = url
        self.accounts = {a.id: a for a in accounts}

    @property
    def where(self) -> str:
        """What names the database to a server: the SQLite file's path or the PostgreSQL URL."""
        return self.url or str(self.path)

    def settings(self) -> dict[str, object]:
        """The settings that point a server at this database (and its photos beside the SQLite file)."""
        return {"database_url": self.url, "data_dir": str(self.path.parent)} if self.url else {"db_path": self.path}

    def env(self) -> dict[str, str]:
        """The same, as a server process's environment."""
        return {f"STUDYVISIT_{k.upper()}": str(v) for k, v in self.settings().items()}

    def store(self) -> Database | PgDatabase:
        """The database, opened (and migrated) as the server opens it; close it after use."""
        database = PgDatabase(self.url) if self.url else Database(self.path)
        database.migrate()
        return database

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


class PgDatabases:
    """Makes and drops the tests' PostgreSQL databases off the tests' own time.

    A CREATE DATABASE takes PostgreSQL 0.2-1 s here and a DROP DATABASE about as long, more than many
    tests take themselves: the next database from each template is made while a test runs, and each is
    dropped on a thread after its test. Every test still gets a database nobody used before.
    """

    # Pending drops at most, so that a slow server never piles up databases on disk.
    MAX_PENDING_DROPS = 8

    def __init__(self) -> None:
        self._work = ThreadPoolExecutor(max_workers=2, thread_name_prefix="pg-databases")
        self._lock = threading.Lock()
        self._ready: dict[str, Future[str]] = {}  # template's name ("" for none) -> the next copy of it
        self._drops: list[Future[None]] = []

    def take(self, template: str) -> str:
        """A new database's name: a copy of the template database (or empty), made for this caller only."""
        with self._lock:
            made = self._ready.pop(template, None)
            self._ready[template] = self._work.submit(self._create, template)
        return made.result() if made is not None else self._create(template)

    def drop(self, name: str) -> None:
        with self._lock:
            self._drops.append(self._work.submit(_drop, name))
            done = [f for f in self._drops if f.done()]
            self._drops = [f for f in self._drops if not f.done()]
            waiting = self._drops[0] if len(self._drops) > self.MAX_PENDING_DROPS else None
        for future in done:
            future.result()  # a failed drop fails the run, never passes unseen
        if waiting is not None:
            waiting.result()

    def forget(self, template: str) -> None:
        """Drop the copy made ahead of time of a template that is about to be dropped itself."""
        with self._lock:
            made = self._ready.pop(template, None)
        if made is not None:
            _drop(made.result())

    def close(self) -> None:
        with self._lock:
            ready, self._ready = list(self._ready.values()), {}
            drops, self._drops = self._drops, []
        for made in ready:
            drops.append(self._work.submit(_drop, made.result()))
        for future in drops:
            future.result()
        self._work.shutdown()

    @staticmethod
    def _create(template: str) -> str:
        name = f"sv_test_{uuid.uuid4().hex[:12]}"
        create = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template:
            create = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template))
        pg_admin(create)
        return name


def _drop(name: str) -> None:
    pg_admin(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


# This test process's; conftest.py closes it when the session ends.
PG_DATABASES = PgDatabases()


def _pg_copy(db_path: Path, template: Seeded | None) -> tuple[Seeded, str]:
    """A new PostgreSQL database (a copy of the template's, or empty), and its name to drop it by."""
    name = PG_DATABASES.take(template.url.rsplit("/", 1)[1] if template is not None else "")
    db_path.parent.mkdir(parents=True, exist_ok=True)
    return Seeded(db_path, list(template.accounts.values()) if template else [], pg_url(name)), name


def fresh_pg(db_path: Path, request: pytest.FixtureRequest, template: Seeded | None) -> Seeded:
    """A PostgreSQL database of this test's own (a copy of the template's, or empty), dropped after it."""
    where, name = _pg_copy(db_path, template)
    request.addfinalizer(lambda: PG_DATABASES.drop(name))
    return where


def empty(path: Path, request: pytest.FixtureRequest) -> Seeded:
    """A fresh database of this test's own with nothing in it (not even its schema), on the engine
    the run is on: a SQLite file at `path` (not yet made), or a PostgreSQL database dropped after."""
    if request.config.getoption("--backend") == "postgres":
        return fresh_pg(path, request, template=None)
    path.parent.mkdir(parents=True, exist_ok=True)
    return Seeded(path, [])


def loaded(path: Path, request: pytest.FixtureRequest, *fixtures: Fixture) -> Seeded:
    """A database of its own on the engine the run is on, migrated and holding these fixtures' events."""
    where = empty(path, request)
    database = where.store()
    try:
        accounts = [account for fixture in fixtures for account in load_fixture(database, fixture)]
    finally:
        database.close()
    return Seeded(path, accounts, where.url)


def copy_of(template: Seeded, path: Path, request: pytest.FixtureRequest) -> Seeded:
    """A database of its own holding what the template holds: a copy of the SQLite file at `path`,
    or a PostgreSQL database made from the template's (dropped when `request`'s scope ends)."""
    return fresh_pg(path, request, template) if template.url else _copy_file(template, path)


def _copy_file(template: Seeded, path: Path) -> Seeded:
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template.path, path)
    return Seeded(path, list(template.accounts.values()))


@contextmanager
def copy_for(template: Seeded, path: Path) -> Generator[Seeded]:
    """`copy_of` for one block (a hypothesis example): on PostgreSQL, dropped when the block ends."""
    if not template.url:
        yield _copy_file(template, path)
        return
    where, name = _pg_copy(path, template)
    try:
        yield where
    finally:
        PG_DATABASES.drop(name)


@contextmanager
def pg_demo(path: Path, prefix: str) -> Generator[Seeded]:
    """A PostgreSQL database of its own holding the Turin demo event (no connection left open, so it
    can serve as a template), with its photos beside `path`; dropped after."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    pg_admin(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        database = PgDatabase(pg_url(name), min_size=1, max_size=1)
        try:
            database.migrate()
            accounts = load_fixture(database, read_fixture(DEMO_FIXTURE))
        finally:
            database.close()
        yield Seeded(path, accounts, pg_url(name))
    finally:
        PG_DATABASES.forget(name)
        _drop(name)
