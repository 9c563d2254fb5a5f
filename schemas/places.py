"""Events and sites: where things happen."""

from datetime import date
from typing import Literal

import msgspec

from schemas.common import CountryCode, Latitude, Longitude, ShortText, Slug, Stamp, Translations

SiteKind = Literal[
    "social_cooperative",
    "worker_cooperative",
    "consumer_cooperative",
    "cooperative",
    "social_enterprise",
    "association",
    "foundation",
    "community_house",
    "network",
    "training_centre",
]
CoordSource = Literal["sourced", "estimated", "surveyed"]


class Event(msgspec.Struct, kw_only=True):
    """A study event: a few days of plenaries and visits in one city."""

    id: Slug
    title: ShortText
    starts_on: date
    ends_on: date
    timezone: ShortText
    venue: ShortText
    venue_site_id: Slug | None = None
    version: int = 1
    updated_at: Stamp | None = None


class OpeningHours(msgspec.Struct, kw_only=True):
    """One opening span, in the event's local time: days as ``mo``..``su``, times as ``HH:MM``."""

    days: list[Literal["mo", "tu", "we", "th", "fr", "sa", "su"]]
    opens: str = msgspec.field(default="00:00")
    closes: str = msgspec.field(default="24:00")


class SiteFields(msgspec.Struct, kw_only=True):
    """What every representation of a site shares."""

    id: Slug
    name: ShortText
    kind: SiteKind
    official_name: ShortText | None = None
    legal_form: ShortText | None = None
    address: ShortText = ""
    postcode: ShortText = ""
    city: ShortText = ""
    country: CountryCode = "IT"
    district: ShortText = ""
    lat: Latitude
    lon: Longitude
    coord_source: CoordSource = "estimated"
    coord_note: ShortText = ""
    themes: list[ShortText] = []
    accessibility: ShortText = ""
    contact: ShortText = ""
    website: ShortText = ""
    opening_hours: list[OpeningHours] = []
    opening_hours_note: ShortText = ""
    meeting_point: ShortText = ""
    sources: list[ShortText] = []
    version: int = 1
    updated_at: Stamp | None = None


class Site(SiteFields, kw_only=True):
    """A place participants visit, with its description in every language it has."""

    description: Translations = {}


class SiteView(SiteFields, kw_only=True):
    """A site as the read API serves it: the description in one language, and which one was chosen."""

    description: str = ""
    description_lang: str = "en"
    languages: list[str] = []
    distance_m: float | None = None
