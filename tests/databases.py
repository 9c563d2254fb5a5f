"""The databases tests run on: a SQLite file, or a database of its own on the machine's PostgreSQL."""

import os
import shutil
import uuid
from collections.abc import Callable, Generator
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


def _create_pg(db_path: Path, template: Seeded | None) -> tuple[Seeded, Callable[[], None]]:
    """A new PostgreSQL database (a copy of the template's, or empty), and what drops it."""
    name = f"sv_test_{uuid.uuid4().hex[:12]}"
    create = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template is not None:
        create = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            sql.Identifier(name), sql.Identifier(template.url.rsplit("/", 1)[1])
        )
    pg_admin(create)
    db_path.parent.mkdir(parents=True, exist_ok=True)
    where = Seeded(db_path, list(template.accounts.values()) if template else [], pg_url(name))
    return where, lambda: pg_admin(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def fresh_pg(db_path: Path, request: pytest.FixtureRequest, template: Seeded | None) -> Seeded:
    """A PostgreSQL database of this test's own (a copy of the template's, or empty), dropped after it."""
    where, drop = _create_pg(db_path, template)
    request.addfinalizer(drop)
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
    where, drop = _create_pg(path, template)
    try:
        yield where
    finally:
        drop()


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
        pg_admin(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
