"""Wire types of the editing side: history of changes, group membership."""

from typing import Any

import msgspec

from schemas.common import Slug


class FieldChange(msgspec.Struct, kw_only=True):
    """One field's value before and after a change."""

    old: Any
    new: Any


class HistoryEntry(msgspec.Struct, kw_only=True):
    """Who changed which fields of a site or visit, when, from what to what."""

    id: int
    entity: str
    entity_id: str
    version: int
    account_id: str | None
    client_id: str | None
    # The account's name when it still exists: what a reader of the history recognises.
    account_name: str | None = None
    at: str
    changes: dict[str, FieldChange]
    flagged: str | None = None
    reverted_by: int | None = None


class GroupMembers(msgspec.Struct, kw_only=True):
    """The participants of a group: exactly these, replacing the previous list."""

    account_ids: list[Slug]
