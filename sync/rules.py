"""The protocol's pure rules: field merging, conflict detection and who may see what. No I/O."""

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

# Site fields a host may change; organizers may change these and the organizer-only ones.
HOST_SITE_FIELDS = frozenset(
    {
        "description",
        "accessibility",
        "contact",
        "website",
        "opening_hours",
        "opening_hours_note",
        "meeting_point",
        "address",
        "postcode",
        "city",
        "district",
        "lat",
        "lon",
        "coord_source",
        "coord_note",
    }
)
ORGANIZER_SITE_FIELDS = HOST_SITE_FIELDS | {"name", "official_name", "kind", "legal_form", "themes"}


# The fields of a note and of feedback, with the value each has when a create leaves it out and
# that ``null`` restores in an edit (docs §4). Answers are fields of their own (``answers.<id>``),
# whose default is "no answer".
NOTE_DEFAULTS: Mapping[str, Any] = MappingProxyType(
    {
        "visit_id": None,
        "site_id": None,
        "body": "",
        "tags": [],
        "lat": None,
        "lon": None,
        "captured_at": None,
        "share_with_organizers": False,
        "attachments": [],
    }
)
FEEDBACK_DEFAULTS: Mapping[str, Any] = MappingProxyType({"rating": None, "comment": ""})


_IMMUTABLE = (str, int, float, type(None))


def _fresh(default: Any) -> Any:
    # A mutable default ([]) is copied so that no caller's record shares it; the rest are shared
    # as they are (a deepcopy of every default was a fifth of a push's CPU).
    if isinstance(default, _IMMUTABLE):
        return default
    return [] if default == [] else copy.deepcopy(default)


def edited_fields(sent: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """What an edit sets, as in a JSON merge patch (RFC 7396): the fields it sent, ``null``
    standing for the field's default; fields it left out are not in the result (unchanged)."""
    return {name: _fresh(defaults[name]) if value is None else value for name, value in sent.items()}


def created_fields(sent: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """Every field of a new record: what was sent, the default for what was not (or was null)."""
    edited = edited_fields(sent, defaults)
    return {**{name: edited[name] if name in edited else _fresh(d) for name, d in defaults.items()}, **edited}


@dataclass
class Merge:
    """What to write, and which incoming values lost to a concurrent edit."""

    apply: dict[str, Any] = field(default_factory=dict)
    conflicts: dict[str, Any] = field(default_factory=dict)


def merge_fields(
    current: Mapping[str, Any],
    incoming: Mapping[str, Any],
    changed_since_base: Mapping[str, Any],
    *,
    touched: frozenset[str] | None = None,
) -> Merge:
    """Three-way merge of one record, field by field.

    ``changed_since_base`` maps each field that someone else changed after the client's base
    version to its value at that base. A field the client did not touch (its value equals the
    base value, or it is not in ``touched`` when the client says which fields it touched) keeps
    the server's value. A field only the client changed takes the client's value. A field both
    changed to different values keeps the server's value: the first to arrive stands, and the
    client's value is reported as a conflict so that nothing typed is lost.
    """
    result = Merge()
    for name, value in incoming.items():
        if current.get(name) == value:
            continue
        if name not in changed_since_base:
            result.apply[name] = value
            continue
        client_touched = name in touched if touched is not None else value != changed_since_base[name]
        if client_touched:
            result.conflicts[name] = value
    return result


def flatten_translations(fields: Mapping[str, Any], name: str = "description") -> dict[str, Any]:
    """Treat each language of a translated field as its own field (``description.fr``), so two
    hosts editing two languages at once merge instead of conflicting."""
    flat = {k: v for k, v in fields.items() if k != name}
    for lang, text in (fields.get(name) or {}).items():
        flat[f"{name}.{lang}"] = text
    return flat


def note_visible(note: Mapping[str, Any], account_id: str, role: str) -> bool:
    """A note is seen by its author, and by organizers once its author shares it."""
    return note["author_id"] == account_id or (role == "organizer" and bool(note["share_with_organizers"]))


def feedback_visible(feedback: Mapping[str, Any], account_id: str, role: str, site_ids: frozenset[str]) -> bool:
    """Feedback is seen by its author, by organizers, and (without its author) by hosts of the visited site."""
    if feedback["author_id"] == account_id or role == "organizer":
        return True
    return role == "host" and feedback.get("site_id") in site_ids


def audiences(account_id: str, role: str, site_ids: frozenset[str] | list[str]) -> list[str]:
    """The change-feed audiences an account listens to."""
    keys = ["all", f"acct:{account_id}"]
    if role == "organizer":
        keys.append("org")
    if role == "host":
        keys.extend(f"site:{s}" for s in site_ids)
    return keys


def feedback_audiences(author_id: str, site_id: str | None, *former_sites: str | None) -> list[str]:
    """Whom a change to feedback is addressed to: its author, organizers, the hosts of its visit's
    site, and the hosts of sites it was at before (so that a moved visit's feedback reaches them
    as a delete)."""
    sites = dict.fromkeys(s for s in (site_id, *former_sites) if s is not None)
    return [f"acct:{author_id}", "org", *(f"site:{s}" for s in sites)]
