"""The ``studyvisit`` command."""

import csv
import errno
import io
import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Generator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
import msgspec
import segno
import uvicorn
from click.core import ParameterSource

from schemas.accounts import Account, NewAccount
from server.cli_field import field
from server.errors import DatabaseUnavailableError, NotFoundError
from server.feeds import feed_urls
from server.fixtures import (
    DEMO_FIXTURE,
    FixtureConflictError,
    FixtureError,
    FixtureLoad,
    load_fixture_report,
    read_fixture,
)
from server.observability import MULTIPROCESS_DIR
from server.services.accounts import (
    AccountError,
    InvalidAccountError,
    add_accounts,
    existing_account,
    invitation_link,
    unique_id,
)
from server.services.blobs import choose_blob_store, purge_uploads
from server.settings import BLOB_STORES, Settings
from server.storage.accounts import (
    Access,
    get_access,
    get_account,
    retire_account,
    revoke_feed_token,
    rotate_feed_token,
    rotate_token,
    set_expiry,
)
from server.storage.admin import location_migrations, migrate_location
from server.storage.copy import CopyError, copy_sqlite_to_postgres
from server.storage.location import Location, PostgresLocation, SqliteLocation, describe, parse_database_url
from server.storage.purge import purge_tombstones
from server.storage.stores import open_store
from server.storage.unit import Store, Tx

DEFAULT_DB = Path("data/studyvisit.db")
# The environment variable the server reads too, so one export configures every command.
db_option = click.option(
    "--db",
    "db_path",
    type=click.Path(path_type=Path),
    envvar="STUDYVISIT_DB_PATH",
    show_envvar=True,
    default=DEFAULT_DB,
    show_default=True,
    help="SQLite file",
)
database_url_option = click.option(
    "--database-url",
    envvar="STUDYVISIT_DATABASE_URL",
    show_envvar=True,
    help="postgresql://user@host/db, or sqlite:///file.db (instead of --db)",
)
blob_store_option = click.option(
    "--blob-store",
    type=click.Choice(BLOB_STORES),
    envvar="STUDYVISIT_BLOB_STORE",
    show_envvar=True,
    default="directory",
    show_default=True,
    help="Where photos live: the data directory, or the PostgreSQL database itself (several servers, no shared disk)",
)


def database_options(f: Any) -> Any:
    """--db and --database-url, for every command that opens the server's database (see store_location)."""
    return db_option(database_url_option(f))


force_option = click.option(
    "--force",
    is_flag=True,
    help="Overwrite records edited since they were loaded (each becomes a new version, kept in history)",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON object per account, first")
qr_option = click.option(
    "--qr", is_flag=True, help="Also print each invitation link as a QR code, for a phone's camera"
)


def database_location(option: str | None) -> Location:
    """The database a `--database-url` (or STUDYVISIT_DATABASE_URL) names, as a clear error when it is wrong."""
    try:
        return parse_database_url(option or "")
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--database-url") from None


def store_location(path: Path, url: str | None = None) -> Location:
    """The database to use: --database-url when given on the command line, else --db when set (on
    the command line or by STUDYVISIT_DB_PATH), else STUDYVISIT_DATABASE_URL, else --db's default."""
    ctx = click.get_current_context(silent=True)

    def source(name: str) -> ParameterSource | None:
        return ctx.get_parameter_source(name) if ctx is not None else None

    if url and source("database_url") is ParameterSource.COMMANDLINE:
        return database_location(url)
    env = url or os.environ.get("STUDYVISIT_DATABASE_URL", "")
    if not env or source("db_path") not in (ParameterSource.DEFAULT, None):
        return SqliteLocation(path)
    return database_location(env)


def open_db(path: Path, url: str | None = None) -> Store:
    """The store, migrated (on PostgreSQL, by one process at a time)."""
    try:
        db = open_store(store_location(path, url))
        db.migrate()
    except DatabaseUnavailableError as exc:
        raise click.ClickException(exc.detail) from None
    return db


def public_url() -> str:
    """The server's address for printed feed URLs: STUDYVISIT_PUBLIC_URL, else the default of ``serve``."""
    return Settings.from_env().public_url or "http://127.0.0.1:8000"


def account_json(account: NewAccount, base_url: str) -> bytes:
    """One account as a JSON line for scripts: group, site_ids and token only where set."""
    data: dict[str, Any] = {"id": account.id, "name": account.name, "role": account.role, "event_id": account.event_id}
    if account.token:
        data["token"] = account.token
        data["app_url"] = invitation_link(base_url, account.token)
    if account.group_id:
        data["group"] = account.group_id
    if account.site_ids:
        data["site_ids"] = account.site_ids
    if account.feed_token:
        data["feed_urls"] = msgspec.to_builtins(feed_urls(base_url, account.feed_token))
    return msgspec.json.encode(data)


def terminal_qr(text: str) -> str:
    """A QR code of ``text`` in block characters, two modules per character row (light on a dark terminal)."""
    out = io.StringIO()
    segno.make(text, error="m").terminal(out=out, compact=True)
    return out.getvalue()


def print_accounts(accounts: list[NewAccount], as_json: bool, base_url: str | None = None, qr: bool = False) -> None:
    base_url = base_url or public_url()
    for account in accounts:
        if as_json:
            click.echo(account_json(account, base_url).decode())
            continue
        extra = f" group={account.group_id}" if account.group_id else ""
        extra += f" sites={','.join(account.site_ids)}" if account.site_ids else ""
        click.echo(f"{account.role:<12} {account.name} ({account.id}{extra})")
        if account.token:
            click.echo(f"             token: {account.token}")
            click.echo(f"             app:   {invitation_link(base_url, account.token)}")
            if qr:
                click.echo(terminal_qr(invitation_link(base_url, account.token)), nl=False)
        if account.feed_token:
            urls = feed_urls(base_url, account.feed_token)
            click.echo(f"             calendar: {urls.webcal}\n             frab:     {urls.schedule_xml}")
    sys.stdout.flush()


def check_port(host: str, port: int) -> None:
    """Fail now, before anything is printed or loaded, when the server could not listen there."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        # As uvicorn binds: SO_REUSEADDR, so a port in TIME_WAIT from a stopped server is free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise click.ClickException(
                    f"port {port} on {host} is already in use (another server?): pick a free one with --port, "
                    f"e.g. --port {port + 1}"
                ) from None
            raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def load_or_explain(db: Store, path: Path, force: bool) -> FixtureLoad:
    """Load a fixture file; records edited since they were loaded make it refuse, naming them."""
    try:
        fixture = read_fixture(path)
    except (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise click.ClickException(f"{path}: {exc}") from None
    try:
        return load_fixture_report(db, fixture, force=force)
    except FixtureError as exc:
        raise click.ClickException(f"{path}: {exc}") from None
    except FixtureConflictError as exc:
        raise click.ClickException(
            f"{exc}. Nothing was loaded. Serve the edited data as it is with `studyvisit serve`, or overwrite "
            "those records with the fixture with --force (each becomes a new version; the edits stay in history)."
        ) from None


def report_load(report: FixtureLoad, *, tell_accounts: bool = True) -> None:
    """What a load did, on stderr (stdout is for the tokens, and only JSON with --json)."""
    parts = [f"{len(report.added)} added", f"{len(report.updated)} updated"]
    if report.overwritten:
        parts.append(f"{len(report.overwritten)} edited record(s) overwritten")
    parts.append(f"{len(report.unchanged)} unchanged")
    accounts = f"{len(report.accounts)} new account(s)" if report.accounts else "no new accounts (existing tokens kept)"
    click.echo(f"Loaded records: {', '.join(parts)}" + (f"; {accounts}." if tell_accounts else "."), err=True)


@contextmanager
def shared_metrics(workers: int) -> Generator[None]:
    """With several workers, one directory for all their metrics (multiprocess mode), so that a scrape
    answered by any of them reports them all. The workers are new processes, which read the setting
    when they import prometheus_client. An operator's PROMETHEUS_MULTIPROC_DIR is used (emptied of the
    last run's values first); otherwise a temporary directory, removed when the server stops."""
    if workers <= 1:
        yield
        return
    given = os.environ.get(MULTIPROCESS_DIR)
    directory = Path(given) if given else Path(tempfile.mkdtemp(prefix="studyvisit-metrics-"))
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink()
    os.environ[MULTIPROCESS_DIR] = str(directory)
    try:
        yield
    finally:
        if not given:
            shutil.rmtree(directory, ignore_errors=True)


def run_server(location: Location, host: str, port: int, workers: int) -> None:
    # Worker processes read their settings from the environment: name the same database there.
    if isinstance(location, SqliteLocation):
        os.environ["STUDYVISIT_DB_PATH"] = str(location.path)
        os.environ.pop("STUDYVISIT_DATABASE_URL", None)
    else:
        os.environ["STUDYVISIT_DATABASE_URL"] = location.url
    click.echo(
        f"Serving on http://{host}:{port} (database {describe(location)}); OpenAPI at /schema/openapi.json", err=True
    )
    limits = Settings.from_env()
    with shared_metrics(workers):
        uvicorn.run(
            "server.asgi:app",
            host=host,
            port=port,
            workers=workers,
            log_level="warning",
            access_log=False,
            # The limits of docs/deployment.md: heads, slow clients, connections and requests in flight
            # are limited by this protocol (uvicorn's own httptools protocol has no such limits).
            http="server.http_limits:LimitedHttpToolsProtocol",
            timeout_keep_alive=limits.keep_alive_timeout_seconds,  # type: ignore[arg-type]  # a float works
            backlog=limits.backlog,
            # Only under `--http h11`; the same size, should the protocol be switched.
            h11_max_incomplete_event_size=limits.max_header_bytes,
        )


def serve_options(f: Any) -> Any:
    for option in reversed(
        [
            click.option("--host", default="127.0.0.1", show_default=True),
            click.option("--port", default=8000, show_default=True, type=int),
            click.option("--workers", default=1, show_default=True, type=int),
            database_options,
        ]
    ):
        f = option(f)
    return f


@click.group()
@click.version_option(package_name="studyvisit", prog_name="studyvisit")
def main() -> None:
    """studyvisit: itinerary, sites and offline-first sync for study visits."""


def check_blob_store(blob_store: str, location: Location) -> None:
    """Photos in the database need PostgreSQL; worker processes read the choice from the environment."""
    if blob_store == "database" and isinstance(location, SqliteLocation):
        raise click.ClickException("--blob-store database keeps photos in PostgreSQL: give --database-url too")
    os.environ["STUDYVISIT_BLOB_STORE"] = blob_store


@main.command()
@serve_options
@blob_store_option
def serve(host: str, port: int, workers: int, db_path: Path, database_url: str | None, blob_store: str) -> None:
    """Serve the API."""
    check_blob_store(blob_store, store_location(db_path, database_url))
    check_port(host, port)
    open_db(db_path, database_url).close()
    run_server(store_location(db_path, database_url), host, port, workers)


@main.command()
@serve_options
@json_option
@click.option("--no-serve", is_flag=True, help="Load the data and print the tokens, then exit")
@force_option
@qr_option
def demo(
    host: str,
    port: int,
    workers: int,
    db_path: Path,
    database_url: str | None,
    as_json: bool,
    no_serve: bool,
    force: bool,
    qr: bool,
) -> None:
    """Load the Turin 2025 demo event, print a token per role, and serve."""
    if not no_serve:
        check_port(host, port)
    db = open_db(db_path, database_url)
    fixture = read_fixture(DEMO_FIXTURE)
    # The demo prints fresh tokens of its own below, whatever the load created.
    report_load(load_or_explain(db, DEMO_FIXTURE, force), tell_accounts=False)
    demo_accounts: list[NewAccount] = []
    with db.write() as tx:
        for role in ("organizer", "host", "participant"):
            first = next(a for a in fixture.accounts if a.role == role)
            account = get_account(tx, first.id)
            access = get_access(tx, first.id)
            token = rotate_token(tx, account.id)
            # The feed token is kept: a calendar subscribed to the demo's feed URL keeps working.
            feed_token = access.feed_token or rotate_feed_token(tx, account.id)
            demo_accounts.append(NewAccount(**msgspec.structs.asdict(account), token=token, feed_token=feed_token))
    db.close()
    print_accounts(demo_accounts, as_json, f"http://{host}:{port}", qr=qr)
    if not as_json:
        click.echo(
            f"\nTry: curl -H 'Authorization: Bearer {demo_accounts[2].token}' "
            f"http://{host}:{port}/api/v1/events/{fixture.event.id}/itinerary"
        )
        urls = feed_urls(f"http://{host}:{port}", demo_accounts[2].feed_token)
        click.echo(f"Or, with no header at all, as a calendar app does: curl {urls.ics}")
        click.echo(f"Subscribe a phone's calendar to {urls.webcal}")
    if not no_serve:
        run_server(store_location(db_path, database_url), host, port, workers)


@main.command("load-fixtures")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@database_options
@json_option
@force_option
def load_fixtures(path: Path, db_path: Path, database_url: str | None, as_json: bool, force: bool) -> None:
    """Load an event from a fixture file; prints tokens of the accounts it creates.

    Loading again changes only what differs from the file, each change a new version; records
    edited since they were loaded are left alone (the load is refused) unless --force.
    """
    report = load_or_explain(open_db(db_path, database_url), path, force)
    print_accounts(report.accounts, as_json)
    report_load(report)


@main.group()
def db() -> None:
    """The database."""


def print_migrations(status: list[dict[str, Any]]) -> None:
    for m in status:
        state = f"applied {m['applied_at']}" if m["applied_at"] else "pending"
        click.echo(f"{m['version']:>4}  {m['name']:<55} {state}")


@db.command("migrate")
@database_options
def db_migrate(db_path: Path, database_url: str | None) -> None:
    """Apply pending schema migrations (servers also do at start-up; on PostgreSQL one at a time)."""
    location = store_location(db_path, database_url)
    try:
        applied = migrate_location(location)
    except DatabaseUnavailableError as exc:
        raise click.ClickException(exc.detail) from None
    click.echo(f"applied {', '.join(map(str, applied))}" if applied else "up to date")


@db.command("copy")
@click.option("--from", "source", required=True, help="the SQLite database: sqlite:///file.db or a path")
@click.option("--to", "target", required=True, help="an empty PostgreSQL database: postgresql://…")
@blob_store_option
@click.option("--data-dir", default="", help="The photos' directory (default: beside the SQLite file)")
def db_copy(source: str, target: str, blob_store: str, data_dir: str) -> None:
    """Copy a SQLite database into PostgreSQL, then compare every table's rows and checksum.

    With --blob-store database the photos go into the database too, and are compared the same way.
    """
    src, dst = database_location(source), database_location(target)
    if not isinstance(src, SqliteLocation) or not isinstance(dst, PostgresLocation):
        raise click.UsageError("this version copies from SQLite (--from) to PostgreSQL (--to)")
    photos = (Path(data_dir) if data_dir else src.path.resolve().parent) if blob_store == "database" else None
    try:
        tables = copy_sqlite_to_postgres(src.path, dst.url, photos)
    except CopyError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{'table':<18} {'rows':>8} {'copied':>8}  {'checksum':<16}  {'copy':<16}")
    for t in tables:
        mark = "" if t.same else "  DIFFERS"
        click.echo(
            f"{t.table:<18} {t.source_rows:>8} {t.target_rows:>8}  {t.source_checksum}  {t.target_checksum}{mark}"
        )
    if not all(t.same for t in tables):
        raise click.ClickException("the copy differs from the source (see above)")
    rows = sum(t.source_rows for t in tables if t.table != "blob bytes")
    if photos is not None:
        click.echo(
            f"{rows} rows and {tables[-1].source_rows} photos copied and verified. Serve with"
            " STUDYVISIT_BLOB_STORE=database (--blob-store database).",
            err=True,
        )
        return
    click.echo(
        f"{rows} rows in {len(tables)} tables copied and verified. Photos stay on disk: copy the blob"
        " directory (beside the SQLite file, or STUDYVISIT_DATA_DIR) along with it, or copy again into an"
        " empty database with --blob-store database to put them in the database.",
        err=True,
    )


@db.command("status")
@database_options
def db_status(db_path: Path, database_url: str | None) -> None:
    """List schema migrations, applied or pending (migrations apply at start-up)."""
    location = store_location(db_path, database_url)
    if isinstance(location, SqliteLocation) and not location.path.exists():
        # Opening would create an empty database: a typo in --db would look like a fresh install.
        raise click.ClickException(
            f"no database at {location.path}: `studyvisit serve`, `demo` or `load-fixtures` creates one "
            "(choose the file with --db or STUDYVISIT_DB_PATH)"
        )
    try:
        print_migrations(location_migrations(location))
    except DatabaseUnavailableError as exc:
        raise click.ClickException(exc.detail) from None


@db.command("purge-tombstones")
@click.option("--older-than-days", type=click.IntRange(min=1), default=30, show_default=True)
@database_options
def db_purge_tombstones(older_than_days: int, db_path: Path, database_url: str | None) -> None:
    """Forget deleted notes older than N days; clients with older cursors then resync (410)."""
    cutoff = (datetime.now(UTC) - timedelta(days=older_than_days)).isoformat().replace("+00:00", "Z")
    database = open_db(db_path, database_url)
    try:
        with database.write() as tx:
            count = purge_tombstones(tx, cutoff)
    finally:
        database.close()
    click.echo(f"purged {count} tombstone(s) older than {cutoff}")


@db.command("purge-uploads")
@click.option("--older-than-hours", type=click.FloatRange(min=0, min_open=True), default=48, show_default=True)
@database_options
@click.option(
    "--data-dir",
    default="",
    help="Blob directory (default: STUDYVISIT_DATA_DIR, else the SQLite file's, as the server uses)",
)
@blob_store_option
def db_purge_uploads(
    older_than_hours: float, db_path: Path, database_url: str | None, data_dir: str, blob_store: str
) -> None:
    """Remove photo uploads abandoned half-way, and photos no live note references, older than this.

    A device resumes an abandoned upload from zero then; an upload no note of its uploader
    references stops counting against the quotas, and its bytes go once nobody holds them.
    """
    check_blob_store(blob_store, store_location(db_path, database_url))
    settings = Settings.from_env(
        db_path=db_path, database_url=database_url, data_dir=data_dir or None, blob_store=blob_store
    )
    database = open_db(db_path, database_url)
    try:
        partial, blobs = purge_uploads(database, choose_blob_store(settings, database), older_than_hours * 3600)
    finally:
        database.close()
    click.echo(f"removed {partial} abandoned upload file(s) and {blobs} unreferenced blob(s)")


@main.group()
def accounts() -> None:
    """Participants, hosts and organizers."""


def _add_all(
    db: Store,
    accounts: list[Account],
    *,
    expires_at: str | None = None,
    where: list[str] | None = None,
    names: tuple[str, str] = ("--group", "--site"),
) -> list[NewAccount]:
    """Create accounts in one transaction (server/services/accounts.py): all of them, or none, so no token goes unshown.

    ``where`` names each account's source in messages (a CSV line), ``names`` the group and site inputs.
    """
    try:
        return add_accounts(db, accounts, expires_at)
    except AccountError as exc:
        message = exc.detail
        if isinstance(exc, InvalidAccountError) and exc.field in ("group_id", "site_ids"):
            message = f"{exc.reason} ({names[0] if exc.field == 'group_id' else names[1]})"
        if where and exc.index is not None:
            message = f"{where[exc.index]}: {message}"
        raise click.ClickException(message) from None


def _new_account(db: Store, taken: set[str], **fields: Any) -> Account:
    fields = {k: v for k, v in fields.items() if v not in (None, "")}
    if "id" not in fields:
        with db.read() as tx:
            fields["id"] = unique_id(tx, fields.get("name", ""), taken)
    try:
        return msgspec.convert(fields, Account)
    except msgspec.ValidationError as exc:
        raise click.ClickException(str(exc)) from None


@accounts.command("add")
@click.option("--event", "event_id", required=True)
@click.option("--name", required=True)
@click.option("--role", type=click.Choice(["participant", "host", "organizer"]), required=True)
@click.option("--id", "account_id", help="Account id (default: from the name)")
@click.option("--group", "group_id")
@click.option("--site", "site_ids", multiple=True, help="A site the host may edit (repeatable)")
@click.option("--language", default="en", show_default=True)
@click.option("--country")
@click.option("--organization", default="")
@click.option("--expires", help="When its tokens stop working: a date (UTC), an RFC 3339 time, or 'never'")
@database_options
@json_option
@qr_option
def accounts_add(
    db_path: Path,
    database_url: str | None,
    as_json: bool,
    qr: bool,
    account_id: str | None,
    site_ids: tuple[str, ...],
    expires: str | None,
    **fields: Any,
) -> None:
    """Create an account and print its token (shown only now), its app invitation link and its calendar feed URLs."""
    expires_at = parse_expiry(expires) if expires else None
    db = open_db(db_path, database_url)
    account = _new_account(db, set(), id=account_id, site_ids=list(site_ids), **fields)
    print_accounts(_add_all(db, [account], expires_at=expires_at), as_json, qr=qr)


def parse_expiry(text: str) -> str | None:
    """``never``, a date (its start, in UTC) or an RFC 3339 time with an offset, as stored: RFC 3339 UTC."""
    if text.strip().lower() == "never":
        return None
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{text!r}: give 'never', a date (2025-12-20) or a time with an offset") from None
    if len(text.strip()) == 10:
        when = when.replace(tzinfo=UTC)
    if when.tzinfo is None:
        raise click.BadParameter(f"{text!r}: say which time zone, e.g. 2025-12-20T18:00:00+01:00")
    return when.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _existing(tx: Tx, account_id: str) -> tuple[Account, Access]:
    """The account, or a clean failure naming it; a retired account cannot be changed any more."""
    try:
        account = existing_account(tx, account_id)
    except (NotFoundError, AccountError) as exc:
        raise click.ClickException(exc.detail) from None
    return account, get_access(tx, account_id)


@accounts.command("rotate")
@click.argument("account_id")
@click.option("--feed", is_flag=True, help="Give a new calendar feed URL instead; the old feed URL stops working")
@database_options
@json_option
def accounts_rotate(account_id: str, feed: bool, db_path: Path, database_url: str | None, as_json: bool) -> None:
    """Give an account a new bearer token (printed once; the old one stops working at once)."""
    db = open_db(db_path, database_url)
    with db.write() as tx:
        account, access = _existing(tx, account_id)
        fields = msgspec.structs.asdict(account)
        if feed:
            rotated = NewAccount(**fields, token="", feed_token=rotate_feed_token(tx, account_id))
        else:
            # The feed URL is printed again, unchanged: rotating the bearer token leaves subscriptions alone.
            rotated = NewAccount(**fields, token=rotate_token(tx, account_id), feed_token=access.feed_token or "")
    print_accounts([rotated], as_json)


@accounts.command("retire")
@click.argument("account_id")
@click.option("--feed", is_flag=True, help="Revoke only the calendar feed URL; the bearer token keeps working")
@database_options
def accounts_retire(account_id: str, feed: bool, db_path: Path, database_url: str | None) -> None:
    """Revoke every token of an account for good (what it wrote stays)."""
    db = open_db(db_path, database_url)
    with db.write() as tx:
        _existing(tx, account_id)
        if feed:
            revoke_feed_token(tx, account_id)
        else:
            retire_account(tx, account_id)
    what = "feed URL" if feed else "bearer token and feed URL"
    click.echo(f"{account_id}: {what} revoked")


@accounts.command("expire")
@click.argument("account_id")
@click.argument("when")
@database_options
def accounts_expire(account_id: str, when: str, db_path: Path, database_url: str | None) -> None:
    """Make an account's tokens stop working at WHEN (a date, an RFC 3339 time, or 'never')."""
    expires_at = parse_expiry(when)
    db = open_db(db_path, database_url)
    with db.write() as tx:
        _existing(tx, account_id)
        set_expiry(tx, account_id, expires_at)
    click.echo(f"{account_id}: tokens expire {'never' if expires_at is None else 'at ' + expires_at}")


@accounts.command("import")
@click.argument("csv_path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--event", "event_id", required=True)
@database_options
@json_option
def accounts_import(csv_path: Path, event_id: str, db_path: Path, database_url: str | None, as_json: bool) -> None:
    """Create accounts from a CSV (name, role, group, sites, language, country, organization, id); prints tokens."""
    db = open_db(db_path, database_url)
    accounts: list[Account] = []
    lines: list[str] = []
    taken: set[str] = set()
    with csv_path.open(newline="", encoding="utf-8-sig") as f:
        for line, row in enumerate(csv.DictReader(f), start=2):
            sites = [s.strip() for s in (row.get("sites") or "").split(";") if s.strip()]
            try:
                account = _new_account(
                    db,
                    taken,
                    event_id=event_id,
                    name=(row.get("name") or "").strip(),
                    role=(row.get("role") or "participant").strip(),
                    group_id=(row.get("group") or "").strip(),
                    site_ids=sites,
                    language=(row.get("language") or "en").strip(),
                    country=(row.get("country") or "").strip(),
                    organization=(row.get("organization") or "").strip(),
                    id=(row.get("id") or "").strip(),
                )
            except click.ClickException as exc:
                raise click.ClickException(f"{csv_path}:{line}: {exc.message}") from None
            accounts.append(account)
            lines.append(f"{csv_path}:{line}")
    print_accounts(_add_all(db, accounts, where=lines, names=("the group column", "the sites column")), as_json)


main.add_command(field)


if __name__ == "__main__":
    main()
