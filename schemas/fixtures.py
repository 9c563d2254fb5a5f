"""The seed-data file format read by ``studyvisit load-fixtures``."""

import msgspec

from schemas.accounts import Account
from schemas.feedback import Question
from schemas.itinerary import Group, Visit
from schemas.places import Event, Site


class Fixture(msgspec.Struct, kw_only=True):
    """One event and everything in it."""

    source: str = ""
    event: Event
    sites: list[Site]
    groups: list[Group] = []
    visits: list[Visit] = []
    questions: list[Question] = []
    accounts: list[Account] = []
