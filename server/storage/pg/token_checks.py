"""Bearer-token checks on PostgreSQL: concurrent requests' checks batched into one statement, on an
asynchronous connection of the server's event loop.

Every request that carries a token asks the database for its account and its event's content
version (server/answer_cache.py, server/auth.py). On PostgreSQL that is a round trip to another
process, and run through the pool's blocking connections it stopped the event loop for the whole
wait: one process served one statement at a time. Here the checks wait on the loop instead, and
the checks that arrive while a statement is out go together in the next one (one array of token
hashes, `WHERE token_hash = ANY(...)`): one round trip, one plan, one result for all of them.

Why an answer stays exact on several servers: a check joins only a statement not yet sent, never
one already out, so the statement that answers it was sent after its request arrived. In
autocommit each statement takes its snapshot when it starts, so it sees every transaction that
had committed by then, and a server answers a change only after its COMMIT returned. So once
server A has answered an edit or a revoked token, any request that reaches server B afterwards is
checked by a statement that sees it: the new content version (a new ETag), or no account (401).
Nothing is remembered between statements; there is nothing to invalidate.
"""

import asyncio
import contextlib

import psycopg

from schemas.accounts import Account
from server.storage.accounts import SELECT_BY_TOKEN_HASHES, account_and_version, hash_token
from server.storage.db import utcnow
from server.storage.pg.database import ADAPTERS, PgRow, pg_row, pg_storage_failure, translate

# The most distinct tokens one statement checks; past it, the rest go in the next statement.
MAX_BATCH = 256
_STATEMENT = translate(SELECT_BY_TOKEN_HASHES)

Found = tuple[Account, int] | None


class _Adapted:
    """psycopg's `context` argument: the adapters the pool's connections use too (server/storage/pg/database.py)."""

    adapters = ADAPTERS
    connection = None


class PgTokenChecks:
    """`TokenChecks` on PostgreSQL: one asynchronous connection for the event loop that awaits the checks,
    and at most one statement out on it at a time, holding every check that arrived meanwhile.

    Used from one event loop at a time (as ASGI apps are): no lock. A check awaited from another loop
    (a test client's next lifespan) drops the first loop's connection and opens its own.
    """

    def __init__(self, url: str, *, connect_timeout: float = 10.0) -> None:
        self.url = url
        self.connect_timeout = connect_timeout
        self.statements = 0  # statements run (tests and benchmarks read it)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._conn: psycopg.AsyncConnection[PgRow] | None = None
        # Checks not yet in a statement: token hash -> the futures of the requests that sent it.
        self._waiting: dict[str, list[asyncio.Future[Found]]] = {}
        self._runner: asyncio.Task[None] | None = None

    async def check(self, token: str) -> Found:
        """The token's account and content version, or None, from a statement sent after this call."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._bind(loop)
        waiter: asyncio.Future[Found] = loop.create_future()
        self._waiting.setdefault(hash_token(token), []).append(waiter)
        if self._runner is None:
            self._runner = loop.create_task(self._run())
        return await waiter

    async def _run(self) -> None:
        """Send the waiting checks, one statement at a time, until none wait."""
        try:
            while self._waiting:
                batch = self._take()
                try:
                    found = await self._query(list(batch))
                except BaseException as exc:
                    for waiters in batch.values():
                        for waiter in waiters:
                            if waiter.done():  # a request whose client left is cancelled already
                                continue
                            if isinstance(exc, asyncio.CancelledError):  # the loop is ending
                                waiter.cancel()
                            else:
                                waiter.set_exception(exc)
                    if not isinstance(exc, Exception):
                        raise
                    continue
                for token_hash, waiters in batch.items():
                    result = found.get(token_hash)
                    for waiter in waiters:
                        if not waiter.done():
                            waiter.set_result(result)
        finally:
            self._runner = None

    def _take(self) -> dict[str, list[asyncio.Future[Found]]]:
        """The oldest ``MAX_BATCH`` waiting tokens and their requests, taken off the queue."""
        if len(self._waiting) <= MAX_BATCH:
            batch, self._waiting = self._waiting, {}
            return batch
        hashes = list(self._waiting)[:MAX_BATCH]
        return {h: self._waiting.pop(h) for h in hashes}

    async def _query(self, hashes: list[str]) -> dict[str, tuple[Account, int]]:
        """One statement for these token hashes; a failure of the database as its domain error."""
        try:
            conn = self._conn
            if conn is None or conn.closed:
                conn = self._conn = await psycopg.AsyncConnection[PgRow].connect(
                    self.url,
                    autocommit=True,  # one statement, its own snapshot: no BEGIN or COMMIT round trips
                    row_factory=pg_row,
                    context=_Adapted(),
                    connect_timeout=max(1, round(self.connect_timeout)),
                )
            # Prepared on the connection once: each later statement skips parsing and planning.
            cursor = await conn.execute(_STATEMENT, (hashes, utcnow()), prepare=True)
            rows = await cursor.fetchall()
        except psycopg.Error as exc:
            if self._conn is not None and self._conn.broken:
                await self._drop()  # the next statement connects again
            failure = pg_storage_failure(exc)
            if failure is None:
                raise
            raise failure from exc
        except BaseException:
            # Cancelled half-way (the loop is ending): a statement may still be out on the connection,
            # and its answer would be taken for the next one's. Cut it; the next statement connects again.
            self._cut()
            raise
        self.statements += 1
        return {row["token_hash"]: account_and_version(row) for row in rows}

    def _bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Serve this loop from now on; the previous loop's connection and waiting checks went with it."""
        self._cut()  # its loop is gone or not ours: no await on it is possible here
        self._loop, self._waiting, self._runner = loop, {}, None

    def _cut(self) -> None:
        """Close the connection without awaiting anything."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.pgconn.finish()

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                await conn.close()

    async def close(self) -> None:
        """Close the connection (awaited on the loop it serves; elsewhere it is cut)."""
        if self._loop is asyncio.get_running_loop():
            await self._drop()
        else:
            self._cut()
