"""Which database a setting names: a SQLite file (a path or ``sqlite:///…``) or PostgreSQL (``postgresql://…``)."""

from pathlib import Path
from typing import NamedTuple
from urllib.parse import unquote, urlsplit


class SqliteLocation(NamedTuple):
    path: Path


class PostgresLocation(NamedTuple):
    url: str  # as given: libpq's URI syntax (user, host, port, database, ?options)


Location = SqliteLocation | PostgresLocation


def parse_database_url(text: str) -> Location:
    """`postgresql://…` (or `postgres://…`) is PostgreSQL; `sqlite:///a.db` (relative) and
    `sqlite:////srv/a.db` (absolute, as in SQLAlchemy) or a plain path are a SQLite file."""
    if not text.strip():
        raise ValueError("the database URL is empty")
    scheme = urlsplit(text).scheme.lower()
    if scheme in ("postgresql", "postgres"):
        return PostgresLocation(text)
    if scheme == "sqlite":
        if not text.lower().startswith("sqlite:///") or len(text) == len("sqlite:///"):
            raise ValueError(
                f"a SQLite URL names a file: sqlite:///relative.db or sqlite:////absolute.db, not {text!r}"
            )
        return SqliteLocation(Path(unquote(text[len("sqlite:///") :])))
    if "://" in text:
        raise ValueError(f"unknown database URL scheme {scheme!r}: use postgresql://… or sqlite:///… (or a file path)")
    return SqliteLocation(Path(text))


def describe(location: Location) -> str:
    """The location as it may be printed: a PostgreSQL URL without its password."""
    if isinstance(location, SqliteLocation):
        return str(location.path)
    parts = urlsplit(location.url)
    if parts.password is None:
        return location.url
    host = parts.netloc.rsplit("@", 1)[1]
    return parts._replace(netloc=f"{parts.username}:***@{host}").geturl()
