"""The programme as frab schedule XML, the format offline schedule apps (EventFahrplan, Giggity, ConfClerk) import.

The output validates against the current c3voc schema (voc/schedule, validator/xsd/schedule.xml.xsd; a copy with
its commit is in tests/data). It depends only on the data, because responses are cached and ETagged by their content.

A schedule app keeps each conference it imported and updates it when the feed is fetched again. ConfClerk finds
the conference to update by its <conference><title> (src/sql/sqlengine.cpp, addConferenceToDB), other apps by the
acronym or the URL: so title and acronym never change between fetches (no dates, versions or counts in them), and
a partial feed (one group's, one host's) has a title and acronym of its own, so that it never merges into the
whole programme's conference.
"""

import hashlib
import re
import uuid
import xml.etree.ElementTree as ET
from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from schemas.itinerary import Visit
from schemas.places import Event, Site
from server.services.calendar import KIND_LABELS, visit_details

# Every guid is a uuid5 in this namespace, so it stays the same for the same event and visit.
GUID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_DNS, "studyvisit.schedule")
# XML 1.0 cannot carry most C0 controls, even escaped; ElementTree would write them and produce a broken file.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def schedule_xml(
    event: Event, visits: list[Visit], sites: dict[str, Site], feed: tuple[str, str] | None = None
) -> bytes:
    """These visits as a frab <schedule>: one <day> per event day, one <room> per place.

    ``feed`` is the (key, name) of a partial feed, such as a group's ("G1", "Group 1"): it names the conference.
    """
    zone = ZoneInfo(event.timezone)
    ordered = sorted(visits, key=lambda v: (v.starts_at, v.number, v.id))
    by_day: dict[date, list[Visit]] = defaultdict(list)
    for visit in ordered:
        by_day[visit.starts_at.astimezone(zone).date()].append(visit)
    # The event's days, stretched if a visit falls outside them, so that no visit is silently dropped.
    first = min([event.starts_on, *by_day])
    last = max([event.ends_on, *by_day])
    days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    ids = _numeric_ids(event, visits)

    root = ET.Element("schedule")
    _text(root, "version", _version(event, visits, sites))
    conference = ET.SubElement(root, "conference")
    _text(conference, "title", event.title if feed is None else f"{event.title} — {feed[1]}")
    _text(conference, "acronym", event.id if feed is None else f"{event.id}-{_acronym_part(feed[0])}")
    _text(conference, "start", first.isoformat())
    _text(conference, "end", last.isoformat())
    _text(conference, "days", str(len(days)))
    _text(conference, "timeslot_duration", "00:15")
    # IANA name: apps show times in the venue's zone, whatever the phone's (c3voc schema, since 2020).
    _text(conference, "time_zone_name", event.timezone)
    for index, day in enumerate(days, start=1):
        day_start = datetime.combine(day, time(0), zone)
        day_end = datetime.combine(day + timedelta(days=1), time(0), zone)
        day_element = ET.SubElement(
            root,
            "day",
            index=str(index),
            date=day.isoformat(),
            start=day_start.isoformat(),
            end=day_end.isoformat(),
        )
        rooms: dict[str, list[Visit]] = {}
        for visit in by_day.get(day, []):
            # Rooms appear in the order of their first visit of the day.
            rooms.setdefault(_room(event, visit, sites), []).append(visit)
        for room_name, room_visits in rooms.items():
            room = ET.SubElement(day_element, "room", name=_clean(room_name))
            for visit in room_visits:
                _event(room, event, visit, sites, room_name, ids[visit.id], zone)
    ET.indent(root)
    return ET.tostring(root, encoding="UTF-8", xml_declaration=True) + b"\n"


def _event(
    room: ET.Element,
    event: Event,
    visit: Visit,
    sites: dict[str, Site],
    room_name: str,
    number: int,
    zone: ZoneInfo,
) -> None:
    site = sites.get(visit.site_id) if visit.site_id else None
    starts = visit.starts_at.astimezone(zone)
    guid = uuid.uuid5(GUID_NAMESPACE, f"{event.id}/{visit.id}")
    element = ET.SubElement(room, "event", id=str(number), guid=str(guid))
    _text(element, "date", starts.isoformat(timespec="seconds"))
    _text(element, "start", starts.strftime("%H:%M"))
    _text(element, "duration", _duration(visit.ends_at - visit.starts_at))
    _text(element, "room", room_name)
    _text(element, "slug", f"{event.id}-{visit.id}")
    title = f"CANCELLED: {visit.title}" if visit.status == "cancelled" else visit.title
    _text(element, "title", title)
    _text(element, "subtitle", _groups(visit))
    # Apps colour and filter by track: the kind of item (visit, plenary, break...) is what a participant
    # filters by; one track per combination of groups would be noise.
    _text(element, "track", KIND_LABELS.get(visit.kind, visit.kind))
    _text(element, "type", visit.kind)
    _text(element, "language", "en")
    _text(element, "abstract", site.description.get("en", "") if site else "")
    _text(element, "description", visit_details(visit))
    ET.SubElement(element, "persons")
    links = ET.SubElement(element, "links")
    if site is not None and site.website:
        link = ET.SubElement(links, "link", href=_clean(_absolute_url(site.website)))
        link.text = _clean(site.name)


def _groups(visit: Visit) -> str:
    return f"Groups {', '.join(visit.group_ids)}" if visit.group_ids else "All groups"


def _acronym_part(key: str) -> str:
    # Acronyms end up in file names and URLs of some apps: keep them to letters, digits and dashes.
    return re.sub(r"[^A-Za-z0-9-]+", "-", key).strip("-").lower() or "feed"


def _room(event: Event, visit: Visit, sites: dict[str, Site]) -> str:
    """The place a visit happens: its site, else its own venue, else the event's venue."""
    site = sites.get(visit.site_id) if visit.site_id else None
    if site is not None:
        return site.name
    return visit.venue or event.venue


def _numeric_ids(event: Event, visits: list[Visit]) -> dict[str, int]:
    """Each visit's frab id: its number, which the schema requires to be positive and unique.

    A visit without a usable number (0, or one another visit already has) gets a number derived from
    its id, above 2**30 so that it cannot meet a hand-assigned one: stable across exports either way.
    """
    ids: dict[str, int] = {}
    taken: set[int] = set()
    for visit in sorted(visits, key=lambda v: (v.number, v.id)):
        number = visit.number
        if number <= 0 or number in taken:
            digest = uuid.uuid5(GUID_NAMESPACE, f"{event.id}/{visit.id}").int
            number = (digest & 0x3FFFFFFF) | 0x40000000
            while number in taken:
                number = number + 1 if number < 0x7FFFFFFF else 0x40000000
        taken.add(number)
        ids[visit.id] = number
    return ids


def _version(event: Event, visits: list[Visit], sites: dict[str, Site]) -> str:
    """A version that changes whenever the data does: the latest change in UTC and a digest of every version."""
    parts = [f"event:{event.id}:{event.version}"]
    parts += sorted(f"visit:{v.id}:{v.version}" for v in visits)
    parts += sorted(f"site:{s.id}:{s.version}" for s in sites.values())
    digest = hashlib.sha256("\n".join(parts).encode()).hexdigest()[:8]
    candidates = [event.updated_at, *(v.updated_at for v in visits), *(s.updated_at for s in sites.values())]
    stamps = [s for s in candidates if s is not None]
    if not stamps:
        return digest
    return f"{max(stamps).astimezone(UTC):%Y-%m-%dT%H:%M:%SZ} {digest}"


def _duration(length: timedelta) -> str:
    """HH:MM, as the schema's duration pattern allows (at most 99:59)."""
    minutes = min(max(int(length.total_seconds() // 60), 0), 99 * 60 + 59)
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _absolute_url(website: str) -> str:
    # Sites often list a bare host ("itcilo.org"); schedule apps need a scheme to open the link.
    return website if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", website) else f"https://{website}"


def _clean(text: str) -> str:
    return _NOT_XML.sub("", text)


def _text(parent: ET.Element, tag: str, text: str) -> ET.Element:
    element = ET.SubElement(parent, tag)
    element.text = _clean(text)
    return element
