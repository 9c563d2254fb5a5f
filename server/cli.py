"""The ``studyvisit`` command."""

import csv
import os
import re
import sys
import unicodedata
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
import msgspec
import uvicorn

from schemas.accounts import Account, NewAccount
from server.cli_field import field
from server.fixtures import DEMO_FIXTURE, load_fixture, read_fixture
from server.services.blobs import blob_files, purge_uploads
from server.settings import Settings
from server.storage.accounts import create_account, get_account, rotate_token
from server.storage.catalog import get_event
from server.storage.db import Database, migrate, migration_status
from server.storage.purge import purge_tombstones

DEFAULT_DB = Path("data/studyvisit.db")
db_option = click.option(
    "--db", "db_path", type=click.Path(path_type=Path), default=DEFAULT_DB, show_default=True, help="SQLite file"
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON object per account, first")


def open_db(path: Path) -> Database:
    db = Database(path)
    migrate(db)
    return db


def account_json(account: NewAccount) -> bytes:
    """One account as a JSON line for scripts: group and site_ids only where set."""
    data: dict[str, Any] = {
        "id": account.id,
        "name": account.name,
        "role": account.role,
        "event_id": account.event_id,
        "token": account.token,
    }
    if account.group_id:
        data["group"] = account.group_id
    if account.site_ids:
        data["site_ids"] = account.site_ids
    return msgspec.json.encode(data)


def print_accounts(accounts: list[NewAccount], as_json: bool) -> None:
    for account in accounts:
        if as_json:
            click.echo(account_json(account).decode())
        else:
            extra = f" group={account.group_id}" if account.group_id else ""
            extra += f" sites={','.join(account.site_ids)}" if account.site_ids else ""
            click.echo(f"{account.role:<12} {account.name} ({account.id}{extra})\n             token: {account.token}")
    sys.stdout.flush()


def slugify(name: str) -> str:
    """An ASCII id from a name ("" for a name in a script with no Latin letters)."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")[:60]


def run_server(db_path: Path, host: str, port: int, workers: int) -> None:
    os.environ["STUDYVISIT_DB_PATH"] = str(db_path)
    click.echo(f"Serving on http://{host}:{port} (database {db_path}); OpenAPI at /schema/openapi.json", err=True)
    uvicorn.run("server.asgi:app", host=host, port=port, workers=workers, log_level="warning", access_log=False)


def serve_options(f: Any) -> Any:
    for option in reversed(
        [
            click.option("--host", default="127.0.0.1", show_default=True),
            click.option("--port", default=8000, show_default=True, type=int),
            click.option("--workers", default=1, show_default=True, type=int),
            db_option,
        ]
    ):
        f = option(f)
    return f


@click.group()
def main() -> None:
    """studyvisit: itinerary, sites and offline-first sync for study visits."""


@main.command()
@serve_options
def serve(host: str, port: int, workers: int, db_path: Path) -> None:
    """Serve the API."""
    open_db(db_path).close()
    run_server(db_path, host, port, workers)


@main.command()
@serve_options
@json_option
@click.option("--no-serve", is_flag=True, help="Load the data and print the tokens, then exit")
def demo(host: str, port: int, workers: int, db_path: Path, as_json: bool, no_serve: bool) -> None:
    """Load the Turin 2025 demo event, print a token per role, and serve."""
    db = open_db(db_path)
    fixture = read_fixture(DEMO_FIXTURE)
    load_fixture(db, fixture)
    demo_accounts: list[NewAccount] = []
    with db.write() as conn:
        for role in ("organizer", "host", "participant"):
            first = next(a for a in fixture.accounts if a.role == role)
            account = get_account(conn, first.id)
            assert account is not None
            token = rotate_token(conn, account.id)
            demo_accounts.append(NewAccount(**msgspec.structs.asdict(account), token=token))
    db.close()
    print_accounts(demo_accounts, as_json)
    if not as_json:
        click.echo(
            f"\nTry: curl -H 'Authorization: Bearer {demo_accounts[2].token}' "
            f"http://{host}:{port}/api/v1/events/{fixture.event.id}/itinerary"
        )
    if not no_serve:
        run_server(db_path, host, port, workers)


@main.command("load-fixtures")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@db_option
@json_option
def load_fixtures(path: Path, db_path: Path, as_json: bool) -> None:
    """Load an event from a fixture file; prints tokens of the accounts it creates."""
    try:
        fixture = read_fixture(path)
    except (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise click.ClickException(f"{path}: {exc}") from None
    print_accounts(load_fixture(open_db(db_path), fixture), as_json)


@main.group()
def db() -> None:
    """The database."""


@db.command("status")
@db_option
def db_status(db_path: Path) -> None:
    """List schema migrations, applied or pending (migrations apply at start-up)."""
    database = Database(db_path)
    for m in migration_status(database):
        state = f"applied {m['applied_at']}" if m["applied_at"] else "pending"
        click.echo(f"{m['version']:>4}  {m['name']:<55} {state}")


@db.command("purge-tombstones")
@click.option("--older-than-days", type=click.IntRange(min=1), default=30, show_default=True)
@db_option
def db_purge_tombstones(older_than_days: int, db_path: Path) -> None:
    """Forget deleted notes older than N days; clients with older cursors then resync (410)."""
    cutoff = (datetime.now(UTC) - timedelta(days=older_than_days)).isoformat().replace("+00:00", "Z")
    database = open_db(db_path)
    with database.write() as conn:
        count = purge_tombstones(conn, cutoff)
    click.echo(f"purged {count} tombstone(s) older than {cutoff}")


@db.command("purge-uploads")
@click.option("--older-than-hours", type=click.FloatRange(min=0, min_open=True), default=48, show_default=True)
@db_option
@click.option("--data-dir", default="", help="Blob directory (default: beside the database)")
def db_purge_uploads(older_than_hours: float, db_path: Path, data_dir: str) -> None:
    """Remove photo uploads abandoned half-way, and photos no live note references, older than this.

    A device resumes an abandoned upload from zero then; an upload no note of its uploader
    references stops counting against the quotas, and its bytes go once nobody holds them.
    """
    settings = Settings.from_env(db_path=db_path, data_dir=data_dir or None)
    database = Database(settings.db_path)
    try:
        migrate(database)
        partial, blobs = purge_uploads(database, blob_files(settings), older_than_hours * 3600)
    finally:
        database.close()
    click.echo(f"removed {partial} abandoned upload file(s) and {blobs} unreferenced blob(s)")


@main.group()
def accounts() -> None:
    """Participants, hosts and organizers."""


def _add_all(db: Database, accounts: list[Account]) -> list[NewAccount]:
    """Create accounts in one transaction: all of them, or (on any error) none, so no token goes unshown."""
    created: list[NewAccount] = []
    with db.write() as conn:
        for account in accounts:
            if get_event(conn, account.event_id) is None:
                raise click.ClickException(f"no event '{account.event_id}'")
            if get_account(conn, account.id) is not None:
                raise click.ClickException(f"an account '{account.id}' exists already")
            created.append(create_account(conn, account))
    return created


def _unique_id(db: Database, name: str, taken: set[str]) -> str:
    # Names in Arabic, Korean... have no Latin letters to slug: number them instead.
    base = slugify(name) or "account"
    candidate, n = base, 1
    while candidate in taken or get_account(db.conn, candidate) is not None:
        n += 1
        candidate = f"{base}-{n}"
    taken.add(candidate)
    return candidate


def _new_account(db: Database, taken: set[str], **fields: Any) -> Account:
    fields = {k: v for k, v in fields.items() if v not in (None, "")}
    if "id" not in fields:
        fields["id"] = _unique_id(db, fields.get("name", ""), taken)
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
@db_option
@json_option
def accounts_add(
    db_path: Path, as_json: bool, account_id: str | None, site_ids: tuple[str, ...], **fields: Any
) -> None:
    """Create an account and print its token (shown only now)."""
    db = open_db(db_path)
    account = _new_account(db, set(), id=account_id, site_ids=list(site_ids), **fields)
    print_accounts(_add_all(db, [account]), as_json)


@accounts.command("import")
@click.argument("csv_path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--event", "event_id", required=True)
@db_option
@json_option
def accounts_import(csv_path: Path, event_id: str, db_path: Path, as_json: bool) -> None:
    """Create accounts from a CSV (name, role, group, sites, language, country, organization, id); prints tokens."""
    db = open_db(db_path)
    accounts: list[Account] = []
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
    print_accounts(_add_all(db, accounts), as_json)


main.add_command(field)


if __name__ == "__main__":
    main()
