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
# Phones' clocks drift and cross time zones; a day of slack, no more: a client_time years
# ahead is a broken clock or a forged request, and would corrupt "last edited" displays.
MAX_CLOCK_AHEAD = timedelta(days=1)
EARLIEST_CLIENT_TIME = datetime.fromisoformat("2000-01-01T00:00:00+00:00")


class InvalidMutationError(ValueError):
    """A mutation that can never be applied: the server rejects it and moves on."""

    def __init__(self, slug: str, detail: str) -> None:
        super().__init__(detail)
        self.slug = slug
        self.detail = detail


def decode_args(mutation: Mutation, now: datetime) -> Any:
    """Check a mutation's type, client time and arguments; returns its typed arguments."""
    args_type = MUTATION_TYPES.get(mutation.type)
    if args_type is None:
        known = ", ".join(sorted(MUTATION_TYPES))
        raise InvalidMutationError("unknown-mutation-type", f"Unknown mutation type {mutation.type!r}; known: {known}.")
    if mutation.client_time is not None:
        check_client_time(mutation.client_time, now)
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


def check_client_time(text: str, now: datetime) -> datetime:
    """A device timestamp: RFC 3339 with an offset, not far in the future, not before 2000."""
    try:
        stamp = msgspec.convert(text, datetime)
    except msgspec.ValidationError:
        raise InvalidMutationError(
            "invalid-client-time", f"client_time {text!r} is not an RFC 3339 timestamp."
        ) from None
    if stamp.tzinfo is None:
        raise InvalidMutationError("invalid-client-time", f"client_time {text!r} has no UTC offset.")
    if stamp > now + MAX_CLOCK_AHEAD:
        raise InvalidMutationError(
            "invalid-client-time", f"client_time {text!r} is in the future; check the device clock."
        )
    if stamp < EARLIEST_CLIENT_TIME:
        raise InvalidMutationError(
            "invalid-client-time", f"client_time {text!r} is before 2000; check the device clock."
        )
    return stamp
