"""A drafted visit change checked before it is published: the itinerary check run on the programme as the
change would leave it, by applying the change with the code that publishes it, then rolling it back."""

from schemas.accounts import Account
from schemas.schedule import CheckedProblem, ItineraryProblem, ProposalCheck, ProposedVisitChange
from schemas.sync import VisitPatchArgs
from server.services.itinerary_check import check_event
from server.services.mutations import Context
from server.services.visits import require_organizer, visit_patch
from server.storage.catalog import get_event, get_visit
from server.storage.unit import Store


def _key(problem: ItineraryProblem) -> tuple[str, tuple[str, ...], str | None]:
    # Messages carry the times, which a change moves: the same problem is the same kind, visits and group.
    return (problem.kind, tuple(problem.visit_ids), problem.group_id)


def check_proposal(db: Store, account: Account, proposal: ProposedVisitChange) -> ProposalCheck:
    """The problems the programme would have with this change, which are new, and which it would remove."""
    with db.trial() as tx:
        ctx = Context(tx, account, None, None)
        require_organizer(ctx)
        event = get_event(tx, account.event_id)
        visit = get_visit(tx, account.event_id, proposal.visit_id)
        before = check_event(tx, event).problems
        # The rules of publishing (end after start, known site and groups, "changed" status) apply
        # as they will: a draft they refuse is refused here with the same problem document.
        visit_patch(ctx, VisitPatchArgs(visit_id=visit.id, base_version=visit.version, fields=proposal.fields))
        proposed = get_visit(tx, account.event_id, visit.id)
        after = check_event(tx, event).problems
    proposed.version = visit.version
    proposed.updated_at = visit.updated_at
    old = {_key(p) for p in before}
    new = {_key(p) for p in after}
    return ProposalCheck(
        event_id=event.id,
        visit=proposed,
        problems=[
            CheckedProblem(
                kind=p.kind,
                severity=p.severity,
                visit_ids=p.visit_ids,
                group_id=p.group_id,
                message=p.message,
                new=_key(p) not in old,
            )
            for p in after
        ],
        resolved=[p for p in before if _key(p) not in new],
    )
