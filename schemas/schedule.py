"""Wire types of the organizers' schedule tools: what changed since a time, itinerary checks, reordering."""

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from schemas.common import Slug
from schemas.itinerary import Visit

ChangeKind = Literal["new", "moved", "ends", "cancelled", "restored", "place", "meeting_point", "transport", "groups"]
ProblemKind = Literal["overlap", "tight_gap", "outside_opening_hours", "empty_group", "stale_time_in_text"]
Severity = Literal["error", "warning"]


class ScheduleChange(msgspec.Struct, kw_only=True):
    """One thing a reader of the programme should know changed, said in one sentence."""

    at: str
    visit_id: str
    group_ids: list[str]
    kind: ChangeKind
    text: str
    lang: str


class ScheduleChanges(msgspec.Struct, kw_only=True):
    """What changed in the caller's part of the programme after ``since``, oldest first.

    ``next_since`` is the time of the newest change read: send it as the next ``since``.
    """

    event_id: str
    since: str
    next_since: str
    lang: str
    changes: list[ScheduleChange]


class ItineraryProblem(msgspec.Struct, kw_only=True):
    """Something in the programme that will not work as planned, for organizers to fix."""

    kind: ProblemKind
    severity: Severity
    visit_ids: list[str]
    group_id: str | None
    message: str


class ItineraryCheck(msgspec.Struct, kw_only=True):
    """Every problem found in an event's programme, errors first."""

    event_id: str
    problems: list[ItineraryProblem]


class ReorderRequest(msgspec.Struct, kw_only=True):
    """Visits of one day in their new order: they take the day's existing start times, earliest first."""

    visit_ids: Annotated[list[Slug], Meta(min_length=2, max_length=50)]


class ReorderedVisits(msgspec.Struct, kw_only=True):
    """The visits after reordering, in the order asked for, each with its new version."""

    visits: list[Visit]
