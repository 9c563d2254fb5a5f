"""Loading seed data: an event with its sites, groups, visits, questions and accounts."""

from pathlib import Path

import msgspec

from schemas.accounts import NewAccount
from schemas.fixtures import Fixture
from server.storage.accounts import create_account, get_account
from server.storage.catalog import put_event, put_group, put_question, put_site, put_visit
from server.storage.db import Database

FIXTURES_DIR = Path(__file__).resolve().parent.parent / "fixtures"
DEMO_FIXTURE = FIXTURES_DIR / "turin-sse-2025.json"


def read_fixture(path: Path) -> Fixture:
    """Parse and validate a fixture file."""
    return msgspec.json.decode(path.read_bytes(), type=Fixture)


def load_fixture(db: Database, fixture: Fixture) -> list[NewAccount]:
    """Load a fixture in one transaction; returns the accounts created now, with their tokens.

    Loading again updates the programme and leaves existing accounts (and their tokens) alone.
    """
    created: list[NewAccount] = []
    with db.write() as conn:
        put_event(conn, fixture.event)
        for site in fixture.sites:
            put_site(conn, fixture.event.id, site)
        for group in fixture.groups:
            put_group(conn, fixture.event.id, group)
        for visit in fixture.visits:
            put_visit(conn, fixture.event.id, visit)
        for question in fixture.questions:
            put_question(conn, fixture.event.id, question)
        for account in fixture.accounts:
            if get_account(conn, account.id) is None:
                created.append(create_account(conn, account))
    return created
