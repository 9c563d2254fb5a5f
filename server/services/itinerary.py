"""Itineraries: visits in order, with the walk between consecutive places."""

from schemas.itinerary import Itinerary, ItineraryItem, Leg, Visit
from schemas.places import Event, Site
from server.geo import distance_m, transit_minutes, walking_estimate

RIDES = {"minibus": "minibus", "public_transport": "public transport"}


def visit_place(visit: Visit, sites: dict[str, Site], event: Event) -> Site | None:
    """Where a visit happens: its site, else the event's venue site."""
    site_id = visit.site_id or event.venue_site_id
    return sites.get(site_id) if site_id else None


def build_itinerary(
    event: Event, visits: list[Visit], sites: dict[str, Site], group_id: str | None, *, with_legs: bool = True
) -> Itinerary:
    """Order visits and add, between consecutive places, the walking estimate and a warning when it does not fit."""
    items: list[ItineraryItem] = []
    warnings: list[str] = []
    previous: tuple[Visit, Site | None] | None = None
    for visit in sorted(visits, key=lambda v: (v.starts_at, v.number)):
        place = visit_place(visit, sites, event)
        leg = None
        if with_legs and previous is not None and visit.status != "cancelled":
            prev_visit, prev_place = previous
            if prev_place is not None and place is not None and prev_place.id != place.id:
                metres, minutes = walking_estimate((prev_place.lat, prev_place.lon), (place.lat, place.lon))
                gap = int((visit.starts_at - prev_visit.ends_at).total_seconds() // 60)
                # A visit's transport takes the group there and back: a ride either way.
                mode = next((t for t in (visit.transport, prev_visit.transport) if t in RIDES), "walk")
                if mode == "walk":
                    needed, how = minutes, f"walking {metres / 1000:.1f} km"
                else:
                    straight = distance_m((prev_place.lat, prev_place.lon), (place.lat, place.lon))
                    needed, how = transit_minutes(straight), f"the {RIDES[mode]} ride ({straight / 1000:.1f} km)"
                warning = None
                if gap < needed:
                    warning = (
                        f"Only {gap} min between '{prev_visit.title}' and '{visit.title}', "
                        f"but {how} takes about {needed} min."
                    )
                    warnings.append(warning)
                leg = Leg(
                    from_visit_id=prev_visit.id,
                    distance_m=metres,
                    walking_minutes=minutes,
                    gap_minutes=gap,
                    warning=warning,
                    mode=mode,
                    travel_minutes=needed,
                )
        items.append(
            ItineraryItem(
                visit=visit,
                site_name=place.name if place else None,
                lat=place.lat if place else None,
                lon=place.lon if place else None,
                leg=leg,
            )
        )
        if visit.status != "cancelled":
            previous = (visit, place)
    return Itinerary(event_id=event.id, group_id=group_id, timezone=event.timezone, items=items, warnings=warnings)
