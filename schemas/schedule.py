"""Wire types of the organizers' schedule tools: what changed since a time, itinerary checks, reordering."""

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from schemas.common import Slug
from schemas.itinerary import Visit
from schemas.sync import VisitFields

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


class ProposedVisitChange(msgspec.Struct, kw_only=True):
    """A change of one visit drafted by an organizer, to be checked before it is published."""

    visit_id: Slug
    # As in PATCH …/visits/{visit_id}: absent fields are unchanged.
    fields: VisitFields


class CheckedProblem(ItineraryProblem, kw_only=True):
    """A problem of the programme as the drafted change would leave it."""

    # Not in the programme as it is now: the change would bring it in.
    new: bool


class ProposalCheck(msgspec.Struct, kw_only=True):
    """What the itinerary check would find once a drafted change is published; nothing is written."""

    event_id: str
    # The visit as the change would make it (its version as it is now).
    visit: Visit
    # Every problem of the programme with the change, errors first.
    problems: list[CheckedProblem]
    # Problems of the programme as it is that the change would remove.
    resolved: list[ItineraryProblem]


class PendingAccount(msgspec.Struct, kw_only=True):
    """A participant none of whose devices has pulled a change yet: someone to phone."""

    id: str
    name: str
    group_id: str | None
    # How many devices of the account ever synced (0: the app was never opened).
    devices: int


class ChangeDelivery(msgspec.Struct, kw_only=True):
    """One change as participants are told it, and how far it reached their devices."""

    change: ScheduleChange
    # Participants who follow the visit (their group's, or everyone's when not in a group).
    accounts: int
    accounts_pulled: int
    # Their devices, and how many of those have pulled the change (or a later state of the visit).
    devices: int
    devices_pulled: int
    accounts_pending: list[PendingAccount]


class ChangeDeliveries(msgspec.Struct, kw_only=True):
    """The changes after ``since`` (as GET …/changes tells them), each with its reach among participants."""

    event_id: str
    since: str
    lang: str
    changes: list[ChangeDelivery]
