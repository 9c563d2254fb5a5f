"""Groups, visits and the itinerary built from them."""

from typing import Literal

import msgspec

from schemas.common import Latitude, Longitude, ShortText, Slug, Stamp, Translations

VisitStatus = Literal["scheduled", "changed", "cancelled"]
VisitKind = Literal["visit", "plenary", "registration", "break", "meal", "transfer", "other"]
TransportMode = Literal["walk", "minibus", "public_transport", "bike", "none"]


class Group(msgspec.Struct, kw_only=True):
    """A group of participants who travel together."""

    id: Slug
    name: ShortText
    version: int = 1


class VisitDraft(msgspec.Struct, kw_only=True):
    """What an organizer writes to create a visit: everything but what the server assigns."""

    id: Slug
    title: ShortText
    starts_at: Stamp
    ends_at: Stamp
    group_ids: list[Slug] = []
    site_id: Slug | None = None
    venue: ShortText = ""
    kind: VisitKind = "visit"
    meeting_point: ShortText = ""
    transport: TransportMode = "none"
    notes: Translations = {}
    status: VisitStatus = "scheduled"


class Visit(VisitDraft, kw_only=True):
    """One itinerary item: a visit to a site, or a session at a venue."""

    feedback_closed: bool = False
    number: int = 0
    version: int = 1
    updated_at: Stamp | None = None


class Leg(msgspec.Struct, kw_only=True):
    """Getting from the previous item's place: on foot, or by the visit's minibus or public transport."""

    from_visit_id: str
    distance_m: float
    walking_minutes: int
    gap_minutes: int
    warning: str | None = None
    mode: str = "walk"
    travel_minutes: int = 0


class ItineraryItem(msgspec.Struct, kw_only=True):
    """A visit as placed in an itinerary, with the walk from the item before it."""

    visit: Visit
    site_name: str | None = None
    lat: Latitude | None = None
    lon: Longitude | None = None
    leg: Leg | None = None


class Itinerary(msgspec.Struct, kw_only=True):
    """The ordered items of one group, or of everything the caller may see."""

    event_id: str
    group_id: str | None
    timezone: str
    items: list[ItineraryItem]
    warnings: list[str] = []


class GroupAttendance(msgspec.Struct, kw_only=True):
    """One group going to a visit, and how many participants it has."""

    id: str
    name: str
    participants: int


class SiteVisit(msgspec.Struct, kw_only=True):
    """A visit at a site as its hosts read it: when, and who comes."""

    visit: Visit
    groups: list[GroupAttendance]
    # The sum over its groups: how many people to expect.
    participants: int


class SiteVisits(msgspec.Struct, kw_only=True):
    """Every visit at one site, in time order, with the size of each group that comes."""

    event_id: str
    site_id: str
    timezone: str
    visits: list[SiteVisit]
