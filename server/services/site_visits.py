"""What a site's hosts read about the visits they receive: the times, the groups and how many come."""

from schemas.accounts import Account
from schemas.itinerary import GroupAttendance, SiteVisit, SiteVisits
from server.errors import ForbiddenError
from server.storage.accounts import group_sizes
from server.storage.catalog import get_event, get_site, list_groups, list_visits
from server.storage.unit import Store


def site_visits(db: Store, account: Account, site_id: str) -> SiteVisits:
    """The visits at a site with their groups' sizes: for the site's hosts and for organizers."""
    # Group sizes count participants: the same readers as the site's history.
    if account.role == "participant" or (account.role == "host" and site_id not in account.site_ids):
        raise ForbiddenError("The visits at a site, with group sizes, are for organizers and the site's hosts.")
    with db.read() as tx:
        event = get_event(tx, account.event_id)
        get_site(tx, account.event_id, site_id)  # or 404
        visits = list_visits(tx, account.event_id, site_ids=[site_id])
        names = {g.id: g.name for g in list_groups(tx, account.event_id)}
        sizes = group_sizes(tx, account.event_id)
    rows: list[SiteVisit] = []
    for visit in visits:
        groups = [GroupAttendance(id=g, name=names.get(g, g), participants=sizes.get(g, 0)) for g in visit.group_ids]
        rows.append(SiteVisit(visit=visit, groups=groups, participants=sum(g.participants for g in groups)))
    return SiteVisits(event_id=account.event_id, site_id=site_id, timezone=event.timezone, visits=rows)
