"""Loading seed data: an event with its sites, groups, visits, questions and accounts."""

from pathlib import Path
from typing import Any

import msgspec

from schemas.accounts import NewAccount
from schemas.fixtures import Fixture
from server.storage.accounts import account_exists, create_account
from server.storage.changes import record_change
from server.storage.db import utcnow
from server.storage.engine_errors import is_integrity_error
from server.storage.records import add_history, insert_record, last_history_author, load_record, update_record
from server.storage.unit import Store, Tx
from sync.rules import flatten_translations

FIXTURES_DIR = Path(__file__).resolve().parent.parent / "fixtures"
DEMO_FIXTURE = FIXTURES_DIR / "turin-sse-2025.json"
# The client id of the loader's history entries: a later load tells its own writes from people's edits.
LOADER_CLIENT = "load-fixtures"
# Translated maps are recorded per language in history, as edits record them, so a host's
# offline edit of one language conflicts with a re-load that changed that language only.
TRANSLATED = {"site": "description", "visit": "notes", "question": "texts"}


class FixtureError(ValueError):
    """A fixture whose records do not fit together (an account of a group the event lacks...)."""


class FixtureConflictError(Exception):
    """Records the fixture would overwrite were edited since they were loaded."""

    def __init__(self, records: list[str]) -> None:
        shown = ", ".join(records[:5]) + (f" and {len(records) - 5} more" if len(records) > 5 else "")
        super().__init__(f"{len(records)} record(s) were edited since they were loaded: {shown}")
        self.records = records


class FixtureLoad(msgspec.Struct, kw_only=True):
    """What loading a fixture did: the accounts it created (with tokens) and what became of each record."""

    accounts: list[NewAccount]
    added: list[str] = []
    updated: list[str] = []
    unchanged: list[str] = []
    overwritten: list[str] = []


def read_fixture(path: Path) -> Fixture:
    """Parse and validate a fixture file."""
    return msgspec.json.decode(path.read_bytes(), type=Fixture)


def load_fixture(db: Store, fixture: Fixture) -> list[NewAccount]:
    """Load a fixture in one transaction; returns the accounts created now, with their tokens."""
    return load_fixture_report(db, fixture).accounts


def load_fixture_report(db: Store, fixture: Fixture, *, force: bool = False) -> FixtureLoad:
    """Load a fixture in one transaction, never moving a version back.

    A record that is new is created at version 1 with the fixture's ``updated_at``; one equal to
    the fixture is left alone; one that differs becomes a new version, with a history entry and a
    change-feed entry, so synced devices converge. A record someone edited since it was loaded is
    not overwritten: the whole load is refused (FixtureConflictError, nothing written) unless
    ``force``, which overwrites it the same way, as a new version. Existing accounts (and their
    tokens) are left alone.
    """
    event_id = fixture.event.id
    report = FixtureLoad(accounts=[])
    edited: list[str] = []
    with db.write() as tx:
        kinds: list[tuple[str, list[Any]]] = [
            ("event", [fixture.event]),
            ("site", fixture.sites),
            ("group", fixture.groups),
            ("visit", fixture.visits),
            ("question", fixture.questions),
        ]
        for entity, items in kinds:
            for item in items:
                _load_record(tx, event_id, entity, item, force, report, edited)
        if edited:
            raise FixtureConflictError(edited)  # rolls the whole load back
        for account in fixture.accounts:
            if not account_exists(tx, account.id):
                try:
                    report.accounts.append(create_account(tx, account))
                except Exception as exc:  # rolls the whole load back
                    if not is_integrity_error(exc):
                        raise
                    named = [f"group '{account.group_id}'"] if account.group_id else []
                    named += [f"site '{site_id}'" for site_id in account.site_ids]
                    raise FixtureError(
                        f"account '{account.id}' names {' or '.join(named) or 'a record'} that event "
                        f"'{event_id}' does not have ({exc})"
                    ) from None
    return report


def _load_record(
    tx: Tx,
    event_id: str,
    entity: str,
    item: msgspec.Struct,
    force: bool,
    report: FixtureLoad,
    edited: list[str],
) -> None:
    values: dict[str, Any] = msgspec.to_builtins(item)
    record_id = str(values["id"])
    name = f"{entity} {record_id}"
    values.pop("version", None)
    stamped = "updated_at" in values
    stamp = values.pop("updated_at", None)
    current = load_record(tx, event_id, entity, record_id)
    if current is None:
        row = {**values, "version": 1, **({"updated_at": stamp or utcnow()} if stamped else {})}
        insert_record(tx, entity, row if entity == "event" else {**row, "event_id": event_id})
        record_change(tx, event_id, entity, record_id, ["all"])
        report.added.append(name)
        return
    new = {k: v for k, v in values.items() if current.get(k) != v}
    if not new:
        report.unchanged.append(name)
        return
    author = last_history_author(tx, event_id, entity, record_id)
    # Someone's edit came after the last load (or, without history, the version moved on).
    changed_by_people = author != (None, LOADER_CLIENT) if author is not None else current["version"] > 1
    if changed_by_people and not force:
        edited.append(name)
        return
    version = int(current["version"]) + 1
    update_record(
        tx, event_id, entity, record_id, {**new, "version": version, **({"updated_at": utcnow()} if stamped else {})}
    )
    translated = TRANSLATED.get(entity, "")
    old_flat = flatten_translations({k: current.get(k) for k in new}, translated)
    new_flat = flatten_translations(new, translated)
    changes = {k: (old_flat.get(k), new_flat.get(k)) for k in old_flat.keys() | new_flat.keys()}
    add_history(
        tx,
        event_id,
        entity,
        record_id,
        version,
        {k: v for k, v in sorted(changes.items()) if v[0] != v[1]},
        account_id=None,
        client_id=LOADER_CLIENT,
    )
    record_change(tx, event_id, entity, record_id, ["all"])
    (report.overwritten if changed_by_people else report.updated).append(name)
