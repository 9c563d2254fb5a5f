"""Processing a push: each mutation exactly once, in id order, committed with the client's new last id."""

from datetime import UTC, datetime

from schemas.accounts import Account
from schemas.problems import Problem
from schemas.sync import MutationResult, PushRequest, PushResponse
from server.errors import PROBLEM_BASE
from server.services.appliers import APPLIERS
from server.services.mutations import Context, MutationRejectedError
from server.storage.db import Database, savepoint
from server.storage.records import last_mutation_id, set_last_mutation_id
from sync.mutations import InvalidMutationError, decode_args

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
    with db.write() as conn:
        last = last_mutation_id(conn, account.id, request.client_id)
        gap = False
        for mutation in request.mutations:
            if gap or mutation.id > last + 1:
                gap = True
                results.append(MutationResult(id=mutation.id, status="out_of_order"))
                continue
            if mutation.id <= last:
                results.append(MutationResult(id=mutation.id, status="duplicate"))
                continue
            ctx = Context(conn=conn, account=account, client_id=request.client_id, mutation_id=mutation.id)
            try:
                with savepoint(conn):
                    args = decode_args(mutation, now)  # first: it refuses unknown types
                    results.append(APPLIERS[mutation.type](ctx, args))
            except InvalidMutationError as exc:
                results.append(_rejected(mutation.id, exc.slug, exc.detail))
            except MutationRejectedError as exc:
                results.append(_rejected(mutation.id, exc.slug, exc.detail, exc.status))
            last = mutation.id
        set_last_mutation_id(conn, account.id, request.client_id, last)
    return PushResponse(last_mutation_id=last, results=results)
