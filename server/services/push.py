"""Processing a push: each mutation exactly once, in id order, committed with the client's new last id."""

import logging
import uuid
from datetime import UTC, datetime
from typing import Any

import msgspec

from schemas.accounts import Account
from schemas.problems import Problem
from schemas.sync import Mutation, MutationResult, PushRequest, PushResponse
from server.errors import PROBLEM_BASE
from server.faults import fault_point
from server.services.appliers import APPLIERS
from server.services.mutations import Context, Known, MutationRejectedError, new_note_row
from server.storage.changes import record_new_changes
from server.storage.db import rfc3339
from server.storage.engine_errors import storage_failure
from server.storage.feed_payloads import values_of
from server.storage.records import (
    NEW_NOTE_COLUMNS,
    claim_ledger,
    insert_new_notes,
    keep_mutation_results,
    mutation_results,
    set_last_mutation_id,
)
from server.storage.unit import Store, Tx
from sync.mutations import InvalidMutationError, clock_skewed, decode_args

log = logging.getLogger("studyvisit.push")

# How many of a client's latest results the server keeps to answer retries (docs §3, "Retries").
RESULT_WINDOW = 1_000

_TITLES = {
    "unknown-mutation-type": "Unknown mutation type",
    "invalid-mutation": "Invalid mutation arguments",
    "forbidden": "Not allowed",
    "not-found": "No such record",
    "internal-error": "The server failed to apply this mutation",
}


def _rejected(mutation_id: int, slug: str, detail: str, status: int = 422) -> MutationResult:
    problem = Problem(
        type=PROBLEM_BASE + slug, title=_TITLES.get(slug, "Mutation rejected"), status=status, detail=detail
    )
    return MutationResult(id=mutation_id, status="rejected", error=problem)


def _internal_error(mutation: Mutation, client_id: str, exc: BaseException) -> MutationResult:
    """A bug met while applying one mutation: logged with its trace under an id the client is given.

    The detail is generic on purpose: the exception may name a record of another event or account.
    """
    correlation_id = str(uuid.uuid4())
    log.error(
        "mutation %d (%s) of client %s failed; correlation id %s",
        mutation.id,
        mutation.type,
        client_id,
        correlation_id,
        exc_info=exc,
    )
    problem = Problem(
        type=PROBLEM_BASE + "internal-error",
        title=_TITLES["internal-error"],
        status=500,
        detail="The server could not apply this mutation and did not keep it. Quote the correlation id to report it.",
        instance=f"urn:uuid:{correlation_id}",
        correlation_id=correlation_id,
    )
    return MutationResult(id=mutation.id, status="rejected", error=problem)


def push(db: Store, account: Account, request: PushRequest, now: datetime | None = None) -> PushResponse:
    """Apply a batch in one transaction, durable before it returns.

    Ids at or below the client's last processed id are duplicates and change nothing; the next
    id is processed (applied, conflict, or rejected: a rejected mutation still uses up its id);
    an id past a gap, and everything after it, is out of order and left for the client to resend.
    A savepoint per mutation keeps a rejected mutation from leaving half its writes behind. A bug
    met by one mutation rejects that mutation only (``internal-error``), so one bad mutation can
    never wedge a device's outbox; a failure of the database itself (busy, full, unwritable)
    rolls the whole batch back and is answered 503/507, so a retry reaches the same end state.

    Concurrent batches (of other devices) may share the transaction (`Store.write_grouped`: one
    fsync for all on SQLite), each in its own savepoint, the client's ledger row written in it:
    nothing is answered before that COMMIT, and a batch that fails undoes only itself.
    """
    now = now or datetime.now(UTC)
    response = db.write_grouped(lambda tx: _apply(tx, account, request, now))
    fault_point("push.after_commit")  # committed, the client not told yet: its retry must be all duplicates
    return response


def _apply(tx: Tx, account: Account, request: PushRequest, now: datetime) -> PushResponse:
    received_at = rfc3339(now)
    results: list[MutationResult] = []
    # Plain creations, written together (the common case): (index in results, mutation, row).
    new_notes: list[tuple[int, Mutation, tuple[Any, ...]]] = []
    taken: set[str] = set()

    def flush() -> None:
        if not new_notes:
            return
        try:
            with tx.savepoint():
                _insert_notes(tx, [row for _, _, row in new_notes])
        except Exception as exc:
            if storage_failure(exc) is not None:
                raise
            # One of them is at fault: write them one by one, so that only it is rejected.
            for index, mutation, row in new_notes:
                try:
                    with tx.savepoint():
                        _insert_notes(tx, [row])
                except Exception as one_exc:
                    if storage_failure(one_exc) is not None:
                        raise
                    results[index] = _internal_error(mutation, request.client_id, one_exc)
        new_notes.clear()

    last = claim_ledger(tx, account.id, request.client_id)
    first_sent = min((m.id for m in request.mutations), default=last + 1)
    # A retry is answered with what its mutation got the first time (a rejection must not hide).
    earlier = mutation_results(tx, account.id, request.client_id, first_sent, last) if first_sent <= last else {}
    known = Known(tx, account.event_id, [m for m in request.mutations if m.id > last])
    gap = False
    for mutation in request.mutations:
        if gap or mutation.id > last + 1:
            gap = True
            results.append(MutationResult(id=mutation.id, status="out_of_order"))
            continue
        if mutation.id <= last:
            results.append(MutationResult(id=mutation.id, status="duplicate", result=earlier.get(mutation.id)))
            continue
        ctx = Context(
            tx=tx,
            account=account,
            client_id=request.client_id,
            mutation_id=mutation.id,
            client_time=mutation.client_time,
            received_at=received_at,
            clock_skewed=clock_skewed(mutation.client_time, now),
            known=known,
        )
        try:
            args = decode_args(mutation)  # first: it refuses unknown types
            row = new_note_row(ctx, args, taken) if mutation.type == "note.put" else None
            if row is not None:
                new_notes.append((len(results), mutation, row))
                taken.add(row[0])
                results.append(MutationResult(id=mutation.id, status="applied", version=1))
            else:
                flush()  # later mutations may build on the notes created so far
                with tx.savepoint():
                    results.append(APPLIERS[mutation.type](ctx, args))
        except InvalidMutationError as exc:
            results.append(_rejected(mutation.id, exc.slug, exc.detail))
        except MutationRejectedError as exc:
            results.append(_rejected(mutation.id, exc.slug, exc.detail, exc.status))
        except Exception as exc:
            if storage_failure(exc) is not None:
                raise  # the database's state, not this mutation's fault: the whole batch waits
            results.append(_internal_error(mutation, request.client_id, exc))
        known.applied(mutation)
        last = mutation.id
    flush()
    set_last_mutation_id(tx, account.id, request.client_id, last)
    processed = [r for r in results if r.status in ("applied", "conflict", "rejected")]
    keep_mutation_results(tx, account.id, request.client_id, processed, RESULT_WINDOW)
    fault_point("push.before_commit")  # every mutation applied, nothing committed yet
    return PushResponse(last_mutation_id=last, results=results)


def _insert_notes(tx: Tx, rows: list[tuple[Any, ...]]) -> None:
    insert_new_notes(tx, rows)
    changes = [change for row in rows for change in _note_changes(row)]
    # Their feed rows' payloads from the values just written, not read back at commit.
    records = {row[0]: _new_note_record(row) for row in rows}
    event_ids = {row[1] for row in rows}
    record_new_changes(tx, changes, values_of(tx, changes, {(e, "note"): records for e in event_ids}))


def _new_note_record(row: tuple[Any, ...]) -> dict[str, Any]:
    """A new note as ``load_records`` would read it back: its row, and the columns' defaults for the rest."""
    record: dict[str, Any] = dict(zip(NEW_NOTE_COLUMNS, row, strict=True))
    record["tags"] = msgspec.json.decode(record["tags"])
    record["deleted"] = 0
    record["version"] = 1
    record["conflicts"] = []
    record["attachments"] = []
    return record


def _note_changes(row: tuple[Any, ...]) -> list[tuple[str, str, str, str]]:
    note_id, event_id, author_id = row[0], row[1], row[2]
    shared = row[NEW_NOTE_COLUMNS.index("share_with_organizers")]
    audiences = [f"acct:{author_id}", *(["org"] if shared else [])]
    return [(event_id, "note", note_id, audience) for audience in audiences]
