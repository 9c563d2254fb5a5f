"""Wire types of feedback collection and of what organizers and hosts read back: summaries, shared notes."""

from typing import Annotated

import msgspec
from msgspec import Meta

from schemas.common import Slug, Stamp, Translations, Uuid
from schemas.feedback import Choice, QuestionKind
from schemas.sync import Answer, Rating, Version

# --- requests -----------------------------------------------------------------------------


class QuestionFields(msgspec.Struct, kw_only=True):
    """A feedback question as organizers define it; the id is in the path, the version is the server's."""

    kind: QuestionKind
    texts: Translations
    choices: Annotated[list[Choice], Meta(max_length=20)] = []
    position: int = 0


class FeedbackFields(msgspec.Struct, kw_only=True):
    """A participant's answers about one visit, sent online; merged by the same rules as ``feedback.put``."""

    # Absent: the caller's feedback on this visit keeps its id (or a new one is made).
    id: Uuid | None = None
    rating: Rating | None = None
    answers: Annotated[dict[Slug, Answer], Meta(max_length=64)] = {}
    comment: Annotated[str, Meta(max_length=10_000)] = ""
    # Absent: the edit is based on what is stored now, so it replaces the values it sends.
    base_version: Version | None = None


# --- responses ----------------------------------------------------------------------------


class FeedbackState(msgspec.Struct, kw_only=True):
    """Whether a visit still takes feedback, and the visit's version after the change."""

    visit_id: str
    feedback_closed: bool
    version: int


class Author(msgspec.Struct, kw_only=True, frozen=True):
    """Who wrote a feedback or a note, as organizers see them."""

    id: str
    name: str
    country: str | None = None
    # The language the author uses the app in: what their words are most likely written in.
    language: str | None = None


class RatingStats(msgspec.Struct, kw_only=True):
    """Answers on a 1 to 5 scale: how many, their mean, and how many of each value."""

    count: int
    mean: float | None
    # Every value 1..5 is present, with 0 where nobody chose it.
    distribution: dict[int, int]


class TextAnswer(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A free-text answer or comment; hosts get it without its author."""

    feedback_id: str
    text: str
    author_id: str | None = None
    author_name: str | None = None
    # The author's app language (BCP 47), for organizers: a hint of the text's language, not a detection.
    lang: str | None = None


class QuestionSummary(msgspec.Struct, kw_only=True, omit_defaults=True):
    """What participants answered to one question: stats for ratings, counts for choices, texts for text."""

    id: str
    kind: str
    text: str
    answered: int
    rating: RatingStats | None = None
    # Choice id → how many chose it; every defined choice is present.
    choices: dict[str, int] | None = None
    texts: list[TextAnswer] | None = None


class FeedbackStats(msgspec.Struct, kw_only=True):
    """Feedback on one visit or on all the visits at one site."""

    responses: int
    # Participants whose group is in the visit's groups (summed over a site's visits).
    expected: int
    # responses / expected; null when no participant was expected.
    response_rate: float | None
    rating: RatingStats
    questions: list[QuestionSummary]
    comments: list[TextAnswer]


class VisitFeedback(FeedbackStats, kw_only=True):
    """Feedback on one visit."""

    visit_id: str
    title: str
    site_id: str | None
    group_ids: list[str]
    feedback_closed: bool
    # When the visit starts, to sort and filter by day in the event's time zone.
    starts_at: Stamp | None = None


class SiteFeedback(FeedbackStats, kw_only=True):
    """Feedback on every visit at one site."""

    site_id: str
    name: str
    visit_ids: list[str]


class FeedbackSummary(msgspec.Struct, kw_only=True):
    """Feedback per visit and per site: every visit for organizers, a host's own sites for hosts."""

    event_id: str
    visits: list[VisitFeedback]
    sites: list[SiteFeedback]


class SharedNote(msgspec.Struct, kw_only=True):
    """A note its author shared with the organizers, with who wrote it and where."""

    id: str
    author_id: str
    author_name: str
    visit_id: str | None
    visit_title: str | None
    # The note's own site, or else its visit's.
    site_id: str | None
    site_name: str | None
    body: str
    tags: list[str]
    lat: float | None = None
    lon: float | None = None
    captured_at: str | None = None
    updated_at: str
