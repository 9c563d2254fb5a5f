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
