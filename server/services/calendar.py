"""The itinerary as an RFC 5545 iCalendar feed that phone and desktop calendars can subscribe to."""

from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

from icalendar import Calendar, Timezone
from icalendar import Event as CalendarEvent
from icalendar.enums import STATUS

from schemas.itinerary import Itinerary, ItineraryItem, Visit
from schemas.places import Event

PRODID = "-//studyvisit//Itinerary//EN"

KIND_LABELS = {
    "visit": "Study visit",
    "plenary": "Plenary",
    "registration": "Registration",
    "break": "Break",
    "meal": "Meal",
    "transfer": "Transfer",
    "other": "Other",
}
TRANSPORT_LABELS = {
    "walk": "on foot",
    "minibus": "minibus",
    "public_transport": "public transport",
    "bike": "bike",
}


def itinerary_ics(event: Event, itinerary: Itinerary) -> bytes:
    """The itinerary as a VCALENDAR: one VEVENT per item, times in the event's zone with its VTIMEZONE.

    The output depends only on the data (no wall clock, no random UIDs), because responses are
    cached and ETagged by their content.
    """
    zone = ZoneInfo(event.timezone)
    name = event.title if itinerary.group_id is None else f"{event.title} ({itinerary.group_id})"
    scope = itinerary.group_id or "all"
    cal = Calendar.new(
        prodid=PRODID,
        version="2.0",
        calscale="GREGORIAN",
        method="PUBLISH",
        name=name,
        # Calendar.new would otherwise pick a random uuid4, which breaks content-based ETags.
        uid=f"itinerary-{scope}@{event.id}.studyvisit",
    )
    cal.add("X-WR-TIMEZONE", event.timezone)
    cal.add_component(_timezone(event, itinerary))
    for item in itinerary.items:
        cal.add_component(_calendar_event(event, item, zone))
    return cal.to_ical()


def _timezone(event: Event, itinerary: Itinerary) -> Timezone:
    """A VTIMEZONE for the event's zone, covering the event and every item with a year to spare either way."""
    days = [event.starts_on, event.ends_on]
    for item in itinerary.items:
        days += [item.visit.starts_at.date(), item.visit.ends_at.date()]
    first, last = min(days), max(days)
    return Timezone.from_tzid(
        event.timezone, first_date=date(first.year - 1, 1, 1), last_date=date(last.year + 2, 1, 1)
    )


def _calendar_event(event: Event, item: ItineraryItem, zone: ZoneInfo) -> CalendarEvent:
    visit = item.visit
    starts = visit.starts_at.astimezone(zone)
    ends = visit.ends_at.astimezone(zone)
    ical_event = CalendarEvent.new(
        # One UID per visit and event, so an update replaces the entry instead of adding a second one.
        uid=f"{visit.id}@{event.id}.studyvisit",
        stamp=_stamp(event, visit),
        last_modified=visit.updated_at,
        start=starts,
        # RFC 5545 §3.6.1: DTEND must be later than DTSTART; without it the event ends when it starts.
        end=ends if ends > starts else None,
        summary=visit.title,
        description=visit_details(visit),
        location=_location(event, item) or None,
        # RFC 5545 §3.8.7.4: SEQUENCE must grow on every change; versions start at 1, sequences at 0.
        sequence=max(visit.version - 1, 0),
        status=STATUS.CANCELLED if visit.status == "cancelled" else STATUS.CONFIRMED,
    )
    if item.lat is not None and item.lon is not None:
        ical_event.add("GEO", (item.lat, item.lon))
    return ical_event


def _stamp(event: Event, visit: Visit) -> datetime:
    """DTSTAMP: when the visit last changed, else a time fixed by the data (never the wall clock)."""
    if visit.updated_at is not None:
        return visit.updated_at.astimezone(UTC)
    if event.updated_at is not None:
        return event.updated_at.astimezone(UTC)
    return datetime.combine(event.starts_on, time(0), UTC)


def _location(event: Event, item: ItineraryItem) -> str:
    if item.site_name:
        return item.site_name
    if item.visit.venue:
        return item.visit.venue
    # A visit with no site of its own happens at the event's venue.
    return event.venue if item.visit.site_id is None else ""


def visit_details(visit: Visit) -> str:
    """What a participant needs beyond the title: kind, meeting point, transport and the English note."""
    lines = [KIND_LABELS.get(visit.kind, visit.kind)]
    if visit.status == "cancelled":
        lines[0] += " (cancelled)"
    if visit.meeting_point:
        lines.append(f"Meeting point: {visit.meeting_point}")
    if visit.transport in TRANSPORT_LABELS:
        lines.append(f"Getting there: {TRANSPORT_LABELS[visit.transport]}")
    note = visit.notes.get("en", "")
    if note:
        lines += ["", note]
    return "\n".join(lines)
