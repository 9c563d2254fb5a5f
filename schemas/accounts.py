"""People: participants, site hosts and organizers."""

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from schemas.common import CountryCode, LanguageTag, ShortText, Slug, Stamp

Role = Literal["participant", "host", "organizer"]


class Account(msgspec.Struct, kw_only=True):
    """Someone who uses the app, with the role that decides what they may do."""

    id: Slug
    name: ShortText
    role: Role
    event_id: Slug
    group_id: Slug | None = None
    site_ids: list[Slug] = []
    language: LanguageTag = "en"
    country: CountryCode | None = None
    organization: ShortText = ""


class NewAccount(Account, kw_only=True):
    """An account just created, with its bearer token: shown once, stored only as a hash."""

    token: str
    # The read-only calendar feed token (see FeedUrls); "" where none was issued.
    feed_token: str = ""


class FeedUrls(msgspec.Struct, kw_only=True):
    """Secret, read-only URLs of the account's own calendar feeds, for apps that cannot send a header.

    They carry a feed token, never the bearer token, and grant these two feeds and nothing else.
    """

    ics: str
    schedule_xml: str
    # The same iCalendar feed as a webcal:// link: phones offer to subscribe when it is opened.
    webcal: str


class Me(Account, kw_only=True):
    """The caller's own account, with when its tokens expire and its feed URLs."""

    # RFC 3339 UTC; None: the tokens do not expire.
    expires_at: str | None = None
    # None when the feed token was revoked.
    feed_urls: FeedUrls | None = None


# A name must say who it is: not empty, not only spaces (the service checks the spaces).
PersonName = Annotated[str, Meta(min_length=1, max_length=500)]


class AccountDraft(msgspec.Struct, kw_only=True):
    """What an organizer sends to add someone to their event (the event is the path's)."""

    name: PersonName
    role: Role
    # Absent: made from the name ("Ana Lima" → "ana-lima", numbered when taken).
    id: Slug | None = None
    group_id: Slug | None = None
    site_ids: Annotated[list[Slug], Meta(max_length=100)] = []
    language: LanguageTag = "en"
    country: CountryCode | None = None
    organization: ShortText = ""
    # When its tokens stop working; absent: never.
    expires_at: Stamp | None = None


class Person(Account, kw_only=True):
    """An account as organizers list it: whether its tokens still work, and when its devices last synced."""

    # RFC 3339 UTC; None: the tokens do not expire.
    expires_at: str | None = None
    # RFC 3339 UTC; set once the account is retired (its tokens no longer work).
    retired_at: str | None = None
    # The last push, or pull that caught up, of any of its devices (RFC 3339 UTC); None: never synced.
    last_synced_at: str | None = None
    # How many installs of the app (client ids) have synced as this account.
    devices: int = 0


class People(msgspec.Struct, kw_only=True):
    """Every account of an event, by id."""

    event_id: str
    accounts: list[Person]


class Invitation(Person, kw_only=True):
    """An account with a fresh bearer token, shown this once: the app's sign-in link and its QR code."""

    token: str
    # {public URL}/app/#t={token}: opening it signs the field app in.
    app_url: str
    # The same link as a QR code, an SVG document, for a phone's camera.
    qr_svg: str
    feed_urls: FeedUrls | None = None
