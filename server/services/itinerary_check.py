"""Checking a programme before people live it: overlaps, transfers too tight to make, closed sites, empty groups,
times in a moved visit's notes that no longer fit it."""

import math
import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from schemas.itinerary import Group, Visit
from schemas.places import Event, OpeningHours, Site
from schemas.schedule import ItineraryCheck, ItineraryProblem
from server.services.itinerary import build_itinerary, visit_place
from server.storage.accounts import group_sizes
from server.storage.catalog import list_groups, list_sites, list_visits
from server.storage.records import history_since
from server.storage.unit import Tx

DAYS = ("mo", "tu", "we", "th", "fr", "sa", "su")
DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_HHMM = re.compile(r"^([01]\d|2[0-4]):([0-5]\d)\Z")
_MINUTES_PER_DAY = 24 * 60
# A clock time as notes write it in the event's languages: "13:45", "9:30", "13 h 45", "13h45".
_CLOCK_IN_TEXT = re.compile(r"(?<![\d:.,])([01]?\d|2[0-3])(?::| ?h ?)([0-5]\d)(?![\d:])")


def check_event(tx: Tx, event: Event) -> ItineraryCheck:
    """Every problem in an event's programme, from one consistent read."""
    visits = list_visits(tx, event.id)
    sites = {s.id: s for s in list_sites(tx, event.id)}
    groups = list_groups(tx, event.id)
    sizes = group_sizes(tx, event.id)
    moved = moved_since_notes(tx, event.id)
    return ItineraryCheck(event_id=event.id, problems=find_problems(event, visits, sites, groups, sizes, moved))


def moved_since_notes(tx: Tx, event_id: str) -> dict[str, frozenset[str]]:
    """Visits whose start or end changed (by the history), each with the note languages rewritten since."""
    moved: dict[str, frozenset[str]] = {}
    for entry in history_since(tx, event_id, "visit", None):  # oldest first
        visit_id, names = entry["entity_id"], entry["changes"].keys()
        if "starts_at" in names or "ends_at" in names:
            moved[visit_id] = frozenset()
        if visit_id in moved:
            # Edits record one key per language ("notes.fr"); a whole "notes" rewrites them all.
            langs = {name.partition(".")[2] or "*" for name in names if name.split(".")[0] == "notes"}
            moved[visit_id] |= langs
    return moved


def find_problems(
    event: Event,
    visits: list[Visit],
    sites: dict[str, Site],
    groups: list[Group],
    sizes: dict[str, int],
    moved: dict[str, frozenset[str]] | None = None,
) -> list[ItineraryProblem]:
    """Overlaps and tight transfers per group, visits outside opening hours, groups with no one; errors first."""
    zone = ZoneInfo(event.timezone)
    # A cancelled visit takes no time and needs no open door.
    active = sorted((v for v in visits if v.status != "cancelled"), key=lambda v: (v.starts_at, v.number))
    problems: list[ItineraryProblem] = []
    for group in groups:
        own = [v for v in active if group.id in v.group_ids]
        problems += overlaps(own, group.id, zone)
        problems += tight_gaps(event, own, sites, group.id)
        if sizes.get(group.id, 0) == 0:
            problems.append(
                ItineraryProblem(
                    kind="empty_group",
                    severity="warning",
                    visit_ids=[v.id for v in own],
                    group_id=group.id,
                    message=f"Group {group.id} ({group.name}) has no participants but {len(own)} visits.",
                )
            )
    for visit in active:
        place = visit_place(visit, sites, event)
        if place is not None and (problem := closed_site(visit, place, zone)) is not None:
            problems.append(problem)
        if moved and visit.id in moved and (problem := stale_times(visit, moved[visit.id], zone)) is not None:
            problems.append(problem)
    # sorted() is stable: within a severity, problems stay by group and time.
    return sorted(problems, key=lambda p: p.severity != "error")


def overlaps(visits: list[Visit], group_id: str, zone: ZoneInfo) -> list[ItineraryProblem]:
    """Pairs of one group's visits (in start order) that take place at the same time."""
    found: list[ItineraryProblem] = []
    for i, first in enumerate(visits):
        for second in visits[i + 1 :]:
            if second.starts_at >= first.ends_at:
                break  # in start order, every later visit starts after this one ends too
            minutes = int((min(first.ends_at, second.ends_at) - second.starts_at) / timedelta(minutes=1))
            found.append(
                ItineraryProblem(
                    kind="overlap",
                    severity="error",
                    visit_ids=[first.id, second.id],
                    group_id=group_id,
                    message=(
                        f"Group {group_id} cannot be at '{first.title}' ({_span(first, zone)}) and "
                        f"'{second.title}' ({_span(second, zone)}): they overlap by {minutes} min."
                    ),
                )
            )
    return found


def tight_gaps(event: Event, visits: list[Visit], sites: dict[str, Site], group_id: str) -> list[ItineraryProblem]:
    """Consecutive places of a group with less time between them than getting there takes.

    The leg into a visit by minibus or public transport is estimated as a ride, any other leg as
    a walk: build_itinerary's estimate and warning.
    """
    by_id = {v.id: v for v in visits}
    found: list[ItineraryProblem] = []
    for item in build_itinerary(event, visits, sites, group_id).items:
        leg, visit = item.leg, item.visit
        if leg is None or leg.gap_minutes < 0:
            continue  # no move, or an overlap, which is reported as such
        previous = by_id[leg.from_visit_id]
        if leg.warning is None:
            continue
        message = leg.warning
        found.append(
            ItineraryProblem(
                kind="tight_gap",
                severity="warning",
                visit_ids=[previous.id, visit.id],
                group_id=group_id,
                message=f"Group {group_id}: {message}",
            )
        )
    return found


def closed_site(visit: Visit, site: Site, zone: ZoneInfo) -> ItineraryProblem | None:
    """A problem when the site publishes opening hours and the visit does not fit in them."""
    spans = parse_opening_hours(site.opening_hours)
    if not spans or within_opening_hours(spans, visit.starts_at.astimezone(zone), visit.ends_at.astimezone(zone)):
        return None
    return ItineraryProblem(
        kind="outside_opening_hours",
        severity="warning",
        visit_ids=[visit.id],
        group_id=_only_group(visit),
        message=(
            f"'{visit.title}' ({_span(visit, zone)}) is outside the opening hours of {site.name}: "
            f"{describe_opening_hours(spans)}."
        ),
    )


def _only_group(visit: Visit) -> str | None:
    # A warning names the group when the visit has just one; a shared visit concerns several.
    return visit.group_ids[0] if len(visit.group_ids) == 1 else None


def times_in_text(text: str) -> list[str]:
    """The clock times a text mentions, as ``HH:MM``, in order and each once."""
    found = [f"{int(h):02d}:{m}" for h, m in _CLOCK_IN_TEXT.findall(text)]
    return list(dict.fromkeys(found))


def stale_times(visit: Visit, rewritten: frozenset[str], zone: ZoneInfo) -> ItineraryProblem | None:
    """A warning when a moved visit's notes mention times outside its new span, in the event's zone.

    Only notes written before the move count (``rewritten``: languages written since, "*" for all):
    a minibus leaving 45 minutes before a visit that has not moved is the plan, not a mistake.
    """
    if "*" in rewritten:
        return None
    starts, ends = visit.starts_at.astimezone(zone), visit.ends_at.astimezone(zone)
    start, end = f"{starts:%H:%M}", f"{ends:%H:%M}"

    def inside(time: str) -> bool:
        # A visit past midnight spans the end of the clock and its start: "23:30" and "00:15" both fit.
        return start <= time <= end if start <= end else (time >= start or time <= end)

    old_notes = {lang: text for lang, text in visit.notes.items() if lang not in rewritten}
    stale = [t for t in times_in_text(" ".join(old_notes.values())) if not inside(t)]
    if not stale:
        return None
    langs = ", ".join(sorted(lang for lang, text in old_notes.items() if any(t in times_in_text(text) for t in stale)))
    return ItineraryProblem(
        kind="stale_time_in_text",
        severity="warning",
        visit_ids=[visit.id],
        group_id=_only_group(visit),
        message=(
            f"'{visit.title}' moved to {_span(visit, zone)} after its notes were written; they still mention "
            f"{', '.join(stale)}: check the notes ({langs})."
        ),
    )


Span = tuple[list[str], int, int]


def parse_opening_hours(hours: list[OpeningHours]) -> list[Span]:
    """Opening spans as (days, opening minute, closing minute); a span closing past midnight ends after 1440.

    A span whose times are not ``HH:MM`` is left out rather than guessed at.
    """
    spans: list[Span] = []
    for span in hours:
        opens, closes = _minute_of_day(span.opens), _minute_of_day(span.closes)
        if opens is None or closes is None or not span.days:
            continue
        if closes <= opens:
            closes += _MINUTES_PER_DAY  # "18:00"-"02:00": open through midnight
        spans.append((list(span.days), opens, closes))
    return spans


def within_opening_hours(spans: list[Span], starts: datetime, ends: datetime) -> bool:
    """Whether a visit from ``starts`` to ``ends`` (local times) fits inside one opening span."""
    day = DAYS[starts.weekday()]
    yesterday = DAYS[(starts.weekday() - 1) % 7]
    start = starts.hour * 60 + starts.minute
    end = start + math.ceil((ends - starts) / timedelta(minutes=1))
    for days, opens, closes in spans:
        if day in days and opens <= start and end <= closes:
            return True
        # The tail of yesterday's span that runs past midnight.
        if yesterday in days and closes > _MINUTES_PER_DAY and end <= closes - _MINUTES_PER_DAY:
            return True
    return False


def describe_opening_hours(spans: list[Span]) -> str:
    """Opening spans as people write them: ``mo, tu 09:00-13:00; sa 10:00-12:00`` (with en dashes)."""
    return "; ".join(f"{', '.join(days)} {_hhmm(opens)}–{_hhmm(closes)}" for days, opens, closes in spans)


def _minute_of_day(text: str) -> int | None:
    match = _HHMM.match(text)
    if match is None:
        return None
    minutes = int(match[1]) * 60 + int(match[2])
    return minutes if minutes <= _MINUTES_PER_DAY else None


def _hhmm(minutes: int) -> str:
    if minutes > _MINUTES_PER_DAY:
        minutes -= _MINUTES_PER_DAY  # a closing time past midnight, written as the clock shows it
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _span(visit: Visit, zone: ZoneInfo) -> str:
    starts, ends = visit.starts_at.astimezone(zone), visit.ends_at.astimezone(zone)
    return f"{DAY_NAMES[starts.weekday()]} {starts:%H:%M}–{ends:%H:%M}"
