"""Feedback collection: organizers' questions, participants' answers online, closing, summaries and the CSV."""

import csv
import io
import re
import uuid
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import msgspec

from schemas.accounts import Account
from schemas.common import Slug
from schemas.feedback import Question
from schemas.reports import (
    Author,
    FeedbackFields,
    FeedbackState,
    FeedbackSummary,
    QuestionFields,
    QuestionSummary,
    RatingStats,
    SiteFeedback,
    TextAnswer,
    VisitFeedback,
)
from schemas.sync import Answer, Feedback, FeedbackPutArgs
from server.errors import BadRequestError, ForbiddenError, NotFoundError
from server.services.mutations import Context, MutationRejectedError, feedback_put
from server.storage.accounts import group_sizes
from server.storage.catalog import list_questions, list_sites, list_visits, put_question
from server.storage.feedback_store import (
    closed_visits,
    delete_question,
    feedback_closed,
    feedback_of,
    get_question,
    list_authors,
    list_feedback,
    set_feedback_closed,
)
from server.storage.records import add_history
from server.storage.unit import Store


def require_role(account: Account, *roles: str, what: str) -> None:
    """403 unless the caller has one of these roles."""
    if account.role not in roles:
        raise ForbiddenError(f"{what} is for {' and '.join(f'{r}s' for r in roles)}; you are a {account.role}.")


def check_question(question_id: str, fields: QuestionFields) -> None:
    """A question needs a slug id and a text, and a choice question distinct choices (other kinds none)."""
    try:
        # Phones decode questions with Slug ids: a path segment that is not one would break their pull.
        msgspec.convert(question_id, Slug)
    except msgspec.ValidationError:
        raise BadRequestError(f"'{question_id}' is not a valid question id (letters, digits, - and _).") from None
    if not any(text.strip() for text in fields.texts.values()):
        raise MutationRejectedError("invalid-question", f"Question '{question_id}' needs a text in some language.")
    ids = [c.id for c in fields.choices]
    if fields.kind == "choice" and not ids:
        raise MutationRejectedError("invalid-question", "A choice question needs at least one choice.")
    if fields.kind != "choice" and ids:
        raise MutationRejectedError("invalid-question", f"A {fields.kind} question has no choices.")
    if duplicates := sorted({i for i in ids if ids.count(i) > 1}):
        raise MutationRejectedError("invalid-question", f"Choice ids repeat: {', '.join(duplicates)}.")


def save_question(db: Store, account: Account, question_id: str, fields: QuestionFields) -> tuple[Question, bool]:
    """Create or replace a question at its next version; returns it and whether it is new."""
    require_role(account, "organizer", what="Defining questions")
    check_question(question_id, fields)
    with db.write() as tx:
        existing = get_question(tx, account.event_id, question_id)
        question = Question(
            id=question_id,
            kind=fields.kind,
            texts=fields.texts,
            choices=fields.choices,
            position=fields.position,
            version=1 if existing is None else existing.version + 1,
        )
        # put_question also queues the change for every device's next pull.
        put_question(tx, account.event_id, question)
    return question, existing is None


def remove_question(db: Store, account: Account, question_id: str) -> None:
    """Delete a question. Answers already given to it are kept on their feedback."""
    require_role(account, "organizer", what="Defining questions")
    with db.write() as tx:
        if not delete_question(tx, account.event_id, question_id):
            raise NotFoundError(f"No question '{question_id}' in this event.")


def give_feedback(db: Store, account: Account, visit_id: str, fields: FeedbackFields) -> tuple[Feedback, bool]:
    """A participant's feedback on a visit, through the very rules of sync's ``feedback.put``.

    Returns the stored feedback and whether it was created now.
    """
    require_role(account, "participant", what="Giving feedback")
    with db.write() as tx:
        feedback_closed(tx, account.event_id, visit_id)  # or 404
        existing = feedback_of(tx, account.event_id, account.id, visit_id)
        feedback_id = fields.id or (existing.id if existing else str(uuid.uuid4()))
        # Online, the caller has just read what is stored: their values replace it unless they name an older base.
        base = fields.base_version if fields.base_version is not None else (existing.version if existing else 0)
        answers: dict[str, Answer | None] = {**fields.answers}
        args = FeedbackPutArgs(
            id=feedback_id,
            visit_id=visit_id,
            rating=fields.rating,
            answers=answers,
            comment=fields.comment,
            base_version=base,
        )
        feedback_put(Context(tx, account, None, None), args)
        stored = feedback_of(tx, account.event_id, account.id, visit_id)
    assert stored is not None
    return stored, existing is None


def set_feedback_open(db: Store, account: Account, visit_id: str, *, closed: bool) -> FeedbackState:
    """Close or reopen feedback on a visit; devices learn of it with the visit's next version."""
    require_role(account, "organizer", what="Closing feedback")
    with db.write() as tx:
        was_closed, version = feedback_closed(tx, account.event_id, visit_id)
        if was_closed == closed:
            return FeedbackState(visit_id=visit_id, feedback_closed=closed, version=version)
        version += 1
        set_feedback_closed(tx, account.event_id, visit_id, closed, version)
        add_history(
            tx,
            account.event_id,
            "visit",
            visit_id,
            version,
            {"feedback_closed": (was_closed, closed)},
            account_id=account.id,
        )
    return FeedbackState(visit_id=visit_id, feedback_closed=closed, version=version)


def question_text(question: Question | None, fallback: str) -> str:
    """A question's English text, else its first text, else ``fallback`` (a deleted question's id)."""
    if question is None:
        return fallback
    return question.texts.get("en") or next(iter(question.texts.values()), fallback)


def ordered_answers(answers: dict[str, object], questions: dict[str, Question]) -> Iterable[str]:
    """Question ids of some answers, in the questions' order; answers to deleted questions last."""
    known = [q for q in questions if q in answers]
    return [*known, *sorted(a for a in answers if a not in questions)]


# --- reading it back ----------------------------------------------------------------------


def rating_stats(values: Iterable[object]) -> RatingStats:
    """Count, mean and 1..5 distribution of the values that are ratings (others, from a changed question, are skipped)."""
    ratings = [v for v in values if isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 5]
    distribution = dict.fromkeys(range(1, 6), 0)
    for value in ratings:
        distribution[value] += 1
    mean = round(sum(ratings) / len(ratings), 2) if ratings else None
    return RatingStats(count=len(ratings), mean=mean, distribution=distribution)


def _text(feedback: Feedback, text: str, authors: dict[str, Author] | None) -> TextAnswer:
    if authors is None or feedback.author_id is None:
        return TextAnswer(feedback_id=feedback.id, text=text)
    author = authors.get(feedback.author_id)
    return TextAnswer(
        feedback_id=feedback.id,
        text=text,
        author_id=feedback.author_id,
        author_name=author.name if author else None,
        lang=author.language if author else None,
    )


def question_summary(
    question: Question, feedback: list[Feedback], authors: dict[str, Author] | None
) -> QuestionSummary:
    """What was answered to one question across some feedback."""
    given = [(f, f.answers[question.id]) for f in feedback if question.id in f.answers]
    summary = QuestionSummary(
        id=question.id, kind=question.kind, text=question_text(question, question.id), answered=len(given)
    )
    if question.kind == "rating":
        summary.rating = rating_stats(a for _, a in given)
    elif question.kind == "choice":
        counts = {c.id: 0 for c in question.choices}
        for _, answer in given:
            if isinstance(answer, str):
                counts[answer] = counts.get(answer, 0) + 1
        summary.choices = counts
    else:
        summary.texts = [_text(f, a, authors) for f, a in given if isinstance(a, str) and a.strip()]
    return summary


def feedback_stats(
    feedback: list[Feedback], expected: int, questions: dict[str, Question], authors: dict[str, Author] | None
) -> dict[str, Any]:
    """The FeedbackStats fields of some feedback; ``authors`` None leaves the authors out (hosts)."""
    return {
        "responses": len(feedback),
        "expected": expected,
        "response_rate": round(len(feedback) / expected, 3) if expected else None,
        "rating": rating_stats(f.rating for f in feedback),
        "questions": [question_summary(q, feedback, authors) for q in questions.values()],
        "comments": [_text(f, f.comment, authors) for f in feedback if f.comment.strip()],
    }


def feedback_summary(db: Store, account: Account) -> FeedbackSummary:
    """Feedback per visit and per site: organizers see every visit with names, hosts their sites' visits without."""
    require_role(account, "organizer", "host", what="The feedback summary")
    event_id = account.event_id
    host = account.role == "host"
    with db.read() as tx:
        visits = list_visits(tx, event_id, site_ids=account.site_ids if host else None)
        sites = {s.id: s for s in list_sites(tx, event_id)}
        questions = {q.id: q for q in list_questions(tx, event_id)}
        sizes = group_sizes(tx, event_id)
        closed = closed_visits(tx, event_id)
        feedback = list_feedback(tx, event_id, [v.id for v in visits])
        authors = None if host else list_authors(tx, event_id)
    if host:
        # As in sync: a host sees feedback given about their own sites only.
        feedback = [f for f in feedback if f.site_id in account.site_ids]
    by_visit: dict[str, list[Feedback]] = defaultdict(list)
    for f in feedback:
        by_visit[f.visit_id].append(f)
    expected = {v.id: sum(sizes.get(g, 0) for g in v.group_ids) for v in visits}
    visit_rows = [
        VisitFeedback(
            **feedback_stats(by_visit[v.id], expected[v.id], questions, authors),
            visit_id=v.id,
            title=v.title,
            site_id=v.site_id,
            group_ids=v.group_ids,
            feedback_closed=v.id in closed,
            starts_at=v.starts_at,
        )
        for v in visits
    ]
    at_site: dict[str, list[str]] = defaultdict(list)
    for v in visits:
        if v.site_id is not None:
            at_site[v.site_id].append(v.id)
    site_rows = [
        SiteFeedback(
            **feedback_stats(
                [f for vid in ids for f in by_visit[vid]], sum(expected[vid] for vid in ids), questions, authors
            ),
            site_id=site_id,
            name=sites[site_id].name if site_id in sites else site_id,
            visit_ids=ids,
        )
        for site_id, ids in sorted(at_site.items(), key=lambda item: sites[item[0]].name if item[0] in sites else "")
    ]
    return FeedbackSummary(event_id=event_id, visits=visit_rows, sites=site_rows)


FEEDBACK_CSV_HEADER = [
    "feedback_id",
    "visit_id",
    "visit_title",
    "site",
    "participant_name",
    "country",
    "question_id",
    "question_text",
    "answer",
]


def _answer_text(question: Question | None, answer: object) -> str:
    if question is not None and question.kind == "choice":
        choice = next((c for c in question.choices if c.id == answer), None)
        if choice is not None:
            return choice.texts.get("en") or next(iter(choice.texts.values()), choice.id)
    return str(answer)


def feedback_csv(db: Store, account: Account) -> bytes:
    """Every answer as one spreadsheet row, with the participant's name: for organizers only."""
    require_role(account, "organizer", what="The feedback export")
    event_id = account.event_id
    with db.read() as tx:
        visits = list_visits(tx, event_id)
        sites = {s.id: s.name for s in list_sites(tx, event_id)}
        questions = {q.id: q for q in list_questions(tx, event_id)}
        feedback = list_feedback(tx, event_id)
        authors = list_authors(tx, event_id)
    order = {v.id: i for i, v in enumerate(visits)}
    titles = {v.id: v.title for v in visits}
    rows: list[list[str]] = []
    for f in sorted(feedback, key=lambda f: (order.get(f.visit_id, len(order)), f.updated_at, f.id)):
        author = authors.get(f.author_id or "")
        site = sites.get(f.site_id, f.site_id) if f.site_id else ""
        name, country = (author.name, author.country or "") if author else ("", "")
        head = [f.id, f.visit_id, titles.get(f.visit_id, ""), site, name, country]
        answers: list[tuple[str, str, str]] = []
        if f.rating is not None:
            answers.append(("rating", "Overall rating (1-5)", str(f.rating)))
        for qid in ordered_answers(f.answers, questions):
            question = questions.get(qid)
            answers.append((qid, question_text(question, qid), _answer_text(question, f.answers[qid])))
        if f.comment:
            answers.append(("comment", "Comment", f.comment))
        rows.extend([*head, *answer] for answer in answers)
    return csv_bytes(FEEDBACK_CSV_HEADER, rows)


# Characters that start a formula in a spreadsheet cell (OWASP "CSV injection"), with their fullwidth and
# small forms, which East Asian input methods type and some spreadsheets read as the ASCII ones.
_SIGNS = "=+\\-@\uff1d\uff0b\uff0d\uff20\ufe66\ufe62\ufe63\ufe6b"
# A sign at the start of the cell after any spaces (spreadsheets trim them), or a leading tab or CR.
_FORMULA_AT_START = re.compile(rf"^(?:[\t\r]|\s*[{_SIGNS}])")
# A sign after something a spreadsheet might split on: a line break, or the delimiter of another
# locale (a semicolon-locale Excel reads "great visit;=1+1" as two cells, the second a formula).
_FORMULA_AFTER_DELIMITER = re.compile(rf"([,;\t\r\n]\s*)(?=[{_SIGNS}])")


def neutralise_formulas(cell: str) -> str:
    """A cell no spreadsheet runs as a formula: a quote before each trigger, the text otherwise kept."""
    cell = _FORMULA_AFTER_DELIMITER.sub(r"\1'", cell)
    return "'" + cell if _FORMULA_AT_START.match(cell) else cell


def csv_bytes(header: list[str], rows: Iterable[list[str]]) -> bytes:
    """RFC 4180 CSV in UTF-8 with a byte-order mark, so that spreadsheets read accents and scripts right.

    Every cell is quoted, so that no delimiter inside a text splits it, whatever the reader's locale.
    """
    out = io.StringIO()
    writer = csv.writer(out, quoting=csv.QUOTE_ALL)
    writer.writerow(header)
    for row in rows:
        writer.writerow([neutralise_formulas(cell) for cell in row])
    return out.getvalue().encode("utf-8-sig")
