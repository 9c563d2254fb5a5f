"""Dependency direction, read from the imports and calls of every module with ``ast``.

schemas -> stdlib and msgspec only; sync -> schemas, never server; server -> schemas and sync;
only server/storage (and the field client's own store, sync/replica.py) runs SQL; the rest of the
server sees a Store and its Tx (server/storage/unit.py), never sqlite3 or psycopg nor a
Database's connection; storage knows nothing of HTTP.
"""

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("schemas", "sync", "server")
STDLIB = frozenset(sys.stdlib_module_names)
SQL_METHODS = frozenset({"execute", "executemany", "executescript"})
SQL_KEYWORDS = ("SELECT ", "INSERT ", "UPDATE ", "DELETE ", "CREATE ", "DROP ", "ALTER ", "PRAGMA ", "WITH ")
# Where SQL may run: the server's storage package, and the offline client's local replica (STYLE.md).
SQL_HOMES = ("server/storage/", "sync/replica.py")
# The engines' own modules: inside server/, only storage imports them.
ENGINE_MODULES = frozenset({"sqlite3", "sqlite_utils", "psycopg", "psycopg_pool"})
# Known edges that point the wrong way, each to be moved into server/storage; strict, so a fix shows up.
KNOWN_VIOLATIONS: dict[str, str] = {}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(tree: ast.AST, module: str, is_package: bool = False) -> set[str]:
    """Every module a tree imports, absolute and dotted, including imports inside functions and TYPE_CHECKING."""
    found: set[str] = set()
    package = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1])
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            found.add(target)
            # ``from server import storage`` imports server.storage.
            found |= {f"{target}.{alias.name}" for alias in node.names if alias.name != "*"}
    return found


def sql_calls(tree: ast.AST) -> list[str]:
    """Calls that run SQL: cursor/connection execute methods, sqlite3.connect, or any call given SQL text."""
    found: list[str] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if name in SQL_METHODS:
            found.append(f"line {node.lineno}: .{name}(")
        elif isinstance(func, ast.Attribute) and name == "connect" and getattr(func.value, "id", "") == "sqlite3":
            found.append(f"line {node.lineno}: sqlite3.connect(")
        elif node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
            text = node.args[0].value.lstrip().upper()
            if text.startswith(SQL_KEYWORDS):
                found.append(f"line {node.lineno}: {name}({node.args[0].value.strip()[:30]!r}")
    return found


def conn_uses(tree: ast.AST) -> list[int]:
    """Lines that reach for a connection (`db.conn`, `ctx.conn`) instead of a `Tx` from `read()`/`write()`."""
    return [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Attribute) and node.attr == "conn"]


def violations(relative: str, source: str) -> list[str]:
    """Every rule a module at this path (relative to the repository, with '/') breaks."""
    path = ROOT / relative
    tree = ast.parse(source, filename=relative)
    module = module_name(path)
    imported = imports(tree, module, is_package=path.name == "__init__.py")
    roots = {name.split(".")[0] for name in imported}
    problems: list[str] = []
    if relative.startswith("schemas/"):
        problems += [f"imports {r}" for r in sorted(roots - STDLIB - {"msgspec", "schemas"})]
    if relative.startswith("sync/"):
        problems += [f"imports {r}" for r in sorted(roots & {"server", "litestar", "uvicorn"})]
    if relative.startswith("server/storage/"):
        upward = ("server.routes", "server.services", "server.app", "server.cli", "server.auth", "litestar")
        problems += [f"storage imports {n}" for n in sorted(imported) if n.startswith(upward)]
    if relative.startswith("server/services/"):
        upward = ("server.routes", "server.app", "server.cli")
        problems += [f"service imports {n}" for n in sorted(imported) if n.startswith(upward)]
    if relative.startswith("server/") and not relative.startswith("server/storage/"):
        problems += [f"imports {r} outside storage" for r in sorted(roots & ENGINE_MODULES)]
        problems += [f"line {line}: .conn outside storage (use a unit of work)" for line in conn_uses(tree)]
    if "tests" in roots or "conftest" in roots:
        problems.append("imports the tests")
    if not relative.startswith(SQL_HOMES):
        problems += [f"runs SQL outside storage: {call}" for call in sql_calls(tree)]
    return problems


def all_modules() -> list[str]:
    return sorted(
        path.relative_to(ROOT).as_posix()
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
        if "__pycache__" not in path.parts
    )


MODULES = [
    pytest.param(
        relative,
        id=relative,
        marks=[pytest.mark.xfail(strict=True, reason=KNOWN_VIOLATIONS[relative])]
        if relative in KNOWN_VIOLATIONS
        else [],
    )
    for relative in all_modules()
]


def test_every_layer_has_modules() -> None:
    found = all_modules()
    for package in PACKAGES:
        assert any(m.startswith(f"{package}/") for m in found), package
    assert any(m.startswith("server/storage/") for m in found)
    assert any(m.startswith("server/routes/") for m in found)


@pytest.mark.parametrize("relative", MODULES)
def test_module_imports_and_sql_point_the_right_way(relative: str) -> None:
    assert violations(relative, (ROOT / relative).read_text(encoding="utf-8")) == []


def test_known_violations_name_existing_modules() -> None:
    assert set(KNOWN_VIOLATIONS) <= set(all_modules())


@pytest.mark.parametrize(
    ("relative", "source", "expected"),
    [
        pytest.param("schemas/x.py", "import litestar\n", "imports litestar", id="schemas-framework"),
        pytest.param("schemas/x.py", "from server.errors import X\n", "imports server", id="schemas-server"),
        pytest.param("schemas/x.py", "from sync import rules\n", "imports sync", id="schemas-sync"),
        pytest.param("sync/x.py", "def f():\n    from server import app\n", "imports server", id="sync-server-lazy"),
        pytest.param(
            "sync/x.py",
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import server.app\n",
            "imports server",
            id="sync-server-type-checking",
        ),
        pytest.param("server/routes/x.py", "import sqlite3\n", "imports sqlite3 outside storage", id="route-sqlite3"),
        pytest.param("server/routes/x.py", "from sqlite_utils import Database\n", "sqlite_utils", id="route-utils"),
        pytest.param("server/services/x.py", "import sqlite3\n", "imports sqlite3 outside", id="service-sqlite3"),
        pytest.param("server/cli.py", "import psycopg\n", "imports psycopg outside storage", id="cli-psycopg"),
        pytest.param("server/auth.py", "from psycopg_pool import ConnectionPool\n", "psycopg_pool", id="auth-pool"),
        pytest.param("server/feeds.py", "def f():\n    import psycopg.errors\n", "psycopg", id="feeds-lazy-psycopg"),
        pytest.param("server/routes/x.py", "get_site(db.conn, e, s)\n", ".conn outside storage", id="route-db-conn"),
        pytest.param("server/services/x.py", "conn = ctx.conn\n", ".conn outside storage", id="service-ctx-conn"),
        pytest.param("server/routes/x.py", "conn.execute('SELECT 1')\n", ".execute(", id="route-execute"),
        pytest.param("server/services/x.py", "c.executemany(sql, rows)\n", ".executemany(", id="service-many"),
        pytest.param("server/services/x.py", "db.query('select * from sites')\n", "'select", id="service-sql-text"),
        pytest.param("sync/client.py", "sqlite3.connect(path)\n", "sqlite3.connect(", id="client-connect"),
        pytest.param("server/storage/x.py", "from litestar import Request\n", "litestar", id="storage-http"),
        pytest.param("server/storage/x.py", "from ..routes import common\n", "server.routes", id="storage-relative"),
        pytest.param("server/services/x.py", "from server.routes.common import A\n", "server.routes", id="svc-route"),
    ],
)
def test_checker_catches_an_edge_that_points_the_wrong_way(relative: str, source: str, expected: str) -> None:
    assert any(expected in problem for problem in violations(relative, source))


@pytest.mark.parametrize(
    ("relative", "source"),
    [
        pytest.param(
            "schemas/x.py", "import msgspec\nfrom datetime import date\nfrom schemas.common import A\n", id="s"
        ),
        pytest.param("sync/x.py", "from schemas.sync import Mutation\nimport httpx\n", id="sync-schemas"),
        pytest.param("sync/replica.py", "import sqlite3\nconn.execute('SELECT 1')\n", id="replica-sql"),
        pytest.param("server/storage/x.py", "conn.execute('SELECT 1')\n", id="storage-sql"),
        pytest.param("server/storage/x.py", "import sqlite3\nimport psycopg\nc = db.conn\n", id="storage-engines"),
        pytest.param("server/routes/x.py", "with db.read() as tx:\n    get_site(tx, e, s)\n", id="route-unit"),
        pytest.param("sync/replica.py", "import sqlite3\nself.conn.commit()\n", id="replica-own-store"),
        pytest.param("server/services/x.py", "log.info('Selected sites: %s', ids)\n", id="prose-not-sql"),
        pytest.param("server/routes/x.py", "from server.services.sites import site_views\n", id="route-service"),
    ],
)
def test_checker_accepts_edges_that_point_the_right_way(relative: str, source: str) -> None:
    assert violations(relative, source) == []


def test_outside_storage_no_server_module_sees_an_engine() -> None:
    """Services, routes, auth, feeds and the CLI hold a Store and its Tx: neither sqlite3 nor psycopg,
    nor a Database's connection (what the per-module check above enforces, in one place)."""
    seen = {
        relative: [
            p for p in violations(relative, (ROOT / relative).read_text(encoding="utf-8")) if "outside storage" in p
        ]
        for relative in all_modules()
        if relative.startswith("server/") and not relative.startswith("server/storage/")
    }
    assert {relative: found for relative, found in seen.items() if found} == {}
