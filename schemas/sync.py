"""Wire types of sync protocol v1: push, pull, and the arguments of each mutation type.

Clients in the field lag behind the server, so every field added after v1 gets a default and
unknown fields are ignored. Mutation type names are explicit strings, never class names.
"""

from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from schemas.common import SHA256_PATTERN, LanguageTag, Latitude, Longitude, LongText, ShortText, Slug, Stamp, Uuid
from schemas.feedback import Question
from schemas.itinerary import Group, TransportMode, Visit, VisitDraft, VisitKind, VisitStatus
from schemas.places import CoordSource, Event, OpeningHours, Site, SiteKind
from schemas.problems import Problem

PROTOCOL_VERSION = 1
SUPPORTED_PROTOCOLS = (1,)

MutationId = Annotated[int, Meta(ge=1, le=2**53 - 1)]
Version = Annotated[int, Meta(ge=0, le=2**53 - 1)]
NoteBody = Annotated[str, Meta(max_length=20_000)]
Tag = Annotated[str, Meta(min_length=1, max_length=64)]
Rating = Annotated[int, Meta(ge=1, le=5)]
Answer = Annotated[str, Meta(max_length=5_000)] | Rating

MutationStatus = Literal["applied", "duplicate", "rejected", "conflict", "out_of_order"]
EntityKind = Literal["event", "site", "visit", "group", "question", "note", "feedback"]


class Mutation(msgspec.Struct, kw_only=True):
    """One offline change. ``args`` are checked per type when the mutation is processed."""

    id: MutationId
    type: Annotated[str, Meta(max_length=64)]
    args: dict[str, Any]
    client_time: Annotated[str, Meta(max_length=64)] | None = None


class PushRequest(msgspec.Struct, kw_only=True):
    """A batch of mutations from one client install, in id order."""

    client_id: Uuid
    protocol: int
    mutations: list[Mutation]


class MutationOutcome(msgspec.Struct, kw_only=True, omit_defaults=True):
    """What became of one mutation when it was processed."""

    id: int
    status: MutationStatus
    error: Problem | None = None
    # The record's version after this mutation, and its id where it differs from the one sent
    # (a second device's feedback merged into the first one's record).
    version: int | None = None
    entity_id: str | None = None
    conflicts: list[str] | None = None
    # Attachments whose bytes the server does not hold yet: upload them (the note is kept meanwhile).
    pending_blobs: list[str] | None = None


class MutationResult(MutationOutcome, kw_only=True, omit_defaults=True):
    """What became of one mutation of this push."""

    # On a duplicate: the result the mutation got when it was processed, so that a rejection or
    # conflict whose response was lost is still seen. Absent once it left the server's window.
    result: MutationOutcome | None = None


class PushResponse(msgspec.Struct, kw_only=True):
    """The server's answer to a push."""

    last_mutation_id: int
    results: list[MutationResult]


class Conflict(msgspec.Struct, kw_only=True):
    """A losing concurrent value, kept on the record until its owner resolves it.

    Every field is always on the wire (``client_id``, ``account_id`` and ``mutation_id`` are null
    for a change made through the REST API), ``reason`` included.
    """

    field: str
    value: Any
    client_id: str | None = None
    account_id: str | None = None
    mutation_id: int | None = None
    base_version: int = 0
    version: int = 0
    at: str = ""
    reason: str = "concurrent_edit"


class Change(msgspec.Struct, kw_only=True):
    """The latest state of one record, or its deletion."""

    entity: EntityKind
    id: str
    op: Literal["put", "delete"]
    version: int
    data: dict[str, Any] | None


class EntitySummary(msgspec.Struct, kw_only=True):
    """How many records of a kind the caller may see, and a checksum of their ids and versions."""

    count: int
    checksum: str


class PullResponse(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One page of changes since a cursor."""

    changes: list[Change]
    cursor: str
    has_more: bool
    last_mutation_id: int
    # Only on the last page (has_more false): the caller's whole visible state, summarised.
    summary: dict[str, EntitySummary] | None = None


# --- mutation arguments -------------------------------------------------------------------


Sha256 = Annotated[str, Meta(pattern=SHA256_PATTERN, description="SHA-256 of the bytes, lowercase hex")]
BlobMediaType = Literal["image/jpeg", "image/png", "image/webp", "image/heic", "application/pdf"]
AttachmentStatus = Literal["pending", "available"]


class Attachment(msgspec.Struct, kw_only=True):
    """A photo or document attached to a note, named by the SHA-256 of its bytes."""

    sha256: Sha256
    media_type: BlobMediaType
    bytes: Annotated[int, Meta(ge=1, le=2**31)]
    caption: Annotated[str, Meta(max_length=500)] = ""


class NoteAttachment(Attachment, kw_only=True):
    """An attachment as pulled: ``pending`` until the server holds the whole blob."""

    status: AttachmentStatus = "pending"


class NotePutArgs(msgspec.Struct, kw_only=True, omit_defaults=True):
    """``note.put``: create a note, or change some of its fields.

    Creating (the id is new): an omitted field takes its default. Editing (the id is a note of
    the caller's): an omitted field is left as it is and ``null`` resets a field to its default,
    as in a JSON merge patch (RFC 7396), so an edit sends only what it changes.
    """

    id: Uuid
    visit_id: Slug | UnsetType | None = UNSET
    site_id: Slug | UnsetType | None = UNSET
    body: NoteBody | UnsetType | None = UNSET
    tags: Annotated[list[Tag], Meta(max_length=32)] | UnsetType | None = UNSET
    lat: Latitude | UnsetType | None = UNSET
    lon: Longitude | UnsetType | None = UNSET
    captured_at: Stamp | UnsetType | None = UNSET
    share_with_organizers: bool | UnsetType | None = UNSET
    attachments: Annotated[list[Attachment], Meta(max_length=10)] | UnsetType | None = UNSET
    base_version: Version = 0
    resolve_conflicts: bool = False


class NoteDeleteArgs(msgspec.Struct, kw_only=True):
    """``note.delete``: delete a note (kept as a tombstone)."""

    id: Uuid
    base_version: Version = 0


Comment = Annotated[str, Meta(max_length=10_000)]


class FeedbackPutArgs(msgspec.Struct, kw_only=True, omit_defaults=True):
    """``feedback.put``: one participant's feedback on one visit, created or changed.

    As for ``note.put``: omitted fields are left as they are (defaults on a create), ``null``
    resets one; each answer is its own field, and an answer set to ``null`` is removed.
    """

    id: Uuid
    visit_id: Slug
    rating: Rating | UnsetType | None = UNSET
    answers: Annotated[dict[Slug, Answer | None], Meta(max_length=64)] | UnsetType = UNSET
    comment: Comment | UnsetType | None = UNSET
    base_version: Version = 0
    resolve_conflicts: bool = False


class SiteFieldsPatch(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The fields of a site that ``site.patch`` may change; absent means unchanged."""

    # A language mapped to null removes that language's text.
    description: dict[LanguageTag, LongText | None] | UnsetType = UNSET
    accessibility: ShortText | UnsetType = UNSET
    contact: ShortText | UnsetType = UNSET
    website: ShortText | UnsetType = UNSET
    opening_hours: list[OpeningHours] | UnsetType = UNSET
    opening_hours_note: ShortText | UnsetType = UNSET
    meeting_point: ShortText | UnsetType = UNSET
    address: ShortText | UnsetType = UNSET
    postcode: ShortText | UnsetType = UNSET
    city: ShortText | UnsetType = UNSET
    district: ShortText | UnsetType = UNSET
    lat: Latitude | UnsetType = UNSET
    lon: Longitude | UnsetType = UNSET
    coord_source: CoordSource | UnsetType = UNSET
    coord_note: ShortText | UnsetType = UNSET
    # Organizers only.
    name: ShortText | UnsetType = UNSET
    official_name: ShortText | UnsetType = UNSET
    kind: SiteKind | UnsetType = UNSET
    legal_form: ShortText | UnsetType = UNSET
    themes: list[ShortText] | UnsetType = UNSET


class SitePatchArgs(msgspec.Struct, kw_only=True):
    """``site.patch``: change some fields of a site."""

    site_id: Slug
    # Sites exist from version 1: a patch always names the version it was made from.
    base_version: Annotated[int, Meta(ge=1, le=2**53 - 1)]
    fields: SiteFieldsPatch
    resolve_conflicts: bool = False


class VisitFields(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The fields of a visit that organizers change; absent means unchanged."""

    title: ShortText | UnsetType = UNSET
    starts_at: Stamp | UnsetType = UNSET
    ends_at: Stamp | UnsetType = UNSET
    group_ids: list[Slug] | UnsetType = UNSET
    site_id: Slug | UnsetType | None = UNSET
    venue: ShortText | UnsetType = UNSET
    kind: VisitKind | UnsetType = UNSET
    meeting_point: ShortText | UnsetType = UNSET
    transport: TransportMode | UnsetType = UNSET
    notes: dict[LanguageTag, LongText | None] | UnsetType = UNSET
    status: VisitStatus | UnsetType = UNSET


class VisitPutArgs(VisitDraft, kw_only=True):
    """``visit.put``: create a visit, or replace one (organizers)."""

    base_version: Version = 0


class VisitPatchArgs(msgspec.Struct, kw_only=True):
    """``visit.patch``: change some fields of a visit (organizers)."""

    visit_id: Slug
    base_version: Annotated[int, Meta(ge=1, le=2**53 - 1)]
    fields: VisitFields


class Note(msgspec.Struct, kw_only=True):
    """A note as pulled by the devices that may see it."""

    id: str
    author_id: str
    visit_id: str | None = None
    site_id: str | None = None
    body: str = ""
    tags: list[str] = []
    lat: float | None = None
    lon: float | None = None
    captured_at: str | None = None
    share_with_organizers: bool = False
    attachments: list[NoteAttachment] = []
    version: int = 1
    conflicts: list[Conflict] = []
    updated_at: str = ""
    # The last change's device time as sent (display only), the server's time when it arrived,
    # and whether the device time is implausible (then show received_at instead).
    client_time: str | None = None
    received_at: str | None = None
    clock_skewed: bool = False


class Feedback(msgspec.Struct, kw_only=True):
    """Feedback as pulled: hosts see it without its author."""

    id: str
    visit_id: str
    site_id: str | None = None
    author_id: str | None = None
    rating: int | None = None
    answers: dict[str, Any] = {}
    comment: str = ""
    version: int = 1
    conflicts: list[Conflict] = []
    updated_at: str = ""
    # As on Note: the last change's device time, the server's receive time, and the skew flag.
    client_time: str | None = None
    received_at: str | None = None
    clock_skewed: bool = False


# --- pulled records, typed per entity (what OpenAPI publishes for a pull page) -------------


class SyncedSite(Site, kw_only=True):
    """A site as pulled: its ``conflicts`` are shown to its hosts and organizers (empty for others)."""

    conflicts: list[Conflict] = []


class NoteTombstone(msgspec.Struct, kw_only=True):
    """The ``data`` of a deleted note for its author when values were lost to the delete (§6.2)."""

    conflicts: list[Conflict]


class _TypedChange(msgspec.Struct, kw_only=True, tag_field="entity"):
    id: str
    op: Literal["put", "delete"]
    version: int


class EventChange(_TypedChange, kw_only=True, tag="event"):
    """A change of the event."""

    data: Event | None


class SiteChange(_TypedChange, kw_only=True, tag="site"):
    """A change of a site."""

    data: SyncedSite | None


class VisitChange(_TypedChange, kw_only=True, tag="visit"):
    """A change of a visit."""

    data: Visit | None


class GroupChange(_TypedChange, kw_only=True, tag="group"):
    """A change of a group."""

    data: Group | None


class QuestionChange(_TypedChange, kw_only=True, tag="question"):
    """A change of a feedback question."""

    data: Question | None


# msgspec (and so Litestar's schema generator) cannot take a union of two untagged objects, so
# the note's published schema names the tombstone's shape itself.
# anyOf, not oneOf: a note has conflicts too, so it matches the tombstone's schema as well.
_NOTE_OR_TOMBSTONE = {
    "oneOf": None,  # replaces the generated "Note or null"
    "anyOf": [
        {"$ref": "#/components/schemas/Note"},
        {
            "type": "object",
            "title": "NoteTombstone",
            "description": NoteTombstone.__doc__,
            "required": ["conflicts"],
            "properties": {"conflicts": {"type": "array", "items": {"$ref": "#/components/schemas/Conflict"}}},
        },
        {"type": "null"},
    ],
}


class NoteChange(_TypedChange, kw_only=True, tag="note"):
    """A change of a note: ``put`` with the note, ``delete`` with null or the author's lost values."""

    data: Annotated[Note | None, Meta(extra_json_schema={"extra": _NOTE_OR_TOMBSTONE})]


class FeedbackChange(_TypedChange, kw_only=True, tag="feedback"):
    """A change of feedback."""

    data: Feedback | None


TypedChange = EventChange | SiteChange | VisitChange | GroupChange | QuestionChange | NoteChange | FeedbackChange


class PullPage(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A pull page as OpenAPI publishes it: ``PullResponse`` with each change's ``data`` typed by
    its ``entity``. For the published schema only (a note's ``data`` may also be a
    ``NoteTombstone``): clients decode ``PullResponse``."""

    changes: list[TypedChange]
    cursor: str
    has_more: bool
    last_mutation_id: int
    summary: dict[str, EntitySummary] | None = None
