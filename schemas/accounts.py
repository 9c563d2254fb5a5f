"""People: participants, site hosts and organizers."""

from typing import Literal

import msgspec

from schemas.common import CountryCode, LanguageTag, ShortText, Slug

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
