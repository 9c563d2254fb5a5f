"""Processing a push: each mutation exactly once, in id order, committed with the client's new last id."""

from datetime import UTC, datetime
from typing import Any

from schemas.accounts import Account
from schemas.problems import Problem
from schemas.sync import MutationResult, PushRequest, PushResponse
from server.errors import PROBLEM_BASE
from server.services.appliers import APPLIERS
from server.services.mutations import Context, MutationRejectedError, new_note_row
from server.storage.changes import record_changes
from server.storage.db import Database, savepoint
from server.storage.records import (
    NEW_NOTE_COLUMNS,
    insert_new_notes,
    keep_mutation_results,
    last_mutation_id,
    mutation_results,
    set_last_mutation_id,
)
from sync.mutations import InvalidMutationError, decode_args

# How many of a client's latest results the server keeps to answer retries (docs §3, "Retries").
RESULT_WINDOW = 1_000

_TITLES = {
    "unknown-mutation-type": "Unknown mutation type",
    "invalid-mutation": "Invalid mutation arguments",
    "invalid-client-time": "Implausible client time",
    "forbidden": "Not allowed",
    "not-found": "No such record",
}


def _rejected(mutation_id: int, slug: str, detail: str, status: int = 422) -> MutationResult:
    problem = Problem(
        type=PROBLEM_BASE + slug, title=_TITLES.get(slug, "Mutation rejected"), status=status, detail=detail
    )
    return MutationResult(id=mutation_id, status="rejected", error=problem)


def push(db: Database, account: Account, request: PushRequest, now: datetime | None = None) -> PushResponse:
    """Apply a batch in one transaction.

    Ids at or below the client's last processed id are duplicates and change nothing; the next
    id is processed (applied, conflict, or rejected: a rejected mutation still uses up its id);
    an id past a gap, and everything after it, is out of order and left for the client to resend.
    A savepoint per mutation keeps a rejected mutation from leaving half its writes behind; an
    unexpected error rolls the whole batch back, so a retry reaches the same end state.
    """
    now = now or datetime.now(UTC)
    results: list[MutationResult] = []
    new_notes: list[tuple[Any, ...]] = []  # plain creations, written together (the common case)
    taken: set[str] = set()

    def flush() -> None:
        if not new_notes:
            return
        insert_new_notes(conn, new_notes)
        record_changes(conn, [change for row in new_notes for change in _note_changes(row)])
        new_notes.clear()

    with db.write() as conn:
        last = last_mutation_id(conn, account.id, request.client_id)
        first_sent = min((m.id for m in request.mutations), default=last + 1)
        # A retry is answered with what its mutation got the first time (a rejection must not hide).
        earlier = mutation_results(conn, account.id, request.client_id, first_sent, last) if first_sent <= last else {}
        gap = False
        for mutation in request.mutations:
            if gap or mutation.id > last + 1:
                gap = True
                results.append(MutationResult(id=mutation.id, status="out_of_order"))
                continue
            if mutation.id <= last:
                results.append(MutationResult(id=mutation.id, status="duplicate", result=earlier.get(mutation.id)))
                continue
            ctx = Context(conn=conn, account=account, client_id=request.client_id, mutation_id=mutation.id)
            try:
                args = decode_args(mutation, now)  # first: it refuses unknown types
                row = new_note_row(ctx, args, taken) if mutation.type == "note.put" else None
                if row is not None:
                    new_notes.append(row)
                    taken.add(row[0])
                    results.append(MutationResult(id=mutation.id, status="applied", version=1))
                else:
                    flush()  # later mutations may build on the notes created so far
                    with savepoint(conn):
                        results.append(APPLIERS[mutation.type](ctx, args))
            except InvalidMutationError as exc:
                results.append(_rejected(mutation.id, exc.slug, exc.detail))
            except MutationRejectedError as exc:
                results.append(_rejected(mutation.id, exc.slug, exc.detail, exc.status))
            last = mutation.id
        flush()
        set_last_mutation_id(conn, account.id, request.client_id, last)
        processed = [r for r in results if r.status in ("applied", "conflict", "rejected")]
        keep_mutation_results(conn, account.id, request.client_id, processed, RESULT_WINDOW)
    return PushResponse(last_mutation_id=last, results=results)


def _note_changes(row: tuple[Any, ...]) -> list[tuple[str, str, str, str]]:
    note_id, event_id, author_id = row[0], row[1], row[2]
    shared = row[NEW_NOTE_COLUMNS.index("share_with_organizers")]
    audiences = [f"acct:{author_id}", *(["org"] if shared else [])]
    return [(event_id, "note", note_id, audience) for audience in audiences]
