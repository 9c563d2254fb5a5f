"""The itinerary as an RFC 5545 iCalendar feed that phone and desktop calendars can subscribe to."""

from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

from icalendar import Calendar, Timezone
from icalendar import Event as CalendarEvent

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
    # Built with Component.add, which icalendar 6.1 (the oldest version allowed) already has; Calendar.new would
    # also pick a random UID, which breaks content-based ETags.
    cal = Calendar()
    cal.add("PRODID", PRODID)
    cal.add("VERSION", "2.0")
    cal.add("CALSCALE", "GREGORIAN")
    cal.add("METHOD", "PUBLISH")
    # RFC 7986 NAME, and the X-WR- properties that most clients still read instead.
    cal.add("NAME", name)
    cal.add("X-WR-CALNAME", name)
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
    ical_event = CalendarEvent()
    # One UID per visit and event, so an update replaces the entry instead of adding a second one.
    ical_event.add("UID", f"{visit.id}@{event.id}.studyvisit")
    ical_event.add("DTSTAMP", _stamp(event, visit))
    if visit.updated_at is not None:
        ical_event.add("LAST-MODIFIED", visit.updated_at.astimezone(UTC))
    ical_event.add("DTSTART", starts)
    # RFC 5545 §3.6.1: DTEND must be later than DTSTART; without it the event ends when it starts.
    if ends > starts:
        ical_event.add("DTEND", ends)
    ical_event.add("SUMMARY", visit.title)
    ical_event.add("DESCRIPTION", visit_details(visit))
    location = _location(event, item)
    if location:
        ical_event.add("LOCATION", location)
    if item.lat is not None and item.lon is not None:
        ical_event.add("GEO", (item.lat, item.lon))
    # RFC 5545 §3.8.7.4: SEQUENCE must grow on every change; versions start at 1, sequences at 0.
    ical_event.add("SEQUENCE", max(visit.version - 1, 0))
    ical_event.add("STATUS", "CANCELLED" if visit.status == "cancelled" else "CONFIRMED")
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
