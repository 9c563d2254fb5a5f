"""Token checks on PostgreSQL batched on the event loop (server/storage/pg/token_checks.py), always on PostgreSQL.

The checks that arrive while a statement is out go together in the next one. What keeps that exact
on several servers: a check is answered only by a statement sent after it was made, so a token
revoked (or a version bumped) before a request arrived is seen by the statement that checks it.
Each token gets its own account, never another's in the same statement.
"""

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from schemas.accounts import Account
from server.errors import DatabaseUnavailableError
from server.storage.accounts import retire_account
from server.storage.changes import record_change
from server.storage.pg.token_checks import PgTokenChecks
from tests.conftest import EVENT_ID
from tests.databases import Seeded, pg_demo


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    """One demo event for the module's tests that change nothing."""
    with pg_demo(tmp_path_factory.mktemp("checks") / "studyvisit.db", "sv_checks") as seeded:
        yield seeded


@pytest.fixture
def own_demo(tmp_path: Path) -> Iterator[Seeded]:
    """A demo event of this test's own, to change."""
    with pg_demo(tmp_path / "studyvisit.db", "sv_checks") as seeded:
        yield seeded


def expected(seeded: Seeded, account_id: str) -> Account:
    """The account as a check returns it: the stored fields, without the tokens."""
    account = seeded.accounts[account_id]
    return Account(**{f: getattr(account, f) for f in Account.__struct_fields__})


class Interleaved(PgTokenChecks):
    """Checks that run ``during_first`` once, after the first statement's answer came back and before
    the requests waiting on it are told: whatever happens then happened while that statement was out."""

    def __init__(self, url: str, during_first: Callable[[], Awaitable[None]]) -> None:
        super().__init__(url)
        self.during_first: Callable[[], Awaitable[None]] | None = during_first

    async def _query(self, hashes: list[str]) -> dict[str, tuple[Account, int]]:
        found = await super()._query(hashes)
        hook, self.during_first = self.during_first, None
        if hook is not None:
            await hook()
        return found


def test_concurrent_checks_share_one_statement_and_each_token_gets_its_own_account(demo: Seeded) -> None:
    accounts = list(demo.accounts.values())
    tokens = [a.token for a in accounts] + ["sv_not-a-token", accounts[0].token]

    async def run() -> tuple[list[tuple[Account, int] | None], int]:
        checks = PgTokenChecks(demo.url)
        try:
            found = await asyncio.gather(*(checks.check(t) for t in tokens))
            return found, checks.statements
        finally:
            await checks.close()

    found, statements = asyncio.run(run())
    assert statements == 1
    for account, got in zip(accounts, found, strict=False):
        assert got is not None, account.id
        assert got[0] == expected(demo, account.id)
    assert found[-2] is None  # not a token: refused, without failing the others in its statement
    assert found[-1] == found[0]
    assert len({version for _, version in filter(None, found)}) == 1  # one event, one version


@pytest.mark.parametrize("change", ["retire", "edit"])
def test_a_check_made_while_a_statement_is_out_is_answered_by_a_later_statement(own_demo: Seeded, change: str) -> None:
    """The race a batch could lose: the account is retired (or the event edited) and committed while a
    statement for its token is out; a check made after that commit must not take that statement's
    answer, which may predate the commit: it gets a statement of its own, which sees it."""
    account = own_demo.first("participant")
    store = own_demo.store()
    late: list[asyncio.Task[tuple[Account, int] | None]] = []

    async def commit_then_check() -> None:
        with store.write() as tx:  # committed before the late check is made, as server A answers after COMMIT
            if change == "retire":
                retire_account(tx, account.id)
            else:
                record_change(tx, EVENT_ID, "site", "triciclo", ["all"])  # what a site edit records
        late.append(asyncio.create_task(checks.check(account.token)))
        await asyncio.sleep(0)  # the late check is queued while the first statement's answer is not yet given

    checks = Interleaved(own_demo.url, commit_then_check)

    async def run() -> tuple[tuple[Account, int] | None, tuple[Account, int] | None]:
        try:
            first = await checks.check(account.token)
            return first, await late[0]
        finally:
            await checks.close()

    try:
        first, second = asyncio.run(run())
    finally:
        store.close()
    assert checks.statements == 2
    assert first is not None
    assert first[0] == expected(own_demo, account.id)
    if change == "retire":
        assert second is None
    else:
        assert second is not None
        assert second[1] == first[1] + 1


def test_checks_from_a_new_event_loop_open_their_own_connection(demo: Seeded) -> None:
    """A test client's or a restarted lifespan's loop: the previous loop's connection is not awaited on."""
    checks = PgTokenChecks(demo.url)
    token = demo.token("organizer")

    async def once() -> tuple[Account, int] | None:
        return await checks.check(token)

    first = asyncio.run(once())
    second = asyncio.run(once())
    asyncio.run(checks.close())
    assert first is not None
    assert first == second
    assert checks.statements == 2


def test_an_unreachable_database_is_a_domain_error_for_every_waiting_check() -> None:
    checks = PgTokenChecks("postgresql://postgres@127.0.0.1:1/nowhere", connect_timeout=1)

    async def run() -> list[BaseException | tuple[Account, int] | None]:
        try:
            return await asyncio.gather(checks.check("sv_a"), checks.check("sv_b"), return_exceptions=True)
        finally:
            await checks.close()

    results = asyncio.run(run())
    assert all(isinstance(r, DatabaseUnavailableError) for r in results), results
