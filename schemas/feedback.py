"""Feedback questions organizers ask about visits."""

from typing import Literal

import msgspec

from schemas.common import Slug, Translations

QuestionKind = Literal["rating", "choice", "text"]


class Choice(msgspec.Struct, kw_only=True):
    """One option of a single-choice question."""

    id: Slug
    texts: Translations


class Question(msgspec.Struct, kw_only=True):
    """A question asked about every visit, with its text per language."""

    id: Slug
    kind: QuestionKind
    texts: Translations
    choices: list[Choice] = []
    position: int = 0
    version: int = 1
