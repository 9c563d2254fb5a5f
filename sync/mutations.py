"""Mutation types by their stable wire names, and the checks every mutation passes before it runs."""

from datetime import datetime, timedelta
from typing import Any

import msgspec

from schemas.common import Slug
from schemas.sync import (
    Answer,
    FeedbackPutArgs,
    Mutation,
    NoteDeleteArgs,
    NotePutArgs,
    SitePatchArgs,
    VisitPatchArgs,
    VisitPutArgs,
)

MUTATION_TYPES: dict[str, type[msgspec.Struct]] = {
    "note.put": NotePutArgs,
    "note.delete": NoteDeleteArgs,
    "feedback.put": FeedbackPutArgs,
    "site.patch": SitePatchArgs,
    "visit.put": VisitPutArgs,
    "visit.patch": VisitPatchArgs,
}
# Phones' clocks drift and cross time zones; a day of slack, no more. A device time further ahead
# (or before 2000, or unreadable) is a broken clock: the mutation is still applied, since the
# user's work matters more than a timestamp, but the time is flagged so no display trusts it.
MAX_CLOCK_AHEAD = timedelta(days=1)
EARLIEST_CLIENT_TIME = datetime.fromisoformat("2000-01-01T00:00:00+00:00")


class InvalidMutationError(ValueError):
    """A mutation that can never be applied: the server rejects it and moves on."""

    def __init__(self, slug: str, detail: str) -> None:
        super().__init__(detail)
        self.slug = slug
        self.detail = detail


def decode_args(mutation: Mutation) -> Any:
    """Check a mutation's type and arguments; returns its typed arguments.

    ``client_time`` is not checked here: it is for display only and never a reason to refuse
    (see ``clock_skewed``).
    """
    args_type = MUTATION_TYPES.get(mutation.type)
    if args_type is None:
        known = ", ".join(sorted(MUTATION_TYPES))
        raise InvalidMutationError("unknown-mutation-type", f"Unknown mutation type {mutation.type!r}; known: {known}.")
    try:
        return msgspec.convert(mutation.args, args_type)
    except msgspec.ValidationError as exc:
        raise InvalidMutationError(
            "invalid-mutation", f"{mutation.type}: {_name_the_key(mutation.args, exc)}"
        ) from None


def _name_the_key(args: dict[str, Any], exc: msgspec.ValidationError) -> str:
    # msgspec points into a mapping as "$.answers[...]", which leaves the client guessing which
    # question it got wrong: find the answer that fails and name its question.
    message = str(exc)
    answers = args.get("answers")
    if ("`$.answers[...]`" in message or "in `$.answers`" in message) and isinstance(answers, dict):
        for question, answer in answers.items():  # pyright: ignore[reportUnknownVariableType]
            try:
                msgspec.convert({question: answer}, dict[Slug, Answer | None])
            except msgspec.ValidationError as one:
                return f"answer to question {msgspec.json.encode(question).decode()}: {str(one).split(' - at ')[0]}."
    return message


def clock_skewed(client_time: str | None, now: datetime) -> bool:
    """Whether a device time cannot be trusted: unreadable, without an offset, more than a day
    ahead of ``now``, or before 2000. A time in the past is not skew: offline phones push late."""
    if client_time is None:
        return False
    try:
        stamp = msgspec.convert(client_time, datetime)
    except msgspec.ValidationError:
        return True
    if stamp.tzinfo is None:
        return True
    try:
        return stamp > now + MAX_CLOCK_AHEAD or stamp < EARLIEST_CLIENT_TIME
    except OverflowError:  # an offset that pushes the instant past year 9999 or before year 1
        return True
